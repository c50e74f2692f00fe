"""Transfer cases: ``botdb transfer`` both ways beside the raw bulk paths, verification included.

* ``transfer sqlite -> postgresql``: ``ops.transfer`` of a SQLite database holding one
  ``messages`` table (unicode, NULLs, 64-bit ids up to +-(2**63 - 1), JSON, timestamps; not a
  botdb schema, so it is reflected and mapped) into an empty PostgreSQL database, verified;
  baseline: raw asyncpg ``copy_records_to_table`` of the same number of ready-made rows.
* ``transfer postgresql -> sqlite``: the copy back into a new SQLite file, verified; baseline:
  raw ``sqlite3`` ``executemany`` of the same number of ready-made rows in one transaction.

Rows: ``BOTDB_BENCH_TRANSFER_ROWS`` (default 100,000, a run well under a minute; the issue's
figure is with 1,000,000). The note beside each row is the peak RSS of the process during
one transfer (Linux ``VmHWM``, reset before it) and how far above the starting RSS it went.
The target ratio is 0.3: the issue asks for at least 0.3x raw COPY end to end.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
from _base import Case, Pair, require

import botdb
from botdb.ops.transfer import transfer

ROWS = int(os.environ.get("BOTDB_BENCH_TRANSFER_ROWS", "100000"))
CHUNK = 10_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SQLITE_DDL = (
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL,"
    " author_id INTEGER, content TEXT, payload JSON, created_at DATETIME NOT NULL)"
)
PG_DDL = (
    "CREATE TABLE raw_messages (id bigint PRIMARY KEY, channel_id bigint NOT NULL,"
    " author_id bigint, content text, payload jsonb, created_at timestamptz NOT NULL)"
)
COLUMNS = ["id", "channel_id", "author_id", "content", "payload", "created_at"]
_WORDS = ("привет", "hello", "🎉 party", "ok", "naïve café", "日本語のテキスト", "")


def _id(i: int) -> int:
    """Spread over the whole 64-bit range, both ends included."""
    if i == 0:
        return -(2**63) + 1
    if i == ROWS - 1:
        return 2**63 - 1
    return (i - ROWS // 2) * 18_446_744_073_709 // 2


def _sqlite_row(i: int) -> tuple[Any, ...]:
    at = T0 + dt.timedelta(seconds=i)
    return (
        _id(i),
        1000 + i % 50,
        None if i % 11 == 0 else 10**17 + i % 997,
        None if i % 13 == 0 else f"{_WORDS[i % len(_WORDS)]} #{i}",
        None if i % 3 else orjson.dumps({"n": i, "tags": ["a", "ü"], "x": None}).decode(),
        at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
    )


def _build_source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(SQLITE_DDL)
        for start in range(0, ROWS, CHUNK):
            conn.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                [_sqlite_row(i) for i in range(start, min(ROWS, start + CHUNK))],
            )
    conn.close()


def _rss() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB (Linux), or (0, 0)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0, 0.0
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M))
    return int(found.get("VmRSS", 0)) / 1024, int(found.get("VmHWM", 0)) / 1024


def _reset_peak() -> None:
    with suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


async def _traced(run: Any) -> str:
    _reset_peak()
    start, _ = _rss()
    await run()
    _, peak = _rss()
    return f"{ROWS:,} rows, peak RSS {peak:.0f} MB, +{max(0.0, peak - start):.0f} MB"


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def _world(env: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The SQLite source, a private PostgreSQL database, paths for the copies back."""
    base = require(env, "pg_url")
    name = f"botdb_bench_xfer_{secrets.token_hex(4)}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    pg_url = base.rsplit("/", 1)[0] + "/" + name
    source = env["tmp"] / "transfer-source.db"
    if not source.exists():
        _build_source(source)
    try:
        yield {"pg": pg_url, "source": source, "back": env["tmp"] / "transfer-back.db"}
    finally:
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _to_pg(world: dict[str, Any]) -> int:
    async with (
        botdb.connect(f"sqlite:///{world['source']}", sqlite_create=False) as src,
        botdb.connect(world["pg"]) as dst,
    ):
        await dst.execute("DROP TABLE IF EXISTS messages, botdb_transfer_state")
        report = await transfer(src, dst, batch_size=10_000)
    assert report.verified
    return ROWS


async def _to_sqlite(world: dict[str, Any]) -> int:
    back: Path = world["back"]
    for suffix in ("", "-wal", "-shm"):
        back.with_name(back.name + suffix).unlink(missing_ok=True)
    async with (
        botdb.connect(world["pg"]) as src,
        botdb.connect(f"sqlite:///{back}") as dst,
    ):
        report = await transfer(src, dst, batch_size=10_000)
    assert report.verified
    return ROWS


@asynccontextmanager
async def sqlite_to_pg(env: dict[str, Any]) -> AsyncIterator[Pair]:
    import asyncpg

    async with _world(env) as world:
        raw = await asyncpg.connect(world["pg"])
        template = [
            (_id(i), r[1], r[2], r[3], r[4], T0 + dt.timedelta(seconds=i))
            for i, r in ((i, _sqlite_row(i)) for i in range(CHUNK))
        ]

        async def baseline() -> int:
            await raw.execute("DROP TABLE IF EXISTS raw_messages; " + PG_DDL)
            async with raw.transaction():
                for start in range(0, ROWS, CHUNK):
                    rows = [(start + i, *t[1:]) for i, t in enumerate(template)]
                    await raw.copy_records_to_table("raw_messages", records=rows, columns=COLUMNS)
            await raw.execute("DROP TABLE raw_messages")
            return ROWS

        async def subject() -> int:
            return await _to_pg(world)

        subject.note = await _traced(subject)  # type: ignore[attr-defined]  # shown by run.py
        try:
            yield baseline, subject
        finally:
            await raw.close()


def _raw_sqlite_load(path: Path, template: list[tuple[Any, ...]]) -> int:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(SQLITE_DDL)
        with conn:
            for start in range(0, ROWS, CHUNK):
                rows = [(start + i, *t[1:]) for i, t in enumerate(template)]
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()
    return ROWS


@asynccontextmanager
async def pg_to_sqlite(env: dict[str, Any]) -> AsyncIterator[Pair]:
    async with _world(env) as world:
        await _to_pg(world)
        raw_path: Path = env["tmp"] / "transfer-raw.db"
        template = [_sqlite_row(i) for i in range(CHUNK)]

        async def baseline() -> int:
            # Blocking on purpose: the raw sqlite3 baseline, as a script would run it.
            return _raw_sqlite_load(raw_path, template)

        async def subject() -> int:
            return await _to_sqlite(world)

        subject.note = await _traced(subject)  # type: ignore[attr-defined]  # shown by run.py
        yield baseline, subject


CASES = [
    Case("transfer sqlite -> postgresql", "raw asyncpg COPY", 0.3, sqlite_to_pg),
    Case("transfer postgresql -> sqlite", "raw sqlite3 executemany", 0.3, pg_to_sqlite),
]
