"""botdb's portable PostgreSQL dump, used when pg_dump is not on PATH.

A gzip'd JSON-lines file, written from one REPEATABLE READ snapshot:

* ``{"botdb_dump": 1, "server_version": ...}`` — the header;
* ``{"ddl": "..."}`` — schemas, enum types, sequences, tables (columns, defaults, identity,
  generated columns), in creation order;
* ``{"copy": "<name>", "schema": ..., "table": ..., "columns": [...]}`` followed by
  ``{"data": "..."}`` lines — the table's rows in PostgreSQL's COPY text format, so every
  type round-trips exactly as the server prints it;
* ``{"post": "..."}`` — primary keys, unique/check/exclusion constraints, indexes, foreign
  keys, sequence ownership and positions, views and materialized views, extended statistics,
  per-column statistics targets, options and storage, replica identity, CLUSTER ON marks
  and comments;
* ``{"end": true, "rows": {...}}`` — the row counts; a file without it is incomplete.

It restores into an empty database in one transaction. It carries what bot schemas use,
including storage parameters (``WITH (fillfactor=…, autovacuum_…, toast.…)`` on tables,
indexes and materialized views), UNLOGGED tables and column collations; functions,
triggers, extensions other than plpgsql, domains, composite types, partitioned and
inherited tables, rules, row-level security, user collations and objects outside the
default tablespace are refused at backup time with :class:`BackupError` (use pg_dump):
nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from botdb.ops._common import BackupError, BackupVerificationError, Progress, quote_ident

__all__ = ["dump_logical", "restore_logical"]

DUMP_VERSION = 1
_USER_NS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)
_UNSUPPORTED = {
    "functions": f"""SELECT p.oid::regprocedure::text FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NS}
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "triggers": f"""SELECT t.tgname || ' on ' || c.relname FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {_USER_NS}""",
    "extensions": "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'",
    "types": f"""SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {_USER_NS} AND (t.typtype = 'd' OR (t.typtype = 'c' AND EXISTS (
            SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))""",
    "partitioned tables": f"""SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p' AND {_USER_NS}""",
    "inherited tables": f"""SELECT c.relname || ' inherits ' || p.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NS}""",
    "rules": f"""SELECT r.rulename || ' on ' || c.relname FROM pg_rewrite r
        JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN' AND {_USER_NS}""",
    "row-level security": f"""SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (c.relrowsecurity OR c.relforcerowsecurity
               OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)) AND {_USER_NS}""",
    "collations": f"""SELECT co.collname FROM pg_collation co
        JOIN pg_namespace n ON n.oid = co.collnamespace WHERE {_USER_NS}""",
    "tablespaces": f"""SELECT c.relname || ' in ' || t.spcname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_tablespace t ON t.oid = c.reltablespace
        WHERE c.reltablespace <> 0 AND c.relkind IN ('r', 'i', 'm', 'S') AND {_USER_NS}""",
}
_SCHEMAS = f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_NS} ORDER BY n.oid"
_ENUMS = f"""SELECT n.nspname AS schema, t.typname AS name,
    array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    JOIN pg_enum e ON e.enumtypid = t.oid WHERE {_USER_NS}
    GROUP BY n.nspname, t.typname, t.oid ORDER BY t.oid"""
_SEQUENCES = f"""SELECT n.nspname AS schema, c.relname AS name,
    format_type(s.seqtypid, NULL) AS type,
    s.seqstart, s.seqmin, s.seqmax, s.seqincrement, s.seqcycle, s.seqcache,
    pg_sequence_last_value(c.oid) AS last_value,
    (SELECT d.deptype::text FROM pg_depend d
       WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i') LIMIT 1) AS dep,
    (SELECT quote_ident(rn.nspname) || '.' || quote_ident(rc.relname) || '.'
            || quote_ident(a.attname)
       FROM pg_depend d JOIN pg_class rc ON rc.oid = d.refobjid
       JOIN pg_namespace rn ON rn.oid = rc.relnamespace
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
       WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') LIMIT 1) AS owner,
    (SELECT quote_ident(rn.nspname) || '.' || quote_ident(rc.relname) || '|' || a.attname
       FROM pg_depend d JOIN pg_class rc ON rc.oid = d.refobjid
       JOIN pg_namespace rn ON rn.oid = rc.relnamespace
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
       WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') LIMIT 1) AS owner_column
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NS} ORDER BY c.oid"""
_RELATIONS = f"""SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
    c.relispopulated AS populated, c.relpersistence::text AS persistence,
    c.reloptions AS options, tc.reloptions AS toast_options, c.relreplident::text AS replident,
    CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS definition
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
    WHERE c.relkind IN ('r', 'v', 'm') AND {_USER_NS} ORDER BY c.oid"""
