"""init, info, optimize, integrity and index/view maintenance on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import botdb
from botdb import errors, ops
from tests.helpers import MakeDB

SCHEMA = """
CREATE TABLE guilds (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE members (
    guild_id BIGINT NOT NULL REFERENCES guilds (id),
    user_id BIGINT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX members_user ON members (user_id);
"""


@pytest.fixture
async def db(make_db: MakeDB) -> botdb.Database:
    """This module's own small schema (no built-in tables), with a few rows."""
    database = await make_db()
    await database.execute_script(SCHEMA)
    await database.execute_many(
        "INSERT INTO guilds VALUES ($1, $2)", [(g, f"g{g}") for g in range(5)]
    )
    await database.execute_many(
        "INSERT INTO members VALUES ($1, $2)", [(g, u) for g in range(5) for u in range(4)]
    )
    return database


async def test_database_info_has_seed_001_shape(db: botdb.Database) -> None:
    info = await ops.database_info(db)
    assert info["backend"] == db.backend
    assert info["url"] == db.url
    assert info["size_bytes"] > 0
    assert info["table_count"] == 2
    assert "migrations" in info
    assert info["migrations"] is not None or info["migrations_error"]
    if db.backend == "sqlite":
        assert info["pragmas"]["journal_mode"] == "wal"
        assert info["pragmas"]["foreign_keys"] == 1
        assert Path(info["path"]).is_absolute()
        assert info["sqlite_version"] == sqlite3.sqlite_version
    else:
        assert info["settings"]["server_encoding"] == "UTF8"
        assert info["server_version"].split(".")[0].isdigit()
    assert "tables" not in await ops.database_info(db, tables=False)


async def test_table_info_lists_rows_sizes_and_indexes(db: botdb.Database) -> None:
    tables = {t["name"]: t for t in await ops.table_info(db)}
    assert set(tables) == {"guilds", "members"}
    assert tables["guilds"]["rows"] == 5
    assert tables["members"]["rows"] == 20
    assert "members_user" in tables["members"]["indexes"]
    assert tables["members"]["size_bytes"] > 0


async def test_optimize_reports_steps_sizes_and_integrity(db: botdb.Database) -> None:
    seen: list[str] = []
    report = await ops.optimize(db, progress=lambda phase, *_: seen.append(phase))
    statements = [s["statement"] for s in report["steps"]]
    assert report["integrity"]["ok"] is True
    assert report["size_before"] > 0
    assert report["size_after"] > 0
    assert seen
    if db.backend == "sqlite":
        assert statements == [
            "PRAGMA optimize",
            "ANALYZE",
            "VACUUM",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ]
    else:
        assert statements == [
            'VACUUM (ANALYZE) "public"."guilds"',
            'VACUUM (ANALYZE) "public"."members"',
        ]
        assert report["materialized_views"] == {"refreshed": [], "skipped": []}
        assert report["indexes"]["checked"] == 3


async def test_sqlite_optimize_uses_incremental_vacuum_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "inc.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA auto_vacuum = INCREMENTAL")
    raw.execute("CREATE TABLE t (x TEXT)")
    raw.commit()
    raw.close()
    async with botdb.connect(f"sqlite:///{path}") as db:
        report = await ops.optimize(db)
    assert "PRAGMA incremental_vacuum" in [s["statement"] for s in report["steps"]]
    assert "VACUUM" not in [s["statement"] for s in report["steps"]]


async def test_integrity_is_ok_on_a_sound_database(db: botdb.Database) -> None:
    report = await ops.integrity(db)
    assert report["ok"] is True
    if db.backend == "sqlite":
        assert report["integrity_check"] == ["ok"]
        assert report["foreign_key_violations"] == []
    else:
        assert report["invalid_indexes"] == []
        assert report["amcheck"] is None


async def test_sqlite_integrity_reports_foreign_key_violations(sqlite_url: str) -> None:
    async with botdb.connect(sqlite_url) as db:
        await db.execute_script(SCHEMA)
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    raw.execute("INSERT INTO members VALUES (42, 1)")  # foreign_keys is off by default here
    raw.commit()
    raw.close()
    async with botdb.connect(sqlite_url) as db:
        report = await ops.integrity(db)
    assert report["ok"] is False
    assert report["foreign_key_violations"] == [
        {"table": "members", "rowid": 1, "parent": "guilds", "fkid": 0}
    ]


@pytest.mark.postgres
async def test_pg_integrity_reports_an_invalid_index(pg_url: str) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute("CREATE TABLE dup (x INTEGER)")
        await db.execute("INSERT INTO dup VALUES (1), (1)")
        with pytest.raises(errors.UniqueViolationError):
            await db.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x)")
        await db.execute("ALTER TABLE dup ADD CONSTRAINT dup_pos CHECK (x > 0) NOT VALID")
        report = await ops.integrity(db)
    assert report["ok"] is False
    assert report["invalid_indexes"] == [{"schema": "public", "index": "dup_x", "table": "dup"}]
    assert report["unvalidated_constraints"] == [
        {"table": "dup", "constraint": "dup_pos", "type": "c"}
    ]


