"""Range-partitioned messages on PostgreSQL, partitions made ahead, and retention.

Opt-in (not a migration of the default chain): :func:`partition_messages` turns the message
family (``messages`` and the tables that hang off it: ``attachments``, ``mentions``,
``reactions``, ``reaction_counts``) into range-partitioned tables, one partition per month (or
week) and a DEFAULT partition for out-of-range rows, so that :func:`retention` can drop whole
partitions instead of deleting rows.

**The partition key is the message id (Discord snowflake range), not ``created_at``.**
PostgreSQL requires the partition key in every primary key and unique constraint. A
message's key ``(id, guild_id)`` already holds ``id``, and every unique key of the children
holds ``message_id``: with ``id`` the recorder's conflict targets (``ON CONFLICT (id,
guild_id)``, ``(message_id, guild_id, position)``, ``(message_id, guild_id, emoji_key,
user_id)``, ``(message_id, guild_id, emoji_key)``), the children's composite foreign key to
``(id, guild_id)`` and every repository lookup keep working unchanged. Only the surrogate
primary keys of ``attachments`` and ``reactions`` become ``(id, message_id)`` (their ``id``
stays unique: it comes from one sequence). With ``created_at`` instead, ``(id, guild_id)``
could no longer be unique, the children's foreign keys and the recorder's upserts would have
nothing to target, and a child row has no ``created_at`` to be partitioned by at all. A
snowflake carries its creation time, so a month of ids is a month of messages. Telegram
message ids carry no time (they count up per chat): a database holding them is refused.

Moving the data (online, in batches): new partitioned tables ``<table>_new`` are made beside
the old ones with the same columns, defaults, checks, indexes (the search GIN index is made
per partition) and foreign keys; a trigger on each old table mirrors every insert, update and
delete into its new table from then on; the old rows are copied in keyset batches of
``batch_size`` (each batch its own short transaction, the source rows locked ``FOR SHARE`` so
that a concurrent update or delete waits and is then mirrored); last, one transaction locks
the old tables, drops them, renames the new ones (and their indexes and keys) to the old names
and rebuilds the views made over them. Writers wait only for that last transaction; the
materialized views are rebuilt inside it, which costs one pass of their queries.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from botdb.errors import ArgumentError, DeadlockError, PartitioningError
from botdb.models.snowflake import time_snowflake
from botdb.ops._common import Progress, quote_ident

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase
    from botdb.engine.connection import Connection
    from botdb.scheduler import Job, Scheduler

    class UpkeepDatabase(OpsDatabase, Protocol):
        """A Database with its scheduler."""

        @property
        def scheduler(self) -> Scheduler: ...


__all__ = [
    "INTERVALS",
    "JOB_KIND",
    "PARTITIONED_TABLES",
    "ensure_partitions",
    "parse_age",
    "partition_messages",
    "partitioning",
    "retention",
    "schedule_upkeep",
]

#: The message family, parents first, with the column each is partitioned by.
PARTITIONED_TABLES: Final = (
    ("messages", "id"),
    ("attachments", "message_id"),
    ("mentions", "message_id"),
    ("reactions", "message_id"),
    ("reaction_counts", "message_id"),
)
#: Partition widths.
INTERVALS: Final = ("month", "week")
#: The scheduler job kind of :func:`schedule_upkeep`.
JOB_KIND: Final = "botdb.partitions"

_NEW = "_new"
_IN_PROGRESS = "botdb: partitioning in progress"
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Below this id a message id is not a Discord snowflake (its time would be 2015-01-01).
_EPOCH: Final = datetime(2015, 1, 1, tzinfo=UTC)
_FIRST_SNOWFLAKE: Final = time_snowflake(datetime(2015, 1, 2, tzinfo=UTC))

_PARTITIONS = """SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(quote_ident($1)) ORDER BY c.relname"""
_COLUMNS = """SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(quote_ident($1))
    AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"""
_KEYS = """SELECT conname, contype::text AS contype, pg_get_constraintdef(oid) AS definition,
    ARRAY(SELECT a.attname FROM unnest(conkey) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns
    FROM pg_constraint WHERE conrelid = to_regclass(quote_ident($1)) AND contype IN ('p', 'u', 'f')
    ORDER BY contype DESC, conname"""
_INDEXES = """SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    WHERE x.indrelid = to_regclass(quote_ident($1))
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
    ORDER BY i.relname"""
_SEQUENCES = """SELECT s.relname AS sequence, a.attname AS column FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.refobjid = to_regclass(quote_ident($1)) AND d.deptype = 'a'"""
_CLONES = """SELECT c.conname AS name, p.conname AS parent FROM pg_constraint c
    JOIN pg_constraint p ON p.oid = c.conparentid
    WHERE c.contype = 'f' AND c.conrelid = to_regclass(quote_ident($1)) ORDER BY c.oid"""
_VIEWS = """SELECT DISTINCT v.oid::bigint AS oid, v.relname AS name, v.relkind::text AS kind,
    pg_get_viewdef(v.oid) AS definition
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
    WHERE d.classid = 'pg_rewrite'::regclass AND v.oid <> d.refobjid
    AND d.refobjid = ANY (SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t)
    ORDER BY 1"""
_VIEW_INDEXES = """SELECT pg_get_indexdef(x.indexrelid) AS definition FROM pg_index x
    WHERE x.indrelid = $1::bigint::oid"""
_FOREIGN_REFERRERS = """SELECT c.conrelid::regclass::text AS referrer, c.conname AS name
    FROM pg_constraint c WHERE c.contype = 'f'
    AND c.confrelid = ANY (SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t)
    AND NOT c.conrelid = ANY (SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t)"""


def parse_age(value: timedelta | str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` (or a timedelta) as a positive timedelta.

    Raises:
        ArgumentError: not such a string, or not positive.
    """
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, str) and (match := _AGE.match(value)):
        age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        raise ArgumentError(
            f"an age must look like 90d, 12h, 2w, 30m or 45s (or be a timedelta), got {value!r}"
        )
    if age <= timedelta(0):
        raise ArgumentError(f"an age must be positive, got {value!r}")
    return age


