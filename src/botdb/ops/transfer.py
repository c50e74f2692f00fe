"""Copy a whole database between SQLite and PostgreSQL, resumably, and verify the copy.

``botdb transfer sqlite:///bot.db postgresql://...`` (or the other way round) is how a bot
moves to PostgreSQL when it outgrows its SQLite file. What happens, in order:

1. **Plan.** Every table of the metadata (default: ``botdb.models.Base.metadata``, so built-in
   tables and the user's own models) plus every table that exists only in the source
   (reflected, with portable column types). Rows go parents first (``sorted_tables``).
2. **Refuse or resume.** A target that holds rows is refused (:class:`TargetNotEmptyError`)
   unless ``yes=True``, which empties the copied tables first. A target holding this module's
   progress table (``botdb_transfer_state``) from an interrupted run of the *same* source is
   resumed; from a different source it is refused.
3. **Schema.** ``target.migrate()`` (the packaged Alembic migrations), then ``create_all`` for
   what migrations do not cover (user tables, reflected tables).
4. **Copy.** Keyset pagination on the primary key (never OFFSET), ``batch_size`` rows at a
   time; each batch is written with ``copy_records_to_table`` (COPY on PostgreSQL) *in the same
   transaction as its progress row*, so an interruption loses at most the batch in flight and
   a re-run continues after the last committed one, without duplicates. Values are converted
   with the columns' SQLAlchemy types (the source dialect's result processors, then the target
   dialect's bind processors: SQLite's TEXT timestamps and JSON become ``timestamptz``/``jsonb``
   and back). Computed columns are skipped. Foreign-key checks are off on the copying
   connection (the source was consistent; self-references may point forward); SQLite runs
   ``PRAGMA foreign_key_check`` at the end.
5. **Sequences** are moved past the copied ids on PostgreSQL.
6. **Verify.** Row counts and a checksum per table, computed the same way on both sides (see
   :func:`row_digest`); a mismatch raises :class:`VerificationError`. On success the progress
   table is dropped.

``transfer`` takes two connected Databases; the ``botdb transfer`` command opens them from
its URLs (the source with ``sqlite_create=False``, so a mistyped path is not created).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Column, MetaData, Table, inspect, select, tuple_
from sqlalchemy.engine import Dialect

from botdb import errors
from botdb.analytics._schema import sqlite_objects
from botdb.models._search import SEARCH_TABLES
from botdb.models.base import is_builtin

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = [
    "STATE_TABLE",
    "ProgressCallback",
    "TableTransfer",
    "TargetNotEmptyError",
    "TransferReport",
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        for table, entry in zip(self.tables, data["tables"], strict=True):
            entry["ok"] = table.ok
        return data


@dataclass
class _TablePlan:
    table: Table
    columns: list[Column[Any]]
    key: list[Column[Any]]
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
) -> TransferReport:
    """Copy every table from ``source`` to ``target`` and verify the copy.

    Both are connected Databases, opened and closed by the caller (``botdb transfer`` opens
    them from its two URLs). The target's in-process cache is cleared, since the rows under
    it were replaced.

    Args:
        source: the database to read (SQLite or PostgreSQL); it is never written.
        target: the database to fill; its schema is made with migrations, then ``create_all``.
        yes: allow a non-empty target; the copied tables are emptied first.
        batch_size: rows per batch (and per target transaction).
        tables: copy only these tables (names); default every table.
        metadata: the tables to copy; default ``botdb.models.Base.metadata`` (built-in tables
            and the user's models). Tables found only in the source are copied too.
        progress: called as ``progress(table, rows_done, rows_total)`` after each batch.

    Returns:
        The report; ``report.verified`` is True (a failed verification raises).

    Raises:
        ArgumentError: ``source`` or ``target`` is not a Database (e.g. a URL string).
        ConfigurationError: the same database twice, an unknown table name, a batch size
            below 1.
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
    fingerprint = hashlib.sha256(_identity(source).encode()).hexdigest()
    if source is target or _identity(source) == _identity(target):
        raise errors.ConfigurationError("the source and the target are the same database")
    started = time.perf_counter()
    report = TransferReport(source=source.url, target=target.url)
    plans = await _plan(source, metadata, tables, report)
    state = await _read_state(target)
    try:
        await _check_target(target, plans, state, fingerprint, yes, report)
        await _create_schema(target, plans, report)
        await target.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name VARCHAR(255) PRIMARY KEY,"
            " last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL,"
            " source_fingerprint VARCHAR(64) NOT NULL)"
        )
        state = await _read_state(target)
        await _copy_all(source, target, plans, state, fingerprint, batch_size, progress, report)
        await _verify(source, target, plans, batch_size, report)
        await target.execute(f"DROP TABLE {STATE_TABLE}")
    finally:
        target.cache.clear()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


