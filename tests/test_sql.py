"""botdb.engine.sql: PostgreSQL-dialect SQL translated for SQLite, and statement classification.

Translation tests pin the SQL produced; execution tests run it on a real in-memory sqlite3
connection (with ``PRAGMA case_sensitive_like=ON``, as the engine sets) to show the results
match PostgreSQL's.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from botdb.engine.sql import (
    NOW_SQL,
    is_read_only,
    needs_reset,
    statement_kind,
    status_tag,
    translate_for_sqlite,
    translate_script_for_sqlite,
)
from botdb.errors import ArgumentError, SQLSyntaxError, UnsupportedSQLError

TS = "%Y-%m-%d %H:%M:%S.%f"  # how botdb binds datetimes on SQLite


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA case_sensitive_like=ON")
    yield connection
    connection.close()


def sql(query: str) -> str:
    return translate_for_sqlite(query).sql


def run(conn: sqlite3.Connection, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Translate, bind as the engine does (lists for = ANY as JSON) and fetch all rows."""
    q = translate_for_sqlite(query)
    assert q.param_count == len(args)
    params = [json.dumps(a) if i in q.json_params else a for i, a in enumerate(args)]
    return conn.execute(q.sql, params).fetchall()


def one(conn: sqlite3.Connection, query: str, *args: Any) -> Any:
    return run(conn, query, *args)[0][0]


def rejects(query: str, construct: str) -> None:
    with pytest.raises(UnsupportedSQLError) as info:
        translate_for_sqlite(query)
    assert construct.lower() in info.value.construct.lower()


# --------------------------------------------------------------------------------------------
# Placeholders and the lexer
# --------------------------------------------------------------------------------------------


class TestPlaceholders:
    def test_dollar_n_becomes_numbered_parameter(self) -> None:
        q = translate_for_sqlite("SELECT * FROM t WHERE a = $1 AND b = $2")
        assert q.sql == "SELECT * FROM t WHERE a = ?1 AND b = ?2"
        assert q.param_count == 2
        assert q.json_params == frozenset()

    def test_ten_is_not_one_followed_by_zero(self) -> None:
        q = translate_for_sqlite("SELECT $10, $1")
        assert q.sql == "SELECT ?10, ?1"
        assert q.param_count == 10

    def test_repeated_placeholder_binds_once(self, conn: sqlite3.Connection) -> None:
        assert sql("SELECT $1, $1 + $2") == "SELECT ?1, ?1 + ?2"
        assert run(conn, "SELECT $1, $1 + $2", 5, 1) == [(5, 6)]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("SELECT $1+1", "SELECT ?1+1"),
            ("SELECT $1-$2", "SELECT ?1-?2"),
            ("SELECT ($1)*2", "SELECT (?1)*2"),
            ("SELECT $1||$2", "SELECT ?1||?2"),
            ("SELECT $1::int", "SELECT CAST(?1 AS INTEGER)"),
            ("SELECT 1 WHERE 2<>-$1", "SELECT 1 WHERE 2<>-?1"),
        ],
    )
    def test_placeholder_next_to_operators(self, query: str, expected: str) -> None:
        assert sql(query) == expected

    def test_placeholder_arithmetic_runs(self, conn: sqlite3.Connection) -> None:
        assert run(conn, "SELECT $1+1, $1-$2, $1::int*2", 3, 1) == [(4, 2, 6)]

    @pytest.mark.parametrize(
        "query",
        [
            "SELECT 'it''s $1 -- not a comment'",
            "SELECT 'NOW() ILIKE INTERVAL ''1 day'''",
            'SELECT 1 AS "col$1", 2 AS "a""$2"',
            "SELECT 1 -- $1 and NOW()\n",
            "SELECT 1 /* $1 ::int */",
            "SELECT x'00ff'",
        ],
    )
    def test_literals_identifiers_and_comments_untouched(self, query: str) -> None:
        q = translate_for_sqlite(query)
        assert q.sql == query
        assert q.param_count == 0

    def test_unquoted_identifier_may_contain_dollar(self) -> None:
        assert sql("SELECT col$1 FROM t WHERE x = $1") == "SELECT col$1 FROM t WHERE x = ?1"

    def test_nested_block_comment_is_one_comment(self, conn: sqlite3.Connection) -> None:
        q = translate_for_sqlite("SELECT /* a /* $1 */ still comment */ 7")
        assert q.param_count == 0
        assert run(conn, "SELECT /* a /* $1 */ still comment */ 7") == [(7,)]

    def test_e_string_escapes_decoded_to_standard_literal(self, conn: sqlite3.Connection) -> None:
        assert sql(r"SELECT E'it\'s $1\n'") == "SELECT 'it''s $1\n'"
        assert one(conn, r"SELECT E'a\tb\\c\x41\u00e9'") == "a\tb\\cAé"

    def test_zero_placeholder_is_an_argument_error(self) -> None:
        with pytest.raises(ArgumentError):
            translate_for_sqlite("SELECT $0")

    @pytest.mark.parametrize("query", ["SELECT $$x$$", "SELECT $tag$ $1 $tag$"])
    def test_dollar_quoted_string_rejected(self, query: str) -> None:
        rejects(query, "dollar-quoted string")

    @pytest.mark.parametrize("query", ["SELECT 'abc", 'SELECT "abc', "SELECT 1 /* open"])
    def test_unterminated_literal_or_comment_is_syntax_error(self, query: str) -> None:
        with pytest.raises(SQLSyntaxError):
            translate_for_sqlite(query)

    def test_unary_tilde_is_bitwise_not(self, conn: sqlite3.Connection) -> None:
        assert one(conn, "SELECT ~5") == -6


