"""SQLite backup and restore through SQLite's online backup API, in worker threads.

Backup: a dedicated connection opens a read transaction on the source (WAL mode lets the bot
keep writing meanwhile) and copies pages to a temporary file in steps of ``pages``; because
the read transaction stays open across steps, every step sees the same snapshot and the copy
is never restarted by concurrent writes. The copy is switched to rollback-journal mode (one
self-contained file), checked with ``PRAGMA integrity_check`` and counted, then renamed.

Restore: the backup is copied to a temporary file next to the target, checked
(``integrity_check``, row counts against the manifest), and then copied *into* the live
target with the backup API in one step — one write transaction of the target. Unlike
``os.replace`` of the file this stays correct when other connections or processes have the
database open: they see the new content as an ordinary committed write, and no stale
``-wal``/``-shm`` file can be replayed onto a swapped-in file. Nothing needs closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from botdb.ops._common import (
    BackupVerificationError,
    Progress,
    compare_rows,
    create_private,
    fsync_file,
    quote_ident,
    sqlite_location,
)

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = ["backup_sqlite", "is_empty_sqlite", "restore_sqlite"]

#: Pages copied per backup step (4 KiB pages: 4 MiB per step).
STEP_PAGES = 1024


def _count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            # botdb_invalidations: the cache's short-lived log (botdb.cache._sqlite_log).
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'botdb_invalidations' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    return {
        name: int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0])
        for name in names
    }


def _check_integrity(conn: sqlite3.Connection, what: str) -> None:
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise BackupVerificationError(f"{what} failed PRAGMA integrity_check: {problems[:5]}")


def _open_plain(path: Path | str, busy_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return conn


@asynccontextmanager
async def _live_connection(db: OpsDatabase) -> AsyncIterator[sqlite3.Connection]:
    """A sqlite3 connection to ``db``'s database, used from one worker thread.

    A file gets a dedicated connection (no pool slot is held). An in-memory database is
    only reachable through the pool, so one pooled connection is leased for the duration.
    """
    url = db.settings.url
    busy_ms = int(db.settings.sqlite_busy_timeout * 1000)
    if not url.is_memory:
        conn = await asyncio.to_thread(_open_plain, url.path, busy_ms)
        try:
            yield conn
        finally:
            await asyncio.to_thread(conn.close)
        return
    async with db.acquire() as leased:
        raw: sqlite3.Connection = leased.driver_connection
        yield raw


def _thread_progress(progress: Progress | None, phase: str) -> Callable[[int, int, int], None]:
    """A ``Connection.backup`` progress callback forwarding to ``progress`` on the loop."""
    loop = asyncio.get_running_loop()

    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, phase, total - remaining, total)

    return step


def _backup_sync(
    source: sqlite3.Connection, temp: Path, pages: int, step: Callable[[int, int, int], None]
) -> dict[str, int]:
    dest = sqlite3.connect(temp, isolation_level=None)
    try:
        # One read transaction across all steps: a consistent snapshot, never restarted.
        source.execute("BEGIN")
        try:
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            source.backup(dest, pages=pages, progress=step)
        finally:
            source.execute("ROLLBACK")
        mode = dest.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        if str(mode).lower() != "delete":
            raise BackupVerificationError(f"could not switch the backup copy out of {mode} mode")
        _check_integrity(dest, "the backup copy")
        return _count_rows(dest)
    finally:
        dest.close()


async def backup_sqlite(
    db: OpsDatabase, final: Path, *, pages: int | None = None, progress: Progress | None = None
) -> dict[str, int]:
    """Copy ``db`` to ``final`` (mode 0600) online, ``pages`` (default :data:`STEP_PAGES`)
    per step; returns the copy's row counts."""
    pages = pages or STEP_PAGES
    temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(create_private, temp)
    try:
        async with _live_connection(db) as source:
            step = _thread_progress(progress, "copy")
            rows = await asyncio.to_thread(_backup_sync, source, temp, pages, step)
        await asyncio.to_thread(fsync_file, temp)
        await asyncio.to_thread(os.replace, temp, final)
    except BaseException:
        await asyncio.to_thread(_remove_with_journal, temp)
        raise
    return rows


def _remove_with_journal(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).unlink()


def _prepare_sync(source: Path, temp: Path, page_size: int) -> dict[str, int]:
    """Copy the backup to ``temp``, check it, match the target's page size; its row counts."""
    create_private(temp)
    with source.open("rb") as reader, temp.open("r+b") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        try:
            _check_integrity(conn, f"the backup {source.name}")
            rows = _count_rows(conn)
        except sqlite3.DatabaseError as exc:
            raise BackupVerificationError(
                f"{source.name} is not a readable SQLite database: {exc}"
            ) from exc
        if int(conn.execute("PRAGMA page_size").fetchone()[0]) != page_size:
            # A WAL-mode target only accepts pages of its own size from the backup API.
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
            conn.execute("VACUUM")
        return rows
    finally:
        conn.close()


def _swap_sync(temp: Path, target: sqlite3.Connection) -> dict[str, int]:
    source = sqlite3.connect(temp, isolation_level=None)
    try:
        source.backup(target, pages=-1)  # one step: one write transaction of the target
    finally:
        source.close()
    return _count_rows(target)


async def restore_sqlite(
    db: OpsDatabase, backup: Path, expected: dict[str, int], *, progress: Progress | None = None
) -> dict[str, int]:
    """Verify ``backup`` in a temporary copy (integrity, row counts equal to ``expected``),
    then copy it into ``db``'s database. Returns the target's row counts afterwards.

    Raises:
        BackupVerificationError: the copy failed a check; the target was not touched.
    """
    url = db.settings.url
    directory = backup.parent if url.is_memory else Path(sqlite_location(db)).parent
    temp = directory / f".{backup.name}.restore-{uuid.uuid4().hex[:8]}"
    page_size = int(await db.fetchval("PRAGMA page_size"))
    try:
        if progress is not None:
            progress("verify copy", 0, None)
        copied = await asyncio.to_thread(_prepare_sync, backup, temp, page_size)
        compare_rows(expected, copied, f"the backup {backup.name}")
        if progress is not None:
            progress("swap", 0, None)
        async with _live_connection(db) as target:
            after = await asyncio.to_thread(_swap_sync, temp, target)
    finally:
        await asyncio.to_thread(_remove_with_journal, temp)
    return after


async def is_empty_sqlite(db: OpsDatabase, ignore: frozenset[str]) -> bool:
    """True when no user table (other than ``ignore``) holds a row."""
    for name in await _table_names(db):
        if name in ignore:
            continue
        if await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM {quote_ident(name)})"):
            return False
    return True


async def _table_names(db: OpsDatabase) -> list[str]:
    rows = await db.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    )
    return [r["name"] for r in rows]
