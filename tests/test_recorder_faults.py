"""The recorder's "nothing lost, nothing twice" under real faults.

* PostgreSQL connections of this test's database terminated every 100 ms during an ingest;
* a PostgreSQL server (a private cluster on its own port) restarted during an ingest;
* the recording process SIGKILLed after acknowledging events, some committed and some only
  in the spool (the database away), then a restart that replays the spool.

Every event acknowledged is present exactly once afterwards, and every error the recorder met
is a typed botdb error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import botdb
from botdb import errors
from botdb.recorder import MessageCreated, MessageEdited, ReactionAdded
from botdb.testing import database_at
from tests.helpers import MakeDB, wait_until

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
G, C, U = 1000, 2000, 3000
PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: Where the ``botdb`` package being tested lives, for the child process's ``PYTHONPATH``.
SRC = str(Path(botdb.__file__).resolve().parent.parent)


def events_for(mid: int) -> list[Any]:
    """A message, an edit of it and a reaction on it."""
    return [
        MessageCreated(mid, G, C, U, T0 + timedelta(milliseconds=mid), content=f"m{mid}"),
        MessageEdited(mid, G, C, edited_at=T0 + timedelta(days=1, milliseconds=mid), content="e"),
        ReactionAdded(mid, G, C, U + mid % 7, "👍", T0 + timedelta(days=2)),
    ]


async def assert_exactly(db: botdb.Database, count: int) -> None:
    assert await db.fetchval("SELECT count(*) FROM messages") == count
    assert await db.fetchval("SELECT count(DISTINCT id) FROM messages") == count
    assert await db.fetchval("SELECT count(*) FROM messages WHERE content = 'e'") == count
    assert await db.fetchval("SELECT count(*) FROM reactions") == count
    assert await db.fetchval("SELECT min(id) FROM messages") == 1
    assert await db.fetchval("SELECT max(id) FROM messages") == count


def assert_typed(stats: dict[str, Any]) -> None:
    for name in stats["errors"]:
        cls = getattr(errors, name, None)
        assert cls is not None, f"{name} is not a botdb error"
        assert issubclass(cls, errors.BotDBError)


# -- connections terminated every 100 ms ------------------------------------------------------


async def test_connections_terminated_every_100ms(pg_url: str, tmp_path: Path) -> None:
    import asyncpg

    killer = await asyncpg.connect(pg_url)
    stop = asyncio.Event()
    kills = 0

    async def kill_every_100ms() -> None:
        nonlocal kills
        while not stop.is_set():
            # Only this test's database, never the killer's own connection.
            killed = await killer.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()) t WHERE ok"
            )
            kills += int(killed)
            with contextlib.suppress(TimeoutError):
                # The pacing the fault asks for (not a synchronization).
                await asyncio.wait_for(stop.wait(), 0.1)

    async with database_at(
        pg_url,
        recorder_spool_path=tmp_path / "spool",
        recorder_batch_size=300,
        recorder_max_buffer=3000,
        retry_initial_delay=0.01,
        retry_max_delay=0.1,
    ) as db:
        recorder = db.recorder
        task = asyncio.create_task(kill_every_100ms())
        try:
            mid = 0
            # Record until the writer has been cut off several times, however fast it is.
            while (
                recorder.stats()["errors"].get("ConnectionLostError", 0)
                + recorder.stats()["errors"].get("ConnectionFailedError", 0)
                < 5
                or mid < 3000
            ):
                for _ in range(100):
                    mid += 1
                    await recorder.record_many(events_for(mid))
                await asyncio.sleep(0)  # let the writer run between chunks
            await recorder.flush()
        finally:
            stop.set()
            await task
            await killer.close()
        await recorder.flush()
        stats = recorder.stats()
        assert stats["buffered"] == 0
        assert stats["spooled"] == 0
        assert stats["retries"] > 0
        assert kills > 0
        assert_typed(stats)
        await assert_exactly(db, mid)


# -- a server restarted during the ingest -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """A PostgreSQL 15 cluster of this test's own (never the shared server), run as the
    ``postgres`` user when the tests run as root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="botdb-recorder-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "root", "--auth=trust", "--no-sync"
        )

    def ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-m",
            "fast",
            action,
        )

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def started_private_cluster() -> Iterator[PrivateCluster]:
    """Make and start a private cluster, yield it, remove it; skip when it cannot start."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 binaries in {PG_BIN}")
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.ctl("start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        cluster.remove()
        pytest.skip(f"cannot start a private PostgreSQL cluster: {exc}")
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[PrivateCluster]:
    yield from started_private_cluster()


async def test_server_restarted_mid_ingest(private_cluster: PrivateCluster, tmp_path: Path) -> None:
    async with database_at(
        private_cluster.url,
        recorder_spool_path=tmp_path / "spool",
        recorder_batch_size=200,
        recorder_max_buffer=2000,
        retry_initial_delay=0.02,
        retry_max_delay=0.2,
        pool_acquire_timeout=2.0,
        cache_via_database=False,
    ) as db:
        await db.execute("DROP TABLE IF EXISTS messages, reactions CASCADE")
        await db.create_tables()
        recorder = db.recorder
        mid = 0

        async def record(upto: int) -> None:
            nonlocal mid
            while mid < upto:
                mid += 1
                await recorder.record_many(events_for(mid))
                if mid % 100 == 0:
                    await asyncio.sleep(0)

        await record(1000)
        await wait_until(lambda: recorder.stats()["written"] > 0, what="first batches")
        restart = asyncio.create_task(asyncio.to_thread(private_cluster.ctl, "restart"))
        while not restart.done():
            await record(mid + 200)
            await asyncio.sleep(0.01)  # keep recording while the server goes down and up
        await restart
        await record(mid + 1000)
        await recorder.flush()
        await recorder.flush()  # the first may have spooled while the server was starting
        stats = recorder.stats()
        assert stats["buffered"] == 0
        assert stats["spooled"] == 0
        assert_typed(stats)
        assert stats["errors"], "the restart was not seen by the recorder"
        await assert_exactly(db, mid)


# -- the recording process killed -------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys, orjson
    from datetime import UTC, datetime, timedelta
    import botdb
    from botdb.recorder import MessageCreated

    T0 = datetime(2024, 5, 1, tzinfo=UTC)

    async def main(url, spool):
        db = await botdb.connect(
            url, recorder_spool_path=spool, recorder_batch_size=50, recorder_max_buffer=200,
            recorder_flush_interval=30, retry_initial_delay=0.01, retry_max_delay=0.05,
            sqlite_busy_timeout=0.1, cache_via_database=False,
        )
        mid = 0
        while True:
            for _ in range(100):
                mid += 1
                await db.recorder.record(
                    MessageCreated(mid, 1, 2, 3, T0 + timedelta(milliseconds=mid))
                )
            await db.recorder.flush()
            stats = db.recorder.stats()
            line = {
                "acked": mid, "spilled": stats["spilled"], "away": stats["away"],
                "errors": stats["errors"],
            }
            sys.stdout.buffer.write(orjson.dumps(line) + b"\\n")
            sys.stdout.flush()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_killed_process_loses_nothing_it_acknowledged(
    make_db: MakeDB, db_url: str, tmp_path: Path
) -> None:
    db = await make_db(create_tables=True, recorder_spool_path=tmp_path / "parent-spool")
    spool = tmp_path / "child-spool"
    script = tmp_path / "child.py"
    await asyncio.to_thread(script.write_text, CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        db_url,
        str(spool),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert child.stdout is not None

    async def next_ack() -> dict[str, Any]:
        line = await asyncio.wait_for(child.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line, "the child stopped"
        return dict(orjson.loads(line))

    try:
        ack = await next_ack()
        while ack["acked"] < 500:  # committed
            ack = await next_ack()
        # The database away for the child: its flushes now acknowledge from the spool.
        await db.execute("ALTER TABLE messages RENAME TO messages_away")
        committed = ack["acked"]
        while not (ack["away"] and ack["spilled"] >= 300 and ack["acked"] >= committed + 300):
            ack = await next_ack()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert ack["errors"], "the child never saw the database away"
    assert_typed(ack)
    acked = ack["acked"]
    spooled_lines = len((await asyncio.to_thread(spool.read_bytes)).splitlines())
    await db.execute("ALTER TABLE messages_away RENAME TO messages")
    await db.close()

    # The restart: connecting replays the spool the killed process left.
    again = await make_db(recorder_spool_path=spool)
    await again.recorder.flush()  # returns once the spool found at start is replayed
    assert again.recorder.stats()["spooled"] == 0
    assert again.recorder.stats()["replayed"] == spooled_lines > 0
    present = await again.fetchval("SELECT count(*) FROM messages WHERE id <= $1", acked)
    assert present == acked
    assert await again.fetchval("SELECT count(DISTINCT id) FROM messages") == await again.fetchval(
        "SELECT count(*) FROM messages"
    )
