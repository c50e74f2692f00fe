"""Online backups with a checksum manifest and retention, and verified, atomic restores.

Files: ``<database>-<UTC timestamp>.<ext>`` (mode 0600; the name never holds a host, user or
password) and ``<file>.json`` beside it: ``{"format": "botdb-backup", "sha256", "size",
"backend", "method", "database", "created_at", "rows", "botdb_version", ...}``.

=========  ============  ===============================================================
backend    extension     method
=========  ============  ===============================================================
SQLite     ``.db``       SQLite's backup API from one read snapshot (see ``_sqlite``)
PostgreSQL ``.dump``     ``pg_dump --format=custom --snapshot`` when pg_dump is on PATH
PostgreSQL ``.jsonl.gz`` botdb's portable dump otherwise (see ``_pglogical``)
=========  ============  ===============================================================

Example:
    >>> result = await ops.backup(db, Path("backups"), keep=7)
    >>> await ops.restore(db, result.path, yes=True)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from botdb.errors import ConfigurationError
from botdb.ops import _pg, _pglogical, _sqlite
from botdb.ops._common import (
    BACKEND_EXTENSIONS,
    BOOKKEEPING_TABLES,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    BackupResult,
    Progress,
    RestoreRefusedError,
    RestoreResult,
    apply_retention,
    backup_name,
    compare_rows,
    create_private,
    database_label,
    fsync_file,
    manifest_path,
    prepare_out_dir,
    read_manifest,
    sha256_file,
    verify_checksum,
    write_private,
)

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = ["backup", "restore"]

_METHODS = {"sqlite": ("auto", "sqlite"), "postgresql": ("auto", "pg_dump", "logical")}
_EXTENSIONS = {"sqlite": "db", "pg_dump": "dump", "logical": "jsonl.gz"}


def _choose_method(db: OpsDatabase, method: str) -> str:
    allowed = _METHODS[db.backend]
    if method not in allowed:
        raise ConfigurationError(
            f"unknown backup method {method!r} for {db.backend}; use one of {', '.join(allowed)}"
        )
    if db.backend == "sqlite":
        return "sqlite"
    if method == "auto":
        return "pg_dump" if _pg.find_tool("pg_dump") else "logical"
    return method


async def backup(
    db: OpsDatabase,
    out_dir: Path | str,
    *,
    keep: int | None = None,
    method: str = "auto",
    progress: Progress | None = None,
) -> BackupResult:
    """Back up the database online (the bot keeps running) into ``out_dir``.

    Args:
        db: a connected Database.
        out_dir: the backup directory, created (0700) if missing.
        keep: after a successful backup, keep only the newest ``keep`` backups of this
            database in ``out_dir`` and delete older ones with their manifests.
        method: ``"auto"``; on PostgreSQL also ``"pg_dump"`` or ``"logical"`` (botdb's
            portable dump, the fallback when pg_dump is not on PATH).
        progress: ``progress(phase, done, total)``, called on the event loop.

    Returns:
        The :class:`BackupResult`.

    Raises:
        ConfigurationError: ``keep`` < 1, an unknown method, or an unusable directory.
        BackupError: pg_dump failed, or the schema holds objects the portable dump refuses.
        BackupVerificationError: the copy failed its integrity check (SQLite).
    """
    started = time.perf_counter()
    if keep is not None and keep < 1:
        raise ConfigurationError(f"keep must be at least 1, not {keep}")
    chosen = _choose_method(db, method)
    directory = await asyncio.to_thread(prepare_out_dir, Path(out_dir))
    label = database_label(db)
    final = directory / backup_name(label, _EXTENSIONS[chosen])
    while await asyncio.to_thread(final.exists):
        final = directory / backup_name(label, _EXTENSIONS[chosen])
    extra: dict[str, Any] = {}
    if chosen == "sqlite":
        import sqlite3

        rows = await _sqlite.backup_sqlite(db, final, progress=progress)
        extra["sqlite_version"] = sqlite3.sqlite_version
    else:
        extra["server_version"] = await db.fetchval("SHOW server_version")
        rows = await _pg_backup(db, final, chosen, progress)
    if progress is not None:
        progress("checksum", 0, None)
    digest, size = await asyncio.to_thread(sha256_file, final)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "file": final.name,
        "sha256": digest,
        "size": size,
        "backend": db.backend,
        "method": chosen,
        "database": label,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "rows": rows,
        "botdb_version": _botdb_version(),
        **extra,
    }
    where = manifest_path(final)
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    await asyncio.to_thread(write_private, where, data)
    await asyncio.to_thread(os.chmod, final, 0o600)
    deleted = []
    if keep is not None:
        deleted = await asyncio.to_thread(
            apply_retention, directory, label, keep, BACKEND_EXTENSIONS[db.backend]
        )
    return BackupResult(
        path=final,
        manifest=where,
        size=size,
        sha256=digest,
        rows=rows,
        took=time.perf_counter() - started,
        method=chosen,
        deleted=deleted,
    )


async def _pg_backup(db: OpsDatabase, final: Path, method: str, progress: Progress | None) -> Any:
    temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(create_private, temp)
    try:
        if method == "pg_dump":
            rows = await _pg.pg_dump(db, temp, progress=progress)
        else:
            async with db.transaction(isolation="repeatable_read", readonly=True) as conn:
                await conn.execute("SET LOCAL statement_timeout = 0")
                rows = await _pg.count_rows(conn)
                await _pglogical.dump_logical(conn.driver_connection, temp, rows, progress=progress)
        await asyncio.to_thread(os.chmod, temp, 0o600)
        await asyncio.to_thread(fsync_file, temp)
        await asyncio.to_thread(os.replace, temp, final)
    except BaseException:
        await asyncio.to_thread(temp.unlink, True)
        raise
    return rows


def _botdb_version() -> str:
    from botdb._version import __version__

    return str(__version__)


async def restore(
    db: OpsDatabase,
    file: Path | str,
    *,
    yes: bool = False,
    maintenance_db: str = "postgres",
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup made by :func:`backup` into ``db``'s database, verified and atomic.

    The file's size and SHA-256 are checked against its manifest first. The backup is then
    restored into a scratch copy (a temporary file next to the SQLite database; a fresh
    PostgreSQL database), checked (SQLite ``integrity_check``; row counts against the
    manifest) and only then swapped in. Any failure before the swap leaves the target as it
    was. ``db`` stays usable afterwards: on PostgreSQL it is closed for the swap and
    reconnected; other sessions on the target are terminated. Clears ``db``'s in-process
    cache; other processes should restart or clear theirs.

    Args:
        db: a connected Database: the target.
        file: the backup file (its ``.json`` manifest must sit beside it).
        yes: allow replacing a target whose tables hold rows.
        maintenance_db: PostgreSQL database used to create, rename and drop databases.
        progress: ``progress(phase, done, total)``, called on the event loop.

    Raises:
        BackupError: the file or manifest is missing, or a tool failed.
        BackupVerificationError: checksum, size, integrity or row counts do not match.
        RestoreRefusedError: the target holds rows and ``yes`` is False.
        ConfigurationError: the backup was made on the other backend.
    """
    started = time.perf_counter()
    path = Path(file)
    manifest = await asyncio.to_thread(read_manifest, path)
    if manifest["backend"] != db.backend:
        raise ConfigurationError(
            f"{path.name} is a {manifest['backend']} backup and the target is {db.backend}: "
            "use `botdb transfer` to move data between backends"
        )
    if db.backend == "postgresql" and db.settings.url.database == maintenance_db:
        raise ConfigurationError(f"cannot restore into the maintenance database {maintenance_db!r}")
    if progress is not None:
        progress("verify checksum", 0, None)
    await asyncio.to_thread(verify_checksum, path, manifest)
    expected: dict[str, int] = manifest["rows"]
    if not yes and not await _is_empty(db):
        raise RestoreRefusedError(reason=f"{db.url} is not empty", allow="to replace its content")
    if db.backend == "sqlite":
        rows = await _sqlite.restore_sqlite(db, path, expected, progress=progress)
        method = "sqlite"
    else:
        rows = await _pg_restore(db, path, manifest, maintenance_db, progress)
        method = "pg_restore" if manifest["method"] == "pg_dump" else "logical"
    compare_rows(expected, rows, f"{db.url} after the restore")
    db.cache.clear()
    return RestoreResult(
        source=path, target=db.url, rows=rows, took=time.perf_counter() - started, method=method
    )