def _floor(moment: datetime, interval: str) -> datetime:
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if interval == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def _next(start: datetime, interval: str) -> datetime:
    if interval == "month":
        year, month = divmod(start.month, 12)
        return start.replace(year=start.year + year, month=month + 1)
    return start + timedelta(weeks=1)


def _check_interval(interval: str) -> None:
    if interval not in INTERVALS:
        raise ArgumentError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")


def _require_postgres(db: OpsDatabase, what: str) -> None:
    if db.backend != "postgresql":
        raise PartitioningError(
            f"{what}: partitioning is PostgreSQL's; SQLite has no partitioned tables "
            "(retention on SQLite deletes in batches: db.retention(...))"
        )


async def partitioning(db: OpsDatabase) -> dict[str, Any] | None:
    """How ``messages`` is partitioned: ``{"by", "interval", "partitions": [...]}``, or None
    when it is an ordinary table (always None on SQLite)."""
    if db.backend != "postgresql":
        return None
    async with db.acquire() as conn:
        return await _layout(conn)


async def _layout(conn: Connection) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT c.relkind::text AS kind FROM pg_class c WHERE c.oid = to_regclass('messages')"
    )
    if row is None or row["kind"] != "p":
        return None
    partitions = []
    for part in await conn.fetch(_PARTITIONS, "messages"):
        bound = _BOUND.search(part["bound"])
        partitions.append(
            {
                "name": part["name"],
                "from": int(bound.group(1)) if bound else None,
                "to": int(bound.group(2)) if bound else None,
            }
        )
    # The interval is the width of the ranges (a week of snowflakes, or 28-31 days).
    widths = [p["to"] - p["from"] for p in partitions if p["from"] is not None]
    week = time_snowflake(_EPOCH + timedelta(weeks=1))
    interval = "week" if widths and min(widths) <= week else "month"
    return {"by": "id", "interval": interval, "partitions": partitions}


def _partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


async def _create_range(
    conn: Connection, start: datetime, interval: str, *, parent_suffix: str = ""
) -> str:
    """One partition per family table for the ids of ``[start, next(start))``."""
    low, high = time_snowflake(start), time_snowflake(_next(start, interval))
    for table, _ in PARTITIONED_TABLES:
        await conn.execute(
            f"CREATE TABLE {quote_ident(_partition_name(table, start))} "
            f"PARTITION OF {quote_ident(table + parent_suffix)} "
            f"FOR VALUES FROM ({low}) TO ({high})"
        )
    return _partition_name("messages", start)