# --------------------------------------------------------------------------------------------
# NOW() and INTERVAL
# --------------------------------------------------------------------------------------------


class TestNow:
    @pytest.mark.parametrize(
        "expr", ["NOW()", "now()", "CURRENT_TIMESTAMP", "LOCALTIMESTAMP", "transaction_timestamp()"]
    )
    def test_now_spellings_become_strftime(self, expr: str) -> None:
        assert sql(f"SELECT {expr}") == f"SELECT {NOW_SQL}"

    def test_column_named_now_untouched(self) -> None:
        assert sql("SELECT now, t.now FROM t") == "SELECT now, t.now FROM t"

    def test_now_is_utc_in_bound_datetime_format(self, conn: sqlite3.Connection) -> None:
        value = one(conn, "SELECT NOW()")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", value)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert abs(dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f") - now) < dt.timedelta(
            seconds=5
        )

    def test_default_now_in_ddl_runs(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE t (id INT, at TIMESTAMPTZ NOT NULL DEFAULT NOW())")
        run(conn, "INSERT INTO t (id) VALUES ($1)", 1)
        assert re.fullmatch(r"\d{4}-.*\.\d{3}", one(conn, "SELECT at FROM t"))


class TestInterval:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            (
                "SELECT NOW() - INTERVAL '1 DAY'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 days'))",
            ),
            (
                "SELECT m.created_at + INTERVAL '2 hours 30 minutes'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', m.created_at, '+9000 seconds'))",
            ),
            (
                "SELECT $1 - INTERVAL '1.5 days'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', ?1, '-1.5 days'))",
            ),
            (
                "SELECT \"at\" + INTERVAL '1 week -3 days 500 ms'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', \"at\", '+4 days', '+0.5 seconds'))",
            ),
            (
                "SELECT x + INTERVAL '5' MINUTE",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', x, '+300 seconds'))",
            ),
            (
                "SELECT x + INTERVAL '1 day ago'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', x, '-1 days'))",
            ),
            (
                "SELECT x - INTERVAL '01:30:15'",
                "SELECT (strftime('%Y-%m-%d %H:%M:%f', x, '-5415 seconds'))",
            ),
        ],
    )
    def test_interval_arithmetic_becomes_modifiers(self, query: str, expected: str) -> None:
        assert sql(query) == expected

    @pytest.mark.parametrize(
        ("interval", "delta"),
        [
            ("1 day", dt.timedelta(days=1)),
            ("2 hours 30 minutes", dt.timedelta(hours=2, minutes=30)),
            ("-90 sec", dt.timedelta(seconds=-90)),
            ("3 weeks", dt.timedelta(weeks=3)),
            ("1 d 2 h 3 min 4 s", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
            ("250 milliseconds", dt.timedelta(milliseconds=250)),
            ("0.5 hours", dt.timedelta(minutes=30)),
        ],
    )
    def test_interval_matches_python_arithmetic(
        self, conn: sqlite3.Connection, interval: str, delta: dt.timedelta
    ) -> None:
        start = dt.datetime(2024, 1, 1, 10, 0, 0, 123456)
        for op, expected in (("+", start + delta), ("-", start - delta)):
            got = one(
                conn, f"SELECT $1::timestamptz {op} INTERVAL '{interval}'", start.strftime(TS)
            )
            assert got == expected.strftime(TS)[:-3]  # SQLite's %f keeps milliseconds

    @pytest.mark.parametrize(
        ("start", "interval", "expected"),
        [
            ("2024-01-31 10:00:00", "+ INTERVAL '1 month'", "2024-02-29 10:00:00.000"),
            ("2024-03-31 10:00:00", "- INTERVAL '1 month'", "2024-02-29 10:00:00.000"),
            ("2024-02-29 08:00:00", "+ INTERVAL '1 year'", "2025-02-28 08:00:00.000"),
            ("2024-01-15 00:00:00", "+ INTERVAL '1 mon 1 day'", "2024-02-16 00:00:00.000"),
        ],
    )
    def test_month_arithmetic_clamps_like_postgresql(
        self, conn: sqlite3.Connection, start: str, interval: str, expected: str
    ) -> None:
        assert one(conn, f"SELECT $1 {interval}", start) == expected

    def test_now_minus_interval_filters_recent_rows(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE messages (id INTEGER, created_at TIMESTAMPTZ)")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for msg_id, age in ((1, dt.timedelta(days=2)), (2, dt.timedelta(hours=1))):
            run(conn, "INSERT INTO messages VALUES ($1, $2)", msg_id, (now - age).strftime(TS))
        recent = "SELECT id FROM messages WHERE created_at >= NOW() - INTERVAL '1 DAY'"
        assert run(conn, recent) == [(2,)]
        assert run(conn, "SELECT id FROM messages WHERE created_at < NOW() - INTERVAL '1 day'") == [
            (1,)
        ]

    def test_alias_after_interval_is_not_a_unit(self) -> None:
        assert sql("SELECT x - INTERVAL '1 day' d FROM t") == (
            "SELECT (strftime('%Y-%m-%d %H:%M:%f', x, '-1 days')) d FROM t"
        )

    def test_chained_intervals_apply_in_order(self, conn: sqlite3.Connection) -> None:
        query = "SELECT $1 + INTERVAL '1 day' - INTERVAL '1 hour'"
        assert one(conn, query, "2024-01-01 00:00:00") == "2024-01-01 23:00:00.000"

    @pytest.mark.parametrize(
        "query",
        [
            "SELECT NOW() - INTERVAL '1 day' * 3",
            "SELECT 3 * INTERVAL '1 day'",
            "SELECT INTERVAL '1 day'",
            "SELECT INTERVAL '1 day' + NOW()",
            "SELECT x + INTERVAL $1",
            "SELECT x + INTERVAL '2 fortnights'",
            "SELECT x + INTERVAL '1.5 months'",
            "SELECT x + INTERVAL '1 day'::interval",
        ],
    )
    def test_other_interval_uses_rejected(self, query: str) -> None:
        rejects(query, "INTERVAL")

    def test_column_named_interval_untouched(self) -> None:
        query = "SELECT interval, r.interval FROM reminders r WHERE interval > ?1"
        assert sql(query.replace("?", "$")) == query

    def test_interval_cast_rejected(self) -> None:
        rejects("SELECT NOW() - $1::interval", "::interval")


# --------------------------------------------------------------------------------------------
# ILIKE / LIKE
# --------------------------------------------------------------------------------------------


class TestLike:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("SELECT a ILIKE b", "SELECT lower(a) LIKE lower(b) ESCAPE '\\'"),
            ("SELECT a NOT ILIKE $1", "SELECT lower(a) NOT LIKE lower(?1) ESCAPE '\\'"),
            (
                "SELECT 1 FROM u WHERE u.name ILIKE '%' || $1 || '%'",
                "SELECT 1 FROM u WHERE lower(u.name) LIKE lower('%' || ?1 || '%') ESCAPE '\\'",
            ),
            (
                "SELECT coalesce(nick, name) ILIKE $1 ESCAPE '!'",
                "SELECT lower(coalesce(nick, name)) LIKE lower(?1) ESCAPE '!'",
            ),
            ("SELECT a LIKE $1", "SELECT a LIKE ?1 ESCAPE '\\'"),
        ],
    )
    def test_ilike_becomes_lower_like(self, query: str, expected: str) -> None:
        assert sql(query) == expected

    def test_ilike_is_case_insensitive_and_like_is_not(self, conn: sqlite3.Connection) -> None:
        assert one(conn, "SELECT 'Hello' ILIKE 'hel%'") == 1
        assert one(conn, "SELECT 'Hello' NOT ILIKE 'HEL%'") == 0
        assert one(conn, "SELECT 'Hello' LIKE 'hel%'") == 0
        assert one(conn, "SELECT 'Hello' LIKE 'Hel%'") == 1

    def test_like_backslash_escapes_as_in_postgresql(self, conn: sqlite3.Connection) -> None:
        assert one(conn, "SELECT 'a_b' LIKE $1", "a\\_b") == 1
        assert one(conn, "SELECT 'axb' LIKE $1", "a\\_b") == 0
        assert one(conn, "SELECT '50%' ILIKE '%0\\%'") == 1

    def test_ilike_search_in_table(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE u (name TEXT)")
        conn.executemany("INSERT INTO u VALUES (?)", [("Alice",), ("BOB",), ("carol",)])
        query = "SELECT name FROM u WHERE name ILIKE '%' || $1 || '%' ORDER BY name"
        assert run(conn, query, "O") == [("BOB",), ("carol",)]

    @pytest.mark.parametrize("query", ["SELECT a ILIKE ANY($1)", "SELECT a LIKE ANY($1)"])
    def test_like_any_rejected(self, query: str) -> None:
        rejects(query, "LIKE ANY")


# --------------------------------------------------------------------------------------------
# = ANY / <> ALL
# --------------------------------------------------------------------------------------------


class TestAnyAll:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("WHERE id = ANY($1)", "WHERE id IN (SELECT value FROM json_each(?1))"),
            ("WHERE id = ANY($2::bigint[])", "WHERE id IN (SELECT value FROM json_each(?2))"),
            ("WHERE id=SOME($1::text[])", "WHERE id IN (SELECT value FROM json_each(?1))"),
            ("WHERE id <> ALL($1)", "WHERE id NOT IN (SELECT value FROM json_each(?1))"),
            ("WHERE id != ALL ($1)", "WHERE id NOT IN (SELECT value FROM json_each(?1))"),
            ("WHERE id = ANY(SELECT x FROM y)", "WHERE id IN (SELECT x FROM y)"),
        ],
    )
    def test_any_all_become_json_each(self, query: str, expected: str) -> None:
        assert sql(f"SELECT 1 FROM t {query}") == f"SELECT 1 FROM t {expected}"

    def test_json_params_are_zero_based(self) -> None:
        q = translate_for_sqlite("SELECT 1 FROM t WHERE a = $1 AND b = ANY($2) AND c <> ALL($3)")
        assert q.json_params == frozenset({1, 2})
        assert q.param_count == 3

    def test_any_with_lists_of_ints_and_strings(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE t (id BIGINT, name TEXT)")
        rows = [(1, "a"), (2, "b"), (346842016480755724, "c")]
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
        query = "SELECT name FROM t WHERE id = ANY($1::bigint[]) ORDER BY name"
        assert run(conn, query, [1, 346842016480755724]) == [("a",), ("c",)]
        assert run(conn, "SELECT id FROM t WHERE name = ANY($1)", ["b", "zz"]) == [(2,)]
        assert run(conn, "SELECT id FROM t WHERE id = ANY($1)", []) == []
        assert run(conn, "SELECT name FROM t WHERE name <> ALL($1) ORDER BY 1", ["a"]) == [
            ("b",),
            ("c",),
        ]

    @pytest.mark.parametrize(
        ("query", "construct"),
        [
            ("SELECT 1 WHERE x > ANY($1)", "> ANY"),
            ("SELECT 1 WHERE x = ALL($1)", "= ALL"),
            ("SELECT 1 WHERE x = ANY(tags)", "ANY() over an expression"),
            ("SELECT 1 WHERE x = ANY($1 || $2)", "ANY() over an expression"),
            ("SELECT 1 WHERE x = ANY(ARRAY[1, 2])", "ANY() over an expression"),
        ],
    )
    def test_other_any_all_rejected(self, query: str, construct: str) -> None:
        rejects(query, construct)


# --------------------------------------------------------------------------------------------
# Casts
# --------------------------------------------------------------------------------------------


class TestCasts:
    @pytest.mark.parametrize(
        ("expr", "expected"),
        [
            ("$1::int", "CAST(?1 AS INTEGER)"),
            ("$1::bigint", "CAST(?1 AS INTEGER)"),
            ("'7'::smallint", "CAST('7' AS INTEGER)"),
            ("x::text", "CAST(x AS TEXT)"),
            ("x::varchar(3)", "substr(CAST(x AS TEXT), 1, 3)"),
            ("x::character varying", "CAST(x AS TEXT)"),
            ("t.x::float8", "CAST(t.x AS REAL)"),
            ("x::double precision", "CAST(x AS REAL)"),
            ("x::numeric", "CAST(x AS NUMERIC)"),
            ("x::numeric(10,2)", "round(CAST(x AS NUMERIC), 2)"),
            ("$1::timestamptz", "?1"),
            ("x::timestamp with time zone", "x"),
            ("'{}'::jsonb", "'{}'"),
            ("$1::json", "?1"),
            ("x::date", "date(x)"),
            ("'yes'::boolean", "1"),
            ("'f'::bool", "0"),
            ("x::bool", "(CAST(x AS INTEGER) <> 0)"),
            ("CAST($1 AS bigint)", "CAST(?1 AS INTEGER)"),
            ("CAST(a || b AS text)", "CAST((a || b) AS TEXT)"),
            ("x::text::int", "(CASE WHEN typeof(CAST(x AS TEXT)) = 'real'"),
            ("avg(x)::int", "(CASE WHEN typeof(avg(x)) = 'real' THEN CAST(round(avg(x))"),
            ("count(*)::int", "CAST(count(*) AS INTEGER)"),
            ("EXISTS (SELECT 1)::int", "CAST(EXISTS (SELECT 1) AS INTEGER)"),
        ],
    )
    def test_casts_map_to_sqlite_affinity(self, expr: str, expected: str) -> None:
        assert sql(f"SELECT {expr}").startswith(f"SELECT {expected}")

    @pytest.mark.parametrize(
        ("expr", "args", "expected"),
        [
            ("'42'::int + 1", (), 43),
            ("$1::int", ("12",), 12),
            ("2.5::int", (), 3),
            ("(-2.5)::integer", (), -3),
            ("$1::bigint", (346842016480755724,), 346842016480755724),
            ("'abcdef'::varchar(3)", (), "abc"),
            ("1.234::numeric(10,2)", (), 1.23),
            ("(7)::text", (), "7"),
            ("'2.5'::float", (), 2.5),
            ("'2024-05-06 10:11:12.123456'::date", (), "2024-05-06"),
            ("'true'::boolean", (), 1),
            ("CAST(3.7 AS int)", (), 4),
            ("$1::timestamptz", ("2024-01-01 00:00:00.000000",), "2024-01-01 00:00:00.000000"),
        ],
    )
    def test_cast_results_match_postgresql(
        self, conn: sqlite3.Connection, expr: str, args: tuple[Any, ...], expected: Any
    ) -> None:
        assert one(conn, f"SELECT {expr}", *args) == expected

    def test_cast_of_aggregate_rounds(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        assert run(conn, "SELECT avg(x)::int, count(*)::int FROM t") == [(2, 2)]

    @pytest.mark.parametrize(
        ("expr", "construct"),
        [
            ("'t'::regclass", "::regclass"),
            ("$1::uuid", "::uuid"),
            ("x::int[]", "::int[]"),
            ("$1::text[]", "::text[]"),
            ("CAST(x AS uuid)", "CAST(... AS uuid)"),
            ("'x'::bool", "::bool cast of 'x'"),
        ],
    )
    def test_unknown_and_array_casts_rejected(self, expr: str, construct: str) -> None:
        rejects(f"SELECT {expr}", construct)


# --------------------------------------------------------------------------------------------
# Other rewrites, DDL, pass-through and rejections
# --------------------------------------------------------------------------------------------


class TestRewrites:
    def test_is_distinct_from(self, conn: sqlite3.Connection) -> None:
        assert sql("SELECT a IS DISTINCT FROM b") == "SELECT a IS NOT b"
        assert sql("SELECT a IS NOT DISTINCT FROM $1") == "SELECT a IS ?1"
        assert run(conn, "SELECT NULL IS DISTINCT FROM NULL, 1 IS DISTINCT FROM NULL") == [(0, 1)]
        assert one(conn, "SELECT NULL IS NOT DISTINCT FROM NULL") == 1

    @pytest.mark.parametrize(
        "clause",
        [
            "FOR UPDATE",
            "FOR NO KEY UPDATE",
            "FOR SHARE",
            "FOR KEY SHARE",
            "FOR UPDATE OF j NOWAIT",
            "FOR UPDATE OF j, s.k SKIP LOCKED",
            "FOR UPDATE SKIP LOCKED",
            "FOR UPDATE FOR SHARE OF j",
        ],
    )
    def test_row_locking_clauses_removed(self, conn: sqlite3.Connection, clause: str) -> None:
        assert sql(f"SELECT id FROM j WHERE due {clause}") == "SELECT id FROM j WHERE due"
        run(conn, "CREATE TABLE j (id INTEGER, due INTEGER)")
        conn.execute("INSERT INTO j VALUES (1, 1)")
        sub = f"UPDATE j SET due = 0 WHERE id = (SELECT id FROM j WHERE due {clause} LIMIT 1)"
        assert run(conn, sub + " RETURNING id") == [(1,)]

    def test_typed_timestamp_literal_keeps_the_string(self) -> None:
        assert sql("SELECT TIMESTAMP '2024-01-01 10:00'") == "SELECT '2024-01-01 10:00'"
        assert sql("SELECT DATE '2024-01-01'") == "SELECT date('2024-01-01')"


class TestDDL:
    @pytest.mark.parametrize(
        ("column", "expected"),
        [
            ("id SERIAL PRIMARY KEY", "id INTEGER PRIMARY KEY AUTOINCREMENT"),
            ("id BIGSERIAL PRIMARY KEY", "id INTEGER PRIMARY KEY AUTOINCREMENT"),
            ("id bigserial NOT NULL PRIMARY KEY", "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT"),
            (
                "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "id INTEGER PRIMARY KEY AUTOINCREMENT",
            ),
            (
                "id BIGINT PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY (START WITH 5)",
                "id INTEGER PRIMARY KEY AUTOINCREMENT",
            ),
        ],
    )
    def test_auto_numbered_primary_keys(self, column: str, expected: str) -> None:
        got = sql(f"CREATE TABLE t ({column}, name TEXT)")
        assert re.sub(r"\s+,", ",", got) == f"CREATE TABLE t ({expected}, name TEXT)"

    def test_bigserial_table_numbers_rows(self, conn: sqlite3.Connection) -> None:
        run(
            conn,
            "CREATE TABLE IF NOT EXISTS users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,"
            " joined TIMESTAMPTZ DEFAULT NOW(), data JSONB DEFAULT '{}'::jsonb,"
            " is_bot BOOLEAN DEFAULT FALSE, score DOUBLE PRECISION, guild BIGINT)",
        )
        ids = [one(conn, "INSERT INTO users (name) VALUES ($1) RETURNING id", n) for n in "ab"]
        assert ids == [1, 2]
        assert run(conn, "SELECT data, is_bot FROM users WHERE id = 1") == [("{}", 0)]

    def test_serial_without_primary_key_rejected(self) -> None:
        rejects("CREATE TABLE t (n SERIAL, x INT)", "SERIAL without PRIMARY KEY")
        rejects("CREATE TABLE t (id INT GENERATED ALWAYS AS IDENTITY)", "without PRIMARY KEY")

    def test_column_named_serial_untouched(self) -> None:
        query = "CREATE TABLE t (serial TEXT, n INT GENERATED ALWAYS AS (1) STORED)"
        assert sql(query) == query
        assert sql("SELECT serial FROM t") == "SELECT serial FROM t"

    def test_create_index_concurrently(self) -> None:
        assert sql("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)") == (
            "CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)"
        )

    def test_array_column_rejected(self) -> None:
        rejects("CREATE TABLE t (tags TEXT[])", "array type")


class TestPassThrough:
    @pytest.mark.parametrize(
        "query",
        [
            "INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
            " RETURNING k, v",
            "INSERT INTO t (k) VALUES (?1) ON CONFLICT DO NOTHING",
            "SELECT data -> 'a', data ->> 'b' FROM t WHERE ok = TRUE AND bad = FALSE",
            "SELECT COALESCE(a, 0) FROM t ORDER BY a DESC NULLS LAST LIMIT 10 OFFSET 5",
            "SELECT count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b) FROM t",
            "CREATE TABLE t (a TIMESTAMP WITH TIME ZONE, b JSONB, c BIGINT, d BOOLEAN)",
        ],
    )
    def test_supported_sql_unchanged(self, query: str) -> None:
        assert sql(query.replace("?", "$")) == query

    def test_upsert_returning(self, conn: sqlite3.Connection) -> None:
        run(conn, "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        upsert = (
            "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE"
            " SET v = kv.v + excluded.v RETURNING k, v"
        )
        assert run(conn, upsert, "a", 1) == [("a", 1)]
        assert run(conn, upsert, "a", 5) == [("a", 6)]


class TestRejections:
    @pytest.mark.parametrize(
        ("query", "construct"),
        [
            ("SELECT DISTINCT ON (a) a, b FROM t", "DISTINCT ON"),
            ("SELECT ARRAY[1, 2]", "ARRAY"),
            ("SELECT ARRAY(SELECT 1)", "ARRAY"),
            ("SELECT * FROM t, LATERAL (SELECT 1) s", "LATERAL"),
            ("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pk DO NOTHING", "ON CONSTRAINT"),
            ("SELECT 'a' SIMILAR TO 'a'", "SIMILAR TO"),
            ("SELECT 'a' ~ 'a'", "regular expression"),
            ("SELECT 'a' ~* 'a'", "regular expression"),
            ("SELECT 'a' !~ 'a'", "regular expression"),
            ("SELECT 'a' !~* 'a'", "regular expression"),
            ("LISTEN jobs", "LISTEN"),
            ("NOTIFY jobs, 'x'", "NOTIFY"),
            ("COPY t FROM STDIN", "COPY"),
            ("SELECT tags @> $1 FROM t", "containment"),
            ("SELECT tags <@ $1 FROM t", "containment"),
            ("SELECT data ? 'k' FROM t", "jsonb operator"),
            ("SELECT tags[1] FROM t", "array type or subscript"),
            ("SELECT U&'d\\0061t'", "U&"),
        ],
    )
    def test_postgresql_only_constructs_rejected(self, query: str, construct: str) -> None:
        rejects(query, construct)


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


class TestScript:
    def test_script_translates_every_statement(self, conn: sqlite3.Connection) -> None:
        script = """
            CREATE TABLE logs (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ DEFAULT NOW(), n INT);
            CREATE INDEX CONCURRENTLY idx_logs_at ON logs (at);
            CREATE TRIGGER t AFTER INSERT ON logs FOR EACH ROW BEGIN
                UPDATE logs SET n = 1 WHERE id = NEW.id;
            END;
            INSERT INTO logs (n) VALUES (0);
        """
        conn.executescript(translate_script_for_sqlite(script))
        assert conn.execute("SELECT id, n FROM logs").fetchall() == [(1, 1)]

    def test_placeholder_in_script_rejected(self) -> None:
        with pytest.raises(UnsupportedSQLError, match=r"\$1"):
            translate_script_for_sqlite("SELECT 1; SELECT $1;")


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("  select 1", "SELECT"),
        ("-- hi\n/* c */ ((SELECT 1))", "SELECT"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT"),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r", "SELECT"),
        ("WITH a AS (DELETE FROM t RETURNING *), b AS (SELECT 1) UPDATE u SET x = 1", "UPDATE"),
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        ("create unique index i on t (a)", "CREATE INDEX"),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
            "CREATE FUNCTION",
        ),
        ("CREATE MATERIALIZED VIEW v AS SELECT 1", "CREATE MATERIALIZED VIEW"),
        ("DROP TABLE IF EXISTS t", "DROP TABLE"),
        ("ALTER TABLE t ADD COLUMN b INT", "ALTER TABLE"),
        ("VALUES (1)", "VALUES"),
        ("begin", "BEGIN"),
        ("", ""),
    ],
)
def test_statement_kind(query: str, kind: str) -> None:
    assert statement_kind(query) == kind


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM t", True),
        ("SELECT * FROM jobs FOR UPDATE SKIP LOCKED", True),
        ("VALUES (1)", True),
        ("SHOW server_version", True),
        ("EXPLAIN DELETE FROM t", True),
        ("EXPLAIN ANALYZE DELETE FROM t", False),
        ("EXPLAIN ANALYZE SELECT 1", True),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", False),
        ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", False),
        ("SELECT * INTO t2 FROM t", False),
        ("SELECT nextval('s')", False),
        ("INSERT INTO t VALUES (1) RETURNING id", False),
        ("UPDATE t SET a = 1", False),
        ("SELECT 'DELETE FROM t'", True),
        ("CREATE TABLE t (a INT)", False),
    ],
)
def test_is_read_only(query: str, expected: bool) -> None:
    assert is_read_only(query) is expected


