"""PostgreSQL backup and restore: pg_dump/pg_restore, a fresh database, and a rename swap.

Backup: a REPEATABLE READ read-only transaction exports its snapshot; rows are counted in
that transaction and ``pg_dump --snapshot`` dumps exactly the same state, so the manifest's
counts match the dump. Connection details (password included) reach ``pg_dump`` through the
libpq environment variables of the subprocess only, never its command line.

Restore (see ``docs/operations.md``): the dump goes into a freshly created database
``<target>_restore_<hex>``; its row counts are compared with the manifest. Only then, from
the maintenance database, the target stops accepting connections, its sessions are ended,
and two ``ALTER DATABASE ... RENAME`` run in one transaction (old -> ``<target>_old_<hex>``,
fresh -> target); the old database is then dropped. A failure before the renames drops the
fresh database and leaves the target as it was. The role needs CREATEDB and must own the
target database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botdb.errors import ConfigurationError, MissingDependencyError
from botdb.ops._common import BackupError, Progress, compare_rows, quote_ident

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = [
    "admin_connection",
    "count_rows",
    "find_tool",
    "is_empty_pg",
    "libpq_environment",
    "pg_dump",
    "pg_restore_into",
    "swap_databases",
    "temporary_database",
]

# Ordinary tables (and leaf partitions) of user schemas, as reported in manifests.
_TABLES = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""
_QUERY_TO_ENV = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


def find_tool(name: str) -> str | None:
    """The path of a PostgreSQL client tool on PATH, or None."""
    return shutil.which(name)


def libpq_environment(db: OpsDatabase, database: str | None = None) -> dict[str, str]:
    """The subprocess environment for pg_dump/pg_restore: libpq variables carry the host,
    port, user, password, database and SSL settings, so none appears on a command line."""
    settings = db.settings
    url = settings.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGDATABASE"] = database or url.database
    parts = {"PGHOST": url.host, "PGUSER": url.user, "PGPASSWORD": url.password}
    env.update({key: value for key, value in parts.items() if value})
    if url.port:
        env["PGPORT"] = str(url.port)
    explicit = "ssl_mode" in settings.model_fields_set
    env["PGSSLMODE"] = settings.ssl_mode if explicit else url.query.get("sslmode", "prefer")
    if settings.ssl_ca_file is not None:
        env["PGSSLROOTCERT"] = str(settings.ssl_ca_file)
    for key, variable in _QUERY_TO_ENV.items():
        if key in url.query and variable not in env:
            env[variable] = url.query[key]
    env["PGAPPNAME"] = f"{settings.application_name}-ops"
    return env


@asynccontextmanager
async def admin_connection(db: OpsDatabase, database: str) -> AsyncIterator[Any]:
    """An asyncpg connection to another database of the same server (same credentials)."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - the postgres extra is installed with PG
        raise MissingDependencyError("asyncpg", "postgres") from exc
    from botdb.engine._translate import raise_translated

    url = dataclasses.replace(db.settings.url, database=database)
    try:
        conn = await asyncpg.connect(
            url.asyncpg_dsn(),
            ssl=db.settings.ssl_context(),
            timeout=db.settings.pool_acquire_timeout,
            server_settings={"application_name": f"{db.settings.application_name}-ops"},
        )
    except Exception as exc:
        raise_translated(exc)
    try:
        yield conn
    finally:
        await conn.close()


async def count_rows(conn: Any) -> dict[str, int]:
    """Exact row counts of every user table, named like :func:`~botdb.ops.info.table_info`."""
    from botdb.ops.info import pg_table_key

    counts: dict[str, int] = {}
    for row in await conn.fetch(_TABLES):
        target = f"{quote_ident(row['schema'])}.{quote_ident(row['name'])}"
        counts[pg_table_key(row["schema"], row["name"])] = int(
            await conn.fetchval(f"SELECT count(*) FROM {target}")
        )
    return counts


async def is_empty_pg(db: OpsDatabase, ignore: frozenset[str]) -> bool:
    """True when no user table (other than those named in ``ignore``) holds a row."""
    for row in await db.fetch(_TABLES):
        if row["name"] in ignore:
            continue
        target = f"{quote_ident(row['schema'])}.{quote_ident(row['name'])}"
        if await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM {target})"):
            return False
    return True


