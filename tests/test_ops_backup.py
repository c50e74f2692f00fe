"""Backup and restore on SQLite and the real PostgreSQL server: online, verified, atomic."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import re
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

import botdb
from botdb import errors, ops
from botdb.config import DatabaseURL
from botdb.ops import _pg, _sqlite
from botdb.ops._common import backup_name
from tests.helpers import MakeDB, wait_until

SCHEMA = """
CREATE TABLE guilds (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE members (
    guild_id BIGINT NOT NULL REFERENCES guilds (id),
    user_id BIGINT NOT NULL,
    bio TEXT,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX members_user ON members (user_id);
"""
PASSWORD = "hunter2-Secret"
NAME = re.compile(r"^[A-Za-z0-9_.-]+-\d{8}T\d{6}\.\d{6}Z\.(db|dump|jsonl\.gz)$")


def _admin_url(url: str, database: str = "postgres") -> str:
    return dataclasses.replace(DatabaseURL.parse(url), database=database).asyncpg_dsn()


@pytest.fixture
def target_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A second, empty database on the same backend (PostgreSQL: created here, dropped after)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'target.db'}"
    return request.getfixturevalue("pg_target_url")


@pytest.fixture
async def pg_target_url(pg_url: str) -> AsyncIterator[str]:
    name = f"botdb_test_ops_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(_admin_url(pg_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _admin_url(pg_url, name)
    admin = await asyncpg.connect(_admin_url(pg_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _with_password(url: str) -> str:
    parsed = DatabaseURL.parse(url)
    if parsed.backend == "sqlite":
        return url
    return dataclasses.replace(parsed, password=PASSWORD).asyncpg_dsn()


@pytest.fixture
async def db(make_db: MakeDB, db_url: str) -> botdb.Database:
    """This module's schema with 20 guilds, connected with a password in the URL."""
    database = await make_db(url=_with_password(db_url))
    await database.execute_script(SCHEMA)
    await _fill(database, range(1, 21))
    return database


async def _fill(db: botdb.Database, guilds: range, per_guild: int = 3) -> None:
    await db.execute_many("INSERT INTO guilds VALUES ($1, $2)", [(g, f"g{g}") for g in guilds])
    await db.execute_many(
        "INSERT INTO members VALUES ($1, $2, $3)",
        [(g, u, "x" * 200) for g in guilds for u in range(per_guild)],
    )


async def _snapshot(db: botdb.Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    guilds = [tuple(r) for r in await db.fetch("SELECT * FROM guilds ORDER BY id")]
    members = [tuple(r) for r in await db.fetch("SELECT * FROM members ORDER BY guild_id, user_id")]
    return guilds, members


async def test_backup_while_writing_restores_a_consistent_state(
    db: botdb.Database, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task commits a guild and 3 members per transaction while the backup runs; the
    restore holds whole transactions only, between the counts before and after the backup."""
    monkeypatch.setattr(_sqlite, "STEP_PAGES", 4)  # many small steps while writes go on
    await _fill(db, range(1000, 3000), per_guild=3)
    stop = asyncio.Event()
    next_id = 10_000

    async def writer() -> None:
        nonlocal next_id
        while not stop.is_set():
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO guilds VALUES ($1, $2)", next_id, "w")
                await conn.execute_many(
                    "INSERT INTO members VALUES ($1, $2, $3)",
                    [(next_id, u, "w") for u in range(3)],
                )
            next_id += 1
            await asyncio.sleep(0.002)

    task = asyncio.create_task(writer())
    await wait_until(lambda: next_id > 10_005)  # the writer is committing
    before = await db.fetchval("SELECT count(*) FROM guilds")
    steps: list[tuple[str, int, int | None]] = []
    result = await ops.backup(db, tmp_path / "b", progress=lambda *a: steps.append(a))
    after = await db.fetchval("SELECT count(*) FROM guilds")
    at_end = next_id
    await wait_until(lambda: next_id > at_end + 5)  # the backup left no writer blocked
    stop.set()
    await task
    if db.backend == "sqlite":
        assert len([s for s in steps if s[0] == "copy"]) > 10, "the copy ran in many steps"
    async with botdb.connect(target_url) as target:
        restored = await ops.restore(target, result.path)
        guilds = await target.fetchval("SELECT count(*) FROM guilds")
        members = await target.fetchval("SELECT count(*) FROM members")
        orphans = await target.fetchval(
            "SELECT count(*) FROM members m LEFT JOIN guilds g ON g.id = m.guild_id "
            "WHERE g.id IS NULL"
        )
        report = await ops.integrity(target)
    assert before <= guilds <= after
    assert members == 3 * guilds, "every writer transaction is restored whole or not at all"
    assert restored.rows == result.rows == {"guilds": guilds, "members": members}
    assert orphans == 0
    assert report["ok"], report


async def test_backup_file_and_manifest_are_private_and_carry_no_secret(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "out")
    assert NAME.match(result.path.name), result.path.name
    for path in (result.path, result.manifest):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert PASSWORD not in path.name
        assert "127.0.0.1" not in path.name
    manifest = orjson.loads(result.manifest.read_bytes())
    assert PASSWORD not in result.manifest.read_text()
    assert manifest["sha256"] == result.sha256
    assert manifest["size"] == result.size
    assert manifest["backend"] == db.backend
    assert manifest["rows"] == {"guilds": 20, "members": 60}
    assert manifest["botdb_version"] == botdb.__version__
    if db.backend == "postgresql":
        assert PASSWORD in db.settings.url.password, "the test really used a password"


def test_a_symlink_planted_as_the_temporary_file_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_private (the manifest) creates its temporary file with O_EXCL|O_NOFOLLOW."""
    from botdb.ops import _common

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "backup.manifest.json"
    monkeypatch.setattr(_common.secrets, "token_hex", lambda n: "f" * (2 * n))
    planted = tmp_path / f".{target.name}.tmp-{'f' * 16}"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        _common.write_private(target, b"{}")
    assert victim.read_text() == "precious"
    assert not target.exists()
    assert planted.is_symlink()


async def test_retention_keeps_the_newest_n_backups_and_their_manifests(
    db: botdb.Database, tmp_path: Path
) -> None:
    out = tmp_path / "keep"
    results = [await ops.backup(db, out, keep=2) for _ in range(4)]
    remaining = sorted(p.name for p in out.iterdir())
    newest = sorted([r.path.name for r in results[2:]] + [r.manifest.name for r in results[2:]])
    assert remaining == newest
    assert set(results[3].deleted) == {results[1].path, results[1].manifest}
    label = results[0].path.name.rsplit("-", 1)[0]
    assert [p for _, p in ops.list_backups(out, label)] == [results[3].path, results[2].path]


async def test_keep_below_one_is_rejected_before_anything_is_written(
    db: botdb.Database, tmp_path: Path
) -> None:
    with pytest.raises(errors.ConfigurationError, match="keep"):
        await ops.backup(db, tmp_path / "none", keep=0)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_damaged_backup_is_rejected_and_the_target_is_untouched(
    db: botdb.Database, tmp_path: Path, damage: str
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    data = bytearray(result.path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    result.path.write_bytes(bytes(data))
    await db.execute("DELETE FROM members WHERE user_id = 0")
    before = await _snapshot(db)
    with pytest.raises(ops.BackupVerificationError, match=r"truncated|corrupted"):
        await ops.restore(db, result.path, yes=True)
    assert await _snapshot(db) == before
    assert len(before[1]) == 40


async def test_restore_into_a_non_empty_target_without_yes_is_refused(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    await db.execute("DELETE FROM members WHERE guild_id > 10")
    before = await _snapshot(db)
    with pytest.raises(ops.RestoreRefusedError, match="not empty"):
        await ops.restore(db, result.path)
    assert await _snapshot(db) == before


async def test_restore_with_yes_brings_back_the_backed_up_content(
    db: botdb.Database, tmp_path: Path
) -> None:
    original = await _snapshot(db)
    result = await ops.backup(db, tmp_path / "b")
    await db.execute("DELETE FROM members")
    await db.execute("UPDATE guilds SET name = 'changed'")
    await db.execute("CREATE TABLE extra (x INTEGER)")
    restored = await ops.restore(db, result.path, yes=True)
    assert await _snapshot(db) == original
    assert restored.rows == {"guilds": 20, "members": 60}
    assert "extra" not in {t["name"] for t in await ops.table_info(db)}
    await db.execute("INSERT INTO guilds VALUES (999, 'after')")  # still usable
    if db.backend == "sqlite":
        assert await db.fetchval("PRAGMA journal_mode") == "wal"


async def test_restore_without_manifest_fails_with_a_typed_error(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    result.manifest.unlink()
    with pytest.raises(ops.BackupError, match="manifest"):
        await ops.restore(db, result.path, yes=True)
    with pytest.raises(ops.BackupError, match="no backup file"):
        await ops.restore(db, tmp_path / "missing.db", yes=True)


async def test_restore_of_a_backup_from_the_other_backend_is_refused(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    manifest = orjson.loads(result.manifest.read_bytes())
    manifest["backend"] = "postgresql" if db.backend == "sqlite" else "sqlite"
    result.manifest.write_bytes(orjson.dumps(manifest))
    with pytest.raises(errors.ConfigurationError, match="transfer"):
        await ops.restore(db, result.path, yes=True)


@pytest.mark.postgres
async def test_pg_restore_leaves_no_temporary_database_behind(pg_url: str, tmp_path: Path) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute_script(SCHEMA)
        await _fill(db, range(1, 5))
        result = await ops.backup(db, tmp_path / "b", method="pg_dump")
        assert result.path.suffix == ".dump"
        await ops.restore(db, result.path, yes=True)
        name = db.settings.url.database
        left = await db.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_%'", name
        )
    assert [r["datname"] for r in left] == []


@pytest.mark.postgres
async def test_pg_backup_falls_back_to_the_portable_dump_without_pg_dump(
    pg_url: str, pg_target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the client tools on PATH, ``auto`` writes botdb's portable dump, which
    round-trips types, defaults, identity and serial positions, enums, views and indexes."""
    monkeypatch.setattr(_pg, "find_tool", lambda name: None)
    async with botdb.connect(pg_url) as db:
        await db.execute_script(
            """
            CREATE TYPE mood AS ENUM ('happy', 'sad');
            CREATE TABLE notes (
                id SERIAL PRIMARY KEY,
                ident BIGINT GENERATED BY DEFAULT AS IDENTITY,
                body TEXT NOT NULL DEFAULT 'x' CHECK (length(body) < 100),
                data JSONB, at TIMESTAMPTZ, blob BYTEA, feeling mood,
                tags TEXT[], doubled INTEGER GENERATED ALWAYS AS (id * 2) STORED
            );
            CREATE UNIQUE INDEX notes_body_lower ON notes (lower(body)) WHERE id > 1;
            CREATE TABLE refs (id INTEGER REFERENCES notes (id), note TEXT);
            CREATE VIEW note_bodies AS SELECT id, body FROM notes;
            CREATE MATERIALIZED VIEW note_count AS SELECT count(*) AS n FROM notes;
            CREATE UNIQUE INDEX note_count_n ON note_count (n);
            """
        )
        for body in ("a\tb\nc", "ünï \\ 'q'", "third"):
            await db.execute(
                "INSERT INTO notes (body, data, at, blob, feeling, tags) "
                "VALUES ($1, $2::jsonb, now(), $3, 'sad', $4)",
                body,
                '{"k": [1, 2]}',
                b"\x00\xff",
                ["a", "b,c"],
            )
        await db.execute("INSERT INTO refs VALUES (1, 'r')")
        result = await ops.backup(db, tmp_path / "b")
        assert result.method == "logical"
        assert result.path.name.endswith(".jsonl.gz")
        original = [tuple(r) for r in await db.fetch("SELECT * FROM notes ORDER BY id")]
        saved = result.manifest.read_bytes()
        result.manifest.write_bytes(saved.replace(b'"logical"', b'"pg_dump"'))
        with pytest.raises(ops.BackupError, match="pg_restore is not on PATH"):
            await ops.restore(db, result.path, yes=True)
        result.manifest.write_bytes(saved)
        assert [tuple(r) for r in await db.fetch("SELECT * FROM notes ORDER BY id")] == original
    async with botdb.connect(pg_target_url) as target:
        await ops.restore(target, result.path)
        assert [tuple(r) for r in await target.fetch("SELECT * FROM notes ORDER BY id")] == original
        assert await target.fetchval("SELECT count(*) FROM note_bodies") == 3
        assert await target.fetchval("SELECT n FROM note_count") == 3
        new = await target.fetchrow("INSERT INTO notes (body) VALUES ('four') RETURNING id, ident")
        assert (new["id"], new["ident"]) == (4, 4), "sequences continue where they were"
        with pytest.raises(errors.ForeignKeyViolationError):
            await target.execute("INSERT INTO refs VALUES (99, 'dangling')")
        with pytest.raises(errors.UniqueViolationError):
            await target.execute("INSERT INTO notes (body) VALUES ('THIRD')")


@pytest.mark.postgres
async def test_portable_dump_refuses_objects_it_cannot_carry(pg_url: str, tmp_path: Path) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute("CREATE FUNCTION answer() RETURNS integer LANGUAGE sql AS 'SELECT 42'")
        with pytest.raises(ops.BackupError, match="functions: answer"):
            await ops.backup(db, tmp_path / "b", method="logical")
    assert list((tmp_path / "b").iterdir()) == []


async def test_unknown_backup_method_is_a_configuration_error(
    db: botdb.Database, tmp_path: Path
) -> None:
    with pytest.raises(errors.ConfigurationError, match="method"):
        await ops.backup(db, tmp_path / "b", method="tarball")


async def test_in_memory_sqlite_database_can_be_backed_up_and_restored(tmp_path: Path) -> None:
    async with botdb.connect("sqlite:///:memory:") as db:
        await db.execute_script(SCHEMA)
        await _fill(db, range(1, 4))
        result = await ops.backup(db, tmp_path / "mem")
        assert result.path.name.startswith("memory-")
        await db.execute("DELETE FROM members")
        await ops.restore(db, result.path, yes=True)
        assert await db.fetchval("SELECT count(*) FROM members") == 9


@pytest.mark.postgres
async def test_pg_dump_gets_the_password_from_its_environment_not_its_arguments(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = _pg._run_tool

    async def spy(args: list[str], env: dict[str, str], what: str) -> None:
        calls.append((args, env))
        await real(args, env, what)

    monkeypatch.setattr(_pg, "_run_tool", spy)
    async with botdb.connect(_with_password(pg_url)) as db:
        await db.execute_script(SCHEMA)
        result = await ops.backup(db, tmp_path / "b", method="pg_dump")
        await ops.restore(db, result.path, yes=True)
    assert [Path(args[0]).name for args, _ in calls] == ["pg_dump", "pg_restore"]
    for args, env in calls:
        assert not any(PASSWORD in arg or "127.0.0.1" in arg for arg in args)
        assert env["PGPASSWORD"] == PASSWORD


# -- a wrong or foreign backup is refused and changes nothing ---------------------------------


async def test_restore_of_a_backup_from_a_newer_botdb_is_refused_and_changes_nothing(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    manifest = orjson.loads(result.manifest.read_bytes())
    manifest["version"] = 99
    result.manifest.write_bytes(orjson.dumps(manifest))
    await db.execute("INSERT INTO guilds VALUES (999, 'after the backup')")
    before = await db.fetchval("SELECT count(*) FROM guilds")
    with pytest.raises(errors.BackupError, match="newer botdb"):
        await ops.restore(db, result.path, yes=True)
    assert await db.fetchval("SELECT count(*) FROM guilds") == before


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"format": "other"}'])
async def test_an_unreadable_manifest_fails_clearly_and_changes_nothing(
    db: botdb.Database, tmp_path: Path, content: bytes
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    result.manifest.write_bytes(content)
    await db.execute("INSERT INTO guilds VALUES (999, 'after the backup')")
    before = await db.fetchval("SELECT count(*) FROM guilds")
    with pytest.raises(errors.BackupError, match="manifest"):
        await ops.restore(db, result.path, yes=True)
    assert await db.fetchval("SELECT count(*) FROM guilds") == before


async def test_a_manifest_that_cannot_be_read_is_a_backup_error(
    db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(db, tmp_path / "b")
    result.manifest.unlink()
    result.manifest.mkdir()
    before = await db.fetchval("SELECT count(*) FROM guilds")
    with pytest.raises(errors.BackupError, match="cannot read the manifest"):
        await ops.restore(db, result.path, yes=True)
    assert await db.fetchval("SELECT count(*) FROM guilds") == before


async def test_retention_never_deletes_the_other_backends_backups_of_the_same_name(
    tmp_path: Path,
) -> None:
    """A SQLite file ``bot.db`` and a PostgreSQL database ``bot`` share the label ``bot``:
    retention of one must not delete the other's backups."""
    out = tmp_path / "backups"
    out.mkdir()
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    others = [out / backup_name("bot", ext, old) for ext in ("dump", "jsonl.gz")]
    for other in others:
        other.write_bytes(b"postgres backup")
        other.with_name(other.name + ".json").write_bytes(b"{}")
    async with botdb.connect(f"sqlite:///{tmp_path / 'bot.db'}") as db:
        await db.execute_script(SCHEMA)
        first = await ops.backup(db, out, keep=1)
        second = await ops.backup(db, out, keep=1)
    assert second.deleted == [first.path, first.manifest]
    for other in others:
        assert other.exists()
        assert other.with_name(other.name + ".json").exists()


@pytest.mark.postgres
async def test_portable_dump_keeps_storage_parameters_and_table_options(
    pg_url: str, pg_target_url: str, tmp_path: Path
) -> None:
    """Storage parameters (table, TOAST, index, constraint index, materialized view),
    UNLOGGED, column statistics targets/options/storage/collation, replica identity,
    CLUSTER ON, extended statistics and comments all come back after a logical restore."""
    async with botdb.connect(pg_url) as db:
        await db.execute_script(
            """
            CREATE TABLE events (
                id BIGINT PRIMARY KEY WITH (fillfactor = 70),
                guild BIGINT NOT NULL, kind TEXT COLLATE "C", payload TEXT
            ) WITH (autovacuum_vacuum_scale_factor = 0.05, fillfactor = 80,
                    toast.autovacuum_enabled = false);
            CREATE INDEX events_guild ON events (guild) WITH (fillfactor = 60);
            ALTER TABLE events ALTER COLUMN guild SET STATISTICS 500;
            ALTER TABLE events ALTER COLUMN kind SET (n_distinct = 12);
            ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL;
            ALTER TABLE events REPLICA IDENTITY FULL;
            ALTER TABLE events CLUSTER ON events_guild;
            CREATE STATISTICS events_guild_kind (ndistinct) ON guild, kind FROM events;
            COMMENT ON TABLE events IS 'what happened';
            COMMENT ON COLUMN events.kind IS 'the event''s kind';
            CREATE UNLOGGED TABLE scratch (k TEXT PRIMARY KEY, v TEXT);
            CREATE MATERIALIZED VIEW per_guild WITH (fillfactor = 90)
                AS SELECT guild, count(*) AS n FROM events GROUP BY guild;
            ALTER MATERIALIZED VIEW per_guild ALTER COLUMN n SET STATISTICS 50;
            CREATE INDEX per_guild_n ON per_guild (n);
            ALTER MATERIALIZED VIEW per_guild CLUSTER ON per_guild_n;
            INSERT INTO events VALUES (1, 10, 'join', 'x'), (2, 10, 'leave', NULL);
            """
        )
        result = await ops.backup(db, tmp_path / "b", method="logical")

    query = """SELECT c.relname, c.relpersistence::text, c.reloptions, t.reloptions AS toast,
        c.relreplident::text, obj_description(c.oid, 'pg_class') AS comment
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm') ORDER BY c.relname"""
    columns = """SELECT attname, attstattarget,
        array(SELECT o FROM unnest(attoptions) o WHERE o LIKE 'n\\_distinct%'), attstorage::text,
        (SELECT collname FROM pg_collation WHERE oid = attcollation) AS collation,
        col_description(attrelid, attnum) AS comment
        FROM pg_attribute WHERE attrelid = 'events'::regclass AND attnum > 0 ORDER BY attnum"""
    extras = """SELECT (SELECT string_agg(stxname, ',') FROM pg_statistic_ext),
        (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text)
         FROM pg_index WHERE indisclustered),
        (SELECT attstattarget FROM pg_attribute
         WHERE attrelid = 'per_guild'::regclass AND attname = 'n')"""
    async with botdb.connect(pg_url) as db:
        before = [tuple(r) for r in await db.fetch(query)]
        before_columns = [tuple(r) for r in await db.fetch(columns)]
        before_extras = tuple(await db.fetchrow(extras))
    async with botdb.connect(pg_target_url) as target:
        await ops.restore(target, result.path)
        after = [tuple(r) for r in await target.fetch(query)]
        after_columns = [tuple(r) for r in await target.fetch(columns)]
        after_extras = tuple(await target.fetchrow(extras))
        assert await target.fetchval("SELECT n FROM per_guild") == 2
    assert after == before
    assert after_columns == before_columns
    assert after_extras == before_extras == ("events_guild_kind", "events_guild,per_guild_n", 50)
    options = {r[0]: (r[1], r[2], r[3]) for r in after}
    assert options["events"] == (
        "p",
        ["autovacuum_vacuum_scale_factor=0.05", "fillfactor=80"],
        ["autovacuum_enabled=false"],
    )
    assert options["events_pkey"][1] == ["fillfactor=70"]
    assert options["events_guild"][1] == ["fillfactor=60"]
    assert options["per_guild"][1] == ["fillfactor=90"]
    assert options["scratch"][0] == "u"
    by_column = {c[0]: c[1:] for c in after_columns}
    assert by_column["guild"][0] == 500
    assert by_column["kind"][1:] == (["n_distinct=12"], "x", "C", "the event's kind")
    assert by_column["payload"][2] == "e"


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("script", "listed"),
    [
        (
            "CREATE TABLE base (id INT); CREATE TABLE child (extra INT) INHERITS (base)",
            "inherited tables: child inherits base",
        ),
        (
            "CREATE TABLE t (id INT); CREATE RULE never AS ON DELETE TO t DO INSTEAD NOTHING",
            "rules: never on t",
        ),
        (
            "CREATE TABLE t (id INT); ALTER TABLE t ENABLE ROW LEVEL SECURITY",
            "row-level security: t",
        ),
        ('CREATE COLLATION mine (provider = icu, locale = "und")', "collations: mine"),
    ],
)
async def test_portable_dump_refuses_table_options_it_cannot_restore(
    pg_url: str, tmp_path: Path, script: str, listed: str
) -> None:
    async with botdb.connect(pg_url) as db:
        await db.execute_script(script)
        with pytest.raises(ops.BackupError, match=re.escape(listed)):
            await ops.backup(db, tmp_path / "b", method="logical")
    assert list((tmp_path / "b").iterdir()) == []


def test_a_refusal_carries_its_parts_for_the_command_line() -> None:
    """The library says yes=True; the CLI renders the same refusal with --yes."""
    refusal = errors.RestoreRefusedError(
        reason="sqlite:///bot.db is not empty", allow="to replace its content"
    )
    assert str(refusal) == (
        "sqlite:///bot.db is not empty: pass yes=True to replace its content; nothing was changed"
    )
    assert refusal.advice("--yes") == (
        "sqlite:///bot.db is not empty: pass --yes to replace its content; nothing was changed"
    )
    assert isinstance(refusal, errors.TargetNotEmptyError)
    plain = errors.TargetNotEmptyError("the target holds rows")
    assert (plain.reason, plain.advice("--yes")) == (None, "the target holds rows")
