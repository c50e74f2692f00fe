"""The ``botdb`` command as a real subprocess with stdout and stderr as pipes: unwrapped
lines, no retry chatter without ``-v``, the README's exit codes, CLI wording."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

import botdb
from botdb.cli import app
from botdb.config import DatabaseURL

SCHEMA = """
CREATE TABLE guilds (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE members (guild_id BIGINT NOT NULL REFERENCES guilds (id), user_id BIGINT NOT NULL);
"""


def botdb_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m botdb ARGS`` with stdout/stderr as pipes and an 80-column COLUMNS (which
    a wrapping console would honour)."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("BOTDB_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "botdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _setup(url: str) -> None:
    async def main() -> None:
        async with botdb.connect(url) as db:
            await db.execute_script(SCHEMA)
            await db.execute_many("INSERT INTO guilds VALUES ($1, $2)", [(1, "a"), (2, "b")])

    asyncio.run(main())


def test_a_long_error_stays_on_one_line(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    done = botdb_cli("info", "--url", f"sqlite:///{deep / 'missing.db'}")
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = lines(done.stderr)
    assert len(line) > 250
    assert line.startswith("error: ConfigurationError: ")
    assert "missing.db does not exist" in line
    assert not (deep / "missing.db").exists()


def test_an_unreachable_server_is_one_line_with_the_attempt_count() -> None:
    """No retry chatter without -v (exit 3); with -v the retries are shown before it."""
    url = f"postgresql://root@127.0.0.1:{closed_port()}/botdb"
    quiet = botdb_cli("info", "--url", url)
    assert quiet.returncode == 3
    [line] = lines(quiet.stderr)
    assert "retrying" not in line
    assert f"could not connect to {url} after 3 attempts: " in line

    verbose = botdb_cli("-v", "info", "--url", url)
    assert verbose.returncode == 3
    chatter = [x for x in lines(verbose.stderr) if "retrying" in x]
    assert len(chatter) == 2
    assert "attempt 1 of 3" in chatter[0]
    assert "after 3 attempts" in lines(verbose.stderr)[-1]


def test_info_json_always_lists_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    _setup(url)
    done = botdb_cli("info", "--url", url, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert {t["name"]: t["rows"] for t in info["tables"]} == {"guilds": 2, "members": 0}
    same = botdb_cli("info", "--url", url, "--json", "--tables")
    assert json.loads(same.stdout)["tables"] == info["tables"]
    human = botdb_cli("info", "--url", url)
    assert human.returncode == 0
    assert "members" not in human.stderr, "the human view lists tables only with --tables"
    assert "members" in botdb_cli("info", "--url", url, "--tables").stderr


def test_exit_codes_as_documented(tmp_path: Path) -> None:
    """0 done, 1 botdb error, 2 usage, 4 a check failed, 5 refused (3 is tested above)."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    assert botdb_cli("init", "--url", url).returncode == 0
    assert botdb_cli("info", "--url", "mysql://nope/x").returncode == 1
    usage = botdb_cli("info", "--no-such-option")
    assert usage.returncode == 2
    assert "No such option" in usage.stderr

    other = f"sqlite:///{tmp_path / 'other.db'}"
    _setup(other)
    made = botdb_cli("backup", "--url", other, "--out", str(tmp_path / "b"), "--json")
    assert made.returncode == 0, made.stderr
    backup = Path(json.loads(made.stdout)["path"])
    refused = botdb_cli("restore", str(backup), "--url", other)
    assert refused.returncode == 5
    [line] = lines(refused.stderr)
    assert line == (
        f"error: RestoreRefusedError: {other} is not empty: pass --yes to replace its content; "
        "nothing was changed"
    )
    backup.write_bytes(b"damaged")
    assert botdb_cli("restore", str(backup), "--url", other, "--yes").returncode == 4

    broken = tmp_path / "broken.db"
    with sqlite3.connect(broken) as conn:
        conn.executescript(
            "PRAGMA foreign_keys = OFF;"
            "CREATE TABLE p (id INTEGER PRIMARY KEY);"
            "CREATE TABLE c (p INTEGER REFERENCES p (id));"
            "INSERT INTO c VALUES (99);"
        )
    assert botdb_cli("integrity", "--url", f"sqlite:///{broken}").returncode == 4


def test_import_json_into_an_uninitialised_database(tmp_path: Path) -> None:
    """Says to run `botdb init` (or pass --init), exits 1 and creates nothing; --init
    initialises and imports, keeping the store's created_at."""
    store = tmp_path / "watched.json"
    store.write_text(
        json.dumps(
            {
                "123": {
                    "channel_id": 5,
                    "guild_id": 42,
                    "title": "Match",
                    "created_at": "2023-01-02T03:04:05",
                }
            }
        )
    )
    path = tmp_path / "bot.db"
    url = f"sqlite:///{path}"
    missing = botdb_cli("import-json", str(store), "--url", url)
    assert missing.returncode == 1
    [line] = lines(missing.stderr)
    assert "run `botdb init` first, or pass --init" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["watched.json"]

    path.touch()  # an existing file without the schema (or an empty PostgreSQL database)
    empty = botdb_cli("import-json", str(store), "--url", url, "--json")
    assert empty.returncode == 1
    assert json.loads(empty.stdout)["error"] == "UndefinedTableError"
    [line] = lines(empty.stderr)
    assert "no botdb schema yet" in line
    assert "run `botdb init` first, or pass --init" in line
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("bot.db")] == [
        "watched.json"
    ], "no backup copy of the store either"

    path.unlink()
    done = botdb_cli("import-json", str(store), "--url", url, "--init", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tables"]["tracked_events"]["inserted"] == 1
    with sqlite3.connect(path) as conn:
        created = conn.execute("SELECT created_at FROM tracked_events").fetchone()[0]
    assert created.startswith("2023-01-02 03:04:05")


@pytest.mark.postgres
def test_import_json_into_an_empty_postgresql_database_changes_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "watched.json"
    store.write_text(json.dumps({"123": {"channel_id": 5, "guild_id": 42, "title": "Match"}}))
    done = botdb_cli("import-json", str(store), "--url", pg_url)
    assert done.returncode == 1
    assert "run `botdb init` first, or pass --init" in done.stderr

    async def tables() -> list[str]:
        async with botdb.connect(pg_url) as db:
            rows = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return [r[0] for r in rows]

    assert asyncio.run(tables()) == []
    assert botdb_cli("import-json", str(store), "--url", pg_url, "--init").returncode == 0
    assert "tracked_events" in asyncio.run(tables())


@pytest.fixture
def pg_target_url(pg_url: str) -> Iterator[str]:
    """A second, empty PostgreSQL database (dropped after the test)."""
    name = f"botdb_test_pipe_{secrets.token_hex(5)}"
    admin = dataclasses.replace(DatabaseURL.parse(pg_url), database="postgres").asyncpg_dsn()

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield dataclasses.replace(DatabaseURL.parse(pg_url), database=name).asyncpg_dsn()
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_logical_backup_and_restore_through_the_cli_keep_storage_parameters(
    pg_url: str, pg_target_url: str, tmp_path: Path
) -> None:
    query = """SELECT c.relname, c.reloptions FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' ORDER BY c.relname"""

    async def options(url: str, script: str = "") -> list[tuple[str, list[str] | None]]:
        async with botdb.connect(url) as db:
            if script:
                await db.execute_script(script)
            return [(r[0], r[1]) for r in await db.fetch(query)]

    before = asyncio.run(
        options(
            pg_url,
            "CREATE TABLE t (id INT PRIMARY KEY, g INT) "
            "WITH (autovacuum_vacuum_scale_factor = 0.05, fillfactor = 80);"
            "CREATE INDEX t_g ON t (g) WITH (fillfactor = 60)",
        )
    )
    assert ("t", ["autovacuum_vacuum_scale_factor=0.05", "fillfactor=80"]) in before
    made = botdb_cli(
        "backup", "--url", pg_url, "--method", "logical", "--out", str(tmp_path), "--json"
    )
    assert made.returncode == 0, made.stderr
    backup = json.loads(made.stdout)["path"]
    restored = botdb_cli("restore", backup, "--url", pg_target_url)
    assert restored.returncode == 0, restored.stderr
    assert asyncio.run(options(pg_target_url)) == before


@pytest.mark.parametrize(
    ("platform", "export"),
    [("discord", "discord_channel.json"), ("telegram", "telegram_account.json")],
)
def test_chat_import_never_creates_a_missing_sqlite_file(
    tmp_path: Path, platform: str, export: str
) -> None:
    path = tmp_path / "bot.db"
    exports = Path(__file__).parent / "fixtures" / "exports"
    done = botdb_cli("import", platform, str(exports / export), "--url", f"sqlite:///{path}")
    assert done.returncode == 1
    [line] = lines(done.stderr)
    assert "does not exist (`botdb init` creates it)" in line
    assert not path.exists()


def test_the_command_leaves_propagation_to_the_application(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Run in-process (as a bot embedding the app would), the command's log handler does not
    stop botdb's records from reaching the application's own logging."""
    result = CliRunner().invoke(app, ["info", "--url", "mysql://nope/x"])
    assert result.exit_code == 1
    with caplog.at_level(logging.INFO):
        logging.getLogger("botdb.retry").info("still seen")
    assert "still seen" in caplog.text