_COLUMNS = """SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
    a.attidentity::text AS attidentity, a.attgenerated::text AS attgenerated,
    pg_get_expr(d.adbin, d.adrelid) AS default_expr,
    COALESCE(a.attstattarget, -1) AS stattarget, a.attoptions AS options,
    a.attstorage::text AS storage, t.typstorage::text AS type_storage,
    CASE WHEN a.attcollation <> t.typcollation THEN (
        SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co
        JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
    END AS collation
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""
_CONSTRAINTS = """SELECT conname, contype::text AS contype, pg_get_constraintdef(oid) AS definition,
    (SELECT i.reloptions FROM pg_class i WHERE i.oid = conindid) AS index_options
    FROM pg_constraint WHERE conrelid = $1 AND contype IN ('p', 'u', 'c', 'x', 'f')
    ORDER BY CASE contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3
    ELSE 4 END, conname"""
_INDEXES = """SELECT pg_get_indexdef(x.indexrelid) FROM pg_index x WHERE x.indrelid = $1
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid
                    AND c.conrelid = x.indrelid)
    ORDER BY x.indexrelid"""
_INDEX_MARKS = """SELECT quote_ident(i.relname) AS name, x.indisclustered, x.indisreplident
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1
    AND (x.indisclustered OR x.indisreplident) ORDER BY x.indexrelid"""
_STATISTICS = f"""SELECT pg_get_statisticsobjdef(s.oid) AS definition,
    quote_ident(n.nspname) || '.' || quote_ident(s.stxname) AS name,
    COALESCE(s.stxstattarget, -1) AS target
    FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
    WHERE {_USER_NS} ORDER BY s.oid"""
_COMMENTS = f"""SELECT 'COMMENT ON ' || CASE
        WHEN d.objsubid > 0 THEN 'COLUMN ' || quote_ident(n.nspname) || '.'
            || quote_ident(c.relname) || '.' || quote_ident(a.attname)
        ELSE CASE c.relkind WHEN 'r' THEN 'TABLE ' WHEN 'v' THEN 'VIEW '
            WHEN 'm' THEN 'MATERIALIZED VIEW ' WHEN 'i' THEN 'INDEX ' WHEN 'S' THEN 'SEQUENCE '
            END || quote_ident(n.nspname) || '.' || quote_ident(c.relname) END AS target,
    d.description
    FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
    WHERE d.classoid = 'pg_class'::regclass AND c.relkind IN ('r', 'v', 'm', 'i', 'S')
    AND {_USER_NS}
    UNION ALL
    SELECT 'COMMENT ON CONSTRAINT ' || quote_ident(o.conname) || ' ON '
        || quote_ident(n.nspname) || '.' || quote_ident(c.relname), d.description
    FROM pg_description d JOIN pg_constraint o ON o.oid = d.objoid
    JOIN pg_class c ON c.oid = o.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE d.classoid = 'pg_constraint'::regclass AND {_USER_NS}
    UNION ALL
    SELECT 'COMMENT ON TYPE ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
        d.description
    FROM pg_description d JOIN pg_type t ON t.oid = d.objoid
    JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE d.classoid = 'pg_type'::regclass AND {_USER_NS}
    UNION ALL
    SELECT 'COMMENT ON SCHEMA ' || quote_ident(n.nspname), d.description
    FROM pg_description d JOIN pg_namespace n ON n.oid = d.objoid
    WHERE d.classoid = 'pg_namespace'::regclass AND n.nspname <> 'public' AND {_USER_NS}"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _line(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry) + b"\n"


