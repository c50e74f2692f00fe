"""``db.recorder``: batching, flush as a durability point, the spool, back-pressure, poison."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import botdb
from botdb import errors
from botdb.recorder import MessageCreated, ReactionAdded, Recorder
from botdb.recorder._spool import Spool, encode_event
from tests.helpers import MakeDB, wait_until

#: This contract also runs through pgbouncer in transaction mode (see conftest).
PGBOUNCER_CONTRACT = True
CITUS_CONTRACT = True

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
G, C, U = 1000, 2000, 3000


def message(mid: int, content: str | None = None) -> MessageCreated:
    return MessageCreated(
        id=mid,
        guild_id=G,
        channel_id=C,
        author_id=U,
        created_at=T0 + timedelta(seconds=mid),
        content=f"m{mid}" if content is None else content,
    )


async def count(db: botdb.Database, table: str = "messages") -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "recorder.spool"


@pytest.fixture
async def make_recording_db(make_db: MakeDB, spool: Path) -> MakeDB:
    """``make_db`` with the built-in tables, this test's spool and small batches."""

    async def make(**options: Any) -> botdb.Database:
        options.setdefault("create_tables", True)
        options.setdefault("recorder_spool_path", spool)
        options.setdefault("recorder_batch_size", 50)
        options.setdefault("recorder_max_buffer", 200)
        options.setdefault("recorder_flush_interval", 30.0)
        return await make_db(**options)

    return make  # type: ignore[return-value]


@pytest.fixture
async def db(make_recording_db: MakeDB, builtin_tables: None) -> botdb.Database:
    return await make_recording_db()


class _Away:
    """The database "away" for the recorder: the messages table renamed, so every write fails
    (UndefinedTableError, which the recorder keeps retrying) until :meth:`back`."""

    def __init__(self, db: botdb.Database) -> None:
        self.db = db

    async def back(self) -> None:
        await self.db.execute("ALTER TABLE messages_away RENAME TO messages")


async def start_away(db: botdb.Database) -> _Away:
    await db.execute("ALTER TABLE messages RENAME TO messages_away")
    return _Away(db)


class TestRecording:
    async def test_flush_commits_everything_recorded_before_it(self, db: botdb.Database) -> None:
        await db.recorder.record_many(message(i) for i in range(1, 121))
        await db.recorder.record(ReactionAdded(1, G, C, U, "👍", T0))
        await db.recorder.flush()
        assert await count(db) == 120
        assert await count(db, "reactions") == 1
        stats = db.recorder.stats()
        assert stats["written"] == 121
        assert stats["buffered"] == 0
        assert stats["batches"] >= 3  # batches of 50
        assert stats["lag"] == 0.0

    async def test_a_full_batch_is_written_without_flush(self, db: botdb.Database) -> None:
        await db.recorder.record_many(message(i) for i in range(1, 51))
        await wait_until(lambda: db.recorder.stats()["written"] == 50, what="batch written")
        assert await count(db) == 50

    async def test_the_flush_interval_writes_a_small_batch(self, make_recording_db: MakeDB) -> None:
        db = await make_recording_db(recorder_flush_interval=0.05)
        await db.recorder.record(message(1))
        await wait_until(lambda: db.recorder.stats()["written"] == 1, what="interval write")
        assert await count(db) == 1

    async def test_lag_reports_the_oldest_unwritten_event(self, db: botdb.Database) -> None:
        await db.recorder.record(message(1))
        await wait_until(lambda: db.recorder.stats()["lag"] > 0, what="lag grows")
        assert db.recorder.stats()["buffered"] == 1

    async def test_close_flushes(self, make_recording_db: MakeDB, db: botdb.Database) -> None:
        await db.recorder.record_many([message(1), message(2)])
        await db.close()
        again = await make_recording_db(create_tables=False)
        assert await count(again) == 2

    async def test_an_invalid_event_is_refused_and_nothing_buffered(
        self, db: botdb.Database
    ) -> None:
        naive = MessageCreated(1, G, C, U, datetime(2024, 1, 1))  # naive
        with pytest.raises(errors.DataError, match="naive"):
            await db.recorder.record_many([message(2), naive])
        assert db.recorder.stats()["buffered"] == 0
        await db.recorder.flush()
        assert await count(db) == 0

    async def test_recording_after_close_is_refused(self, db: botdb.Database) -> None:
        recorder = db.recorder
        await db.close()
        with pytest.raises(errors.InterfaceError, match="closed"):
            await recorder.record(message(1))

    async def test_the_default_spool_is_per_database(self, make_db: MakeDB) -> None:
        db = await make_db()
        spool = db.recorder.options.spool_path
        if db.backend == "sqlite":
            assert spool.name == "bot.db.recorder-spool"
        else:
            assert spool.parent.name == ".botdb"
            assert spool.name.startswith("recorder-")

    async def test_an_in_memory_database_spools_in_a_temporary_file_of_its_own(
        self, make_db: MakeDB
    ) -> None:
        one = await make_db(url="sqlite:///:memory:", create_tables=True)
        two = await make_db(url="sqlite:///:memory:", create_tables=True)
        spool = one.recorder.options.spool_path
        assert spool != two.recorder.options.spool_path
        assert spool.name.startswith(f"botdb-recorder-{os.getpid()}-")
        await one.recorder.record(message(1))
        await two.recorder.record(message(1))  # no clash over one spool
        await one.recorder.flush()
        assert await count(one) == 1
        await one.close()
        assert not await asyncio.to_thread(spool.exists)  # an empty spool is removed

    async def test_settings_are_checked(self, make_db: MakeDB) -> None:
        with pytest.raises(errors.ConfigurationError, match="recorder_max_buffer"):
            await make_db(recorder_batch_size=100, recorder_max_buffer=100)
        with pytest.raises(errors.ConfigurationError, match="recorder_when_full"):
            await make_db(recorder_when_full="drop")


