"""Values: a driver's raw values to the values copied, and those to what the target's
driver takes."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Column, TypeDecorator
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect

from botdb.models.types import UTCDateTime
from botdb.ops._portable import Converter

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase


_EPOCH = dt.datetime(1970, 1, 1)


def _base_type(column: Column[Any]) -> Any:
    kind: Any = column.type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _is_json(column: Column[Any]) -> bool:
    return isinstance(_base_type(column), sqltypes.JSON)


def _is_aware(column: Column[Any]) -> bool:
    kind = _base_type(column)
    return isinstance(column.type, UTCDateTime) or bool(getattr(kind, "timezone", False))


def _json_loads(value: Any) -> Any:
    # SQLite's JSON columns have NUMERIC affinity: a bare number is stored as one.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _utc(text: str) -> dt.datetime:
    # Parsing the offset is cheaper than datetime.replace(tzinfo=...).
    return dt.datetime.fromisoformat(text + "+00:00")


def _interval(text: str) -> dt.timedelta:
    return dt.datetime.fromisoformat(text) - _EPOCH


def _decimal(value: Any) -> decimal.Decimal:
    return decimal.Decimal(str(value))


def _decoder(column: Column[Any], backend: str) -> Converter | None:
    """What turns the driver's raw value into the Python value SQLAlchemy would give (what is
    copied and digested). Rows are read through the drivers themselves: SQLAlchemy's result
    processing (and its stdlib ``json``) was most of a transfer's time."""
    if _is_json(column):
        return _json_loads
    if backend != "sqlite":
        return None  # asyncpg returns Python values; JSON is read as text (see _select)
    kind = _base_type(column)
    if isinstance(kind, sqltypes.Boolean):
        return bool
    if isinstance(kind, sqltypes.DateTime):
        return _utc if _is_aware(column) else dt.datetime.fromisoformat
    if isinstance(kind, sqltypes.Date):
        return dt.date.fromisoformat
    if isinstance(kind, sqltypes.Time):
        return dt.time.fromisoformat
    if isinstance(kind, sqltypes.Interval):
        return _interval
    if isinstance(kind, sqltypes.Uuid):
        return uuid.UUID if kind.as_uuid else None
    if isinstance(kind, sqltypes.Numeric) and not isinstance(kind, sqltypes.Float):
        return _decimal if kind.asdecimal else None
    return None


def _to_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is dt.UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _sqlite_datetime(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text (what botdb's models read), in UTC."""
    if value.tzinfo is not None and value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00" of aware ones


def _sqlite_time(value: dt.time) -> str:
    return value.replace(tzinfo=None).isoformat("microseconds")


def _encoder(column: Column[Any], dialect: Dialect) -> Converter | None:
    """The Python value copied -> what the target driver takes (COPY's binary encoders on
    PostgreSQL, sqlite3's parameters): the fast paths for the common types, SQLAlchemy's
    bind processor for the rest."""
    if _is_json(column):
        return _json_text
    kind = _base_type(column)
    if dialect.name == "sqlite":
        if isinstance(kind, sqltypes.DateTime):
            return _sqlite_datetime
        if isinstance(kind, sqltypes.Date):
            return dt.date.isoformat
        if isinstance(kind, sqltypes.Time):
            return _sqlite_time
        if isinstance(kind, sqltypes.Boolean):
            return int
    elif isinstance(kind, sqltypes.DateTime) and _is_aware(column):
        return _to_utc
    processor: Converter | None = column.type._cached_bind_processor(dialect)
    return processor


def _compose(first: Converter | None, then: Converter | None) -> Converter | None:
    if first is None or then is None:
        return first or then

    def both(value: Any) -> Any:
        return then(first(value))

    return both


def _convert(rows: Sequence[Sequence[Any]], conv: Sequence[Converter | None]) -> list[Any]:
    """Apply ``conv`` (one converter or None per column; None values stay None), column by
    column: a comprehension per converted column, then the rows zipped back (tuples)."""
    if not rows or all(f is None for f in conv):
        return list(rows)
    columns = list(zip(*rows))  # noqa: B905  (rows of one table: equal lengths)
    for i, f in enumerate(conv):
        if f is not None:
            columns[i] = tuple([None if v is None else f(v) for v in columns[i]])
    return list(zip(*columns))  # noqa: B905


def _decoders(
    db: OpsDatabase, columns: Sequence[Column[Any]], convert: Sequence[Converter | None]
) -> list[Converter | None]:
    """Per column: the driver's raw value -> the value copied (decoded, then mapped)."""
    return [
        _compose(_decoder(c, db.backend), conv) for c, conv in zip(columns, convert, strict=True)
    ]