class _Writer:
    """Buffers lines and writes them to the gzip file in a worker thread, 256 KiB at a time."""

    def __init__(self, handle: gzip.GzipFile) -> None:
        self._handle = handle
        self._buffer: list[bytes] = []
        self._size = 0

    async def write(self, entry: dict[str, Any]) -> None:
        data = _line(entry)
        self._buffer.append(data)
        self._size += len(data)
        if self._size >= 1 << 18:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer, self._size = b"".join(self._buffer), [], 0
            await asyncio.to_thread(self._handle.write, chunk)


async def _check_supported(conn: Any) -> None:
    found = []
    for kind, query in _UNSUPPORTED.items():
        names = [r[0] for r in await conn.fetch(query)]
        if names:
            found.append(f"{kind}: {', '.join(names[:5])}")
    if found:
        raise BackupError(
            "botdb's portable dump cannot carry " + "; ".join(found) + ". Install the "
            "PostgreSQL client tools so that pg_dump is on PATH (method='pg_dump')"
        )


def _column_sql(col: Any) -> str:
    sql = f"{quote_ident(col['attname'])} {col['type']}"
    if col["attidentity"]:
        sql += " GENERATED " + ("ALWAYS" if col["attidentity"] == "a" else "BY DEFAULT")
        sql += " AS IDENTITY"
    elif col["attgenerated"]:
        sql += f" GENERATED ALWAYS AS ({col['default_expr']}) STORED"
    elif col["default_expr"] is not None:
        sql += f" DEFAULT {col['default_expr']}"
    if col["collation"] is not None:
        sql += f" COLLATE {col['collation']}"
    if col["attnotnull"]:
        sql += " NOT NULL"
    return sql


def _with(options: list[str] | None, toast: list[str] | None = None) -> str:
    """`` WITH (name=value, ...)`` for a relation's storage parameters, or ``""``."""
    items = [_option(o) for o in options or ()] + [_option(o, "toast.") for o in toast or ()]
    return f" WITH ({', '.join(items)})" if items else ""


def _option(option: str, prefix: str = "") -> str:
    name, _, value = option.partition("=")
    return f"{prefix}{name}={_literal(value)}"


_COLUMN_OPTIONS = frozenset({"n_distinct", "n_distinct_inherited"})


def _column_settings(name: str, columns: list[Any], kind: str = "TABLE") -> list[str]:
    """ALTER statements for per-column statistics targets, options and storage."""
    statements = []
    for col in columns:
        alter = f"ALTER {kind} {name} ALTER COLUMN {quote_ident(col['attname'])}"
        if col["stattarget"] >= 0:
            statements.append(f"{alter} SET STATISTICS {col['stattarget']}")
        # Only these two can be set with SQL; anything else in attoptions is the server's own.
        options = [o for o in col["options"] or () if o.partition("=")[0] in _COLUMN_OPTIONS]
        if options:
            statements.append(f"{alter} SET ({', '.join(_option(o) for o in options)})")
        if col["storage"] != col["type_storage"]:
            storage = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}
            statements.append(f"{alter} SET STORAGE {storage[col['storage']]}")
    return statements


