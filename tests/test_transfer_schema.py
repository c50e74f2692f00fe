"""``botdb transfer`` of schemas botdb did not make: reflected, mapped, or refused up front.

The PostgreSQL fixture (``tests/fixtures/foreign_bot_pg.sql``) is a bot's own schema: its own
``users``/``messages``/``channels``/``roles``/``reactions``/``command_history`` whose columns
differ from botdb's, a tsvector column with a GIN index, a materialized view, a view, a
plpgsql function and trigger, NOT VALID foreign keys, storage parameters, an enum, a domain,
arrays, jsonb, interval, inet/cidr/macaddr, uuid, numeric, bytea, identity and serial
columns, a generated column and a table without a primary key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import botdb
from botdb import errors
from botdb.ops.transfer import transfer

FIXTURE = Path(__file__).parent / "fixtures" / "foreign_bot_pg.sql"
TABLES = {"users", "channels", "roles", "messages", "reactions", "command_history", "audit_log"}
UNPORTABLE = {
    "function messages_search_update()",
    "materialized view message_counts",
    "trigger messages_search_trg on messages",
    "view active_users",
}


async def load_fixture(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(FIXTURE.read_text(encoding="utf-8"))
    finally:
        await conn.close()


async def copy(source_url: str, target_url: str, **options: Any) -> Any:
    async with (
        botdb.connect(source_url, sqlite_create=False) as source,
        botdb.connect(target_url) as target,
    ):
        return await transfer(source, target, **options)


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {r[0] for r in rows}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``botdb`` in a real process, stdout and stderr as pipes (as in a script)."""
    return subprocess.run(
        [sys.executable, "-m", "botdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_foreign_schema_with_views_and_triggers_is_refused_before_writing(
    pg_url: str, tmp_path: Path
) -> None:
    await load_fixture(pg_url)
    target = tmp_path / "bot.db"
    with pytest.raises(errors.UnportableSchemaError) as caught:
        await copy(pg_url, f"sqlite:///{target}")
    assert {p.split(":")[0] for p in caught.value.problems} == UNPORTABLE
    assert "--skip-unportable" in str(caught.value)
    assert "\n" not in str(caught.value)
    # The API's caller opened the target: the file is theirs, but nothing was made in it.
    assert sqlite_tables(target) == set()


async def test_skip_unportable_copies_every_table_verified_with_mapped_types(
    pg_url: str, tmp_path: Path
) -> None:
    await load_fixture(pg_url)
    target = tmp_path / "bot.db"
    report = await copy(pg_url, f"sqlite:///{target}", skip_unportable=True, batch_size=50)
    assert report.verified
    assert report.source_schema == "reflected"
    assert {t.name for t in report.tables} == TABLES
    assert all(t.ok and t.source_rows == t.target_rows for t in report.tables)
    assert {s.split(":")[0] for s in report.skipped} == UNPORTABLE
    assert any("messages_author_fk is NOT VALID" in n for n in report.notes)
    assert any("messages_search_idx" in n for n in report.notes)
    rows = {t.name: t.target_rows for t in report.tables}
    assert rows["messages"] == 251
    assert rows["audit_log"] == 3
    assert rows["reactions"] == 40
    # No botdb table was made: the source's schema is the truth.
    assert sqlite_tables(target) == TABLES

    with sqlite3.connect(target) as conn:
        conn.row_factory = sqlite3.Row
        users = {r["user_id"]: dict(r) for r in conn.execute("SELECT * FROM users")}
        top = users[2**63 - 1]
        assert json.loads(top["flags"]) == ["admin", "with space"]
        assert json.loads(top["settings"]) == {"lang": "ja", "n": [1, 2]}
        assert top["last_ip"] == "10.0.0.1"
        assert top["api_key"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        assert top["karma"] == "12.50"  # exact decimal text
        assert top["avatar"] == b"\x00\xff\x10"
        assert top["joined"] == "2026-01-01 10:00:00.000000"  # UTC, botdb's datetime text
        assert users[-(2**63) + 1]["handle"] == "мин"
        assert users[42]["handle"] == "emoji 🎉"
        assert users[42]["avatar"] == b""
        channels = conn.execute(
            "SELECT id, kind, slowmode, subnet, device FROM channels"
        ).fetchall()
        assert [tuple(c) for c in channels] == [
            (1, "text", 5.0, "10.0.0.0/8", "08:00:2b:01:02:03"),
            (2, "voice", 93784.5, None, None),
            (3, "forum", None, "2001:db8::/32", None),
        ]
        # The enum became TEXT with a CHECK of its labels.
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO channels (id, snowflake, kind) VALUES (9, 9, 'stage')")
        # Identity ids continue after the copied ones (INTEGER PRIMARY KEY).
        conn.execute("INSERT INTO channels (snowflake, kind) VALUES (77, 'text')")
        assert conn.execute("SELECT id FROM channels WHERE snowflake = 77").fetchone()[0] == 4
        conn.rollback()
        # The generated column's values were copied into a plain column; the tsvector as text.
        msg = conn.execute(
            "SELECT body, body_len, search FROM messages WHERE message_id = 5"
        ).fetchone()
        assert msg["body"] == "message 5 привет 👋"
        assert msg["body_len"] == len(msg["body"])
        assert "привет" in msg["search"]
        # The orphan the NOT VALID foreign key allowed is there; no foreign key refuses it.
        assert (
            conn.execute("SELECT author_id FROM messages WHERE message_id = 100000").fetchone()[0]
            == 7
        )
        assert conn.execute("SELECT position FROM roles WHERE name = 'mods'").fetchone()[0] == 1
        assert json.loads(conn.execute("SELECT perms FROM roles WHERE id = 1").fetchone()[0]) == [
            1,
            2**63 - 1,
        ]
        took = conn.execute("SELECT took, args FROM command_history ORDER BY id").fetchall()
        assert [(t[0], json.loads(t[1])) for t in took] == [
            (0.012, []),
            (3600.0, ["@x", {"days": 7}]),
        ]
    conn.close()


async def test_an_unmappable_column_is_refused_with_or_without_skip_unportable(
    pg_url: str, tmp_path: Path
) -> None:
    await load_fixture(pg_url)
    conn = await asyncpg.connect(pg_url)
    await conn.execute(
        "CREATE TABLE shop (id int PRIMARY KEY, price money, spot point, during tstzrange)"
    )
    await conn.close()
    for skip in (False, True):
        target = tmp_path / f"bot{skip}.db"
        with pytest.raises(errors.UnportableSchemaError) as caught:
            await copy(pg_url, f"sqlite:///{target}", skip_unportable=skip)
        columns = {p.split(":")[0] for p in caught.value.problems if p.startswith("shop.")}
        assert columns == {"shop.price", "shop.spot", "shop.during"}
        assert "has no SQLite equivalent" in str(caught.value)
        assert sqlite_tables(target) == set()


async def test_sqlite_columns_are_typed_by_their_values_for_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE scores (id INTEGER PRIMARY KEY, who TEXT, points, ratio, note)")
        conn.executemany(
            "INSERT INTO scores VALUES (?, ?, ?, ?, ?)",
            [(1, "12", 5, 1, "a"), (2, "bob", -(2**63), 2.5, None), (3, None, None, None, "c")],
        )
    conn.close()
    report = await copy(f"sqlite:///{path}", pg_url)
    assert report.verified
    assert report.source_schema == "reflected"
    async with botdb.connect(pg_url) as pg:
        types = {
            r["column_name"]: r["data_type"]
            for r in await pg.fetch(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'scores'"
            )
        }
        assert types == {
            "id": "bigint",
            "who": "text",  # declared TEXT holding digits stays text
            "points": "bigint",  # untyped, integers only
            "ratio": "double precision",  # untyped, integers and reals
            "note": "text",  # untyped, text only
        }
        assert await pg.fetchval("SELECT who FROM scores WHERE id = 1") == "12"
        assert await pg.fetchval("SELECT points FROM scores WHERE id = 2") == -(2**63)

    bad = tmp_path / "bad.db"
    with sqlite3.connect(bad) as conn:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, snowflake INTEGER, mixed)")
        conn.execute("INSERT INTO big VALUES (1, 18446744073709551615, 'x')")
        conn.execute("INSERT INTO big VALUES (2, 5, 3)")
    conn.close()
    async with botdb.connect(pg_url) as pg:
        before = await pg.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    with pytest.raises(errors.UnportableSchemaError) as caught:
        await copy(f"sqlite:///{bad}", pg_url, yes=True)
    problems = dict(p.split(": ", 1) for p in caught.value.problems)
    assert set(problems) == {"big.snowflake", "big.mixed"}
    assert "beyond 64 bits" in problems["big.snowflake"]
    assert "mixes text and numbers" in problems["big.mixed"]
    async with botdb.connect(pg_url) as pg:
        after = await pg.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    assert after == before  # nothing was made


ROUND_TRIP_ROWS = 50_000
T0 = dt.datetime(2026, 1, 1)


def _row(i: int) -> tuple[Any, ...]:
    ident = {0: -(2**63) + 1, 1: 2**63 - 1}.get(i, i * 184_467_440_737 - 2**62)
    words = ("привет мир", "emoji 🎉👋", "naïve café", "日本語", "", "plain")
    return (
        ident,
        None if i % 7 == 0 else f"{words[i % len(words)]} {i}",
        None if i % 3 else json.dumps({"n": i, "tags": ["ü", None], "nested": {"b": 1, "a": 2}}),
        None if i % 5 == 0 else i % 1000,
        (T0 + dt.timedelta(seconds=i, microseconds=i % 1000)).isoformat(" ", "microseconds"),
    )


def _contents(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT id, content, payload, author_id, created_at FROM messages ORDER BY id"
        ).fetchall()
    conn.close()
    return [(r[0], r[1], None if r[2] is None else json.loads(r[2]), r[3], r[4]) for r in rows]


@pytest.mark.slow
async def test_round_trip_sqlite_postgresql_sqlite_keeps_every_value(
    tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, content TEXT, payload JSON,"
            " author_id INTEGER, created_at DATETIME NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
            [_row(i) for i in range(ROUND_TRIP_ROWS)],
        )
    conn.close()
    there = await copy(f"sqlite:///{source}", pg_url, batch_size=4000)
    back_path = tmp_path / "back.db"
    back = await copy(pg_url, f"sqlite:///{back_path}", batch_size=4000)
    assert there.verified
    assert back.verified
    assert there.tables[0].target_rows == back.tables[0].target_rows == ROUND_TRIP_ROWS
    # The same rows, digested on each side of each hop.
    assert there.tables[0].source_checksum == back.tables[0].target_checksum
    assert _contents(source) == _contents(back_path)


def test_cli_refusal_and_skip_in_a_pipe(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(load_fixture(pg_url))
    target = tmp_path / "cli.db"
    refused = run_cli("transfer", pg_url, f"sqlite:///{target}")
    assert refused.returncode == 5
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: UnportableSchemaError: cannot transfer 4 part(s)")
    assert "Traceback" not in refused.stderr + refused.stdout
    assert not target.exists()
    assert not list(tmp_path.iterdir())

    done = run_cli("transfer", "--skip-unportable", "--json", pg_url, f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["verified"]
    assert {t["name"] for t in data["tables"]} == TABLES
    assert len(data["skipped"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.db"]
    assert sqlite_tables(target) == TABLES


class Interrupt(Exception):
    pass


async def test_an_interrupted_transfer_of_a_reflected_schema_resumes(
    pg_url: str, tmp_path: Path
) -> None:
    await load_fixture(pg_url)
    target = f"sqlite:///{tmp_path / 'bot.db'}"

    def stop(table: str, done: int, total: int) -> None:
        if table == "reactions" and done >= 20:
            raise Interrupt  # after the second batch of a three-column key was committed

    with pytest.raises(Interrupt):
        await copy(pg_url, target, skip_unportable=True, batch_size=10, progress=stop)
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        assert conn.execute("SELECT count(*) FROM reactions").fetchone()[0] == 20
    conn.close()
    report = await copy(pg_url, target, skip_unportable=True, batch_size=10)
    assert report.resumed
    assert report.verified
    entry = next(t for t in report.tables if t.name == "reactions")
    assert (entry.resumed_at, entry.copied, entry.target_rows) == (20, 20, 40)


async def test_a_schema_the_target_cannot_take_leaves_no_new_table(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL's index names are per schema: the target already has ``ix_seen`` on another
    table, so making the copied table's index fails after the tables were made."""
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE seen (id INTEGER PRIMARY KEY, at TEXT)")
        conn.execute("CREATE INDEX ix_seen ON seen (at)")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO seen VALUES (1, 'x')")
    conn.close()
    async with botdb.connect(pg_url) as pg:
        await pg.execute("CREATE TABLE other (a int)")
        await pg.execute("CREATE INDEX ix_seen ON other (a)")
    with pytest.raises(errors.UnportableSchemaError, match="could not be made"):
        await copy(f"sqlite:///{path}", pg_url)
    async with botdb.connect(pg_url) as pg:
        names = {
            r["tablename"]
            for r in await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert names == {"other"}
