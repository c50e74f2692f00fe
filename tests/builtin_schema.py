"""The built-in tables made once per run instead of once per test (fixtures in conftest.py).

Creating botdb's tables is the most expensive part of a test's setup: on PostgreSQL a fresh
``create_tables`` is ~90 DDL statements (~20x a ``create_tables`` that finds them all present),
on SQLite ~4x. A test that asks for them (through the ``builtin_tables`` fixture) starts
instead from a copy that is indistinguishable from a fresh one:

* SQLite: a file made once by ``create_tables`` and copied for each test.
* PostgreSQL: the run's database keeps the built-in schema between two such tests, but only
  when its catalog fingerprint equals that of a fresh ``create_tables`` (a test that added,
  dropped or altered anything gets the whole schema dropped, as before). What a test may
  have changed without touching the catalog is put back as a fresh schema has it: every
  table that was ever written is truncated (new, empty files), every used sequence restarts,
  materialized views are refreshed empty, and the planner statistics and cumulative counters
  of the schema's relations are cleared.

``CREATE DATABASE ... TEMPLATE`` was measured as the alternative: the copy is cheap, but each
``DROP DATABASE`` waits for a checkpoint of the whole shared server (seconds under load).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botdb

# Everything in the ``public`` schema that a DROP SCHEMA + create_tables would put back, as
# text without OIDs; its md5 tells the built-in schema from one a test changed.
FINGERPRINT = r"""
SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) FROM (
  SELECT concat_ws(' ', 'class', c.relname, c.relkind, c.relpersistence, c.reloptions::text,
         c.relispopulated, c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
         c.relacl::text, c.relowner::regrole::text, c.relispartition,
         pg_get_expr(c.relpartbound, c.oid), obj_description(c.oid, 'pg_class'))
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'column', c.relname, a.attnum, a.attname,
         format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
         a.attcollation, a.attstattarget, a.attstorage, pg_get_expr(d.adbin, d.adrelid),
         col_description(c.oid, a.attnum))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT concat_ws(' ', 'constraint', c.conrelid::regclass::text, c.contypid::regtype::text,
         c.conname, pg_get_constraintdef(c.oid), c.condeferrable, c.condeferred)
    FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'index', pg_get_indexdef(i.indexrelid), i.indisclustered,
         i.indisreplident, i.indisvalid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'trigger', CASE WHEN t.tgisinternal  -- named after OIDs
           THEN concat_ws(' ', c.relname, k.conname, t.tgtype, t.tgfoid::regproc::text)
           ELSE pg_get_triggerdef(t.oid) END, t.tgenabled)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    LEFT JOIN pg_constraint k ON k.oid = t.tgconstraint
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'rule', r.rulename, pg_get_ruledef(r.oid), r.ev_enabled)
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'routine', p.oid::regprocedure::text, p.prokind,
         CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END,
         p.proacl::text, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'type', t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod),
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
            FROM pg_enum e WHERE e.enumtypid = t.oid))
    FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'sequence', s.seqrelid::regclass::text, s.seqtypid, s.seqstart,
         s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
         (SELECT concat_ws('.', d.refobjid::regclass::text, d.refobjsubid) FROM pg_depend d
            WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'policy', p.polrelid::regclass::text, p.polname, p.polcmd,
         p.polpermissive, p.polroles::text, pg_get_expr(p.polqual, p.polrelid),
         pg_get_expr(p.polwithcheck, p.polrelid))
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'partitioned', p.partrelid::regclass::text,
         pg_get_partkeydef(p.partrelid))
    FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'inherits', i.inhrelid::regclass::text, i.inhparent::regclass::text,
         i.inhseqno)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'statistics', s.stxname, s.stxkind::text, s.stxkeys::text)
    FROM pg_statistic_ext s WHERE s.stxnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'extension', e.extname, e.extversion, e.extnamespace::regnamespace)
    FROM pg_extension e
  UNION ALL
  SELECT concat_ws(' ', 'schema', n.nspname, n.nspowner::regrole::text, n.nspacl::text,
         obj_description(n.oid, 'pg_namespace'))
    FROM pg_namespace n WHERE n.nspname = 'public'
) AS parts(x)
"""

# The relations a test wrote to: a fresh table or materialized view over empty tables has no
# heap page; any row ever inserted, even rolled back, leaves one.
_WRITTEN = """
SELECT format('%I', c.relname) AS name, c.relkind::text AS relkind
  FROM pg_class c
  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
    AND pg_relation_size(c.oid) > 0
  ORDER BY c.relname
