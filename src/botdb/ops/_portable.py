"""Map a reflected table to the other backend, or say why a column cannot move.

Used by :mod:`botdb.ops.transfer` for every table it reflects (a source that is not a botdb
database, and the source-only tables of one that is). The source's reflected table is the
truth: it is what rows are read with; :func:`portable_table` returns the target's table and,
per column, the conversion from the value read to the value written (None: unchanged).

PostgreSQL -> SQLite (the source's reflected types)::

    tsvector, inet, cidr, macaddr(8)   TEXT (the value's text form)
    uuid                               VARCHAR(36) (canonical text form)
    arrays                             JSON text (a JSON array)
    json, jsonb                        JSON text
    enum                               TEXT with a CHECK of the enum's labels
    interval                           REAL seconds (a month counts 30 days, as asyncpg reads it)
    numeric / decimal                  TEXT (exact decimal text; REAL would round)
    bytea                              BLOB
    timestamptz                        botdb's UTC datetime text (what its models store)
    domain                             its base type, mapped as above
    generated column                   a plain column holding the copied values
    identity / serial                  INTEGER PRIMARY KEY (SQLite's rowid: new ids follow)
    anything else (money, xml, ranges, geometric types, tsquery, unknown)  refused

SQLite -> PostgreSQL: by the declared type's affinity *and* the values actually stored (one
``typeof()`` scan per table): INTEGER holding only integers -> bigint (REAL or text in it, e.g.
an id above 2**63 that SQLite stored as REAL, is refused); TEXT -> text; REAL -> double
precision; NUMERIC holding integers -> bigint, numbers -> double precision; untyped columns
by their values (integers -> bigint, numbers -> double precision, text -> text, blobs ->
bytea, a mix of text and numbers or of blobs and anything is refused); DATETIME/DATE/TIME,
BOOLEAN and JSON keep their meaning (timestamptz, boolean, jsonb).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Enum,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql as pg

from botdb.models.types import JSONDocument, UTCDateTime

__all__ = ["Converter", "portable_table", "value_kinds_sql"]

Converter = Callable[[Any], Any]


class Unportable(Exception):
    """One column's reason (collected, then raised as one UnportableSchemaError)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _to_json(value: Any) -> Any:
    """An array (possibly of UUIDs, Decimals, ...) as plain JSON values."""
    return orjson.loads(orjson.dumps(value, default=_json_default))


def _seconds(value: dt.timedelta) -> float:
    return value.total_seconds()


def _pg_to_sqlite(column: Column[Any], kind: Any, table: str) -> tuple[Any, Converter | None]:
    if isinstance(kind, pg.DOMAIN):
        return _pg_to_sqlite(column, kind.data_type, table)
    if isinstance(kind, pg.TSVECTOR | pg.INET | pg.CIDR | pg.MACADDR | pg.MACADDR8):
        return Text(), str
    if isinstance(kind, sqltypes.Uuid):
        return String(36), str
    if isinstance(kind, pg.ARRAY):
        return JSONDocument(), _to_json
    if isinstance(kind, sqltypes.JSON):
        return JSONDocument(), None
    if isinstance(kind, pg.ENUM):
        labels = list(kind.enums)
        return Enum(
            *labels,
            native_enum=False,
            create_constraint=True,
            length=max((len(x) for x in labels), default=1),
            name=column.name,
        ), None
    if isinstance(kind, pg.INTERVAL):
        return Double(), _seconds
    if isinstance(kind, sqltypes.Integer):
        return (Integer() if column.primary_key else BigInteger()), None
    if isinstance(kind, sqltypes.Float):
        return Double(), None
    if isinstance(kind, sqltypes.Numeric):
        return Text(), str
    if isinstance(kind, sqltypes.LargeBinary):
        return LargeBinary(), bytes
    if isinstance(kind, sqltypes.DateTime):
        return (UTCDateTime() if kind.timezone else DateTime()), None
    if isinstance(kind, sqltypes.Date):
        return Date(), None
    if isinstance(kind, sqltypes.Time) and not getattr(kind, "timezone", False):
        return Time(), None
    if isinstance(kind, sqltypes.Boolean):
        return Boolean(), None
    if isinstance(kind, sqltypes.String) and not isinstance(kind, pg.BIT):
        length = getattr(kind, "length", None)
        return (String(length) if length else Text()), None
    raise Unportable(f"type {kind} has no SQLite equivalent")


_INT, _REAL, _TEXT, _BLOB = "integer", "real", "text", "blob"