# -- planning ---------------------------------------------------------------------------------


async def _plan(
    source: OpsDatabase,
    metadata: MetaData | None,
    only: Iterable[str] | None,
    report: TransferReport,
) -> list[_TablePlan]:
    if metadata is None:
        import botdb.models

        metadata = botdb.models.Base.metadata
    plan_md = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(plan_md)

    def inspect_source(sync_conn: Any) -> dict[str, set[str]]:
        names = [n for n in inspect(sync_conn).get_table_names() if not n.startswith("sqlite_")]
        if sync_conn.dialect.name == "postgresql":
            # Partitions of a partitioned table (botdb partition messages): read through it.
            query = "SELECT relname FROM pg_class WHERE relispartition"
            parts = set(sync_conn.exec_driver_sql(query).scalars())
            names = [n for n in names if n not in parts]
        extra = [n for n in names if n not in plan_md.tables and n not in _NEVER_COPIED]
        if extra:
            plan_md.reflect(bind=sync_conn, only=extra, resolve_fks=False)
            for name in extra:
                _make_portable(plan_md.tables[name])
        insp = inspect(sync_conn)
        return {n: {c["name"] for c in insp.get_columns(n)} for n in names}

    await source.free_pool_slot()
    async with source.engine.connect() as conn:
        source_columns = await conn.run_sync(inspect_source)
    wanted = None if only is None else set(only)
    if wanted is not None and (unknown := wanted - set(plan_md.tables)):
        raise errors.ConfigurationError(f"unknown table(s): {', '.join(sorted(unknown))}")
    plans: list[_TablePlan] = []
    for table in plan_md.sorted_tables:
        if table.name in _NEVER_COPIED or (wanted is not None and table.name not in wanted):
            continue
        present = source_columns.get(table.name)
        if present is None:
            report.notes.append(f"{table.name}: not in the source, left empty")
            continue
        columns = [c for c in table.columns if c.computed is None and c.name in present]
        key = list(table.primary_key.columns)
        if any(c.name not in present for c in key):
            key = []
        entry = TableTransfer(table.name)
        entry.skipped_columns = [c.name for c in table.columns if c not in columns]
        report.tables.append(entry)
        plans.append(_TablePlan(table, columns, key))
        plans[-1].total = int(await source.fetchval(f"SELECT count(*) FROM {_q(table.name)}"))
    return plans


def _make_portable(table: Table) -> None:
    """Dialect-specific reflected types become generic ones; server defaults are dropped."""
    for column in table.columns:
        with contextlib.suppress(NotImplementedError):
            column.type = column.type.as_generic()
        column.server_default = None
    table.indexes = {i for i in table.indexes if not i.dialect_kwargs}


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
    await target.free_pool_slot()
    async with target.engine.connect() as conn:
        existing = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    builtin = {plan.table.name for plan in plans if is_builtin(plan.table)}
    if existing & builtin and not existing & {"alembic_version", "botdb_alembic_version"}:
        # Tables made by create_all (no version table): migrations would collide with them.
        report.schema = "create_all"
        report.notes.append("the target's tables were not made by migrations: used create_all")
    else:
        try:
            await target.migrate()
            report.schema = "migrations"
        except ImportError:
            report.schema = "create_all"
            report.notes.append("botdb.migrations is unavailable: tables made with create_all")
    md = plans[0].table.metadata if plans else MetaData()
    await target.free_pool_slot()
    async with target.engine.begin() as conn:
        await conn.run_sync(md.create_all)


# -- copying ----------------------------------------------------------------------------------


def _converters(
    columns: Sequence[Column[Any]], target: Dialect
) -> list[Callable[[Any], Any] | None]:
    """The target dialect's bind processors (rows are read with SQLAlchemy Core, so values
    are already Python objects: aware datetimes, decoded JSON, booleans)."""
    return [column.type._cached_bind_processor(target) for column in columns]


def _convert(rows: Iterable[Sequence[Any]], conv: list[Callable[[Any], Any] | None]) -> list[Any]:
    active = [(i, f) for i, f in enumerate(conv) if f is not None]
    if not active:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        values = list(row)
        for i, f in active:
            if values[i] is not None:
                values[i] = f(values[i])
        out.append(values)
    return out