async def _pg_restore(
    db: OpsDatabase,
    path: Path,
    manifest: dict[str, Any],
    maintenance_db: str,
    progress: Progress | None,
) -> dict[str, int]:
    expected: dict[str, int] = manifest["rows"]
    async with _pg.temporary_database(db, maintenance_db) as fresh:
        if progress is not None:
            progress("restore into a fresh database", 0, None)
        if manifest["method"] == "pg_dump":
            await _pg.pg_restore_into(db, path, fresh)
        elif manifest["method"] == "logical":
            async with _pg.admin_connection(db, fresh) as conn:
                await _pglogical.restore_logical(conn, path, progress=progress)
        else:
            raise ConfigurationError(f"unknown backup method {manifest['method']!r}")
        if progress is not None:
            progress("verify", 0, None)
        await _pg.verify_database(db, fresh, expected)
        if progress is not None:
            progress("swap", 0, None)
        await _pg.swap_databases(db, fresh, maintenance_db)
    async with db.acquire() as conn:
        return await _pg.count_rows(conn)


async def _is_empty(db: OpsDatabase) -> bool:
    if db.backend == "sqlite":
        return await _sqlite.is_empty_sqlite(db, BOOKKEEPING_TABLES)
    return await _pg.is_empty_pg(db, BOOKKEEPING_TABLES)