@pytest.mark.postgres
async def test_maintain_indexes_rebuilds_a_bloated_index(pg_url: str) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER)")
        await db.execute("CREATE INDEX big_v ON big (v)")
        await db.execute("INSERT INTO big SELECT g, g FROM generate_series(1, 50000) g")
        await db.execute("DELETE FROM big WHERE id % 20 <> 0")
        await db.execute("VACUUM (ANALYZE) big")
        dry = await ops.maintain_indexes(db, min_bytes=0, dry_run=True)
        assert {e["index"] for e in dry["reindexed"]} == {"big_pkey", "big_v"}
        assert all("size_after" not in e for e in dry["reindexed"])
        report = await ops.maintain_indexes(db, bloat_ratio=2.0, min_bytes=0)
        again = await ops.maintain_indexes(db, bloat_ratio=2.0, min_bytes=0)
    rebuilt = {e["index"]: e for e in report["reindexed"]}
    assert set(rebuilt) == {"big_pkey", "big_v"}
    assert all(e["size_after"] < e["size_before"] / 4 for e in rebuilt.values())
    assert again["reindexed"] == []


@pytest.mark.postgres
async def test_refresh_materialized_views_concurrently_when_a_unique_index_exists(
    pg_url: str,
) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute_script(
            """
            CREATE TABLE t (x INTEGER);
            CREATE MATERIALIZED VIEW with_key AS SELECT count(*) AS n FROM t;
            CREATE UNIQUE INDEX with_key_n ON with_key (n);
            CREATE MATERIALIZED VIEW without_key AS SELECT count(*) AS n FROM t;
            """
        )
        await db.execute("INSERT INTO t VALUES (1), (2)")
        report = await ops.refresh_materialized_views(db)
        assert await db.fetchval("SELECT n FROM with_key") == 2
        assert await db.fetchval("SELECT n FROM without_key") == 0
    assert report["refreshed"] == ["with_key"]
    assert report["skipped"][0]["view"] == "without_key"


async def test_init_creates_the_schema_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with botdb.connect(f"sqlite:///{path}") as db:
        report = await ops.init(db)
        tables = await ops.table_info(db)
    assert report["location"] == str(path)
    assert report["schema"] in ("migrated", "create_tables")
    assert report["tables"] == len(tables) > 10
    assert (path.stat().st_mode & 0o777) == 0o600


# --- analyze: statistics after a bulk load ------------------------------------------------


async def _analyzed(db: botdb.Database, table: str) -> bool:
    """Whether the planner has statistics for ``table``."""
    if db.backend == "sqlite":
        if not await db.fetchval("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"):
            return False
        return bool(await db.fetchval("SELECT count(*) FROM sqlite_stat1 WHERE tbl = $1", table))
    stamp = await db.fetchval(
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = $1", table
    )
    return stamp is not None


async def test_analyze_refreshes_the_statistics_of_the_tables_named(
    db: botdb.Database,
) -> None:
    report = await db.analyze(["members"])
    assert report["backend"] == db.backend
    assert report["tables"] == ["members"]
    assert await _analyzed(db, "members")
    assert not await _analyzed(db, "guilds")
    await ops.analyze(db)  # every table
    assert await _analyzed(db, "guilds")
    if db.backend == "sqlite":  # the sampling limit is not left on a pooled connection
        assert await db.fetchval("PRAGMA analysis_limit") == 0


@pytest.mark.parametrize(
    ("tables", "error"),
    [
        (["members", "no_such_table"], errors.UndefinedTableError),
        ("members", errors.ArgumentError),
        (["members", 3], errors.ArgumentError),
        ([""], errors.ArgumentError),
    ],
)
async def test_analyze_refuses_bad_tables_and_analyzes_nothing(
    db: botdb.Database, tables: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await ops.analyze(db, tables)  # type: ignore[arg-type]
    assert not await _analyzed(db, "members")


async def test_analyze_merges_the_pending_entries_of_a_gin_index(pg_url: str) -> None:
    """PostgreSQL: a search would read a GIN index's pending list in full until merged."""
    async with botdb.connect(pg_url) as db:
        await db.create_tables()
        await db.execute("INSERT INTO guilds (id) VALUES (1)")
        await db.execute("INSERT INTO channels (id, guild_id) VALUES (2, 1)")
        insert = "INSERT INTO messages (id, guild_id, channel_id, content) VALUES ($1, 1, 2, $2)"
        await db.execute_many(insert, [(i, f"word{i} raid") for i in range(200)])
        await db.analyze(ops.MESSAGE_TABLES)
        merge = "SELECT gin_clean_pending_list('ix_messages_content_search'::regclass)"
        assert await db.fetchval(merge) == 0
        await db.execute_many(insert, [(i, f"word{i} raid") for i in range(200, 400)])
        assert await db.fetchval(merge) > 0  # what analyze had merged