async def _batches(
    db: OpsDatabase, plan: _TablePlan, batch_size: int, after: list[Any] | None
) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
    """The table's rows in primary-key order, ``batch_size`` at a time (keyset pagination).

    Read with SQLAlchemy Core, whose result processors turn SQLite's TEXT timestamps and JSON
    into Python values (twice as fast as the raw API plus explicit conversion, measured on
    100k messages: a 5000-row read outlasts the raw API's inline budget and runs twice). A
    table without a primary key is streamed with a server-side cursor instead.
    """
    query = select(*plan.columns)
    await db.free_pool_slot()
    async with db.engine.connect() as conn:
        if not plan.key:
            result = await conn.stream(query)
            async for part in result.partitions(batch_size):
                yield list(part)
            return
        key = tuple_(*plan.key)
        key_at = [plan.columns.index(c) for c in plan.key]
        ordered = query.order_by(*plan.key).limit(batch_size)
        while True:
            page = ordered if after is None else ordered.where(key > tuple_(*after))
            rows = (await conn.execute(page)).all()
            await conn.rollback()  # end the read transaction: no snapshot held between batches
            if not rows:
                return
            yield rows
            if len(rows) < batch_size:
                return
            after = [rows[-1][i] for i in key_at]


def _key_to_text(values: list[Any]) -> str:
    def tag(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return {"$datetime": value.isoformat()}
        return value

    return orjson.dumps([tag(v) for v in values]).decode()


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
                async with aclosing(_batches(source, plan, batch_size, after)) as batches:
                    done = await _copy_table(
                        conn,
                        plan,
                        batches,
                        target.engine.dialect,
                        done,
                        progress,
                        upsert,
                        fingerprint,
                        entry,
                    )
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


async def _copy_table(
    conn: Any,
    plan: _TablePlan,
    batches: AsyncIterator[Sequence[Sequence[Any]]],
    dialect: Dialect,
    done: int,
    progress: ProgressCallback | None,
    upsert: str,
    fingerprint: str,
    entry: TableTransfer,
) -> int:
    """Copy one table's remaining batches; returns the rows copied in all (this run and
    earlier ones)."""
    name = plan.table.name
    conv = _converters(plan.columns, dialect)
    columns = [c.name for c in plan.columns]
    key_at = [plan.columns.index(c) for c in plan.key]
    if not plan.key:  # streamed in one transaction: all or nothing
        async with conn.transaction():
            async for rows in batches:
                await conn.copy_records_to_table(
                    name, records=_convert(rows, conv), columns=columns
                )
                done += len(rows)
                entry.copied += len(rows)
            await conn.execute(upsert, name, None, done, 1, fingerprint)
        if progress is not None:
            progress(name, done, plan.total)
        return done
    async for rows in batches:
        last = _key_to_text([rows[-1][i] for i in key_at])
        async with conn.transaction():
            await conn.copy_records_to_table(name, records=_convert(rows, conv), columns=columns)
            await conn.execute(upsert, name, last, done + len(rows), 0, fingerprint)
        done += len(rows)
        entry.copied += len(rows)
        if progress is not None:
            progress(name, done, plan.total)
    await conn.execute(upsert, name, None, done, 1, fingerprint)
    return done


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


_PLAIN = frozenset({str, int, float, type(None)})


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, decimal.Decimal):
        return str(value.normalize())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def row_digest(row: Sequence[Any]) -> int:
    """The digest of one row: sha256 of its canonical JSON form, as an integer.

    Values are normalised so both backends give the same text: booleans to 0/1, datetimes to
    UTC ISO 8601 (naive ones read as UTC), JSON documents to compact sorted-key text, Decimal
    normalised, bytes to hex. Columns are in name order. A table's checksum is the sum of its
    rows' digests modulo 2**256 (order-independent: SQLite and PostgreSQL collate text keys
    differently), shown as 64 hex digits, next to its row count.
    """
    canon = orjson.dumps([v if type(v) in _PLAIN else _canonical(v) for v in row])
    return int.from_bytes(hashlib.sha256(canon).digest(), "big")


async def _checksum(db: OpsDatabase, plan: _TablePlan, batch_size: int) -> tuple[int, str]:
    order = sorted(range(len(plan.columns)), key=lambda i: plan.columns[i].name)
    count = total = 0
    async with aclosing(_batches(db, plan, batch_size, None)) as batches:
        async for rows in batches:
            for row in rows:
                total += row_digest([row[i] for i in order])
            count += len(rows)
    return count, f"{total % _MODULUS:064x}"


async def _verify(
    source: OpsDatabase,
    target: OpsDatabase,
    plans: list[_TablePlan],
    batch_size: int,
    report: TransferReport,
) -> None:
    for plan, entry in zip(plans, report.tables, strict=True):
        entry.source_rows, entry.source_checksum = await _checksum(source, plan, batch_size)
        entry.target_rows, entry.target_checksum = await _checksum(target, plan, batch_size)
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
