"""The ops commands through typer's CliRunner and once as a real subprocess: output, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import botdb
from botdb.cli import app

SCHEMA = """
CREATE TABLE guilds (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE members (guild_id BIGINT NOT NULL REFERENCES guilds (id), user_id BIGINT NOT NULL);
"""


def _setup(url: str) -> None:
    async def main() -> None:
        async with botdb.connect(url) as db:
            await db.execute_script(SCHEMA)
            await db.execute_many("INSERT INTO guilds VALUES ($1, $2)", [(1, "a"), (2, "b")])
            await db.execute_many("INSERT INTO members VALUES ($1, $2)", [(1, 10), (2, 20)])

    asyncio.run(main())


def _count(url: str, table: str) -> int:
    async def main() -> int:
        async with botdb.connect(url) as db:
            return int(await db.fetchval(f"SELECT count(*) FROM {table}"))

    return asyncio.run(main())


@pytest.fixture
def url(db_url: str) -> str:
    _setup(db_url)
    return db_url


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_backup_then_restore_round_trip_with_exit_codes(url: str, tmp_path: Path) -> None:
    """backup --json prints the result; restore without --yes exits 5 and changes nothing;
    --yes restores; a corrupted file exits 4."""
    code, out, err = invoke("backup", "--url", url, "--out", str(tmp_path), "--keep", "2", "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["rows"] == {"guilds": 2, "members": 2}
    backup = Path(result["path"])

    code, _, err = invoke("restore", str(backup), "--url", url)
    assert code == 5
    assert "not empty" in err
    assert _count(url, "members") == 2

    code, out, err = invoke("restore", str(backup), "--url", url, "--yes", "--json")
    assert code == 0, err
    assert orjson.loads(out)["rows"] == {"guilds": 2, "members": 2}

    data = bytearray(backup.read_bytes())
    data[-10] ^= 0x01
    backup.write_bytes(bytes(data))
    code, _, err = invoke("restore", str(backup), "--url", url, "--yes")
    assert code == 4
    assert "BackupVerificationError" in err
    assert _count(url, "guilds") == 2


def test_human_backup_output_names_the_file(url: str, tmp_path: Path) -> None:
    code, _, err = invoke("backup", "--url", url, "--out", str(tmp_path / "h"))
    assert code == 0
    assert "backup:" in err
    assert "sha256" in err


def test_info_health_integrity_optimize_json(url: str) -> None:
    code, out, _ = invoke("info", "--url", url, "--tables", "--json")
    assert code == 0
    info = orjson.loads(out)
    assert {t["name"] for t in info["tables"]} == {"guilds", "members"}

    code, out, _ = invoke("health", "--url", url, "--json")
    assert code == 0
    assert orjson.loads(out)["status"] in ("healthy", "degraded")

    code, out, _ = invoke("integrity", "--url", url, "--json")
    assert code == 0
    assert orjson.loads(out)["ok"] is True

    code, out, _ = invoke("optimize", "--url", url, "--json")
    assert code == 0
    assert orjson.loads(out)["integrity"]["ok"] is True

    code, _, err = invoke("info", "--url", url, "--tables")
    assert code == 0
    assert "members" in err


def test_integrity_problems_exit_4(sqlite_url: str) -> None:
    _setup(sqlite_url)
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    raw.execute("INSERT INTO members VALUES (99, 1)")
    raw.commit()
    raw.close()
    code, out, _ = invoke("integrity", "--url", sqlite_url, "--json")
    assert code == 4
    assert orjson.loads(out)["foreign_key_violations"][0]["parent"] == "guilds"


def test_health_of_an_unreachable_server_exits_3_with_a_report() -> None:
    url = "postgresql://root:pw@127.0.0.1:1/nothing"
    result = CliRunner().invoke(
        app, ["health", "--url", url, "--json"], env={"BOTDB_RETRY_ATTEMPTS": "1"}
    )
    assert result.exit_code == 3
    report = orjson.loads(result.stdout)
    assert report["status"] == "unhealthy"
    assert "pw" not in result.stdout


def test_init_creates_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    code, out, err = invoke("init", "--url", f"sqlite:///{path}", "--json")
    assert code == 0, err
    assert orjson.loads(out)["location"] == str(path)
    assert path.exists()


def test_bad_keep_is_a_usage_error(sqlite_url: str, tmp_path: Path) -> None:
    code, _, _ = invoke("backup", "--url", sqlite_url, "--out", str(tmp_path), "--keep", "0")
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_backup_json_in_a_real_subprocess(sqlite_url: str, tmp_path: Path) -> None:
    _setup(sqlite_url)
    env = dict(os.environ)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "botdb",
            "backup",
            "--url",
            sqlite_url,
            "--out",
            str(tmp_path / "s"),
            "--json",
        ],
        capture_output=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    result = orjson.loads(completed.stdout)
    assert Path(result["path"]).is_file()
    assert result["method"] == "sqlite"


@pytest.mark.parametrize("command", ["health", "info", "backup", "optimize", "integrity"])
def test_read_only_commands_do_not_create_a_mistyped_sqlite_file(
    command: str, tmp_path: Path
) -> None:
    """A typo in --url is an error (exit 1), not a new empty database reported as healthy."""
    path = tmp_path / "typo.db"
    extra = ["--out", str(tmp_path / "backups")] if command == "backup" else []
    result = CliRunner().invoke(app, [command, "--url", f"sqlite:///{path}", *extra])
    assert result.exit_code == 1, result.output
    assert "does not exist" in " ".join(result.output.split())  # rich wraps long lines
    assert not path.exists()
    created = CliRunner().invoke(app, ["init", "--url", f"sqlite:///{path}"])
    assert created.exit_code == 0, created.output
    assert path.exists()


# -- --json parses on errors, exit codes, --help ----------------------------------------------


def test_json_output_parses_on_errors_with_the_documented_exit_codes(tmp_path: Path) -> None:
    url, other = f"sqlite:///{tmp_path / 'bot.db'}", f"sqlite:///{tmp_path / 'other.db'}"
    _setup(url)
    _setup(other)
    runner = CliRunner()
    made = runner.invoke(app, ["backup", "--url", url, "--out", str(tmp_path / "b"), "--json"])
    assert made.exit_code == 0, made.output
    backup_file = json.loads(made.stdout)["path"]
    cases = [
        (["restore", str(tmp_path / "missing.db"), "--url", url, "--json"], 1, "BackupError"),
        (["restore", backup_file, "--url", other, "--json"], 5, "RestoreRefusedError"),
        (["import-json", str(tmp_path / "none.json"), "--url", url, "--json"], 1, None),
        (["transfer", url, other, "--json"], 5, "TargetNotEmptyError"),
        (["info", "--url", "mysql://nope/x", "--json"], 1, "ConfigurationError"),
    ]
    for args, code, error in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == code, (args, result.output)
        payload = json.loads(result.stdout)
        assert payload["ok"] is False
        assert error is None or payload["error"] == error
    before = _count(other, "guilds")
    Path(backup_file).write_bytes(b"damaged")
    damaged = runner.invoke(app, ["restore", backup_file, "--url", other, "--yes", "--json"])
    assert damaged.exit_code == 4
    assert json.loads(damaged.stdout)["error"] == "BackupVerificationError"
    assert _count(other, "guilds") == before


def test_help_renders_for_botdb_and_every_subcommand() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "botdb", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert top.returncode == 0, top.stderr
    runner = CliRunner()
    names = sorted(c.name for c in app.registered_commands if c.name)
    assert {"backup", "restore", "transfer", "import-json", "health"} <= set(names)
    for name in names:
        assert name in top.stdout
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output