class TestDatabaseAway:
    async def test_spill_keeps_memory_bounded_and_loses_nothing(
        self, db: botdb.Database, spool: Path
    ) -> None:
        away = await start_away(db)
        recorder = db.recorder
        largest = 0
        for i in range(1, 1001):
            await recorder.record(message(i))
            largest = max(largest, recorder.stats()["buffered"])
        assert largest <= 200
        stats = recorder.stats()
        assert stats["spilled"] >= 800
        status = await asyncio.to_thread(spool.stat)
        assert status.st_size > 0
        assert status.st_mode & 0o777 == 0o600  # events carry message contents
        await wait_until(lambda: recorder.stats()["retries"] > 0, what="a retry")
        assert recorder.stats()["errors"].keys() == {"UndefinedTableError"}
        await away.back()
        await recorder.flush()
        assert await count(db) == 1000, str(recorder.stats())
        assert recorder.stats()["spooled"] == 0
        await wait_until(lambda: spool.stat().st_size == 0, what="spool truncated")

    async def test_wait_policy_applies_back_pressure(self, make_recording_db: MakeDB) -> None:
        db = await make_recording_db(recorder_when_full="wait")
        away = await start_away(db)
        recorder = db.recorder
        producer = asyncio.create_task(recorder.record_many(message(i) for i in range(1, 401)))
        await wait_until(lambda: recorder.stats()["buffered"] == 200, what="buffer full")
        assert not producer.done()
        assert recorder.stats()["spilled"] == 0
        await away.back()
        await asyncio.wait_for(producer, 30)
        await recorder.flush()
        assert await count(db) == 400

    async def test_close_while_recording_waits_keeps_every_recorded_event(
        self, make_recording_db: MakeDB, spool: Path
    ) -> None:
        db = await make_recording_db(recorder_when_full="wait")
        away = await start_away(db)
        recorded = 0

        async def produce() -> None:
            nonlocal recorded
            for i in range(1, 10_001):
                await db.recorder.record(message(i))
                recorded = i

        producer = asyncio.create_task(produce())
        await wait_until(lambda: db.recorder.stats()["buffered"] == 200, what="buffer full")
        await db.recorder.close()
        with pytest.raises(errors.InterfaceError, match="closed"):
            await producer
        await away.back()
        await db.close()
        again = await make_recording_db(create_tables=False)
        await again.recorder.flush()
        assert await count(again) == recorded

    async def test_flush_while_away_spools_then_the_next_start_replays(
        self, make_recording_db: MakeDB, db: botdb.Database, spool: Path
    ) -> None:
        await start_away(db)
        await db.recorder.record_many(message(i) for i in range(1, 31))
        await db.recorder.flush()  # returns: the events are fsync'd in the spool
        assert db.recorder.stats()["away"]
        assert db.recorder.stats()["buffered"] == 0
        lines = (await asyncio.to_thread(spool.read_bytes)).splitlines()
        assert len(lines) == 30
        await db.close()
        admin = await make_recording_db(
            create_tables=False, recorder_spool_path=spool.with_name("x")
        )
        await _Away(admin).back()
        again = await make_recording_db(create_tables=False)
        await wait_until(lambda: again.recorder.stats()["replayed"] == 30, what="replay")
        assert await count(again) == 30

    async def test_a_torn_spool_tail_is_skipped(
        self, make_recording_db: MakeDB, spool: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        spool.parent.mkdir(parents=True, exist_ok=True)
        good = b"".join(encode_event(message(i), 0.0) for i in (1, 2, 3))
        torn = encode_event(message(4), 0.0)[:25]
        await asyncio.to_thread(spool.write_bytes, good + b"not json at all\n" + torn)
        with caplog.at_level(logging.WARNING, logger="botdb.recorder"):
            db = await make_recording_db()
            await wait_until(lambda: db.recorder.stats()["replayed"] == 3, what="replay")
        assert await count(db) == 3
        assert db.recorder.stats()["spool_corrupt"] == 2
        assert "torn" in caplog.text
        assert "damaged" in caplog.text

    async def test_one_spool_per_process(self, db: botdb.Database, spool: Path) -> None:
        await db.recorder.start()
        other = Recorder(db, db.recorder.options)
        with pytest.raises(errors.ConfigurationError, match="in use"):
            await other.start()


class TestSpoolFailures:
    async def test_an_unusable_spool_path_is_a_typed_error(
        self, make_recording_db: MakeDB, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "a-file"
        await asyncio.to_thread(blocker.write_bytes, b"")
        db = await make_recording_db(recorder_spool_path=blocker / "spool")
        with pytest.raises(errors.SpoolError, match="cannot open"):
            await db.recorder.record(message(1))

    async def test_a_failed_spill_keeps_the_events_in_memory(
        self, db: botdb.Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The disk full while spilling: record() raises SpoolError, nothing is dropped, and
        the events are written once the database is back."""
        away = await start_away(db)
        recorder = db.recorder
        await recorder.start()

        def disk_full(self: Any, lines: list[bytes]) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Spool, "append", disk_full)
        recorded = 0
        with pytest.raises(errors.SpoolError, match="No space left"):
            for i in range(1, 1001):
                await recorder.record(message(i))
                recorded = i
        assert recorded == 200
        assert recorder.stats()["buffered"] == 200
        monkeypatch.undo()
        await away.back()
        await recorder.flush()
        assert await count(db) == 200
        assert await db.fetchval("SELECT max(id) FROM messages") == 200


class TestSpoolHeldElsewhere:
    async def test_connect_still_works_and_recording_says_why_not(
        self, make_recording_db: MakeDB, spool: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        import fcntl

        spool.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(spool.write_bytes, encode_event(message(1), 0.0))
        with spool.open("rb") as holder:  # another process's lock on the spool
            fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
            with caplog.at_level(logging.WARNING, logger="botdb.recorder"):
                db = await make_recording_db()
            assert "in use by another process" in caplog.text
            with pytest.raises(errors.ConfigurationError, match="recorder_spool_path"):
                await db.recorder.record(message(2))
        await db.recorder.record(message(2))  # the lock is gone: replay, then record
        await db.recorder.flush()
        assert await count(db) == 2


class TestPoison:
    @pytest.fixture
    async def poisoned(self, db: botdb.Database) -> botdb.Database:
        """A database that refuses (IntegrityError) any message whose content is 'poison'."""
        if db.backend == "sqlite":
            await db.execute(
                "CREATE TRIGGER no_poison BEFORE INSERT ON messages WHEN NEW.content = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison'); END"
            )
        else:
            await db.execute(
                "ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content <> 'poison')"
            )
        return db

    async def test_a_poison_event_is_dead_lettered_and_the_rest_written(
        self, poisoned: botdb.Database, spool: Path
    ) -> None:
        recorder = poisoned.recorder
        events = [message(i, "poison" if i == 13 else None) for i in range(1, 41)]
        await recorder.record_many(events)
        await recorder.flush()
        assert await count(poisoned) == 39
        stats = recorder.stats()
        assert stats["dead_lettered"] == 1
        assert stats["written"] == 39
        assert all(issubclass(getattr(errors, name), errors.BotDBError) for name in stats["errors"])
        dead_letter = recorder.options.dead_letter_path
        assert (await asyncio.to_thread(dead_letter.stat)).st_mode & 0o777 == 0o600
        dead = (await asyncio.to_thread(dead_letter.read_bytes)).splitlines()
        assert len(dead) == 1
        record = orjson.loads(dead[0])
        assert record["e"]["id"] == 13
        assert record["error_type"] in ("CheckViolationError", "IntegrityError")
