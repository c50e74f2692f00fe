"""Citus: turn botdb's schema into a distributed one (``botdb distribute``).

Every table botdb knows is classified in one place, :data:`PLACEMENTS`, used by
:func:`distribute` and by the tests: chat-scoped tables are distributed by ``guild_id`` and
colocated with ``guilds`` (distributed by its ``id``), so a guild's rows of every table live on
one worker and joins and foreign keys between them stay on that worker; global tables are
reference tables (a copy on every node); the bot's session state and the scheduler's queue stay
ordinary tables on the coordinator. A table in botdb's metadata that is not classified is an
error, so a new model cannot be forgotten.

Citus needs the distribution column in every PRIMARY KEY and UNIQUE constraint. Tables keyed by
their own ``id`` (a sequence value or a platform snowflake, unique by construction) get it
added: ``PRIMARY KEY (id)`` becomes ``(id, guild_id)``, and the foreign keys pointing at such a
table get ``guild_id`` on both sides. A unique constraint that does not hold ``id`` or the
distribution column cannot be widened without changing what it means: it is refused.

All of it runs in one transaction: a refusal or a failure leaves the schema as it was.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from botdb.errors import DistributionError, NotSupportedError
from botdb.ops._common import Progress, quote_ident

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from botdb._protocols import OpsDatabase
    from botdb.engine.connection import Connection

__all__ = [
    "ANCHOR",
    "PLACEMENTS",
    "Placement",
    "distribute",
    "distribution",
    "placements",
    "transformed_keys",
    "unclassified",
]

Kind = Literal["distributed", "reference", "local"]


@dataclass(frozen=True)
class Placement:
    """Where one table lives on a Citus cluster.

    Attributes:
        kind: ``"distributed"`` (sharded by ``column``), ``"reference"`` (a copy on every
            node) or ``"local"`` (an ordinary table on the coordinator).
        column: the distribution column (distributed only).
        colocate_with: the table whose shards these rows share (distributed only).
        why: one line for the docs and the report.
    """

    kind: Kind
    column: str | None = None
    colocate_with: str | None = None
    why: str = ""

    def describe(self) -> str:
        if self.kind == "distributed":
            return f"distributed by {self.column}"
        return self.kind


#: The table every chat-scoped table is colocated with.
ANCHOR: Final = "guilds"


def _chat(why: str = "chat-scoped") -> Placement:
    return Placement("distributed", "guild_id", ANCHOR, why)


def _local(why: str) -> Placement:
    return Placement("local", why=why)


#: Every table botdb creates, and where it goes on Citus (see the module's docstring).
PLACEMENTS: Final[Mapping[str, Placement]] = {
    "guilds": Placement(
        "distributed",
        "id",
        None,
        "the colocation anchor: a guild's row sits with its members, messages, cases...; "
        "foreign keys to it stay local to a worker",
    ),
    "channels": _chat(),
    "threads": _chat(),
    "roles": _chat(),
    "members": _chat(),
    "member_roles": _chat(),
    "levels": _chat(),
    "guild_configs": _chat(),
    "guild_case_counters": _chat(),
    "moderation_cases": _chat(),
    "snippets": _chat(),
    "join_leave_logs": _chat(),
    "tracked_events": _chat(),
    "event_reactions": _chat(),
    "reminder_logs": _chat(),
    "messages": _chat(),
    "attachments": _chat(),
    "mentions": _chat(),
    "reactions": _chat(),
    "reaction_counts": _chat(),
    "users": Placement(
        "reference", why="global (one row per account, read with every guild's rows)"
    ),
    "command_history": Placement(
        "distributed",
        "user_id",
        None,
        "guild_id is NULL for direct messages (Citus refuses NULL distribution values): "
        "distributed by user_id, its own colocation group",
    ),
    "user_reminders": _local(
        "guild_id is NULL for direct messages, and due reminders are claimed across all "
        "users with FOR UPDATE SKIP LOCKED (single-node only)"
    ),
    "scheduled_jobs": _local(
        "the job queue: claimed across all guilds with FOR UPDATE SKIP LOCKED (single-node only)"
    ),
    "kv_store": _local("the bot's own key-value state, not per guild"),
    "fsm_states": _local("aiogram conversation state: small, hot, kept with fsm_locks"),
    "fsm_locks": _local("aiogram's event isolation leases"),
    "ptb_persistence": _local("python-telegram-bot persistence, one bot's state"),
    "botdb_alembic_version": _local("migration bookkeeping"),
    "botdb_meta": _local("botdb's own bookkeeping"),
}

# PostgreSQL tables the DDL below must leave alone although they are in ``public``.
_CITUS_OWN: Final = frozenset({"citus_tables", "citus_schemas"})

_TABLES = """SELECT c.relname AS name, c.relkind::text AS kind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    ORDER BY c.relname"""
_KEYS = """SELECT c.conname AS name, c.contype::text AS kind, c.conrelid::regclass::text AS table,
    ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND c.contype IN ('p', 'u')
    ORDER BY c.conrelid, c.contype, c.conname"""
_UNIQUE_INDEXES = """SELECT i.relname AS name, t.relname AS table,
    ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND x.indisunique AND t.relkind IN ('r', 'p')
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"""
_FOREIGN_KEYS = """SELECT c.conname AS name, c.conrelid::regclass::text AS table,
    c.confrelid::regclass::text AS target,
    ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns,
    ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS target_columns,
    c.confdeltype::text AS on_delete, c.confupdtype::text AS on_update
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND c.contype = 'f' ORDER BY c.conrelid, c.conname"""
_CITUS_TABLES = """SELECT logicalrelid::regclass::text AS name, partmethod::text AS method,
    repmodel::text AS replication, colocationid,
    CASE WHEN partmethod = 'h' THEN column_to_column_name(logicalrelid, partkey) END AS column
    FROM pg_dist_partition"""
_ACTIONS: Final = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def placements(extra: Mapping[str, str] | None = None) -> dict[str, Placement]:
    """:data:`PLACEMENTS` plus the bot's own tables: ``{"table": "distributed:guild_id" |
    "reference" | "local"}`` (a distributed one is colocated with ``guilds``).

    Raises:
        DistributionError: a value that is none of those.
    """
    result = dict(PLACEMENTS)
    for table, spec in (extra or {}).items():
        kind, _, column = spec.partition(":")
        if kind == "distributed" and _IDENT.match(column):
            result[table] = Placement("distributed", column, ANCHOR, "the bot's own")
        elif kind == "reference" and not column:
            result[table] = Placement("reference", why="the bot's own")
        elif kind == "local" and not column:
            result[table] = Placement("local", why="the bot's own")
        else:
            raise DistributionError(
                f"table {table!r}: a placement is 'distributed:<column>', 'reference' or "
                f"'local', got {spec!r}"
            )
    return result


def unclassified(tables: set[str], known: Mapping[str, Placement]) -> list[str]:
    """The tables of ``tables`` that ``known`` does not place (materialized views aside)."""
    return sorted(t for t in tables if t not in known and t not in _CITUS_OWN)


def transformed_keys(
    keys: Mapping[str, list[tuple[str, list[str]]]], known: Mapping[str, Placement]
) -> dict[str, list[tuple[str, list[str]]]]:
    """Each table's PRIMARY KEY / UNIQUE constraints as :func:`distribute` leaves them:
    ``{table: [(kind "p"|"u", columns)]}`` in, the same out, with the distribution column
    appended where a key lacks it (and a key that then duplicates another dropped).

    Raises:
        DistributionError: a key of a distributed table lacks both the distribution column and
            ``id`` (widening it would change what it means).
    """
    result: dict[str, list[tuple[str, list[str]]]] = {}
    for table, table_keys in keys.items():
        placement = known.get(table)
        if placement is None or placement.kind != "distributed":
            result[table] = [(kind, list(cols)) for kind, cols in table_keys]
            continue
        column = str(placement.column)
        widened: list[tuple[str, list[str]]] = []
        for kind, cols in sorted(table_keys, key=lambda k: k[0]):  # the primary key first
            new = _widen(table, kind, list(cols), column)
            if all(set(new) != set(other) for _, other in widened):
                widened.append((kind, new))
        result[table] = widened
    return result


def _widen(table: str, kind: str, cols: list[str], column: str) -> list[str]:
    if column in cols:
        return cols
    if "id" not in cols:
        what = "primary key" if kind == "p" else "unique constraint"
        raise DistributionError(
            f"cannot distribute {table} by {column}: its {what} ({', '.join(cols)}) does not "
            f"include {column}, and adding {column} would change what it keeps unique; "
            f"include {column} in it first"
        )
    return [*cols, column]


async def distribution(db: OpsDatabase) -> dict[str, str] | None:
    """The placement of each table Citus knows (``{"messages": "distributed by guild_id",
    "users": "reference", ...}``), or None when the database is not a Citus coordinator."""
    if db.backend != "postgresql":
        return None
    async with db.acquire() as conn:
        if not await _has_citus(conn):
            return None
        return {row["name"]: _method(row) for row in await conn.fetch(_CITUS_TABLES)}


def _method(row: Mapping[str, Any]) -> str:
    if row["method"] == "h":
        return f"distributed by {row['column']}"
    if row["replication"] == "t":
        return "reference"
    return "local"  # a citus-local table: on the coordinator, in Citus's metadata


async def _has_citus(conn: Connection) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    )


async def distribute(
    db: OpsDatabase,
    *,
    dry_run: bool = False,
    tables: Mapping[str, str] | None = None,
    metadata: MetaData | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make botdb's schema distributed on a Citus coordinator (see the module's docstring).

    Args:
        db: a connected Database on a Citus coordinator, migrated to the head revision.
        dry_run: report what would be done, change nothing.
        tables: placements of the bot's own tables, ``{"name": "distributed:guild_id" |
            "reference" | "local"}``.
        metadata: the models whose tables must all be placed (default: botdb's ``Base``).
        progress: ``progress(phase, done, total)``.

    Returns:
        ``{"distributed": bool (False: it already was, nothing done), "dry_run", "tables":
        {table: placement}, "keys": [changed keys], "foreign_keys": {"changed": [...],
        "dropped": [...]}, "took"}``.

    Raises:
        DistributionError: SQLite; not a Citus coordinator or no active worker; migrations
            pending; partitioned messages; a table not placed; a key that cannot take the
            distribution column. Nothing was changed.
    """
    started = time.perf_counter()
    if db.backend != "postgresql":
        raise DistributionError(
            "cannot distribute: Citus is a PostgreSQL extension; this database is SQLite"
        )
    known = placements(tables)
    if metadata is None:
        from botdb.models import Base

        metadata = Base.metadata
    missing = unclassified(set(metadata.tables), known)
    if missing:
        raise DistributionError(
            f"cannot distribute: no placement for {', '.join(missing)}; pass "
            "tables={name: 'distributed:guild_id' | 'reference' | 'local'}"
        )
    from botdb.migrations import Migrator

    pending = await Migrator(db).pending()
    if pending:
        raise DistributionError(
            f"cannot distribute: the database is not at the migration head ({len(pending)} "
            f"pending: {', '.join(map(str, pending))}); run botdb migrate upgrade first"
        )
    report: dict[str, Any] = {"distributed": False, "dry_run": dry_run}
    async with db.transaction() as conn:
        await _check_cluster(conn)
        present = {row["name"]: row["kind"] for row in await conn.fetch(_TABLES)}
        if present.get("messages") == "p":
            raise DistributionError(
                "cannot distribute: messages is partitioned (botdb partition messages); Citus "
                "can distribute a partitioned table, but botdb's partition upkeep and retention "
                "detach and drop partitions on the coordinator only; distribute an "
                "unpartitioned database"
            )
        missing = unclassified(set(present), known)
        if missing:
            raise DistributionError(
                f"cannot distribute: no placement for the table(s) {', '.join(missing)}; pass "
                "tables={name: 'distributed:guild_id' | 'reference' | 'local'}"
            )
        placed = {name: known[name] for name in present if name in known}
        done = {row["name"]: _method(row) for row in await conn.fetch(_CITUS_TABLES)}
        report["tables"] = {name: p.describe() for name, p in sorted(placed.items())}
        todo = [n for n, p in placed.items() if p.kind != "local" and n not in done]
        if not todo:
            report["took"] = round(time.perf_counter() - started, 3)
            return report
        plan = await _plan(conn, placed)
        report["keys"] = plan.key_changes
        report["foreign_keys"] = {"changed": plan.changed_fks, "dropped": plan.dropped_fks}
        if dry_run:
            report["took"] = round(time.perf_counter() - started, 3)
            return report
        # Every statement of the transaction on one connection per worker: DDL and data
        # copies in one transaction need Citus's sequential mode.
        await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        steps = [*plan.drop, *plan.alter]
        total = len(steps) + len(todo) + len(plan.add)
        count = 0
        try:
            for statement in steps:
                await conn.execute(statement)
                count += 1
            for name in _order(todo, placed):
                if progress is not None:
                    progress(f"distribute {name}", count, total)
                await conn.execute(_create(name, placed[name]))
                count += 1
            for statement in plan.add:
                await conn.execute(statement)
                count += 1
        except NotSupportedError as exc:
            raise DistributionError(f"cannot distribute: Citus refused it: {exc}") from exc
        if progress is not None:
            progress("done", total, total)
    report["distributed"] = True
    report["took"] = round(time.perf_counter() - started, 3)
    return report