async def partition_messages(
    db: OpsDatabase,
    *,
    by: str = "id",
    interval: str = "month",
    ahead: int = 3,
    batch_size: int = 10_000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make the message family range-partitioned by message id (PostgreSQL), moving the data
    online in batches (see the module's docstring for how and why by id).

    Args:
        db: a connected Database on PostgreSQL.
        by: the partition key; only ``"id"`` (snowflake range) is possible, see above.
        interval: ``"month"`` or ``"week"`` per partition.
        ahead: partitions made beyond the current one (more are made by ``botdb optimize``).
        batch_size: rows copied per transaction.
        progress: ``progress(phase, done, total)``: ``"copy <table>"`` with the rows copied
            of the table's estimated rows, after each batch; then ``"swap"``.

    Returns:
        ``{"converted": bool, "by", "interval", "partitions": [names], "rows": {table: n},
        "took"}``; ``converted`` is False when ``messages`` was already partitioned.

    Raises:
        PartitioningError: SQLite; ``by="created_at"``; ids that are not snowflakes; a table
            outside the family has a foreign key to it. Nothing was changed.
        ArgumentError: a bad ``interval``, ``ahead`` or ``batch_size``.
    """
    _require_postgres(db, "cannot partition messages")
    if by == "created_at":
        raise PartitioningError(
            "cannot partition messages by created_at: PostgreSQL needs the partition key in "
            "every unique key, and (id, guild_id) must stay unique for the recorder's upserts "
            "and the children's foreign keys; partition by id (snowflake range) instead"
        )
    if by != "id":
        raise ArgumentError(f"by must be 'id' or 'created_at', got {by!r}")
    _check_interval(interval)
    if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= 120:
        raise ArgumentError(f"ahead must be an int from 0 to 120, got {ahead!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    started = time.perf_counter()
    names = [table for table, _ in PARTITIONED_TABLES]
    report: dict[str, Any] = {"converted": False, "by": by, "interval": interval}
    async with db.acquire() as conn:
        layout = await _layout(conn)
        if layout is not None:
            report["partitions"] = [p["name"] for p in layout["partitions"]]
            report["took"] = round(time.perf_counter() - started, 3)
            return report
        for table in names:
            if await conn.fetchval("SELECT to_regclass(quote_ident($1))", table) is None:
                raise PartitioningError(f"cannot partition messages: no table {table}")
        referrers = await conn.fetch(_FOREIGN_REFERRERS, names)
        if referrers:
            listed = ", ".join(f"{r['referrer']} ({r['name']})" for r in referrers)
            raise PartitioningError(
                f"cannot partition messages: foreign keys of other tables point at it: {listed}"
            )
        if await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE id < $1)", _FIRST_SNOWFLAKE
        ):
            raise PartitioningError(
                "cannot partition messages by id: it holds ids that are not Discord snowflakes "
                "(Telegram message ids carry no time); delete old rows with db.retention() instead"
            )
        await _drop_leftovers(conn)
    try:
        async with db.acquire() as conn:
            columns = {table: list(await _columns(conn, table)) for table in names}
            keys = {t: await _new_tables(conn, t, key) for t, key in PARTITIONED_TABLES}
            report["partitions"] = await _initial_partitions(conn, interval, ahead)
        report["rows"] = {}
        for table, _ in PARTITIONED_TABLES:
            async with db.acquire() as conn:
                await _mirror(conn, table, columns[table], keys[table])
            report["rows"][table] = await _copy(
                db, table, columns[table], keys[table], batch_size, progress
            )
        if progress is not None:
            progress("swap", 0, None)
        async with db.transaction() as conn:
            await conn.execute("SET LOCAL statement_timeout = 0")
            await _swap(conn, names)
    except BaseException:
        # The old tables are intact until the swap commits: take the new ones and the
        # mirroring triggers away again so that the bot's writes cost what they did.
        async with db.acquire() as conn:
            await _drop_leftovers(conn)
        raise
    report["converted"] = True
    report["took"] = round(time.perf_counter() - started, 3)
    return report


async def _columns(conn: Connection, table: str) -> list[str]:
    return [row["attname"] for row in await conn.fetch(_COLUMNS, table)]


async def _drop_leftovers(conn: Connection) -> None:
    """What an interrupted conversion left behind (the old tables are intact); a table of
    the same name that the conversion did not make is refused, never dropped."""
    for table, _ in reversed(PARTITIONED_TABLES):
        await conn.execute(f"DROP TRIGGER IF EXISTS botdb_mirror ON {quote_ident(table)}")
        await conn.execute(f"DROP FUNCTION IF EXISTS {quote_ident('botdb_mirror_' + table)}()")
        comment = await conn.fetchrow(
            "SELECT obj_description(to_regclass(quote_ident($1)), 'pg_class') AS text",
            table + _NEW,
        )
        if await conn.fetchval("SELECT to_regclass(quote_ident($1))", table + _NEW) is None:
            continue
        if comment is None or comment["text"] != _IN_PROGRESS:
            raise PartitioningError(
                f"cannot partition messages: a table {table + _NEW} exists that botdb did not "
                "make; rename it first"
            )
        await conn.execute(f"DROP TABLE {quote_ident(table + _NEW)} CASCADE")


async def _new_tables(conn: Connection, table: str, key: str) -> list[str]:
    """``<table>_new``, partitioned by ``key``, with the old table's columns, defaults,
    checks, keys (``key`` added to the primary key where missing), foreign keys and indexes.
    Returns the new primary key's columns."""
    new = quote_ident(table + _NEW)
    await conn.execute(
        f"CREATE TABLE {new} (LIKE {quote_ident(table)} INCLUDING DEFAULTS "
        f"INCLUDING CONSTRAINTS INCLUDING GENERATED) PARTITION BY RANGE ({quote_ident(key)})"
    )
    await conn.execute(f"COMMENT ON TABLE {new} IS '{_IN_PROGRESS}'")
    primary: list[str] = []
    for constraint in await conn.fetch(_KEYS, table):
        name = quote_ident(constraint["conname"] + _NEW)
        cols = list(constraint["columns"])
        if constraint["contype"] == "f":
            definition = constraint["definition"]
            if " REFERENCES messages(" in definition:
                definition = definition.replace(
                    " REFERENCES messages(", f" REFERENCES messages{_NEW}("
                )
            foreign = quote_ident(constraint["conname"])
            await conn.execute(f"ALTER TABLE {new} ADD CONSTRAINT {foreign} {definition}")
            continue
        if key not in cols:
            cols.append(key)
        if constraint["contype"] == "p":
            primary = cols
        kind = "PRIMARY KEY" if constraint["contype"] == "p" else "UNIQUE"
        await conn.execute(
            f"ALTER TABLE {new} ADD CONSTRAINT {name} {kind} ({', '.join(map(quote_ident, cols))})"
        )
    for index in await conn.fetch(_INDEXES, table):
        definition = (
            index["definition"]
            .replace(
                f"INDEX {index['name']} ON public.{table} ",
                f"INDEX {quote_ident(index['name'] + _NEW)} ON {new} ",
            )
            .replace(
                f"INDEX {index['name']} ON {table} ",
                f"INDEX {quote_ident(index['name'] + _NEW)} ON {new} ",
            )
        )
        if _NEW not in definition:
            raise PartitioningError(f"cannot copy index {index['name']}: {index['definition']}")
        await conn.execute(definition)
    return primary


async def _initial_partitions(conn: Connection, interval: str, ahead: int) -> list[str]:
    """Partitions for every interval that holds messages (walked on the key's index), the
    current one and ``ahead`` more, and the DEFAULT partitions."""
    made: list[str] = []
    cursor = await conn.fetchval("SELECT min(id) FROM messages")
    now = _floor(datetime.now(UTC), interval)
    last = now
    for _ in range(ahead):
        last = _next(last, interval)
    while cursor is not None:
        start = _floor(_snowflake_time(cursor), interval)
        if start >= now:
            break
        made.append(await _create_range(conn, start, interval, parent_suffix=_NEW))
        cursor = await conn.fetchval(
            "SELECT min(id) FROM messages WHERE id >= $1", time_snowflake(_next(start, interval))
        )
    start = now
    while start <= last:
        made.append(await _create_range(conn, start, interval, parent_suffix=_NEW))
        start = _next(start, interval)
    for table, _ in PARTITIONED_TABLES:
        await conn.execute(
            f"CREATE TABLE {quote_ident(table + '_default')} "
            f"PARTITION OF {quote_ident(table + _NEW)} DEFAULT"
        )
    return made


def _snowflake_time(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value >> 22)


async def _mirror(conn: Connection, table: str, columns: list[str], key: list[str]) -> None:
    """A trigger on the old table repeating every write on the new one."""
    new = quote_ident(table + _NEW)
    cols = ", ".join(map(quote_ident, columns))
    values = ", ".join(f"NEW.{quote_ident(c)}" for c in columns)
    updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns)
    matches = " AND ".join(f"{quote_ident(c)} = OLD.{quote_ident(c)}" for c in key)
    moved = " OR ".join(f"OLD.{quote_ident(c)} IS DISTINCT FROM NEW.{quote_ident(c)}" for c in key)
    function = quote_ident("botdb_mirror_" + table)
    await conn.execute(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
        f"IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND ({moved})) THEN "
        f"DELETE FROM {new} WHERE {matches}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN INSERT INTO {new} ({cols}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(map(quote_ident, key))}) DO UPDATE SET {updates}; END IF; "
        "RETURN NULL; END $f$"
    )
    await conn.execute(
        f"CREATE TRIGGER botdb_mirror AFTER INSERT OR UPDATE OR DELETE ON {quote_ident(table)} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


async def _copy(
    db: OpsDatabase,
    table: str,
    columns: list[str],
    key: list[str],
    batch_size: int,
    progress: Progress | None,
) -> int:
    """Copy the old rows in keyset batches (one transaction each); rows the trigger already
    mirrored are newer and kept. ``progress("copy <table>", rows copied, estimated rows)``
    after each batch: at 10M messages the copy of one table takes many minutes."""
    # The old table's key order (its own primary key, e.g. attachments' ``id``) walks its index.
    async with db.acquire() as conn:
        old_key = list(
            (
                await conn.fetchrow(
                    "SELECT ARRAY(SELECT a.attname FROM unnest(conkey) WITH ORDINALITY k(n, o) "
                    "JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n "
                    "ORDER BY k.o)::text[] AS columns FROM pg_constraint "
                    "WHERE conrelid = to_regclass(quote_ident($1)) AND contype = 'p'",
                    table,
                )
            )["columns"]
        )
        # The planner's estimate (no count(*) pass over a large table); -1 if never analyzed.
        estimate = await conn.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(quote_ident($1))",
            table,
        )
    cols = ", ".join(map(quote_ident, columns))
    order = ", ".join(map(quote_ident, old_key))
    last = ", ".join(f"last.{quote_ident(c)}" for c in old_key)
    descending = ", ".join(f"{quote_ident(c)} DESC" for c in old_key)
    params = ", ".join(f"${n + 2}" for n in range(len(old_key)))
    body = (
        f"ins AS (INSERT INTO {quote_ident(table + _NEW)} ({cols}) SELECT {cols} FROM batch "
        f"ON CONFLICT DO NOTHING) SELECT (SELECT count(*) FROM batch) AS n, {last} "
        f"FROM (SELECT {order} FROM batch ORDER BY {descending} LIMIT 1) AS last"
    )
    first = (
        f"WITH batch AS (SELECT {cols} FROM {quote_ident(table)} ORDER BY {order} "
        f"LIMIT $1 FOR SHARE), {body}"
    )
    following = (
        f"WITH batch AS (SELECT {cols} FROM {quote_ident(table)} WHERE ({order}) > ({params}) "
        f"ORDER BY {order} LIMIT $1 FOR SHARE), {body}"
    )
    copied = 0
    cursor: list[Any] | None = None
    phase = f"copy {table}"
    if progress is not None:
        progress(phase, 0, estimate if estimate > 0 else None)
    while True:
        async with db.transaction() as conn:
            if cursor is None:
                row = await conn.fetchrow(first, batch_size)
            else:
                row = await conn.fetchrow(following, batch_size, *cursor)
        if row is None:
            return copied
        copied += int(row["n"])
        cursor = [row[c] for c in old_key]
        if progress is not None:
            progress(phase, copied, max(copied, estimate) if estimate > 0 else None)
        if row["n"] < batch_size:
            return copied


async def _swap(conn: Connection, names: list[str]) -> None:
    """Replace the old tables by the new ones in the caller's transaction."""
    await conn.execute(f"LOCK TABLE {', '.join(map(quote_ident, names))} IN ACCESS EXCLUSIVE MODE")
    views = []
    for view in await conn.fetch(_VIEWS, names):
        indexes = [r["definition"] for r in await conn.fetch(_VIEW_INDEXES, view["oid"])]
        views.append((view, indexes))
    for view, _ in reversed(views):
        kind = "MATERIALIZED VIEW" if view["kind"] == "m" else "VIEW"
        await conn.execute(f"DROP {kind} {quote_ident(view['name'])}")
    sequences = {table: await conn.fetch(_SEQUENCES, table) for table in names}
    for table in names:
        for seq in sequences[table]:
            await conn.execute(f"ALTER SEQUENCE {quote_ident(seq['sequence'])} OWNED BY NONE")
    for table in reversed(names):
        await conn.execute(f"DROP TABLE {quote_ident(table)}")
        await conn.execute(f"DROP FUNCTION {quote_ident('botdb_mirror_' + table)}()")
    for table in names:
        new = table + _NEW
        await conn.execute(f"ALTER TABLE {quote_ident(new)} RENAME TO {quote_ident(table)}")
        await conn.execute(f"COMMENT ON TABLE {quote_ident(table)} IS NULL")
        for constraint in await conn.fetch(_KEYS, table):
            name = constraint["conname"]
            if constraint["contype"] != "f" and name.endswith(_NEW):
                await conn.execute(
                    f"ALTER TABLE {quote_ident(table)} RENAME CONSTRAINT {quote_ident(name)} "
                    f"TO {quote_ident(name[: -len(_NEW)])}"
                )
        for index in await conn.fetch(_INDEXES, table):
            name = index["name"]
            if name.endswith(_NEW):
                await conn.execute(
                    f"ALTER INDEX {quote_ident(name)} RENAME TO {quote_ident(name[: -len(_NEW)])}"
                )
        # PostgreSQL copies a foreign key to a partitioned table once per referenced
        # partition, named after the table as it was then (``attachments_new_…``): number
        # them after their parent key, as PostgreSQL names those made later.
        clones = await conn.fetch(_CLONES, table)
        for number, clone in enumerate(clones, start=1):
            await conn.execute(
                f"ALTER TABLE {quote_ident(table)} RENAME CONSTRAINT {quote_ident(clone['name'])} "
                f"TO {quote_ident(clone['parent'] + str(number))}"
            )
        for seq in sequences[table]:
            await conn.execute(
                f"ALTER SEQUENCE {quote_ident(seq['sequence'])} OWNED BY "
                f"{quote_ident(table)}.{quote_ident(seq['column'])}"
            )
    for view, indexes in views:
        kind = "MATERIALIZED VIEW" if view["kind"] == "m" else "VIEW"
        await conn.execute(f"CREATE {kind} {quote_ident(view['name'])} AS {view['definition']}")
        for index in indexes:
            await conn.execute(index)


async def ensure_partitions(
    db: OpsDatabase, *, ahead: int = 3, now: datetime | None = None
) -> dict[str, Any]:
    """Make the partitions of the next ``ahead`` intervals that do not exist yet (what
    ``botdb optimize`` runs). A range whose rows already went to the DEFAULT partition is
    skipped and reported (PostgreSQL cannot attach a range the default holds rows of).

    Returns:
        ``{"partitioned": bool, "created": [...], "skipped": [...]}``.
    """
    if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= 120:
        raise ArgumentError(f"ahead must be an int from 0 to 120, got {ahead!r}")
    report: dict[str, Any] = {"partitioned": False, "created": [], "skipped": []}
    if db.backend != "postgresql":
        return report
    async with db.transaction() as conn:
        layout = await _layout(conn)
        if layout is None:
            return report
        report["partitioned"] = True
        interval = layout["interval"]
        existing = {p["from"] for p in layout["partitions"]}
        start = _floor(now or datetime.now(UTC), interval)
        for _ in range(ahead + 1):
            low = time_snowflake(start)
            name = _partition_name("messages", start)
            if low not in existing:
                high = time_snowflake(_next(start, interval))
                held = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM messages_default WHERE id >= $1 AND id < $2)",
                    low,
                    high,
                )
                if held:
                    report["skipped"].append(name)
                else:
                    report["created"].append(await _create_range(conn, start, interval))
            start = _next(start, interval)
    return report