async def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip()
        password = env.get("PGPASSWORD")
        if password:
            message = message.replace(password, "***")
        raise BackupError(f"{what} failed (exit {process.returncode}): {message[-2000:]}")


async def pg_dump(
    db: OpsDatabase, temp: Path, *, progress: Progress | None = None
) -> dict[str, int]:
    """Dump ``db`` in pg_dump's custom format to ``temp``; the rows the dump holds."""
    tool = find_tool("pg_dump")
    if tool is None:
        raise BackupError("pg_dump is not on PATH: install the PostgreSQL client tools")
    async with db.transaction(isolation="repeatable_read", readonly=True) as conn:
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        if progress is not None:
            progress("count rows", 0, None)
        rows = await count_rows(conn)
        if progress is not None:
            progress("pg_dump", 0, None)
        args = [tool, "--format=custom", f"--snapshot={snapshot}", f"--file={temp}"]
        await _run_tool(args, libpq_environment(db), "pg_dump")
    return rows


@asynccontextmanager
async def temporary_database(db: OpsDatabase, maintenance_db: str) -> AsyncIterator[str]:
    """Create an empty database ``<target>_restore_<hex>``; dropped on exit unless renamed."""
    target = db.settings.url.database
    name = f"{target[:40]}_restore_{secrets.token_hex(4)}"
    async with admin_connection(db, maintenance_db) as admin:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
    try:
        yield name
    finally:
        async with admin_connection(db, maintenance_db) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


async def pg_restore_into(db: OpsDatabase, backup: Path, database: str) -> None:
    """Run ``pg_restore`` of ``backup`` into the (empty) ``database``, in one transaction."""
    tool = find_tool("pg_restore")
    if tool is None:
        raise BackupError(
            "pg_restore is not on PATH: install the PostgreSQL client tools to restore a "
            "pg_dump backup"
        )
    args = [tool, "--no-owner", "--exit-on-error", "--single-transaction", f"--dbname={database}"]
    await _run_tool([*args, str(backup)], libpq_environment(db, database), "pg_restore")


async def verify_database(db: OpsDatabase, database: str, expected: dict[str, int]) -> None:
    """Compare the row counts of ``database`` with the manifest's."""
    async with admin_connection(db, database) as conn:
        compare_rows(expected, await count_rows(conn), f"the restored copy {database}")


async def swap_databases(db: OpsDatabase, fresh: str, maintenance_db: str) -> None:
    """Put ``fresh`` in the place of ``db``'s database, atomically, and drop the old one.

    ``db`` is closed for the swap and connected again afterwards. Other sessions on the
    target are terminated (their pools reconnect to the restored database).
    """
    target = db.settings.url.database
    if target == maintenance_db:
        raise ConfigurationError(
            f"cannot restore into the maintenance database {maintenance_db!r}; pass another "
            "maintenance_db"
        )
    old = f"{target[:40]}_old_{secrets.token_hex(4)}"
    await db.close()
    try:
        async with admin_connection(db, maintenance_db) as admin:
            await _rename_pair(admin, target, old, fresh)
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(old)} WITH (FORCE)")
    finally:
        await db.connect()


async def _rename_pair(admin: Any, target: str, old: str, fresh: str) -> None:
    import asyncpg

    wait = ", 5000" if admin.get_server_version().major >= 14 else ""
    await admin.execute(f"ALTER DATABASE {quote_ident(target)} WITH ALLOW_CONNECTIONS false")
    try:
        for attempt in range(10):
            await admin.execute(
                f"SELECT pg_terminate_backend(pid{wait}) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                target,
            )
            try:
                async with admin.transaction():
                    await admin.execute(
                        f"ALTER DATABASE {quote_ident(target)} RENAME TO {quote_ident(old)}"
                    )
                    await admin.execute(
                        f"ALTER DATABASE {quote_ident(fresh)} RENAME TO {quote_ident(target)}"
                    )
                return
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.05 * (attempt + 1))
        raise BackupError(f"sessions kept reconnecting to {target}; nothing was swapped")
    except BaseException:
        await admin.execute(f"ALTER DATABASE {quote_ident(target)} WITH ALLOW_CONNECTIONS true")
        raise