async def _check_cluster(conn: Connection) -> None:
    if not await _has_citus(conn):
        raise DistributionError(
            "cannot distribute: this PostgreSQL is not a Citus coordinator (no citus extension "
            "in this database: CREATE EXTENSION citus, then add the workers)"
        )
    workers = await conn.fetchval("SELECT count(*) FROM citus_get_active_worker_nodes()")
    if not workers:
        raise DistributionError(
            "cannot distribute: the Citus coordinator has no active worker "
            "(SELECT citus_add_node(host, port) for each)"
        )
    if not await conn.fetchval("SELECT citus_is_coordinator()"):
        raise DistributionError("cannot distribute: connect to the Citus coordinator, not a worker")


@dataclass
class _Plan:
    drop: list[str]
    alter: list[str]
    add: list[str]
    key_changes: list[str]
    changed_fks: list[str]
    dropped_fks: list[str]


async def _plan(conn: Connection, placed: Mapping[str, Placement]) -> _Plan:
    """The DDL around the distribution: foreign keys dropped first (a distributed table may
    only point at a colocated or a reference one, and keys change under them), keys widened,
    then the foreign keys that Citus can keep added back after the tables are distributed."""
    keys: dict[str, list[tuple[str, list[str]]]] = {}
    names: dict[tuple[str, str, tuple[str, ...]], str] = {}
    for row in await conn.fetch(_KEYS):
        if row["table"] in placed:
            keys.setdefault(row["table"], []).append((row["kind"], list(row["columns"])))
            names[(row["table"], row["kind"], tuple(row["columns"]))] = row["name"]
    for index in await conn.fetch(_UNIQUE_INDEXES):
        placement = placed.get(index["table"])
        if (
            placement is not None
            and placement.kind == "distributed"
            and placement.column not in index["columns"]
        ):
            raise DistributionError(
                f"cannot distribute {index['table']}: the unique index {index['name']} "
                f"({', '.join(index['columns'])}) does not include {placement.column}"
            )
    widened = transformed_keys(keys, placed)
    plan = _Plan([], [], [], [], [], [])
    for table, before in keys.items():
        after = widened[table]
        if sorted(map(tuple, (c for _, c in before))) == sorted(map(tuple, (c for _, c in after))):
            continue
        drops = [f"DROP CONSTRAINT {quote_ident(names[(table, k, tuple(c))])}" for k, c in before]
        adds = []
        for kind, cols in after:
            old = next((names[(table, k, tuple(c))] for k, c in before if k == kind), None)
            name = f"CONSTRAINT {quote_ident(old)} " if old else ""
            verb = "PRIMARY KEY" if kind == "p" else "UNIQUE"
            adds.append(f"ADD {name}{verb} ({', '.join(map(quote_ident, cols))})")
            if (kind, cols) not in before:
                plan.key_changes.append(f"{table}: {verb} ({', '.join(cols)})")
        plan.alter.append(f"ALTER TABLE {quote_ident(table)} {', '.join([*drops, *adds])}")
    for fk in await conn.fetch(_FOREIGN_KEYS):
        table, target = fk["table"], fk["target"]
        if table not in placed or target not in placed:
            continue
        source, referenced = placed[table], placed[target]
        plan.drop.append(
            f"ALTER TABLE {quote_ident(table)} DROP CONSTRAINT {quote_ident(fk['name'])}"
        )
        cols, target_cols = list(fk["columns"]), list(fk["target_columns"])
        label = f"{table}({', '.join(cols)}) -> {target}({', '.join(target_cols)})"
        keep = True
        if referenced.kind == "distributed":
            colocated = source.kind == "distributed" and _group(source, table) == _group(
                referenced, target
            )
            if not colocated:
                keep = False
            elif referenced.column not in target_cols:
                cols.append(str(source.column))
                target_cols.append(str(referenced.column))
        elif referenced.kind == "local" and source.kind != "local":
            keep = False
        if fk["on_delete"] in ("n", "d") and source.column in cols and source.kind != "local":
            # Citus refuses SET NULL / SET DEFAULT on a key holding the distribution column
            # (it would move the row to another shard), even limited to the other columns.
            keep = False
        if not keep:
            plan.dropped_fks.append(label)
            continue
        if cols != list(fk["columns"]):
            plan.changed_fks.append(
                f"{label} becomes ({', '.join(cols)}) -> {target}({', '.join(target_cols)})"
            )
        on_delete = _ACTIONS[fk["on_delete"]]
        plan.add.append(
            f"ALTER TABLE {quote_ident(table)} ADD CONSTRAINT {quote_ident(fk['name'])} "
            f"FOREIGN KEY ({', '.join(map(quote_ident, cols))}) REFERENCES "
            f"{quote_ident(target)} ({', '.join(map(quote_ident, target_cols))}) "
            f"ON DELETE {on_delete} ON UPDATE {_ACTIONS[fk['on_update']]}"
        )
    return plan


def _group(placement: Placement, table: str) -> str:
    return placement.colocate_with or table


def _order(todo: list[str], placed: Mapping[str, Placement]) -> list[str]:
    """Reference tables, then each colocation anchor before the tables colocated with it."""

    def rank(name: str) -> tuple[int, str]:
        placement = placed[name]
        if placement.kind == "reference":
            return (0, name)
        return (1 if placement.colocate_with is None else 2, name)

    return sorted(todo, key=rank)


def _create(name: str, placement: Placement) -> str:
    table = quote_ident(name)
    if placement.kind == "reference":
        return f"SELECT create_reference_table('{table}')"
    colocate = quote_ident(placement.colocate_with) if placement.colocate_with else "none"
    return (
        f"SELECT create_distributed_table('{table}', '{placement.column}', "
        f"colocate_with => '{colocate}')"
    )