async def retention(
    db: OpsDatabase,
    older_than: timedelta | str,
    *,
    dry_run: bool = False,
    batch_size: int = 5_000,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Remove messages (and their attachments, mentions and reactions) older than a bound.

    Partitioned (PostgreSQL, see :func:`partition_messages`): every partition whose whole id
    range is older than ``now - older_than`` is detached and dropped, for each family table;
    no row is deleted one by one, and a partition straddling the bound is kept whole. The
    DEFAULT partition is never dropped: its rows older than the bound (a late import of old
    history) are deleted in batches, as below. Unpartitioned (either backend): the messages with
    ``created_at`` before the bound are deleted in batches of ``batch_size`` (one transaction
    each, walking the key's index); their children go with them (ON DELETE CASCADE).

    Args:
        db: a connected Database.
        older_than: ``"90d"``, ``"12h"``, ``"2w"`` … or a timedelta.
        dry_run: report what would go, change nothing.
        batch_size: rows deleted per transaction (unpartitioned).
        now: the reference time (default: now).

    Returns:
        ``{"mode": "partitions"|"delete", "cutoff", "dry_run", "dropped": [partition names]
        (partitions only), "deleted": n (rows deleted, or that would be), "took"}``.

    Raises:
        ArgumentError: a bad ``older_than`` or ``batch_size``; nothing changed.
    """
    age = parse_age(older_than)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ArgumentError("now must be an aware datetime")
    started = time.perf_counter()
    cutoff = (now or datetime.now(UTC)) - age
    report: dict[str, Any] = {
        "backend": db.backend,
        "cutoff": cutoff.isoformat(),
        "dry_run": dry_run,
    }
    layout = await partitioning(db)
    if layout is not None:
        report["mode"] = "partitions"
        report["dropped"] = await _drop_partitions(db, layout, cutoff, dry_run=dry_run)
        # Old rows that arrived after their partition went (a late import) sit in DEFAULT.
        report["deleted"] = await _delete_rows(
            db, cutoff, batch_size, dry_run=dry_run, table="messages_default"
        )
    else:
        report["mode"] = "delete"
        report["deleted"] = await _delete_rows(db, cutoff, batch_size, dry_run=dry_run)
    report["took"] = round(time.perf_counter() - started, 4)
    return report


async def _drop_partitions(
    db: OpsDatabase, layout: dict[str, Any], cutoff: datetime, *, dry_run: bool
) -> list[str]:
    if cutoff <= datetime(2015, 1, 1, tzinfo=UTC):
        return []
    bound = time_snowflake(cutoff)
    old = [p for p in layout["partitions"] if p["to"] is not None and p["to"] <= bound]
    if dry_run or not old:
        return [part["name"] for part in old]
    dropped: list[str] = []
    async with db.acquire() as conn:
        # Every family table's partitions in one round trip (a child may lack a range: one
        # dropped by hand, or made by an older botdb).
        existing = {
            row["name"]
            for row in await conn.fetch(
                "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = ANY (SELECT to_regclass(quote_ident(t)) "
                "FROM unnest($1::text[]) AS t)",
                [table for table, _ in PARTITIONED_TABLES],
            )
        }
    for part in old:
        suffix = part["name"][len("messages") :]
        # The family's parents are locked first, messages before its children as the
        # recorder writes them: taken table by table, a flush holding messages and waiting for
        # reactions deadlocked with retention holding reactions and waiting for messages.
        # The children's partitions are dropped, not detached: a detached child keeps its
        # foreign key as a table of its own, and PostgreSQL makes that key (its triggers and a
        # copy per partition of messages) only for DROP to remove it again, 20-50 ms a table.
        # The messages partition must be detached (its key is referenced: DROP refuses it);
        # its DETACH checks that no remaining child row refers to it, which reads the
        # children's remaining rows once. One statement batch, one transaction per range: a
        # writer waits for it once and sees either the whole range or none of it.
        statements = [
            "LOCK TABLE "
            + ", ".join(quote_ident(table) for table, _ in PARTITIONED_TABLES)
            + " IN ACCESS EXCLUSIVE MODE"
        ]
        statements += [
            f"DROP TABLE {quote_ident(table + suffix)}"
            for table, _ in reversed(PARTITIONED_TABLES[1:])
            if table + suffix in existing
        ]
        if part["name"] in existing:
            name = quote_ident(part["name"])
            statements += [f"ALTER TABLE messages DETACH PARTITION {name}", f"DROP TABLE {name}"]
        await _run_ddl(db, "; ".join(statements))
        dropped.append(part["name"])
    return dropped


async def _run_ddl(db: OpsDatabase, sql: str, attempts: int = 5) -> None:
    """Run ``sql`` in one transaction, again after a deadlock: a writer whose transaction
    touches a child before messages (a reaction to an old message: its foreign key check
    locks messages last) can still cross the locks; PostgreSQL aborts one of the two, the
    recorder retries its flush and retention its range."""
    for attempt in range(1, attempts + 1):
        try:
            async with db.transaction() as conn:
                await conn.execute(sql)
            return
        except DeadlockError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.05 * attempt)


async def _delete_rows(
    db: OpsDatabase, cutoff: datetime, batch_size: int, *, dry_run: bool, table: str = "messages"
) -> int:
    source = quote_ident(table)
    if dry_run:
        return int(
            await db.fetchval(f"SELECT count(*) FROM {source} WHERE created_at < $1", cutoff)
        )
    deleted = 0
    cursor: tuple[int, int] | None = None
    while True:
        async with db.transaction() as conn:
            if cursor is None:
                page = await conn.fetch(
                    f"SELECT id, guild_id, created_at < $1 AS old FROM {source} "
                    "ORDER BY id, guild_id LIMIT $2",
                    cutoff,
                    batch_size,
                )
            else:
                page = await conn.fetch(
                    f"SELECT id, guild_id, created_at < $1 AS old FROM {source} "
                    "WHERE (id, guild_id) > ($3, $4) ORDER BY id, guild_id LIMIT $2",
                    cutoff,
                    batch_size,
                    *cursor,
                )
            gone = [(row["id"], row["guild_id"]) for row in page if row["old"]]
            if gone:
                await conn.execute_many(
                    f"DELETE FROM {source} WHERE id = $1 AND guild_id = $2", gone
                )
        deleted += len(gone)
        if len(page) < batch_size:
            return deleted
        cursor = (page[-1]["id"], page[-1]["guild_id"])


async def schedule_upkeep(
    db: UpkeepDatabase,
    *,
    every: timedelta = timedelta(days=1),
    ahead: int = 3,
    older_than: timedelta | str | None = None,
) -> Job:
    """Keep the partitions made ahead (and, with ``older_than``, retention applied) by a
    recurring ``db.scheduler`` job of kind :data:`JOB_KIND`, in the processes that run the
    scheduler (``await db.scheduler.start()``); call it at start-up in each of them (the job
    is keyed: scheduling it again keeps the one job). On an unpartitioned database the job
    makes nothing and, with ``older_than``, deletes in batches.

    Raises:
        ArgumentError: a bad ``ahead`` or ``older_than``.
        SchedulingError: a bad ``every``.
    """
    if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= 120:
        raise ArgumentError(f"ahead must be an int from 0 to 120, got {ahead!r}")
    age = None if older_than is None else parse_age(older_than)

    async def upkeep(job: Job) -> None:
        await ensure_partitions(db, ahead=int(job.payload.get("ahead", ahead)))
        seconds = job.payload.get("older_than")
        if seconds is not None:
            await retention(db, timedelta(seconds=float(seconds)))

    db.scheduler.add_handler(JOB_KIND, upkeep)
    payload: dict[str, Any] = {"ahead": ahead}
    if age is not None:
        payload["older_than"] = age.total_seconds()
    return await db.scheduler.schedule(
        JOB_KIND, every=every, delay=0, key=JOB_KIND, payload=payload, misfire="skip"
    )
