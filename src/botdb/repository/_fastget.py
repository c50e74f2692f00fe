"""``get_by_id`` without a session: one cached SELECT on the raw API, rows built into models.

Why: a bot calls ``get_by_id`` for nearly every event, and the usual handler path (a new
``AsyncSession``, ``session.get``, close) costs ~1 ms, mostly session, identity map and
greenlet overhead, not the database. Measured on the reference machine (2 cores, loopback,
User by primary key, sequential; ``bench/cases_repository.py`` re-measures the ratio each run):

=========================================  ===============  =============
path                                       SQLite           PostgreSQL
=========================================  ===============  =============
new AsyncSession + ``session.get``          ~0.9-1.1k/s      ~0.9-1.0k/s
``db.session()`` + ``session.get``          ~0.95k/s         ~0.85k/s
raw ``db.fetchrow`` alone                   ~63k/s           ~17.5k/s
this fast path (fetchrow + build model)     ~19-30k/s        ~6.5-12k/s
bench ratio over the first row              ~28x             ~7.6x
=========================================  ===============  =============

Considered and dropped: a cached SELECT run through a short ``AsyncConnection`` (still pays
SQLAlchemy's greenlet and result machinery per call), and setting ``InstanceState.key`` by
hand instead of :func:`make_transient_to_detached` (~5 µs less per row, but private API).

The statement is compiled once per repository with the engine's dialect and ``$n``
placeholders; values pass through the column types' own bind/result processors (so
``UTCDateTime``, JSON and booleans come back exactly as the ORM returns them). Each row becomes
an instance through the mapper's ``new_instance`` and :func:`make_transient_to_detached`: a
detached object, like one loaded by a session that has closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Column, Float, Numeric, and_, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.types import TypeDecorator

from botdb.repository._model import ModelInfo

__all__ = ["FastGet"]

_PG_FLOAT8 = 701  # type oids (pg_type): double precision, numeric
_PG_NUMERIC = 1700

Processor = Callable[[Any], Any] | None


def _result_processor(column: Column[Any], dialect: Dialect) -> Processor:
    """The column type's result processor, NULL passed through without a call.

    A TypeDecorator may turn NULL into a value, so only its result is trusted for NULL;
    ``UTCDateTime`` on SQLite gets ``datetime.fromisoformat`` (~0.3 µs) in place of
    SQLAlchemy's regular-expression parser (~15 µs), falling back to it for any other text.
    """
    # Imported here: the models package maps every built-in table, which ``import botdb``
    # should not pay for before a repository is used.
    from botdb.models.types import UTCDateTime

    type_ = column.type
    impl = type_.dialect_impl(dialect)
    # SQLAlchemy's asyncpg numeric types pick their processor by the result's type oid, which
    # a statement not yet run cannot tell: give the oid the column's type is read as.
    coltype = None
    if dialect.name == "postgresql" and isinstance(impl, Float | Numeric):
        coltype = _PG_FLOAT8 if isinstance(impl, Float) else _PG_NUMERIC
    process = impl.result_processor(dialect, coltype)
    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite":
        fallback = process
        assert fallback is not None

        def utc_text(value: Any) -> Any:
            if value is None:
                return None
            try:
                parsed = dt.datetime.fromisoformat(value)
            except (TypeError, ValueError):
                return fallback(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)

        return utc_text
    if process is None or isinstance(type_, TypeDecorator):
        return process

    def not_null(value: Any, process: Callable[[Any], Any] = process) -> Any:
        return None if value is None else process(value)

    return not_null


class FastGet:
    """The compiled primary-key SELECTs of one model and the row -> instance builder."""

    __slots__ = ("_binds", "_keys", "_new", "_results", "sql_all", "sql_live")

    def __init__(self, info: ModelInfo, dialect: Dialect) -> None:
        table = info.table
        compile_dialect = cast(Any, type(dialect))(paramstyle="numeric_dollar")
        pk_columns = [info.columns[key] for key in info.pk_keys]
        match = and_(*(c == bindparam(f"pk{i}", type_=c.type) for i, c in enumerate(pk_columns)))
        base = select(*table.columns).where(match)
        self.sql_all: str = base.compile(dialect=compile_dialect).string
        live = info.live(False)
        self.sql_live: str = (
            base.where(*live).compile(dialect=compile_dialect).string if live else self.sql_all
        )
        keys = {column: key for key, column in info.columns.items()}
        self._keys = [keys[column] for column in table.columns]
        self._results: list[Processor] = [_result_processor(c, dialect) for c in table.columns]
        self._binds: list[Processor] = [
            column.type.dialect_impl(dialect).bind_processor(dialect) for column in pk_columns
        ]
        self._new = info.mapper.class_manager.new_instance

    def args(self, values: Sequence[Any]) -> list[Any]:
        """The primary key values as the driver takes them."""
        return [
            value if process is None else process(value)
            for process, value in zip(self._binds, values, strict=True)
        ]

    def build(self, row: Any) -> Any:
        """A detached model instance from one raw row (values in table column order)."""
        obj = self._new()
        state_dict = instance_dict(obj)
        for key, process, value in zip(self._keys, self._results, row, strict=True):
            state_dict[key] = value if process is None else process(value)
        make_transient_to_detached(obj)
        return obj
