"""Hostile input from chat users: a typed error, never a raw one, and nothing changed.

Each value a user can send (ints beyond 64 bits, a lone surrogate, NaN, Infinity, JSON nested
10,000 deep...) goes through each public path on SQLite and the real PostgreSQL (and Redis for
the cache). Every outcome is pinned: the exact BotDBError subclass, or "works" with the value
read back exactly. After an error the stored data is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import BigInteger, Float, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.importers import ImportValidationError, import_json
from botdb.models import JSON_TYPE, Guild
from botdb.repository import Repository
from tests.helpers import statements

GUILD = 1_150_000_000_000_000_001
NAN = float("nan")


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


VALUES: dict[str, Any] = {
    "2**70": 2**70,
    "-2**70": -(2**70),
    "2**64 in a dict": {"a": 2**64},
    "lone surrogate": "\ud800",
    "NaN": NAN,
    "inf": float("inf"),
    "NaN in a dict": {"ratio": NAN},
    "nested 10000 deep": nested(10_000),
}
INTS = ("2**70", "-2**70")
JSONISH = ("2**64 in a dict", "NaN in a dict", "nested 10000 deep")


class HostileBase(DeclarativeBase):
    """A metadata of this module's own: botdb's Base is shared by the whole suite."""


class Sample(HostileBase):
    __tablename__ = "hostile_samples"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int | None] = mapped_column(BigInteger)
    r: Mapped[float | None] = mapped_column(Float)
    s: Mapped[str | None] = mapped_column(String(100))
    j: Mapped[Any] = mapped_column(JSON_TYPE, nullable=True)


def column_for(value: Any) -> str:
    """The Sample / raw-table column that takes a value of this type."""
    if type(value) is int:
        return "n"
    if type(value) is float:
        return "r"
    if type(value) is str:
        return "s"
    return "j"


@pytest.fixture
async def db(
    db_url: str, redis_server_url: str, redis_prefix: str, builtin_tables: None
) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(
        db_url, redis_url=redis_server_url, cache_prefix=redis_prefix, retry_initial_delay=0.01
    ) as database:
        await database.create_tables()
        await database.create_tables(HostileBase.metadata)
        json_type = "JSONB" if database.backend == "postgresql" else "TEXT"
        await database.execute(
            "CREATE TABLE hostile_raw (id BIGINT PRIMARY KEY, n BIGINT, "
            f"r DOUBLE PRECISION, s TEXT, j {json_type})"
        )
        await database.execute("INSERT INTO hostile_raw (id, n, s) VALUES (1, 7, 'kept')")
        await database.guilds.create(id=GUILD, name="kept")
        await database.config.set(GUILD, prefix="?", settings={"keep": [1, "two"]})
        scoped = database.scoped("hostile")
        scoped.register_guild(v=None)
        await scoped.guild(GUILD).set("v", {"keep": 1})
        await database.users.get_or_create(id=42, username="kept")
        await database.cases.create(GUILD, 42, 43, "warn", reason="kept")
        await database.repo(Sample).create(id=1, n=7, r=0.5, s="kept", j={"keep": True})
        await database.cache.set("k", "kept")
        yield database


async def snapshot(db: botdb.Database) -> dict[str, Any]:
    """Everything the paths below could change, as plain values."""
    tables = (
        "hostile_raw",
        "hostile_samples",
        "guilds",
        "guild_configs",
        "kv_store",
        "users",
        "moderation_cases",
    )
    state: dict[str, Any] = {}
    for table in tables:
        rows = [tuple(map(repr, row)) for row in await db.fetch(f"SELECT * FROM {table}")]
        state[table] = sorted(rows)
    state["cache"] = await db.cache.get("k")
    return state


# -- the paths: each takes (db, value, n) and returns what to compare on a round trip ------

Path_ = Callable[[botdb.Database, Any, int], Awaitable[Any]]


async def raw_execute(db: botdb.Database, value: Any, n: int) -> Any:
    column = column_for(value)
    await db.execute(f"INSERT INTO hostile_raw (id, {column}) VALUES ($1, $2)", 100 + n, value)
    return await db.fetchval(f"SELECT {column} FROM hostile_raw WHERE id = $1", 100 + n)


async def raw_fetchrow(db: botdb.Database, value: Any, n: int) -> Any:
    row = await db.fetchrow(f"SELECT id FROM hostile_raw WHERE {column_for(value)} = $1", value)
    return value if row is None else row  # nothing matches: the value "round-trips" as asked


async def repo_create(db: botdb.Database, value: Any, n: int) -> Any:
    column = column_for(value)
    await db.repo(Sample).create(id=100 + n, **{column: value})
    row = await Repository(db, Sample).get_by_id(100 + n)
    return getattr(row, column)


async def repo_get_by_id(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.repo(Sample).get_by_id(value)


async def repo_find(db: botdb.Database, value: Any, n: int) -> Any:
    rows = await db.repo(Sample).find_all({column_for(value): value})
    return rows if rows else value


async def repo_update_where(db: botdb.Database, value: Any, n: int) -> Any:
    column = column_for(value)
    await db.repo(Sample).update_where({"id": 1}, **{column: value})
    row = await db.repo(Sample).get_by_id(1)
    return getattr(row, column)


async def users_get_or_create(db: botdb.Database, value: Any, n: int) -> Any:
    if type(value) is int:
        record, _ = await db.users.get_or_create(id=value)
    else:
        record, _ = await db.users.get_or_create(id=42, username=value)
    return record


async def config_set_prefix(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.config.set(GUILD, prefix=value)


async def config_set_settings(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.config.set(GUILD, settings={"v": value})


async def scoped_set(db: botdb.Database, value: Any, n: int) -> Any:
    scoped = db.scoped("hostile")
    return await scoped.guild(GUILD).set("v", value)


async def cases_create(db: botdb.Database, value: Any, n: int) -> Any:
    if type(value) is int:
        return await db.cases.create(GUILD, value, 43, "warn")
    return await db.cases.create(GUILD, 42, 43, "warn", reason=value)


async def cache_set(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.cache.set("k", value)


async def cache_get(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.cache.get(value)


async def cache_invalidate(db: botdb.Database, value: Any, n: int) -> Any:
    return await db.cache.invalidate(value)


D, A, IV = errors.DataError, errors.ArgumentError, ImportValidationError
WORKS = None

#: path -> (outcome for every value not listed, {value name: outcome}); an outcome is the
#: exact error class, WORKS (round-trips), or a dict {backend: outcome}.
EXPECTED: dict[str, tuple[Any, dict[str, Any]]] = {
    "raw execute": (D, {"inf": WORKS, "NaN": {"sqlite": D, "postgresql": WORKS}}),
    "raw fetchrow": (D, {"inf": WORKS, "NaN": {"sqlite": D, "postgresql": WORKS}}),
    "repository create": (D, {"inf": WORKS}),
    "repository get_by_id": (A, dict.fromkeys(INTS, D)),
    "repository find": (D, {"inf": WORKS}),
    "repository update_where": (D, {"inf": WORKS}),
    "users.get_or_create": (A, {**dict.fromkeys(INTS, D), "lone surrogate": D}),
    "config.set prefix": (A, {"lone surrogate": D}),
    "config.set settings": (D, {}),
    "scoped set": (D, {}),
    "cases.create": (A, {**dict.fromkeys(INTS, D), "lone surrogate": D}),
    "cache.set": (D, {}),
    "cache.get key": (A, {"lone surrogate": D}),
    "cache.invalidate key": (A, {"lone surrogate": D}),
}
PATHS: dict[str, Path_] = {
    "raw execute": raw_execute,
    "raw fetchrow": raw_fetchrow,
    "repository create": repo_create,
    "repository get_by_id": repo_get_by_id,
    "repository find": repo_find,
    "repository update_where": repo_update_where,
    "users.get_or_create": users_get_or_create,
    "config.set prefix": config_set_prefix,
    "config.set settings": config_set_settings,
    "scoped set": scoped_set,
    "cases.create": cases_create,
    "cache.set": cache_set,
    "cache.get key": cache_get,
    "cache.invalidate key": cache_invalidate,
}


def expected(path: str, value: str, backend: str) -> Any:
    default, special = EXPECTED[path]
    outcome = special.get(value, default)
    return outcome[backend] if isinstance(outcome, dict) else outcome


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


class TestHostileInput:
    """Every hostile value through every public path, on both backends (and Redis)."""

    @pytest.mark.parametrize("path", sorted(PATHS))
    async def test_each_value_ends_in_a_typed_error_or_round_trips(
        self, db: botdb.Database, path: str
    ) -> None:
        wrong: list[str] = []
        for n, (name, value) in enumerate(VALUES.items()):
            want = expected(path, name, db.backend)
            before = await snapshot(db)
            try:
                result = await PATHS[path](db, value, n)
            except errors.BotDBError as exc:
                got: Any = type(exc)
                if await snapshot(db) != before:
                    wrong.append(f"{name}: {got.__name__} but the data changed")
            except Exception as exc:  # a raw exception is what this test is about
                got = f"raw {type(exc).__name__}: {str(exc)[:80]}"
            else:
                got = WORKS
                if not same(result, value):
                    wrong.append(f"{name}: stored, but read back {str(result)[:60]}")
            if got is not want:
                shown = getattr(want, "__name__", "works")
                wrong.append(f"{name}: expected {shown}, got {getattr(got, '__name__', got)}")
        assert not wrong, f"{path} on {db.backend}:\n" + "\n".join(wrong)

    # SQLite only: PostgreSQL's jsonb never holds invalid JSON.
    @pytest.mark.parametrize("backend", ["sqlite"])
    async def test_a_nan_written_around_botdb_is_a_typed_error_not_a_broken_guild(
        self, db: botdb.Database
    ) -> None:
        """Config stored as invalid JSON (``NaN``, e.g. by an older botdb) reads as DataError."""
        await db.execute(
            "UPDATE guild_configs SET settings = $1 WHERE guild_id = $2", '{"r": NaN}', GUILD
        )
        db.cache.clear()
        db.config._memo.clear()
        with pytest.raises(errors.DataError, match="not valid JSON"):
            await db.config.get(GUILD)

    async def test_json_nested_at_the_limit_round_trips_and_one_deeper_is_refused(
        self, db: botdb.Database
    ) -> None:
        from botdb._json_values import MAX_DEPTH

        ok = {"v": nested(MAX_DEPTH - 1)}  # the dict is level 1
        assert dict((await db.config.set(GUILD, settings=ok)).settings) == ok
        with pytest.raises(errors.DataError, match=f"more than {MAX_DEPTH} levels"):
            await db.config.set(GUILD, settings={"v": nested(MAX_DEPTH)})
        assert dict((await db.config.get(GUILD)).settings) == ok

    async def test_a_trailing_newline_is_not_a_valid_locale(self, db: botdb.Database) -> None:
        with pytest.raises(errors.DataError, match="locale"):
            await db.config.set(GUILD, locale="en\n")
        assert (await db.config.get(GUILD)).locale == "en"


def store_text(value: Any) -> str:
    """A member-store file whose one record holds ``value`` in its preferences."""
    record = {
        "user_id": "2",
        "guild_id": "1",
        "join_date": "2024-01-01T00:00:00Z",
        "roles": [],
        "preferences": {"v": "@VALUE@"},
        "statistics": {"message_count": 1, "streak": 0},
    }
    # NaN/Infinity and "\ud800" as Python's json writes them; 10,000 deep it cannot write.
    deep = isinstance(value, list)
    encoded = "[" * 10_000 + "]" * 10_000 if deep else json.dumps(value)
    return json.dumps({"1_2": record}).replace('"@VALUE@"', encoded)


@pytest.mark.parametrize("name", sorted(VALUES))
async def test_import_json_names_the_record_with_a_hostile_value(
    db: botdb.Database, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "members.json"
    path.write_text(store_text(VALUES[name]), encoding="utf-8")
    before = await snapshot(db)
    with pytest.raises(errors.BotDBError) as caught:
        await import_json(db, path, format="members", backup_dir=tmp_path / "bk")
    assert type(caught.value) is (D if name == "nested 10000 deep" else IV)
    assert "1_2" in str(caught.value)
    assert await snapshot(db) == before
    assert not (tmp_path / "bk").exists()


def test_cli_import_json_prints_a_data_error_not_a_traceback(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "members.json"
    path.write_text(store_text(nested(10_000)), encoding="utf-8")
    result = CliRunner().invoke(app, ["import-json", str(path), "--url", sqlite_url, "--init"])
    assert result.exit_code != 0
    assert "DataError" in result.output
    assert "1_2" in result.output
    assert "Traceback" not in result.output


# -- keyset cursors -----------------------------------------------------------------------


def url_keyed_cursor(db: botdb.Database, table: str, ordering: str, values: list[Any]) -> str:
    """A cursor signed the way botdb used to: with a key derived from the URL."""
    secret = db.settings.url.sqlalchemy_url().encode()
    key = hashlib.sha256(b"botdb-cursor-v1\0" + secret + b"\0" + table.encode()).digest()
    payload = orjson.dumps([ordering, values])
    signature = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signature + payload).rstrip(b"=").decode()


class TestCursorSecret:
    async def test_a_cursor_forged_from_the_url_is_refused(self, db: botdb.Database) -> None:
        guilds = db.repo(Guild)
        await guilds.create_many([{"id": i} for i in range(1, 6)])
        forged = url_keyed_cursor(db, "guilds", "id", [2])
        for repo in (guilds, Repository(db, Guild), db.guilds):
            with pytest.raises(errors.ArgumentError, match="signature"):
                await repo.find_page(after=forged, limit=2)

    async def test_every_way_of_building_a_repository_shares_the_stored_secret(
        self, db: botdb.Database
    ) -> None:
        await db.guilds.create_many([{"id": i} for i in range(1, 6)])
        cursor = (await db.guilds.find_page(limit=2)).next_cursor
        assert cursor is not None
        for repo in (db.repo(Guild), Repository(db, Guild)):
            assert [g.id for g in (await repo.find_page(after=cursor, limit=2)).items] == [3, 4]
        secret = await db.fetchval("SELECT value FROM botdb_meta WHERE key = 'cursor_secret'")
        assert len(bytes.fromhex(secret)) == 32
        assert secret not in str(db.settings.url)
        assert secret not in cursor
        # another Database on the same database (another shard process) accepts it too
        async with botdb.connect(str(db.settings.url.sqlalchemy_url())) as other:
            page = await Repository(other, Guild).find_page(after=cursor, limit=2)
            assert [g.id for g in page.items] == [3, 4]

    async def test_the_secret_is_loaded_once_per_database(self, db: botdb.Database) -> None:
        await db.guilds.create_many([{"id": i} for i in range(1, 6)])
        await db.guilds.find_page(limit=2)
        with statements(db) as seen:
            await Repository(db, Guild).find_page(limit=2)
        assert not [s for s in seen if "botdb_meta" in s or s == "raw API query"], seen
        assert len([s for s in seen if s.startswith("SELECT")]) == 1, seen

    async def test_the_cursor_secret_setting_applies_to_repository_built_directly(
        self, db_url: str
    ) -> None:
        async with botdb.connect(db_url, cursor_secret="a setting") as first:
            await first.create_tables()
            await first.guilds.create_many([{"id": i} for i in range(1, 6)])
            cursor = (await Repository(first, Guild).find_page(limit=2)).next_cursor
            assert cursor is not None
            assert len((await first.guilds.find_page(after=cursor, limit=2)).items) == 2
        async with botdb.connect(db_url) as second:  # the stored secret: another key
            with pytest.raises(errors.ArgumentError, match="signature"):
                await Repository(second, Guild).find_page(after=cursor, limit=2)