@pytest.mark.parametrize(
    ("query", "rowcount", "tag"),
    [
        ("INSERT INTO t VALUES (1), (2), (3)", 3, "INSERT 0 3"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", 1, "INSERT 0 1"),
        ("UPDATE t SET a = 1", 2, "UPDATE 2"),
        ("DELETE FROM t", 0, "DELETE 0"),
        ("DELETE FROM t", -1, "DELETE 0"),
        ("SELECT * FROM t", 5, "SELECT 5"),
        ("VALUES (1)", 1, "SELECT 1"),
        ("CREATE TABLE t (a INT)", -1, "CREATE TABLE"),
        ("CREATE UNIQUE INDEX i ON t (a)", -1, "CREATE INDEX"),
        ("DROP TABLE t", -1, "DROP TABLE"),
        ("BEGIN", -1, "BEGIN"),
        ("COMMIT", -1, "COMMIT"),
        ("TRUNCATE t", -1, "TRUNCATE TABLE"),
    ],
)
def test_status_tag(query: str, rowcount: int, tag: str) -> None:
    assert status_tag(query, rowcount) == tag


@pytest.mark.parametrize(
    ("query", "returns_rows"),
    [
        ("SELECT 1", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("VALUES (1)", True),
        ("EXPLAIN QUERY PLAN SELECT 1", True),
        ("PRAGMA table_info(t)", True),
        ("PRAGMA foreign_keys = ON", False),
        ("INSERT INTO t VALUES ($1)", False),
        ("INSERT INTO t VALUES ($1) RETURNING id", True),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) DELETE FROM u", False),
        ("DELETE FROM t WHERE id = $1 RETURNING *", True),
    ],
)
def test_returns_rows_and_kind(query: str, returns_rows: bool) -> None:
    q = translate_for_sqlite(query)
    assert q.returns_rows is returns_rows
    assert q.kind == statement_kind(query)


def test_classification_tolerates_postgresql_only_syntax() -> None:
    """statement_kind/is_read_only run on PostgreSQL too: dollar quotes and $0 never raise."""
    assert statement_kind("DO $$ BEGIN PERFORM 1; END $$") == "DO"
    assert statement_kind("SELECT $0 /* unterminated") == "SELECT"
    assert is_read_only("SELECT $body$ DELETE $body$, tags @> $1 FROM t") is True


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_TRICKY = st.lists(
    st.sampled_from([*"ab $1?-/*:;%_\\\n'\"[]é", "$10", "--", "/*", "*/", "::", "NOW()"]),
    min_size=1,
    max_size=20,
).map("".join)


def _comment_body(text: str) -> str:
    """``text`` without any ``/*`` or ``*/``, so that it fits inside one block comment.

    One pass of removals is not enough: removing ``*/`` from ``**//`` joins the rest into a
    new ``*/``. Each pass shortens the text, so repeating until neither is left terminates,
    and the loop's condition is exactly what a comment body needs.
    """
    while "*/" in text or "/*" in text:
        text = text.replace("*/", "").replace("/*", "")
    return text


@pytest.mark.parametrize(
    ("text", "body"),
    [("**//", ""), ("/**/*/", ""), ("*/*", "*"), ("/*/", "/"), ("a*/b/*c", "abc"), ("*", "*")],
)
def test_comment_body_never_holds_a_comment_delimiter(text: str, body: str) -> None:
    """The property test's comment builder cannot leave a terminator inside the comment."""
    assert _comment_body(text) == body


@settings(max_examples=300)
@example(literal="**//", ident="a")  # once made the comment builder end the comment early
@given(literal=_TRICKY, ident=_TRICKY)
def test_literals_and_identifiers_survive_byte_identical(literal: str, ident: str) -> None:
    """Any string literal or quoted identifier is left exactly as written and still runs."""
    lit_sql = "'" + literal.replace("'", "''") + "'"
    ident_sql = '"' + ident.replace('"', '""') + '"'
    comment = _comment_body(literal)
    query = f"SELECT {lit_sql} AS {ident_sql}, $1 AS p /* {comment} */"
    q = translate_for_sqlite(query)
    assert q.sql == query.replace("$1 AS p", "?1 AS p", 1)
    assert q.param_count == 1
    with sqlite3.connect(":memory:") as connection:
        cursor = connection.execute(q.sql, [7])
        assert cursor.fetchall() == [(literal, 7)]
        assert cursor.description[0][0] == ident
    connection.close()


def test_translation_is_cached_per_query() -> None:
    """The same query text translates once: later calls return the very same result object.

    How fast an uncached translation is lives in ``make bench`` ("translate_for_sqlite").
    """
    query = (
        "SELECT m.id, m.content FROM messages m WHERE m.guild_id = $1 AND m.author_id = ANY($2)"
        " AND m.created_at >= NOW() - INTERVAL '7 days' AND m.content ILIKE $3"
        " ORDER BY m.created_at DESC LIMIT $4"
    )
    uncached = translate_for_sqlite.__wrapped__
    assert uncached(query) == translate_for_sqlite(query)
    assert translate_for_sqlite(query) is translate_for_sqlite(query)


@pytest.mark.parametrize(
    ("query", "resets"),
    [
        ("SELECT * FROM users WHERE id = $1", False),
        ("INSERT INTO t VALUES ($1) RETURNING id", False),
        ("WITH x AS (SELECT 1) UPDATE t SET a = 1", False),
        ("SELECT pg_advisory_xact_lock(1)", False),
        ("SET statement_timeout = '1ms'", True),
        ("RESET ALL", True),
        ("LISTEN events", True),
        ("CREATE TEMPORARY TABLE scratch (id int)", True),
        ("SELECT * INTO TEMP scratch FROM users", True),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", True),
        ("select pg_advisory_lock($1)", True),
        ("SELECT pg_try_advisory_lock_shared(1)", True),
        ("SELECT set_config('search_path', 'x', false)", True),
        ("PRAGMA foreign_keys = OFF", True),
        ("ATTACH DATABASE 'other.db' AS other", True),
        ("CALL do_things()", True),
    ],
)
def test_needs_reset_flags_statements_that_leave_session_state(query: str, resets: bool) -> None:
    assert needs_reset(query) is resets