async def dump_logical(
    conn: Any, out: Path, rows: dict[str, int], *, progress: Progress | None = None
) -> None:
    """Write the portable dump of ``conn``'s database to ``out`` (already created, 0600).

    ``conn`` is an asyncpg connection inside a REPEATABLE READ transaction; ``rows`` are the
    row counts taken in that transaction.
    """
    from botdb.ops.info import pg_table_key

    await _check_supported(conn)
    handle = await asyncio.to_thread(gzip.open, out, "wb", 6)
    try:
        writer = _Writer(handle)
        version = await conn.fetchval("SHOW server_version")
        await writer.write({"botdb_dump": DUMP_VERSION, "server_version": version})
        for row in await conn.fetch(_SCHEMAS):
            if row[0] != "public":
                await writer.write({"ddl": f"CREATE SCHEMA IF NOT EXISTS {quote_ident(row[0])}"})
        for row in await conn.fetch(_ENUMS):
            labels = ", ".join(_literal(label) for label in row["labels"])
            name = f"{quote_ident(row['schema'])}.{quote_ident(row['name'])}"
            await writer.write({"ddl": f"CREATE TYPE {name} AS ENUM ({labels})"})
        post: list[str] = []
        sequences = await conn.fetch(_SEQUENCES)
        for seq in sequences:
            name = f"{quote_ident(seq['schema'])}.{quote_ident(seq['name'])}"
            if seq["dep"] != "i":  # identity sequences come with their column
                await writer.write(
                    {
                        "ddl": f"CREATE SEQUENCE {name} AS {seq['type']} "
                        f"INCREMENT BY {seq['seqincrement']} MINVALUE {seq['seqmin']} "
                        f"MAXVALUE {seq['seqmax']} START WITH {seq['seqstart']} "
                        f"CACHE {seq['seqcache']} {'' if seq['seqcycle'] else 'NO '}CYCLE"
                    }
                )
                if seq["dep"] == "a":
                    post.append(f"ALTER SEQUENCE {name} OWNED BY {seq['owner']}")
            if seq["last_value"] is not None:
                target = _literal(name)
                if seq["dep"] == "i":
                    table, _, column = seq["owner_column"].partition("|")
                    target = f"pg_get_serial_sequence({_literal(table)}, {_literal(column)})"
                post.append(f"SELECT setval({target}, {seq['last_value']}, true)")
        relations = await conn.fetch(_RELATIONS)
        tables = [r for r in relations if r["relkind"] == "r"]
        for number, rel in enumerate(tables):
            name = f"{quote_ident(rel['schema'])}.{quote_ident(rel['name'])}"
            columns = await conn.fetch(_COLUMNS, rel["oid"])
            body = ",\n    ".join(_column_sql(c) for c in columns)
            unlogged = "UNLOGGED " if rel["persistence"] == "u" else ""
            storage = _with(rel["options"], rel["toast_options"])
            await writer.write({"ddl": f"CREATE {unlogged}TABLE {name} (\n    {body}\n){storage}"})
            post.extend(_column_settings(name, columns))
            copied = [c["attname"] for c in columns if not c["attgenerated"]]
            if progress is not None:
                progress(f"dump {rel['name']}", number, len(tables))
            await _copy_out(conn, writer, rel, copied, pg_table_key(rel["schema"], rel["name"]))
        foreign: list[str] = []
        for rel in tables:
            name = f"{quote_ident(rel['schema'])}.{quote_ident(rel['name'])}"
            for con in await conn.fetch(_CONSTRAINTS, rel["oid"]):
                statement = (
                    f"ALTER TABLE {name} ADD CONSTRAINT {quote_ident(con['conname'])} "
                    f"{con['definition']}"
                )
                if con["contype"] in ("p", "u"):  # the definition leaves the index's WITH out
                    statement += _with(con["index_options"])
                (foreign if con["contype"] == "f" else post).append(statement)
            post.extend(r[0] for r in await conn.fetch(_INDEXES, rel["oid"]))
            for mark in await conn.fetch(_INDEX_MARKS, rel["oid"]):
                if mark["indisclustered"]:
                    post.append(f"ALTER TABLE {name} CLUSTER ON {mark['name']}")
                if mark["indisreplident"]:
                    post.append(f"ALTER TABLE {name} REPLICA IDENTITY USING INDEX {mark['name']}")
            identity = {"n": "NOTHING", "f": "FULL"}.get(rel["replident"])
            if identity is not None:
                post.append(f"ALTER TABLE {name} REPLICA IDENTITY {identity}")
        post.extend(foreign)
        for rel in relations:
            if rel["relkind"] not in ("v", "m"):
                continue
            name = f"{quote_ident(rel['schema'])}.{quote_ident(rel['name'])}"
            definition = rel["definition"].rstrip().rstrip(";")
            options = _with(rel["options"])
            if rel["relkind"] == "v":
                post.append(f"CREATE VIEW {name}{options} AS {definition}")
            else:
                data = "WITH DATA" if rel["populated"] else "WITH NO DATA"
                options = _with(rel["options"], rel["toast_options"])
                post.append(f"CREATE MATERIALIZED VIEW {name}{options} AS {definition} {data}")
                post.extend(r[0] for r in await conn.fetch(_INDEXES, rel["oid"]))
                columns = await conn.fetch(_COLUMNS, rel["oid"])
                post.extend(_column_settings(name, columns, "MATERIALIZED VIEW"))
                post.extend(
                    f"ALTER MATERIALIZED VIEW {name} CLUSTER ON {mark['name']}"
                    for mark in await conn.fetch(_INDEX_MARKS, rel["oid"])
                    if mark["indisclustered"]
                )
        for stat in await conn.fetch(_STATISTICS):
            post.append(stat["definition"])
            if stat["target"] >= 0:
                post.append(f"ALTER STATISTICS {stat['name']} SET STATISTICS {stat['target']}")
        post.extend(
            f"{comment['target']} IS {_literal(comment['description'])}"
            for comment in await conn.fetch(_COMMENTS)
        )
        for statement in post:
            await writer.write({"post": statement})
        await writer.write({"end": True, "rows": rows})
        await writer.flush()
    finally:
        await asyncio.to_thread(handle.close)


