"""One migration connection: free a pool slot, SQLite pragmas, the migrators' lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from botdb.migrations._env import VERSION_TABLE
from botdb.migrations._errors import MigrationError

if TYPE_CHECKING:
    from botdb._protocols import EngineDatabase

__all__ = ["foreign_key_check", "free_pool_slot", "lock", "pragma", "restore_foreign_keys"]

# Any constant works; this one spells "botdbmig" in ASCII.
_PG_LOCK_KEY = 0x626F7464626D6967 - (1 << 63)


async def free_pool_slot(db: EngineDatabase) -> None:
    # The raw SQL API keeps idle connections leased from the engine's pool; hand one back if
    # the pool is exhausted, as Database.session() does, so engine.connect() does not wait.
    await db.free_pool_slot()


async def pragma(conn: AsyncConnection, pragma: str) -> None:
    # Through the driver, so SQLAlchemy does not autobegin (these pragmas are no-ops in a
    # transaction).
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    cursor = await driver.execute(f"PRAGMA {pragma}")
    await cursor.close()


async def restore_foreign_keys(conn: AsyncConnection) -> None:
    try:
        await pragma(conn, "foreign_keys = ON")
    except Exception:
        # Never hand a connection without foreign keys back to the pool.
        await conn.invalidate()


async def lock(conn: AsyncConnection, sqlite: bool) -> None:
    """Serialize concurrent migrators before anything is read."""
    if not sqlite:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        return
    # A deferred SQLite transaction that read first could not upgrade to a write once another
    # process committed; take the write lock now (this UPDATE changes nothing).
    await conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    await conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = version_num WHERE 0")


async def foreign_key_check(conn: AsyncConnection) -> None:
    result = await conn.exec_driver_sql("PRAGMA foreign_key_check")
    problems = result.fetchall()
    if problems:
        tables = sorted({str(row[0]) for row in problems})
        raise MigrationError(
            f"the migration left rows whose foreign keys point nowhere in {', '.join(tables)}; "
            "nothing was changed"
        )