def _affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html 3.1)."""
    name = declared.upper()
    if "INT" in name:
        return "INTEGER"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not name or "BLOB" in name:
        return "BLOB"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _as_text(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def _as_float(value: Any) -> Any:
    return float(value)


def _sqlite_to_pg(
    column: Column[Any], kind: Any, declared: str, kinds: set[str]
) -> tuple[Any, Converter | None]:
    if isinstance(kind, sqltypes.DateTime | sqltypes.Date | sqltypes.Time):
        if kinds - {_TEXT}:
            raise Unportable(f"declared {declared} but holds {'/'.join(sorted(kinds))} values")
        if isinstance(kind, sqltypes.DateTime):
            return UTCDateTime(), _aware
        return (Date() if isinstance(kind, sqltypes.Date) else Time()), None
    if isinstance(kind, sqltypes.Boolean):
        if kinds - {_INT}:
            raise Unportable(f"declared {declared} but holds {'/'.join(sorted(kinds))} values")
        return Boolean(), None
    if isinstance(kind, sqltypes.JSON):
        return JSONDocument(), None
    affinity = _affinity(declared)
    if _BLOB in kinds and kinds != {_BLOB}:
        raise Unportable(f"mixes blobs with {'/'.join(sorted(kinds - {_BLOB}))} values")
    if affinity == "INTEGER":
        if kinds - {_INT}:
            raise Unportable(
                f"declared {declared} but holds {'/'.join(sorted(kinds - {_INT}))} values"
                " (REAL: e.g. an integer beyond 64 bits)"
            )
        return BigInteger(), None
    if affinity == "TEXT":
        if _BLOB in kinds:
            raise Unportable(f"declared {declared} but holds blobs")
        return Text(), _as_text
    if affinity == "REAL":
        if kinds - {_INT, _REAL}:
            raise Unportable(
                f"declared {declared} but holds {'/'.join(sorted(kinds - {_INT, _REAL}))} values"
            )
        return Double(), _as_float
    if affinity == "NUMERIC" and kinds & {_TEXT}:
        raise Unportable(f"declared {declared} but holds text values")
    # NUMERIC or untyped: by the values stored.
    if kinds == {_BLOB}:
        return LargeBinary(), bytes
    if kinds <= {_INT}:
        return (BigInteger() if kinds or affinity == "NUMERIC" else Text()), None
    if kinds <= {_INT, _REAL}:
        return Double(), _as_float
    if kinds == {_TEXT}:
        return Text(), None
    raise Unportable("mixes text and numbers in an untyped column")


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def value_kinds_sql(table: str, columns: list[str]) -> str:
    """One scan telling, per column, which storage classes it holds (SQLite): a row of
    comma-separated ``typeof()`` names (``null`` included), one column per column."""
    parts = [f"group_concat(DISTINCT typeof({_q(c)}))" for c in columns]
    return f"SELECT {', '.join(parts)} FROM {_q(table)}"


def portable_table(
    source: Table,
    metadata: MetaData,
    *,
    source_backend: str,
    target_backend: str,
    declared: dict[str, str] | None = None,
    kinds: dict[str, set[str]] | None = None,
    drop_foreign_keys: set[str] | None = None,
    known_tables: set[str] | None = None,
    notes: list[str] | None = None,
) -> tuple[Table, list[Converter | None], list[str]]:
    """The target's version of the reflected ``source`` table, added to ``metadata``.

    Returns ``(table, converters, problems)``: one converter per column (value read ->
    value written, None: unchanged), and the ``"table.column: reason"`` of each column that
    cannot move (the table is still returned; the caller refuses the transfer).
    ``declared``: each column's declared type (SQLite) or ``format_type`` (PostgreSQL);
    ``kinds``: the storage classes each SQLite column holds.
    ``drop_foreign_keys``: names of foreign keys not to copy (PostgreSQL's NOT VALID ones).
    ``known_tables``: the tables copied; a foreign key to any other table is not made.
    ``notes``: gets a line for each constraint or index left out.
    """
    columns: list[Column[Any]] = []
    converters: list[Converter | None] = []
    problems: list[str] = []
    single_key = len(source.primary_key.columns) == 1
    for column in source.columns:
        kind: Any = column.type
        try:
            if source_backend == target_backend:
                new_type, conv = kind, None
            elif source_backend == "postgresql":
                try:
                    new_type, conv = _pg_to_sqlite(column, kind, source.name)
                except Unportable:
                    name = (declared or {}).get(column.name) or str(kind)
                    raise Unportable(f"type {name} has no SQLite equivalent") from None
                if isinstance(new_type, Integer) and not (column.primary_key and single_key):
                    new_type = BigInteger()
            else:
                new_type, conv = _sqlite_to_pg(
                    column,
                    kind,
                    (declared or {}).get(column.name, ""),
                    (kinds or {}).get(column.name, set()),
                )
        except Unportable as exc:
            problems.append(f"{source.name}.{column.name}: {exc}")
            new_type, conv = Text(), None
        columns.append(
            Column(
                column.name,
                new_type,
                primary_key=column.primary_key,
                nullable=column.nullable,
                autoincrement=bool(column.primary_key and single_key and column.identity) or "auto",
            )
        )
        converters.append(conv)
    table = Table(source.name, metadata, *columns)
    for constraint in source.foreign_key_constraints:
        said = notes if notes is not None else []
        if constraint.name and constraint.name in (drop_foreign_keys or set()):
            said.append(
                f"{source.name}: foreign key {constraint.name} is NOT VALID in the source"
                " (old rows unchecked): not made"
            )
            continue
        targets = [fk.target_fullname.split(".")[-2:] for fk in constraint.elements]
        if known_tables is not None and any(t[0] not in known_tables for t in targets):
            said.append(f"{source.name}: foreign key to a table not copied: not made")
            continue
        table.append_constraint(
            ForeignKeyConstraint(
                [c.name for c in constraint.columns],
                [".".join(t) for t in targets],
                name=constraint.name,
                ondelete=constraint.ondelete,
                onupdate=constraint.onupdate,
            )
        )
    for unique in source.constraints:
        if isinstance(unique, UniqueConstraint):
            table.append_constraint(
                UniqueConstraint(*[c.name for c in unique.columns], name=unique.name)
            )
    for index in source.indexes:
        special = {k: v for k, v in index.dialect_kwargs.items() if v}
        if special or not index.columns or len(index.columns) != len(index.expressions):
            if notes is not None and source_backend != target_backend:
                notes.append(f"{source.name}: index {index.name} is backend-specific: not made")
            continue  # GIN, partial, expression indexes: the backend's own
        Index(index.name, *[table.c[c.name] for c in index.columns], unique=index.unique)
    return table, converters, problems


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