async def _copy_out(conn: Any, writer: _Writer, rel: Any, columns: list[str], key: str) -> None:
    await writer.write(
        {"copy": key, "schema": rel["schema"], "table": rel["name"], "columns": columns}
    )
    pending = b""

    async def sink(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            await writer.write({"data": pending[:cut].decode()})
            pending = pending[cut:]

    await conn.copy_from_table(
        rel["name"], schema_name=rel["schema"], columns=columns, output=sink, format="text"
    )
    if pending:
        await writer.write({"data": pending.decode()})


class _Reader:
    """Parsed entries of a dump, read from the gzip file in a worker thread in batches."""

    def __init__(self, handle: gzip.GzipFile) -> None:
        self._handle = handle
        self._batch: list[dict[str, Any]] = []
        self._done = False

    def _fill(self) -> list[dict[str, Any]]:
        batch = []
        try:
            for _ in range(64):
                line = self._handle.readline()
                if not line:
                    break
                batch.append(orjson.loads(line))
        except (OSError, EOFError, orjson.JSONDecodeError) as exc:
            raise BackupVerificationError(f"the dump is damaged: {exc}") from exc
        return batch

    async def peek(self) -> dict[str, Any] | None:
        if not self._batch and not self._done:
            batch = await asyncio.to_thread(self._fill)
            self._batch = list(reversed(batch))
            self._done = not batch
        return self._batch[-1] if self._batch else None

    async def next(self) -> dict[str, Any] | None:
        entry = await self.peek()
        if entry is not None:
            self._batch.pop()
        return entry


async def restore_logical(
    conn: Any, dump: Path, *, progress: Progress | None = None
) -> dict[str, int]:
    """Load a portable dump into ``conn``'s (empty) database in one transaction.

    Returns the row counts recorded at the end of the dump.

    Raises:
        BackupVerificationError: the file is not a complete botdb dump.
    """
    handle = await asyncio.to_thread(gzip.open, dump, "rb")
    try:
        reader = _Reader(handle)
        header = await reader.next()
        if not header or header.get("botdb_dump") != DUMP_VERSION:
            raise BackupVerificationError(f"{dump.name} is not a botdb portable dump")
        async with conn.transaction():
            while (entry := await reader.next()) is not None:
                if "ddl" in entry or "post" in entry:
                    await conn.execute(entry.get("ddl") or entry["post"])
                elif "copy" in entry:
                    if progress is not None:
                        progress(f"load {entry['copy']}", 0, None)
                    await conn.copy_to_table(
                        entry["table"],
                        schema_name=entry["schema"],
                        columns=entry["columns"],
                        source=_data(reader),
                        format="text",
                    )
                elif entry.get("end"):
                    rows: dict[str, int] = entry["rows"]
                    return rows
                else:
                    raise BackupVerificationError(f"unexpected entry in {dump.name}: {entry}")
            raise BackupVerificationError(f"{dump.name} ends early: the dump is incomplete")
    finally:
        await asyncio.to_thread(handle.close)


async def _data(reader: _Reader) -> AsyncIterator[bytes]:
    while (entry := await reader.peek()) is not None and "data" in entry:
        await reader.next()
        yield entry["data"].encode()
