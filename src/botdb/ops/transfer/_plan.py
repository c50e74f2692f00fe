"""Planning a transfer: which tables move with which columns and types, and the target's schema."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.exc import SAWarning, SQLAlchemyError

from botdb import errors
from botdb.analytics._schema import sqlite_objects
from botdb.models._search import SEARCH_TABLES
from botdb.models.base import is_builtin
from botdb.ops._portable import Converter, portable_table, value_kinds_sql
from botdb.ops.transfer._types import (
    STATE_TABLE,
    TableTransfer,
    TransferReport,
    _one_line,
    _q,
    _TablePlan,
)

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase


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
        raise errors.TargetNotEmptyError(
            "the target holds an unfinished transfer from a different source; "
            "pass yes=True (--yes) to discard it and start over"
        )
    if filled and not yes:
        raise errors.TargetNotEmptyError(
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
