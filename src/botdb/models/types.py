"""Column types shared by every model: UTC datetimes, portable JSON, surrogate keys.

* :class:`UTCDateTime` stores an aware datetime as UTC on both backends and always returns an
  aware UTC datetime (SQLite has no time zone type; PostgreSQL uses ``timestamptz``).
* :class:`utcnow` is the server-side "now" used by ``server_default``/``onupdate``; on SQLite it
  renders the same text format SQLAlchemy writes (microseconds), so stored values sort correctly.
* :data:`JSON_TYPE` is ``JSON`` on SQLite and ``JSONB`` on PostgreSQL; every value bound to it
  is checked by :func:`botdb._json_values.check_json` (no NaN/Infinity, 64-bit ints, no lone
  surrogates, at most 64 levels deep), so what is stored is valid JSON that reads back equal.
* :data:`SURROGATE_KEY` is ``BIGINT`` on PostgreSQL (``BIGSERIAL``) and ``INTEGER`` on SQLite, where
  only ``INTEGER PRIMARY KEY`` is a rowid alias that autoincrements.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from botdb._json_values import check_json

__all__ = ["JSON_TYPE", "SURROGATE_KEY", "JSONDocument", "UTCDateTime", "utcnow"]


class JSONDocument(TypeDecorator[Any]):
    """A JSON document: ``JSON`` (text) on SQLite, ``JSONB`` on PostgreSQL, values checked.

    Python ``None`` is SQL NULL (so a NOT NULL JSON column rejects it), not the JSON ``null``
    document. A value that would not read back equal (NaN, Infinity, an int beyond 64 bits, a
    lone surrogate, nesting deeper than :data:`botdb._json_values.MAX_DEPTH` = 64, a non-JSON
    type) raises :class:`~botdb.errors.DataError` before anything is sent.
    """

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Check the value; the dialect's JSON type serialises it as before."""
        if value is not None and value is not JSON.NULL:
            check_json(value, "JSON value")
        return value


#: The JSON column type of every model (see :class:`JSONDocument`).
JSON_TYPE: TypeEngine[Any] = JSONDocument()

#: Type of autoincrement surrogate keys (log tables only; chat ids are never autoincrement).
SURROGATE_KEY: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC.

    Binding a naive datetime raises ``TypeError`` (a naive value is ambiguous: local time or
    UTC?). On SQLite the value is converted to UTC and stored without offset, so text order is
    time order; on read it gets ``tzinfo=UTC`` back. On PostgreSQL the column is ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalize an aware datetime to UTC (naive on SQLite, where no offset is stored)."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return the stored instant as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class utcnow(FunctionElement[datetime]):
    """The current time on the database server, as a column default or in a query."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow)
def _utcnow_default(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    # %f is "SS.SSS"; the literal "000" pads it to the six digits SQLAlchemy writes itself.
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
