"""Review fixes for ops and importers: nothing is lost or half-done when an input is wrong."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import botdb
from botdb import errors, ops
from botdb.cli import app
from botdb.importers import ImportValidationError, import_json, json_store
from botdb.ops._common import backup_name

SCHEMA = """
CREATE TABLE guilds (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
"""


def _reminder(message_id: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": message_id,
        "channel_id": 555,
        "guild_id": 42,
        "title": f"Match {message_id}",
        "required_reactions": ["✅"],
        "last_reminder": "2024-03-01T18:30:00.123456",
        "users_who_reacted": [1],
        "all_users": [1, 2],
        "interval_minutes": 120,
        "is_paused": False,
    }
    record.update(extra)
    return record


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
async def raw_db(db_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(db_url) as database:
        await database.execute_script(SCHEMA)
        await database.execute("INSERT INTO guilds VALUES (1, 'one'), (2, 'two')")
        yield database


@pytest.fixture
async def model_db(db_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(db_url) as database:
        await database.create_tables()
        yield database


async def _events(db: botdb.Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tracked_events"))


# -- backups ----------------------------------------------------------------------------------


async def test_restore_of_a_backup_from_a_newer_botdb_is_refused_and_changes_nothing(
    raw_db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(raw_db, tmp_path / "b")
    manifest = orjson.loads(result.manifest.read_bytes())
    manifest["version"] = 99
    result.manifest.write_bytes(orjson.dumps(manifest))
    await raw_db.execute("INSERT INTO guilds VALUES (3, 'three')")
    with pytest.raises(errors.BackupError, match="newer botdb"):
        await ops.restore(raw_db, result.path, yes=True)
    assert await raw_db.fetchval("SELECT count(*) FROM guilds") == 3


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"format": "other"}'])
async def test_an_unreadable_manifest_fails_clearly_and_changes_nothing(
    raw_db: botdb.Database, tmp_path: Path, content: bytes
) -> None:
    result = await ops.backup(raw_db, tmp_path / "b")
    result.manifest.write_bytes(content)
    await raw_db.execute("INSERT INTO guilds VALUES (3, 'three')")
    with pytest.raises(errors.BackupError, match="manifest"):
        await ops.restore(raw_db, result.path, yes=True)
    assert await raw_db.fetchval("SELECT count(*) FROM guilds") == 3


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


# -- importers --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["guild_id", "interval_minutes", "channel_id"])
async def test_a_number_beyond_64_bits_is_a_named_bad_record_and_nothing_is_written(
    model_db: botdb.Database, tmp_path: Path, field: str
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    path = _write(store / "r.json", {"1": _reminder(1), "2": _reminder(2, **{field: 2**70})})
    with pytest.raises(ImportValidationError) as caught:
        await import_json(model_db, path, format="reminders")
    assert [p.key for p in caught.value.problems] == ["2"]
    assert "64 bits" in caught.value.problems[0].reason
    assert sorted(p.name for p in store.iterdir()) == ["r.json"]
    assert await _events(model_db) == 0


async def test_a_file_changed_during_the_import_is_rolled_back(
    model_db: botdb.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rewrites the store between validation and the write (same record
    count, other content): the import fails and nothing is committed."""
    path = _write(tmp_path / "r.json", {"1": _reminder(1), "2": _reminder(2)})
    original = json_store._backup

    def backup_then_bot_writes(source: Path, backup_dir: Path | None) -> Path:
        copy = original(source, backup_dir)
        _write(source, {"1": _reminder(1, title="changed"), "2": _reminder(2)})
        return copy

    monkeypatch.setattr(json_store, "_backup", backup_then_bot_writes)
    with pytest.raises(errors.DataError, match="changed while it was imported"):
        await import_json(model_db, path, format="reminders")
    assert await _events(model_db) == 0


async def test_an_unchanged_file_still_imports(model_db: botdb.Database, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.json", {"1": _reminder(1)})
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    report = await import_json(model_db, path, format="reminders")
    assert report.verified
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert await _events(model_db) == 1


# -- CLI: --json parses on errors, exit codes, --help -----------------------------------------


def _sqlite_with_rows(path: Path) -> str:
    url = f"sqlite:///{path}"

    async def main() -> None:
        async with botdb.connect(url) as db:
            await db.execute_script(SCHEMA)
            await db.execute("INSERT INTO guilds VALUES (1, 'one')")

    asyncio.run(main())
    return url


def test_json_output_parses_on_errors_with_the_documented_exit_codes(tmp_path: Path) -> None:
    url = _sqlite_with_rows(tmp_path / "bot.db")
    other = _sqlite_with_rows(tmp_path / "other.db")
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
    Path(backup_file).write_bytes(b"damaged")
    damaged = runner.invoke(app, ["restore", backup_file, "--url", other, "--yes", "--json"])
    assert damaged.exit_code == 4
    assert json.loads(damaged.stdout)["error"] == "BackupVerificationError"
    assert _count_guilds(other) == 1


def _count_guilds(url: str) -> int:
    async def main() -> int:
        async with botdb.connect(url) as db:
            return int(await db.fetchval("SELECT count(*) FROM guilds"))

    return asyncio.run(main())


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


async def test_the_import_backup_directory_is_created_private_and_a_file_there_is_typed(
    model_db: botdb.Database, tmp_path: Path
) -> None:
    path = _write(tmp_path / "r.json", {"1": _reminder(1)})
    report = await import_json(model_db, path, format="reminders", backup_dir=tmp_path / "bk")
    assert report.backup is not None
    assert (tmp_path / "bk").stat().st_mode & 0o777 == 0o700
    assert os.stat(report.backup).st_mode & 0o777 == 0o600
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.ConfigurationError, match="backup directory"):
        await import_json(model_db, path, format="reminders", backup_dir=blocker / "sub")


async def test_a_manifest_that_cannot_be_read_is_a_backup_error(
    raw_db: botdb.Database, tmp_path: Path
) -> None:
    result = await ops.backup(raw_db, tmp_path / "b")
    result.manifest.unlink()
    result.manifest.mkdir()
    with pytest.raises(errors.BackupError, match="cannot read the manifest"):
        await ops.restore(raw_db, result.path, yes=True)
    assert await raw_db.fetchval("SELECT count(*) FROM guilds") == 2
