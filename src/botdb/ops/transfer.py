"""Copy a whole database between SQLite and PostgreSQL, resumably, and verify the copy.

``botdb transfer sqlite:///bot.db postgresql://...`` (or the other way round) is how a bot
moves to PostgreSQL when it outgrows its SQLite file. What happens, in order:

1. **Plan.** The source is inspected. A botdb database (its ``botdb_alembic_version`` table,
   or built-in tables with exactly botdb's columns) is copied with botdb's models (default
   ``botdb.models.Base.metadata``: built-in tables and the user's models) plus its other
   tables, reflected. Any other database is reflected whole: its schema is the truth. A
   reflected table's types are mapped for the target (:mod:`botdb.ops._portable`); a column
   that cannot move, or (unless ``skip_unportable``) a view, materialized view, function or
   trigger, raises :class:`UnportableSchemaError` before anything is written.
2. **Refuse or resume.** A target that holds rows is refused (:class:`TargetNotEmptyError`)
   unless ``yes=True``, which empties the copied tables first. A target holding this module's
   progress table (``botdb_transfer_state``) from an interrupted run of the *same* source is
   resumed; from a different source it is refused.
3. **Schema.** For a botdb source ``target.migrate()``, then ``create_all`` for the rest; for
   any other, ``create_all`` of the mapped tables. If this fails, the tables it made are
   dropped again.
4. **Copy.** Per table, a reader task pages through the source in primary-key order (keyset,
   never OFFSET; a table without a key is streamed) through the driver, decodes and maps each
   value, and adds each row's digest to the source checksum; the writer encodes the rows for
   the target driver and writes each batch with its bulk path (COPY on PostgreSQL, one
   ``executemany`` on SQLite) *in the same transaction as its progress row*, so an
   interruption loses at most the batch in flight and a re-run continues after the last
   committed one, without duplicates. A bounded queue between them bounds memory. Foreign-key
   checks are off on the copying connection (the source was consistent; self-references may
   point forward); SQLite runs ``PRAGMA foreign_key_check`` at the end.
5. **Sequences** are moved past the copied ids on PostgreSQL.
6. **Verify.** Row counts and a checksum per table (see :func:`row_digest`): the source side
   from the copy pass, the target side from one streaming re-read of what landed; a mismatch
   raises :class:`VerificationError`. On success the progress table is dropped.

``transfer`` takes two connected Databases; the ``botdb transfer`` command opens them from
its URLs (the source with ``sqlite_create=False``, so a mistyped path is not created; a new
SQLite target is written as ``<path>.partial`` and renamed once verified).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import gc
import hashlib
import os
import time
import uuid
import warnings
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Column, MetaData, Table, TypeDecorator, inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SAWarning, SQLAlchemyError

from botdb import errors
from botdb.analytics._schema import sqlite_objects
from botdb.models._search import SEARCH_TABLES
from botdb.models.base import is_builtin
from botdb.models.types import UTCDateTime
from botdb.ops._portable import Converter, portable_table, value_kinds_sql

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = [
    "STATE_TABLE",
    "ProgressCallback",
    "TableTransfer",
    "TargetNotEmptyError",
    "TransferReport",
    "UnportableSchemaError",
    "VerificationError",
    "row_digest",
    "transfer",
]

#: Progress of an unfinished transfer, kept in the target; dropped once verified.
STATE_TABLE = "botdb_transfer_state"
# Migration version tables: the target gets its own from `migrate()`; botdb_meta holds the
# database's own cursor secret (the target keeps or makes its own); botdb_invalidations is the
# cache's short-lived invalidation log on SQLite; SEARCH_TABLES are SQLite's full-text index,
# which the target's own triggers fill as the messages arrive.
_NEVER_COPIED = (
    frozenset(
        {
            STATE_TABLE,
            "alembic_version",
            "botdb_alembic_version",
            "botdb_meta",
            "botdb_invalidations",
        }
    )
    | SEARCH_TABLES
    # The stats' summaries: the target's own triggers (SQLite) or views (PostgreSQL) make them.
    | set(sqlite_objects()["table"])
)
_MODULUS = 1 << 256

#: ``progress(table, rows_done, rows_total)``, called after each committed batch.
ProgressCallback = Callable[[str, int, int], object]


# Defined with every other error in botdb.errors; importable from here too.
TargetNotEmptyError = errors.TargetNotEmptyError
VerificationError = errors.VerificationError
UnportableSchemaError = errors.UnportableSchemaError


@dataclass
class TableTransfer:
    """What happened to one table."""

    name: str
    source_rows: int = 0
    target_rows: int = 0
    copied: int = 0
    resumed_at: int = 0
    source_checksum: str = ""
    target_checksum: str = ""
    skipped_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Counts and checksums agree."""
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class TransferReport:
    """The result of :func:`transfer` (also the ``--json`` output of the CLI)."""

    source: str
    target: str
    schema: str = ""
    resumed: bool = False
    verified: bool = False
    seconds: float = 0.0
    tables: list[TableTransfer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``"botdb"`` (its migration table or its built-in tables say so: botdb's models are
    #: used) or ``"reflected"`` (any other schema: the source's own, reflected and mapped).
    source_schema: str = ""
    #: Views, materialized views, functions and triggers not moved (``skip_unportable``).
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        for table, entry in zip(self.tables, data["tables"], strict=True):
            entry["ok"] = table.ok
        return data


@dataclass
class _TablePlan:
    table: Table  # the target's table
    columns: list[Column[Any]]  # the target's columns copied
    key: list[Column[Any]]  # the target's primary key (for the target's re-read)
    source_columns: list[Column[Any]] = field(default_factory=list)  # read with these
    source_key: list[Column[Any]] = field(default_factory=list)
    convert: list[Converter | None] = field(default_factory=list)  # value read -> written
    total: int = 0


def _identity(db: OpsDatabase) -> str:
    """What tells databases apart: the SQLite file's absolute path, an in-memory database's
    object (each is its own database), or the masked PostgreSQL URL."""
    url = db.settings.url
    if url.backend == "sqlite":
        return (
            f"sqlite:memory:{id(db):x}" if url.is_memory else f"sqlite:{os.path.abspath(url.path)}"
        )
    return url.masked()


async def transfer(
    source: OpsDatabase,
    target: OpsDatabase,
    *,
    yes: bool = False,
    batch_size: int = 5000,
    tables: Iterable[str] | None = None,
    metadata: MetaData | None = None,
    progress: ProgressCallback | None = None,
    skip_unportable: bool = False,
    queue_depth: int = 4,
) -> TransferReport:
    """Copy every table from ``source`` to ``target`` and verify the copy.

    Both are connected Databases, opened and closed by the caller (``botdb transfer`` opens
    them from its two URLs). The target's in-process cache is cleared, since the rows under
    it were replaced. Python's cyclic garbage collector is paused while rows move (it was
    more than half the time of a large copy) and turned back on afterwards.

    Args:
        source: the database to read (SQLite or PostgreSQL); it is never written.
        target: the database to fill. For a botdb source its schema is made with migrations,
            then ``create_all``; for any other schema with ``create_all`` of the mapped tables.
        yes: allow a non-empty target; the copied tables are emptied first.
        batch_size: rows per batch (and per target transaction).
        tables: copy only these tables (names); default every table.
        metadata: botdb's models to use when the source is a botdb database; default
            ``botdb.models.Base.metadata`` (built-in tables and the user's models). A source
            that is not a botdb database is reflected: its own schema is the truth.
        progress: called as ``progress(table, rows_done, rows_total)`` after each batch.
        skip_unportable: leave out the source's views, materialized views, functions and
            triggers (listed in ``report.skipped``) instead of refusing the transfer.
        queue_depth: batches read ahead of the writer (memory: ``batch_size * queue_depth``
            rows in flight).

    Returns:
        The report; ``report.verified`` is True (a failed verification raises).

    Raises:
        ArgumentError: ``source`` or ``target`` is not a Database (e.g. a URL string).
        ConfigurationError: the same database twice, an unknown table name, a batch size
            below 1.
        UnportableSchemaError: a column's type or values have no equivalent on the target,
            or (without ``skip_unportable``) the source has views, functions or triggers
            that cannot move; raised before anything is written.
        TargetNotEmptyError: the target holds rows and ``yes`` is False, or holds another
            source's unfinished transfer.
        VerificationError: counts or checksums differ after the copy.

    Example:
        >>> async with (
        ...     botdb.connect("sqlite:///bot.db", sqlite_create=False) as source,
        ...     botdb.connect("postgresql://bot@localhost/bot") as target,
        ... ):
        ...     report = await transfer(source, target)
        >>> report.verified
        True
    """
    for role, db in (("source", source), ("target", target)):
        if isinstance(db, str | bytes | os.PathLike):
            raise errors.ArgumentError(
                f"transfer() takes connected Databases, got a {type(db).__name__} as {role}: "
                "open it with `async with botdb.connect(url) as db`"
            )
    if batch_size < 1:
        raise errors.ConfigurationError("batch_size must be at least 1")
    if queue_depth < 1:
        raise errors.ConfigurationError("queue_depth must be at least 1")
    fingerprint = hashlib.sha256(_identity(source).encode()).hexdigest()
    if source is target or _identity(source) == _identity(target):
        raise errors.ConfigurationError("the source and the target are the same database")
    started = time.perf_counter()
    report = TransferReport(source=source.url, target=target.url)
    try:
        plans = await _plan(source, target, metadata, tables, skip_unportable, report)
    except SQLAlchemyError as exc:
        raise errors.UnportableSchemaError(
            f"the source's schema cannot be read for a transfer: {_one_line(exc)}"
        ) from exc
    state = await _read_state(target)
    # The cyclic garbage collector is paused while rows move: every batch makes ~10**5 new
    # tuples, each generation-0 pass then walks the batches in flight and older passes the
    # whole heap (measured: 2.4x slower at 200k rows, worse as the heap grows). The copy
    # makes no reference cycles; memory stays bounded by the queue. Restored afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        await _check_target(target, plans, state, fingerprint, yes, report)
        await _create_schema(target, plans, report)
        await target.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name VARCHAR(255) PRIMARY KEY,"
            " last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL,"
            " source_fingerprint VARCHAR(64) NOT NULL)"
        )
        state = await _read_state(target)
        await _copy_all(
            source, target, plans, state, fingerprint, batch_size, queue_depth, progress, report
        )
        await _verify(source, target, plans, batch_size, report)
        await target.execute(f"DROP TABLE {STATE_TABLE}")
    finally:
        if collecting:
            gc.enable()
        target.cache.clear()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n", 1)[0].split())


# -- planning ---------------------------------------------------------------------------------


@dataclass
class _SourceInfo:
    names: list[str]
    columns: dict[str, list[str]]
    is_botdb: bool


def _inspect_source(sync_conn: Any, builtin: MetaData) -> _SourceInfo:
    insp = inspect(sync_conn)
    names = [n for n in insp.get_table_names() if not n.startswith("sqlite_")]
    if sync_conn.dialect.name == "postgresql":
        # Partitions of a partitioned table (botdb partition messages): read through it.
        query = "SELECT relname FROM pg_class WHERE relispartition"
        parts = set(sync_conn.exec_driver_sql(query).scalars())
        names = [n for n in names if n not in parts]
    columns = {n: [c["name"] for c in insp.get_columns(n)] for n in names}
    # A botdb database: its migration table, or (create_tables, no migration table) every
    # built-in table it holds has exactly the built-in columns.
    shared = [t for t in builtin.tables.values() if is_builtin(t) and t.name in columns]
    is_botdb = "botdb_alembic_version" in columns or (
        bool(shared)
        and "alembic_version" not in columns
        and all(set(columns[t.name]) == {c.name for c in t.columns} for t in shared)
    )
    return _SourceInfo(names, columns, is_botdb)


async def _unportable_objects(source: OpsDatabase) -> list[str]:
    """The source's views, materialized views, functions and triggers (a reflected schema's
    tables move; these do not: their SQL is written for the source's backend)."""
    if source.backend == "sqlite":
        rows = await source.fetch(
            "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger')"
            " AND name NOT LIKE 'sqlite_%' ORDER BY type, name"
        )
        return [f"{row['type']} {row['name']}: SQLite SQL, not moved" for row in rows]
    rows = await source.fetch(
        """
        SELECT 'view' AS kind, viewname::text AS name FROM pg_views
         WHERE schemaname = current_schema()
        UNION ALL
        SELECT 'materialized view', matviewname::text FROM pg_matviews
         WHERE schemaname = current_schema()
        UNION ALL
        SELECT 'function', p.proname || '()' FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema()
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'trigger', t.tgname || ' on ' || c.relname FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND NOT t.tgisinternal
        ORDER BY 1, 2
        """
    )
    return [f"{row['kind']} {row['name']}: PostgreSQL SQL, not moved" for row in rows]


async def _plan(
    source: OpsDatabase,
    target: OpsDatabase,
    metadata: MetaData | None,
    only: Iterable[str] | None,
    skip_unportable: bool,
    report: TransferReport,
) -> list[_TablePlan]:
    if metadata is None:
        import botdb.models

        metadata = botdb.models.Base.metadata
    builtin_md = metadata
    await source.free_pool_slot()
    async with source.engine.connect() as conn:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # unknown types: refused by name later
            info = await conn.run_sync(lambda c: _inspect_source(c, builtin_md))
    report.source_schema = "botdb" if info.is_botdb else "reflected"
    plan_md = MetaData(naming_convention=metadata.naming_convention)
    if info.is_botdb:
        for table in metadata.tables.values():
            table.to_metadata(plan_md)
    wanted = None if only is None else set(only)
    candidates = set(plan_md.tables) | {n for n in info.names if n not in _NEVER_COPIED}
    if wanted is not None and (unknown := wanted - candidates):
        raise errors.ConfigurationError(f"unknown table(s): {', '.join(sorted(unknown))}")
    extra = [n for n in info.names if n not in plan_md.tables and n not in _NEVER_COPIED]
    mapped: dict[str, tuple[Table, list[Converter | None]]] = {}
    problems = (
        await _map_tables(source, target, extra, plan_md, mapped, report.notes) if extra else []
    )
    if not info.is_botdb:
        objects = await _unportable_objects(source)
        if objects and not skip_unportable:
            problems.extend(objects)
        else:
            report.skipped.extend(objects)
    if problems:
        hint = "" if info.is_botdb else " (views, functions, triggers: --skip-unportable)"
        raise errors.UnportableSchemaError(
            f"cannot transfer {len(problems)} part(s) of the source's schema to "
            f"{target.backend}, nothing was written: " + "; ".join(problems) + hint,
            problems,
        )
    plans: list[_TablePlan] = []
    for table in plan_md.sorted_tables:
        if table.name in _NEVER_COPIED or (wanted is not None and table.name not in wanted):
            continue
        present = info.columns.get(table.name)
        if present is None:
            report.notes.append(f"{table.name}: not in the source, left empty")
            continue
        if table.name in mapped:
            source_table, convert = mapped[table.name]
            columns = list(table.columns)
            source_columns = list(source_table.columns)
            source_key = list(source_table.primary_key.columns)
        else:  # a botdb model: read and written with the same columns
            columns = [c for c in table.columns if c.computed is None and c.name in present]
            source_columns, convert = columns, [None] * len(columns)
            source_key = list(table.primary_key.columns)
            if any(c.name not in present for c in source_key):
                source_key = []
        key = list(table.primary_key.columns) if source_key else []
        # Name order everywhere: a row is digested as it is read, with no reordering.
        by_name = sorted(range(len(columns)), key=lambda i: columns[i].name)
        columns = [columns[i] for i in by_name]
        source_columns = [source_columns[i] for i in by_name]
        convert = [convert[i] for i in by_name]
        entry = TableTransfer(table.name)
        entry.skipped_columns = [c.name for c in table.columns if c not in columns]
        report.tables.append(entry)
        plan = _TablePlan(table, columns, key, source_columns, source_key, convert)
        plan.total = int(await source.fetchval(f"SELECT count(*) FROM {_q(table.name)}"))
        plans.append(plan)
    return plans


async def _map_tables(
    source: OpsDatabase,
    target: OpsDatabase,
    names: list[str],
    plan_md: MetaData,
    mapped: dict[str, tuple[Table, list[Converter | None]]],
    notes: list[str],
) -> list[str]:
    """Reflect ``names`` from the source and add their target versions to ``plan_md``;
    returns the columns that cannot move."""
    reflected = MetaData()
    await source.free_pool_slot()
    async with source.engine.connect() as conn:
        with warnings.catch_warnings():
            # An unknown type is reflected as NullType and refused below, by its name.
            warnings.simplefilter("ignore", SAWarning)
            await conn.run_sync(lambda c: reflected.reflect(bind=c, only=names, resolve_fks=False))
    not_valid: set[str] = set()
    declared: dict[str, dict[str, str]] = {}
    kinds: dict[str, dict[str, set[str]]] = {}
    if source.backend == "postgresql":
        rows = await source.fetch(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        )
        not_valid = {row["conname"] for row in rows}
        rows = await source.fetch(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0"
            " AND NOT a.attisdropped AND c.relname = ANY($1::text[])",
            names,
        )
        for row in rows:
            declared.setdefault(row["relname"], {})[row["attname"]] = row["type"]
    elif target.backend != "sqlite":
        for name in names:
            info = await source.fetch(f"PRAGMA table_info({_q(name)})")
            cols = [row["name"] for row in info]
            declared[name] = {row["name"]: row["type"] or "" for row in info}
            flags = await source.fetchrow(value_kinds_sql(name, cols)) if cols else None
            kinds[name] = {
                col: set((flags[i] or "").split(",")) - {"null", ""} if flags else set()
                for i, col in enumerate(cols)
            }
    problems: list[str] = []
    known = set(plan_md.tables) | set(names)
    for name in names:
        _table, convert, bad = portable_table(
            reflected.tables[name],
            plan_md,
            source_backend=source.backend,
            target_backend=target.backend,
            declared=declared.get(name),
            kinds=kinds.get(name),
            drop_foreign_keys=not_valid,
            known_tables=known,
            notes=notes,
        )
        problems.extend(bad)
        mapped[name] = (reflected.tables[name], convert)
    return problems


# -- refusing, resuming, schema ---------------------------------------------------------------


async def _read_state(target: OpsDatabase) -> dict[str, Any]:
    await target.free_pool_slot()
    async with target.engine.connect() as conn:
        exists = await conn.run_sync(lambda c: inspect(c).has_table(STATE_TABLE))
    if not exists:
        return {}
    rows = await target.fetch(f"SELECT * FROM {STATE_TABLE}")
    return {row["table_name"]: row for row in rows}


async def _check_target(
    target: OpsDatabase,
    plans: list[_TablePlan],
    state: dict[str, Any],
    fingerprint: str,
    yes: bool,
    report: TransferReport,
) -> None:
    fingerprints = {row["source_fingerprint"] for row in state.values()}
    if fingerprints == {fingerprint}:
        report.resumed = True
        report.notes.append("resumed an interrupted transfer from the same source")
        return
    await target.free_pool_slot()
    async with target.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    filled = [
        name
        for name in names
        if name not in _NEVER_COPIED
        and not name.startswith("sqlite_")
        and await target.fetchval(f"SELECT 1 FROM {_q(name)} LIMIT 1") is not None
    ]
    if fingerprints and not yes:
        raise TargetNotEmptyError(
            "the target holds an unfinished transfer from a different source; "
            "pass yes=True (--yes) to discard it and start over"
        )
    if filled and not yes:
        raise TargetNotEmptyError(
            f"the target is not empty ({', '.join(filled[:5])}{', ...' * (len(filled) > 5)}); "
            "pass yes=True (--yes) to replace the copied tables' rows"
        )
    existing = set(names)
    async with target.transaction() as conn:
        for plan in reversed(plans):
            if plan.table.name in existing:
                await conn.execute(f"DELETE FROM {_q(plan.table.name)}")
        if STATE_TABLE in existing:
            await conn.execute(f"DELETE FROM {STATE_TABLE}")
    state.clear()
    if filled:
        report.notes.append(f"emptied the target's copied tables first ({len(filled)} had rows)")


async def _create_schema(
    target: OpsDatabase, plans: list[_TablePlan], report: TransferReport
) -> None:
    """Make the target's tables. If this fails, every table it made is dropped again (the
    target is left as it was: no half-made schema); once rows are being copied a failure
    keeps the tables and the progress table, so the same command resumes."""
    await target.free_pool_slot()
    async with target.engine.connect() as conn:
        existing = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    try:
        if report.source_schema == "botdb":
            await _migrate(target, plans, existing, report)
        else:
            report.schema = "create_all"
        md = plans[0].table.metadata if plans else MetaData()
        await target.free_pool_slot()
        async with target.engine.begin() as conn:
            await conn.run_sync(md.create_all)
    except BaseException as exc:
        await target.free_pool_slot()
        async with target.engine.connect() as conn:
            made = set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - existing
        cascade = " CASCADE" if target.backend == "postgresql" else ""
        with contextlib.suppress(errors.BotDBError):
            async with target.transaction() as tx:
                for name in sorted(made):
                    await tx.execute(f"DROP TABLE IF EXISTS {_q(name)}{cascade}")
        if isinstance(exc, SQLAlchemyError | errors.QueryError):
            raise errors.UnportableSchemaError(
                f"the target's tables could not be made, nothing was copied: {_one_line(exc)}"
            ) from exc
        raise


async def _migrate(
    target: OpsDatabase, plans: list[_TablePlan], existing: set[str], report: TransferReport
) -> None:
    builtin = {plan.table.name for plan in plans if is_builtin(plan.table)}
    if existing & builtin and not existing & {"alembic_version", "botdb_alembic_version"}:
        # Tables made by create_all (no version table): migrations would collide with them.
        report.schema = "create_all"
        report.notes.append("the target's tables were not made by migrations: used create_all")
        return
    try:
        await target.migrate()
        report.schema = "migrations"
    except ImportError:
        report.schema = "create_all"
        report.notes.append("botdb.migrations is unavailable: tables made with create_all")


# -- copying ----------------------------------------------------------------------------------


# -- values: raw driver values <-> the values copied ------------------------------------------

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


def _select(db: OpsDatabase, table: str, columns: Sequence[Column[Any]]) -> str:
    postgres = db.backend == "postgresql"
    exprs = ", ".join(
        f"{_q(c.name)}::text" if postgres and _is_json(c) else _q(c.name) for c in columns
    )
    return f"SELECT {exprs} FROM {_q(table)}"


async def _batches(
    db: OpsDatabase,
    table: str,
    columns: list[Column[Any]],
    key: list[Column[Any]],
    batch_size: int,
    after: list[Any] | None,
) -> AsyncGenerator[list[Any], None]:
    """The table's raw rows in primary-key order, ``batch_size`` at a time (keyset
    pagination on the key's raw values: never OFFSET, no snapshot held between batches).

    Read through the driver (asyncpg; sqlite3 in a worker thread): decode with
    :func:`_decoder`. A table without a primary key is streamed instead, with a server-side
    cursor in one read transaction (PostgreSQL) or one SQLite cursor.
    """
    base = _select(db, table, columns)
    postgres = db.backend == "postgresql"
    async with db.acquire() as conn:
        driver = conn.driver_connection
        if not key:
            if postgres:
                async with driver.transaction(readonly=True):
                    cursor = await driver.cursor(base)
                    while page := await cursor.fetch(batch_size):
                        yield page
                return
            cursor = await asyncio.to_thread(driver.execute, base)
            try:
                while page := await asyncio.to_thread(cursor.fetchmany, batch_size):
                    yield page
            finally:
                cursor.close()
            return
        names = ", ".join(_q(c.name) for c in key)
        marks = ", ".join(f"${i}" if postgres else "?" for i in range(1, len(key) + 1))
        first = f"{base} ORDER BY {names} LIMIT {batch_size}"
        later = f"{base} WHERE ({names}) > ({marks}) ORDER BY {names} LIMIT {batch_size}"
        key_at = [columns.index(c) for c in key]
        while True:
            sql, args = (first, ()) if after is None else (later, tuple(after))
            if postgres:
                rows = await driver.fetch(sql, *args)
            else:
                rows = await asyncio.to_thread(_sqlite_fetch, driver, sql, args)
            if not rows:
                return
            yield rows
            if len(rows) < batch_size:
                return
            after = [rows[-1][i] for i in key_at]


def _sqlite_fetch(driver: Any, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return list(driver.execute(sql, args).fetchall())


def _key_to_text(values: list[Any]) -> str:
    def tag(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return {"$datetime": value.isoformat()}
        return value

    return orjson.dumps([tag(v) for v in values], default=str).decode()


def _key_from_text(raw: str | None) -> list[Any] | None:
    if raw is None:
        return None
    values = orjson.loads(raw)
    return [dt.datetime.fromisoformat(v["$datetime"]) if isinstance(v, dict) else v for v in values]


async def _copy_all(
    source: OpsDatabase,
    target: OpsDatabase,
    plans: list[_TablePlan],
    state: dict[str, Any],
    fingerprint: str,
    batch_size: int,
    queue_depth: int,
    progress: ProgressCallback | None,
    report: TransferReport,
) -> None:
    upsert = (
        f"INSERT INTO {STATE_TABLE} (table_name, last_key, rows_copied, done, source_fingerprint)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name) DO UPDATE SET"
        " last_key = excluded.last_key, rows_copied = excluded.rows_copied,"
        " done = excluded.done"
    )
    entries = {entry.name: entry for entry in report.tables}
    async with target.acquire() as conn:
        checks_off = await _foreign_keys(conn, target.backend, enabled=False, report=report)
        try:
            for plan in plans:
                name = plan.table.name
                entry = entries[name]
                row = state.get(name)
                done = row["rows_copied"] if row is not None else 0
                entry.resumed_at = done
                if row is not None and row["done"]:
                    if progress is not None:
                        progress(name, done, plan.total)
                    continue
                after = _key_from_text(row["last_key"]) if row is not None else None
                if not plan.key and done:  # streamed in one transaction: never half-done
                    await conn.execute(f"DELETE FROM {_q(name)}")
                    done = entry.resumed_at = 0
                copier = _TableCopy(plan, target.engine.dialect, upsert, fingerprint, entry)
                await copier.run(conn, source, batch_size, queue_depth, after, done, progress)
        finally:
            if checks_off:
                await _foreign_keys(conn, target.backend, enabled=True, report=report)
        if target.backend == "sqlite":
            broken = await conn.fetch("PRAGMA foreign_key_check")
            if broken:
                raise errors.ForeignKeyViolationError(
                    f"{len(broken)} copied row(s) reference missing rows, e.g. in "
                    f"{broken[0][0]}; the source is inconsistent"
                )
        else:
            await _reset_sequences(conn, plans)


class _TableCopy:
    """One table's copy: a reader task and this writer, a bounded queue between them.

    The reader pages through the source (keyset order), converts each value to what the
    target column holds, and adds each row's digest to the source checksum as it goes (the
    verification's source side, computed in the same pass). The writer turns the rows into
    the target driver's values and writes each batch with the target's bulk path (COPY on
    PostgreSQL, one prepared ``executemany`` on SQLite) in one transaction with its progress
    row. At most ``queue_depth`` batches wait: memory is ``batch_size * (queue_depth + 2)``
    rows, whatever the table's size.
    """

    def __init__(
        self,
        plan: _TablePlan,
        dialect: Dialect,
        upsert: str,
        fingerprint: str,
        entry: TableTransfer,
    ) -> None:
        self.plan = plan
        self.bind = [_encoder(c, dialect) for c in plan.columns]
        self.upsert = upsert
        self.fingerprint = fingerprint
        self.entry = entry
        self.count = 0
        self.digest = 0

    async def _read(
        self,
        source: OpsDatabase,
        batch_size: int,
        after: list[Any] | None,
        queue: asyncio.Queue[tuple[list[Any], str | None] | None],
    ) -> None:
        plan = self.plan
        key_at = [plan.source_columns.index(c) for c in plan.source_key]
        convert = _decoders(source, plan.source_columns, plan.convert)
        active = any(f is not None for f in convert)
        batches = _batches(
            source, plan.table.name, plan.source_columns, plan.source_key, batch_size, after
        )
        async with aclosing(batches) as pages:
            async for page in pages:
                last = _key_to_text([page[-1][i] for i in key_at]) if key_at else None
                try:
                    rows: list[Any] = _convert(page, convert) if active else list(page)
                except (ValueError, TypeError) as exc:  # e.g. a malformed datetime text
                    raise errors.DataError(
                        f"{plan.table.name}: a stored value cannot be read as its column's "
                        f"type ({type(exc).__name__}: {exc}); nothing of this batch was copied"
                    ) from exc
                self.digest += _digest_rows(rows)
                self.count += len(rows)
                await queue.put((rows, last))
        await queue.put(None)

    async def run(
        self,
        conn: Any,
        source: OpsDatabase,
        batch_size: int,
        queue_depth: int,
        after: list[Any] | None,
        done: int,
        progress: ProgressCallback | None,
    ) -> int:
        """Copy the table's remaining rows; returns the rows copied in all runs."""
        plan, entry = self.plan, self.entry
        name = plan.table.name
        names = [c.name for c in plan.columns]
        queue: asyncio.Queue[tuple[list[Any], str | None] | None] = asyncio.Queue(queue_depth)
        reader = asyncio.create_task(self._read(source, batch_size, after, queue))
        try:
            # A table without a key is streamed in one transaction: all or nothing.
            whole = conn.transaction() if not plan.key else contextlib.nullcontext()
            async with whole:
                while (item := await _next(queue, reader)) is not None:
                    rows, last = item
                    records = _convert(rows, self.bind)
                    if plan.key:
                        async with conn.transaction():
                            await conn.copy_records_to_table(name, records=records, columns=names)
                            await conn.execute(
                                self.upsert, name, last, done + len(rows), 0, self.fingerprint
                            )
                    else:
                        await conn.copy_records_to_table(name, records=records, columns=names)
                    done += len(rows)
                    entry.copied += len(rows)
                    if progress is not None:
                        progress(name, done, plan.total)
                await conn.execute(self.upsert, name, None, done, 1, self.fingerprint)
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        if not plan.key and progress is not None and not entry.copied:
            progress(name, done, plan.total)
        if entry.resumed_at == 0:  # read whole in this pass: the source side is known
            entry.source_rows = self.count
            entry.source_checksum = f"{self.digest % _MODULUS:064x}"
        return done


async def _next(
    queue: asyncio.Queue[tuple[list[Any], str | None] | None], reader: asyncio.Task[None]
) -> tuple[list[Any], str | None] | None:
    """The next batch, or the reader's error as soon as it fails (never a hang)."""
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        getter.cancel()
        raise
    if getter.done():
        return getter.result()
    getter.cancel()
    reader.result()  # raises the reader's error
    return await queue.get()  # the reader finished: its last items are queued


async def _foreign_keys(conn: Any, backend: str, *, enabled: bool, report: TransferReport) -> bool:
    if backend == "sqlite":
        await conn.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")
        return True
    try:
        await conn.execute(
            "RESET session_replication_role"
            if enabled
            else "SET session_replication_role = replica"
        )
    except errors.QueryError:
        report.notes.append("no privilege to defer foreign-key checks: copied in key order")
        return False
    return True


async def _reset_sequences(conn: Any, plans: list[_TablePlan]) -> None:
    for plan in plans:
        if len(plan.key) != 1 or not _is_integer(plan.key[0]):
            continue
        table, column = plan.table.name, plan.key[0].name
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", _q(table), column)
        if sequence is not None:
            await conn.fetchval(
                f"SELECT setval($1::text::regclass, COALESCE(MAX({_q(column)}), 1),"
                f" MAX({_q(column)}) IS NOT NULL) FROM {_q(table)}",
                sequence,
            )


def _is_integer(column: Column[Any]) -> bool:
    try:
        return column.type.python_type is int
    except NotImplementedError:
        return False


# -- verifying --------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """orjson's ``default``: what it does not write itself (or is told to pass through)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value.normalize())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


_ARRAYS = (list, tuple)
_DIGEST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def row_digest(row: Sequence[Any]) -> int:
    """The digest of one row: sha256 of its canonical JSON form, as an integer.

    The form is orjson's, with JSON objects' keys sorted (at any depth), datetimes in
    ISO 8601 with their offset (naive ones read as UTC; both drivers return UTC), Decimal
    normalised, bytes as hex; columns are in name order. Both sides decode a column to the
    same Python type (booleans are booleans, JSON is decoded). A table's checksum is the sum of its
    rows' digests modulo 2**256 (order-independent: SQLite and PostgreSQL collate text keys
    differently), shown as 64 hex digits, next to its row count.
    """
    canon = orjson.dumps(
        row if type(row) in _ARRAYS else list(row), default=_canonical, option=_DIGEST_OPTIONS
    )
    return int.from_bytes(hashlib.sha256(canon).digest(), "big")


def _digest_rows(rows: Iterable[Sequence[Any]]) -> int:
    """The sum of :func:`row_digest` over ``rows`` (the same digest, without a call per row)."""
    dumps, sha256, from_bytes = orjson.dumps, hashlib.sha256, int.from_bytes
    default, option = _canonical, _DIGEST_OPTIONS
    total = 0
    for row in rows:
        if type(row) not in _ARRAYS:
            row = list(row)
        total += from_bytes(sha256(dumps(row, default=default, option=option)).digest(), "big")
    return total


def _decoders(
    db: OpsDatabase, columns: Sequence[Column[Any]], convert: Sequence[Converter | None]
) -> list[Converter | None]:
    """Per column: the driver's raw value -> the value copied (decoded, then mapped)."""
    return [
        _compose(_decoder(c, db.backend), conv) for c, conv in zip(columns, convert, strict=True)
    ]


async def _checksum(
    db: OpsDatabase,
    table: str,
    columns: list[Column[Any]],
    key: list[Column[Any]],
    convert: list[Converter | None],
    batch_size: int,
) -> tuple[int, str]:
    convert = _decoders(db, columns, convert)
    active = any(f is not None for f in convert)
    count = total = 0
    async with aclosing(_batches(db, table, columns, key, batch_size, None)) as batches:
        async for page in batches:
            rows = _convert(page, convert) if active else page
            total += _digest_rows(rows)
            count += len(rows)
    return count, f"{total % _MODULUS:064x}"


async def _target_checksum(
    target: OpsDatabase, plan: _TablePlan, batch_size: int
) -> tuple[int, str]:
    """Count and checksum of what landed: one streaming read of the target table through
    the driver (no ORDER BY), each raw value decoded, digested like the source side."""
    return await _checksum(
        target, plan.table.name, plan.columns, [], [None] * len(plan.columns), batch_size
    )


async def _verify(
    source: OpsDatabase,
    target: OpsDatabase,
    plans: list[_TablePlan],
    batch_size: int,
    report: TransferReport,
) -> None:
    """Compare each table's count and checksum on both sides.

    The source side was computed while reading, from the values copied (a resumed table,
    read only in part by this run, is read again). The target side is one streaming re-read
    of what landed, through the driver with no ordering and no SQLAlchemy processing: a
    digest of the rows as they were handed to the driver would not prove they were stored,
    or stored as meant (a column type that coerces or truncates, a trigger). It is the one
    extra pass; ``make bench`` (the ``transfer`` cases) measures the whole run with it.
    """
    for plan, entry in zip(plans, report.tables, strict=True):
        if not entry.source_checksum:
            entry.source_rows, entry.source_checksum = await _checksum(
                source,
                plan.table.name,
                plan.source_columns,
                plan.source_key,
                plan.convert,
                batch_size,
            )
        entry.target_rows, entry.target_checksum = await _target_checksum(
            target, plan, max(batch_size, 10_000)
        )
    bad = [entry.name for entry in report.tables if not entry.ok]
    if bad:
        await target.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")
        raise VerificationError(
            f"the copy differs from the source in {', '.join(bad)}; "
            "re-run with yes=True (--yes) to copy again",
            report,
        )
    report.verified = True


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