"""
# The planner's size estimates, which VACUUM, ANALYZE and TRUNCATE each leave differently.
_SIZES = """
SELECT relname, relpages, reltuples, relallvisible FROM pg_class
  WHERE relnamespace = 'public'::regnamespace ORDER BY relname
"""
_RESTORE_SIZES = """
UPDATE pg_catalog.pg_class c
  SET relpages = f.relpages, reltuples = f.reltuples, relallvisible = f.relallvisible
  FROM unnest($1::name[], $2::int[], $3::real[], $4::int[])
    AS f(relname, relpages, reltuples, relallvisible)
  WHERE c.relnamespace = 'public'::regnamespace AND c.relname = f.relname
    AND (c.relpages, c.reltuples, c.relallvisible)
        IS DISTINCT FROM (f.relpages, f.reltuples, f.relallvisible)
"""
_USED_SEQUENCES = """
SELECT format('%I', sequencename) AS name FROM pg_sequences
  WHERE schemaname = 'public' AND last_value IS NOT NULL
"""
_FORGET_STATISTICS = """
DELETE FROM pg_catalog.pg_statistic
  WHERE starelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace);
SELECT pg_stat_reset_single_table_counters(oid) FROM pg_class
  WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'm', 'p', 'i', 'I');
"""


@dataclass(frozen=True)
class Fresh:
    """What a fresh built-in schema looks like: its catalog's md5 and its planner sizes."""

    fingerprint: str
    sizes: tuple[tuple[str, int, float, int], ...]
    #: Clearing the statistics takes a superuser; without one each test drops the schema.
    resettable: bool


async def fingerprint(conn: Any) -> str:
    """The md5 of ``public``'s catalog as :data:`FINGERPRINT` reads it (asyncpg connection)."""
    return str(await conn.fetchval(FINGERPRINT))


async def capture(conn: Any) -> Fresh:
    """Read a freshly made built-in schema (see :func:`make_builtin_schema`)."""
    sizes = tuple((r[0], r[1], r[2], r[3]) for r in await conn.fetch(_SIZES))
    superuser = await conn.fetchval("SELECT current_setting('is_superuser') = 'on'")
    return Fresh(await fingerprint(conn), sizes, bool(superuser))


async def make_builtin_schema(url: str) -> None:
    """Create the built-in tables in ``url``'s (empty) database, as the ``db`` fixture does."""
    async with botdb.connect(url) as db:
        await db.create_tables()


async def reset_data(conn: Any, fresh: Fresh) -> None:
    """Put an unchanged built-in schema (its fingerprint is ``fresh``'s) back to ``fresh``."""
    written = await conn.fetch(_WRITTEN)
    async with conn.transaction():
        tables = [row["name"] for row in written if row["relkind"] == "r"]
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        for row in await conn.fetch(_USED_SEQUENCES):
            await conn.execute(f"ALTER SEQUENCE {row['name']} RESTART")
        # After the truncation the views' queries see empty tables, as at creation.
        for row in written:
            if row["relkind"] == "m":
                await conn.execute(f"REFRESH MATERIALIZED VIEW {row['name']}")
        await conn.execute(_FORGET_STATISTICS)
        columns = [[row[i] for row in fresh.sizes] for i in range(4)]
        await conn.execute(_RESTORE_SIZES, *columns)


def copy_sqlite_file(source: Path, target: Path) -> None:
    """Copy a closed SQLite database file (no ``-wal``/``-shm`` left beside it)."""
    for suffix in ("-wal", "-shm", "-journal"):
        if Path(f"{source}{suffix}").exists():
            raise AssertionError(f"{source} is not closed: {source}{suffix} exists")
    shutil.copyfile(source, target)
