"""What the services share: input checks, dialect upserts, sessions with retries, the guild row.

Every check runs before any SQL, so a bad input raises a typed error and changes nothing:
:class:`~botdb.errors.ArgumentError` for a wrong type or an unknown name,
:class:`~botdb.errors.DataError` for a value of the right type that a column cannot hold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson
from sqlalchemy import Table

from botdb import errors
from botdb._json_values import check_text

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PGInsert
    from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert
    from sqlalchemy.ext.asyncio import AsyncSession

    from botdb._protocols import ConfiguredDatabase, ServiceDatabase

__all__ = [
    "BIGINT_MAX",
    "MISSING",
    "check_bool",
    "check_datetime",
    "check_guild_id",
    "check_id",
    "check_int",
    "check_str",
    "ensure_guild",
    "iso",
    "json_column",
    "run_session",
    "upsert",
    "utc_column",
]

T = TypeVar("T")

BIGINT_MAX: Final = (1 << 63) - 1
#: Default of ``peek`` lookups: tells "not cached" apart from a cached None.
MISSING: Final[Any] = object()


def check_int(name: str, value: object, *, low: int = -BIGINT_MAX, high: int = BIGINT_MAX) -> int:
    """``value`` as an int within [low, high] (bool is refused: it is not a number here)."""
    if type(value) is not int:
        raise errors.ArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise errors.DataError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def check_id(name: str, value: object) -> int:
    """A platform id of a user, channel, role or message: a positive 64-bit int."""
    return check_int(name, value, low=1)


def check_guild_id(value: object, name: str = "guild_id") -> int:
    """A guild or chat id: a non-zero 64-bit int (Telegram group ids are negative)."""
    gid = check_int(name, value)
    if gid == 0:
        raise errors.DataError(f"{name} must not be 0")
    return gid


def check_str(
    name: str, value: object, max_len: int, *, nullable: bool = True, min_len: int = 0
) -> str | None:
    """A string of at most ``max_len`` characters (or None when ``nullable``)."""
    if value is None:
        if nullable:
            return None
        raise errors.ArgumentError(f"{name} must be a str, got None")
    if not isinstance(value, str):
        raise errors.ArgumentError(f"{name} must be a str, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise errors.DataError(
            f"{name} must have {min_len} to {max_len} characters, got {len(value)}"
        )
    if "\x00" in value:
        raise errors.DataError(f"{name} must not contain NUL characters")
    check_text(name, value)
    return value


def check_bool(name: str, value: object) -> bool:
    """A real bool (1 and "yes" are refused)."""
    if type(value) is not bool:
        raise errors.ArgumentError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_datetime(name: str, value: object) -> dt.datetime | None:
    """An aware datetime or None (a naive one is ambiguous and refused)."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise errors.ArgumentError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise errors.DataError(f"{name} is a naive datetime: pass an aware one (datetime.now(UTC))")
    return value.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """A datetime as ISO text for a cached (JSON) value."""
    return None if value is None else value.isoformat()


def json_column(db: ConfiguredDatabase, value: Any) -> Any:
    """A JSON column's value read with the raw API: SQLite hands back the text (or a number,
    through the column's numeric affinity); PostgreSQL's codec has already decoded it."""
    if db.backend == "sqlite" and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            # Written around botdb (older versions stored NaN as bare text): say so, typed.
            raise errors.DataError(f"a stored JSON value is not valid JSON: {exc}") from exc
    return value


def utc_column(db: ConfiguredDatabase, value: Any) -> dt.datetime | None:
    """A UTCDateTime column read with the raw API (SQLite stores naive UTC text)."""
    if value is None or isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value is not None and value.tzinfo else value
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def upsert(db: ServiceDatabase, table: Table) -> PGInsert | SQLiteInsert:
    """``INSERT`` for ``table`` with ``ON CONFLICT`` support on the database's backend."""
    if db.backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


async def ensure_guild(db: ServiceDatabase, session: AsyncSession, guild_id: int) -> None:
    """Create a placeholder ``guilds`` row for ``guild_id`` if there is none (foreign keys).

    The platform is guessed from the id's sign: Telegram group ids are negative, Discord
    snowflakes positive. An existing row is left untouched.
    """
    from botdb.models import Guild

    platform = "telegram" if guild_id < 0 else "discord"
    statement = (
        upsert(db, Guild.__table__)  # type: ignore[arg-type]  # a Table, typed as FromClause
        .values(id=guild_id, platform=platform)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(statement)


async def run_session(
    db: ServiceDatabase, work: Callable[[AsyncSession], Awaitable[T]], *, readonly: bool = False
) -> T:
    """Run ``work(session)`` in one ``db.session()`` (one transaction), retried as a whole by
    the Database's retry runner after a transient failure that rolled it back. A COMMIT cut
    off by a lost connection is resolved from the server first; only one the server cannot
    answer for is reported in doubt, and it is never retried. ``readonly``: ``work`` only
    reads; it may run on a read replica (see ``Database.run_in_session``)."""
    return await db.run_in_session(work, readonly=readonly)
