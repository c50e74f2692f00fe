"""``botdb.importers``: legacy JSON stores imported validated, backed up, atomic and verified."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import botdb
import botdb.models
from botdb import errors
from botdb.cli import app
from botdb.importers import (
    ANY_REACTION,
    ImportValidationError,
    detect_format,
    import_json,
    json_store,
)
from botdb.importers._formats import RemindersFormat
from botdb.importers._stream import JSONStreamError, ObjectReader
from botdb.importers.json_store import ImportReport, _validate
from tests.helpers import file_digest, row_counts

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

TABLES = (
    "guilds",
    "users",
    "members",
    "tracked_events",
    "event_reactions",
    "roles",
    "member_roles",
    "kv_store",
)


def reminder(message_id: int, **extra: Any) -> dict[str, Any]:
    """A record as the reminder bot's ``MatchReminder.to_dict()`` wrote it."""
    record: dict[str, Any] = {
        "message_id": message_id,
        "channel_id": 555,
        "guild_id": 42,
        "title": f"Match {message_id}",
        "required_reactions": ["✅", "❌", "❓"],
        "last_reminder": "2024-03-01T18:30:00.123456",
        "users_who_reacted": [1, 2],
        "all_users": [1, 2, 3],
        "interval_minutes": 120,
        "is_paused": False,
    }
    record.update(extra)
    return record


def member(guild: int, user: int, **extra: Any) -> dict[str, Any]:
    """A record of seed 004's member store."""
    record: dict[str, Any] = {
        "user_id": str(user),
        "guild_id": str(guild),
        "join_date": "2024-01-01T00:00:00Z",
        "roles": ["role1", "1234"],
        "preferences": {"notifications": True, "language": "ja"},
        "statistics": {"message_count": 150, "last_active": "2024-01-15T12:00:00Z", "streak": 3},
    }
    record.update(extra)
    return record


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def files(directory: Path) -> list[str]:
    """The files in ``directory`` other than the test's SQLite database."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("bot.db"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestReminders:
    async def test_import_backs_up_migrates_and_verifies(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        path = write(
            tmp_path / "watched_matches.json", {str(i): reminder(i) for i in (1001, 1002, 1003)}
        )
        before = file_digest(path)
        report = await import_json(db, path)
        assert report.format == "reminders"
        assert report.verified
        assert report.records == 3
        assert report.tables["tracked_events"].inserted == 3
        assert report.tables["event_reactions"].inserted == 6
        assert report.tables["guilds"].inserted == 1
        assert file_digest(path) == before
        backup = Path(str(report.backup))
        assert file_digest(backup) == before
        assert mode(backup) == 0o600
        row = await db.fetchrow(
            "SELECT * FROM tracked_events WHERE message_id = $1 AND guild_id = $2", 1002, 42
        )
        assert row["title"] == "Match 1002"
        assert row["interval_minutes"] == 120
        assert await db.fetchval("SELECT name FROM guilds WHERE id = 42") == "Guild 42"
        assert (
            await db.fetchval("SELECT count(*) FROM event_reactions WHERE emoji = $1", ANY_REACTION)
            == 6
        )
        assert await db.fetchval("SELECT count(*) FROM members WHERE guild_id = 42") == 3

    async def test_second_run_changes_nothing_and_a_changed_record_is_updated(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "r.json", {str(i): reminder(i) for i in (1, 2)})
        await import_json(db, path)
        again = await import_json(db, path, backup_dir=tmp_path / "bk")
        assert all(c.inserted == 0 and c.updated == 0 for c in again.tables.values())
        assert again.tables["tracked_events"].unchanged == 2
        write(
            path, {"1": reminder(1, title="Renamed", users_who_reacted=[1, 2, 3]), "2": reminder(2)}
        )
        third = await import_json(db, path, backup_dir=tmp_path / "bk")
        assert third.tables["tracked_events"].updated == 1
        assert third.tables["tracked_events"].unchanged == 1
        assert third.tables["event_reactions"].inserted == 1
        assert (await row_counts(db, TABLES))["tracked_events"] == 2
        assert len(list((tmp_path / "bk").iterdir())) == 2

    async def test_dry_run_reports_counts_and_writes_nothing(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "r.json", {str(i): reminder(i) for i in range(1, 11)})
        report = await import_json(db, path, dry_run=True)
        assert report.dry_run
        assert report.tables["tracked_events"].inserted == 10
        assert report.backup is None
        assert files(tmp_path) == ["r.json"]
        assert set((await row_counts(db, TABLES)).values()) == {0}


class TestMembers:
    async def test_member_store_maps_roles_preferences_and_statistics(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        path = write(
            tmp_path / "members.json",
            {
                "987654321_123456789": member(987654321, 123456789),
                "987654321_5": member(987654321, 5, roles=[], statistics=None),
            },
        )
        report = await import_json(db, path)
        assert report.format == "members"
        assert report.tables["members"].inserted == 2
        assert report.tables["roles"].inserted == 1
        assert report.tables["member_roles"].inserted == 1
        async with db.session() as s:
            got = await s.get(botdb.models.Member, (987654321, 123456789))
            assert got is not None
            assert got.message_count == 150
            assert got.last_active_at == dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC)
            assert got.joined_at == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
            assert got.preferences == {
                "notifications": True,
                "language": "ja",
                "_legacy": {"roles": ["role1"], "statistics": {"streak": 3}},
            }
        again = await import_json(db, path)
        assert sum(c.inserted + c.updated for c in again.tables.values()) == 0


class TestGeneric:
    SPEC = """
records = "data.settings"
table = "kv_store"

[fields]
namespace = { value = "legacy" }
scope = "scope"
key = "$key"
value = { from = "payload", type = "json" }
expires_at = { from = "expires", default = "2030-01-01T00:00:00" }
"""

    async def test_a_toml_spec_maps_records_into_a_table(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        spec = tmp_path / "spec.toml"
        spec.write_text(self.SPEC)
        data = {
            "version": 2,
            "data": {
                "other": [1, 2],
                "settings": {
                    "prefix": {"scope": "guild:1", "payload": "!", "expires": 1700000000},
                    "lang": {"scope": "guild:1", "payload": {"x": [1]}},
                },
            },
        }
        path = write(tmp_path / "settings.json", data)
        report = await import_json(db, path, spec=spec)
        assert report.format == "generic"
        assert report.tables["kv_store"].inserted == 2
        row = await db.fetchrow("SELECT * FROM kv_store WHERE key = 'prefix'")
        assert row["scope"] == "guild:1"
        again = await import_json(db, path, spec=spec, dry_run=True)
        assert again.tables["kv_store"].unchanged == 2

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ({"table": "no_such_table", "fields": {"a": "b"}}, "unknown table"),
            ({"table": "kv_store", "fields": {"nope": "x"}}, "unknown column"),
            ({"table": "kv_store", "fields": {"namespace": "a", "scope": "b"}}, "required"),
            (
                {"table": "kv_store", "fields": {"namespace": {"from": "a", "type": "uuid"}}},
                "type must be",
            ),
        ],
    )
    async def test_a_bad_spec_is_a_configuration_error(
        self, db: botdb.Database, tmp_path: Path, spec: dict[str, Any], message: str
    ) -> None:
        spec_path = tmp_path / "spec.json"
        spec_path.write_text(json.dumps(spec))
        path = write(tmp_path / "x.json", {"a": {"b": 1}})
        before = file_digest(path)
        with pytest.raises(errors.ConfigurationError, match=message):
            await import_json(db, path, spec=spec_path)
        assert file_digest(path) == before
        assert files(tmp_path) == ["spec.json", "x.json"]


BAD_FILES: dict[str, tuple[bytes, type[errors.BotDBError], str]] = {
    "invalid json": (b'{"1": {"title": "x",}', errors.DataError, "line 1"),
    "empty file": (b"", errors.DataError, "empty"),
    "whitespace only": (b"  \n ", errors.DataError, "empty"),
    "top level array": (b"[1, 2, 3]", errors.DataError, "not a JSON object"),
    "top level string": (b'"hello"', errors.DataError, "not a JSON object"),
    "no format matches": (b'{"a": {"colour": "red"}}', errors.DataError, "no known format"),
    "truncated": (b'{"1": {"title": "x", "channel_id": 5', errors.DataError, "line"),
    "not utf-8": (b'{"1": "\xff\xfe"}', errors.DataError, "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_file_is_a_typed_error_and_changes_nothing(
    db: botdb.Database, tmp_path: Path, case: str
) -> None:
    content, error, message = BAD_FILES[case]
    path = tmp_path / "store.json"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        await import_json(db, path)
    assert path.read_bytes() == content
    assert files(tmp_path) == ["store.json"]
    assert set((await row_counts(db, TABLES)).values()) == {0}


async def test_one_bad_record_among_thousands_is_named_and_nothing_is_imported(
    db: botdb.Database, tmp_path: Path
) -> None:
    data = {str(i): reminder(i) for i in range(1, 3001)}
    data["1777"]["interval_minutes"] = -5
    data["2500"] = reminder(2500, guild_id=0)
    path = write(tmp_path / "big.json", data)
    before = file_digest(path)
    with pytest.raises(ImportValidationError) as caught:
        await import_json(db, path, format="reminders")
    keys = {p.key: p.reason for p in caught.value.problems}
    assert set(keys) == {"1777", "2500"}
    assert "interval_minutes" in keys["1777"]
    assert "guild_id is 0" in keys["2500"]
    assert file_digest(path) == before
    assert files(tmp_path) == ["big.json"]
    assert set((await row_counts(db, TABLES)).values()) == {0}


async def test_unknown_format_and_missing_file_are_configuration_errors(
    db: botdb.Database, tmp_path: Path
) -> None:
    path = write(tmp_path / "r.json", {"1": reminder(1)})
    with pytest.raises(errors.ConfigurationError, match="unknown format"):
        await import_json(db, path, format="xml")
    with pytest.raises(errors.ConfigurationError, match="no such file"):
        await import_json(db, tmp_path / "missing.json")
    with pytest.raises(errors.ConfigurationError, match="spec"):
        await import_json(db, path, format="generic")


async def test_a_database_error_in_a_late_batch_rolls_back_every_batch(
    db: botdb.Database, tmp_path: Path
) -> None:
    """A trigger refuses the 40th event: the 39 written before it are rolled back too."""
    path = write(tmp_path / "r.json", {str(i): reminder(i) for i in range(1, 51)})
    if db.backend == "sqlite":
        await db.execute(
            "CREATE TRIGGER refuse_40 BEFORE INSERT ON tracked_events "
            "WHEN NEW.message_id = 40 BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    else:
        await db.execute_script(
            "CREATE FUNCTION refuse_40() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.message_id = 40 THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; "
            "END IF; RETURN NEW; END $$; CREATE TRIGGER refuse_40 BEFORE INSERT ON "
            "tracked_events FOR EACH ROW EXECUTE FUNCTION refuse_40();"
        )
    with pytest.raises(errors.BotDBError):
        await import_json(db, path, batch_size=7)
    assert set((await row_counts(db, TABLES)).values()) == {0}


def test_detection_reads_only_the_first_records(tmp_path: Path) -> None:
    """Detection looks at the first five members: a broken tail is found by validation."""
    path = tmp_path / "m.json"
    head = ", ".join(f'"1_{i}": {{"roles": []}}' for i in range(1, 6))
    path.write_text("{" + head + ', "garbage": ' + "[" * 10)
    assert detect_format(path) == "members"


def test_the_stream_reader_matches_json_loads_at_any_chunk_size() -> None:
    data = {
        str(i): {"n": i * 1.5, "s": 'é\\"' * i, "l": [None, True, {"k": -i}]} for i in range(40)
    }
    text = json.dumps(data, indent=1)
    for chunk in (1, 2, 5, 64, 4096):
        assert dict(ObjectReader(io.StringIO(text), chunk_size=chunk).items()) == data
    nested = '{"a": 1, "data": {"items": [10, 20]}}'
    reader = ObjectReader(io.StringIO(nested), chunk_size=3)
    assert list(reader.items(("data", "items"))) == [("0", 10), ("1", 20)]
    with pytest.raises(JSONStreamError, match="line 3, column 8"):
        list(ObjectReader(io.StringIO('{\n"a": 1,\n"b": 2 3}'), chunk_size=2).items())


@pytest.mark.slow
def test_a_huge_file_is_validated_in_bounded_memory(tmp_path: Path) -> None:
    """~50 MB of reminders validate with under 6 MB of traced memory (a json.load of the
    file would need several hundred); kept to a few seconds with few, large records."""
    path = tmp_path / "huge.json"
    padding = "x" * 8500
    with path.open("w", encoding="utf-8") as out:
        out.write("{")
        for i in range(1, 6001):
            out.write(("," if i > 1 else "") + json.dumps(str(i)) + ":")
            out.write(json.dumps(reminder(i, description=padding)))
        out.write("}")
    assert path.stat().st_size > 50_000_000
    report = ImportReport(path=str(path))
    tracemalloc.start()
    try:
        _validate(path, RemindersFormat(), report)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.records == 6000
    assert report.problem_count == 0
    assert peak < 6 * 1024 * 1024


def test_cli_import_json_with_json_output(sqlite_url: str, tmp_path: Path) -> None:
    asyncio.run(_create(sqlite_url))
    path = write(tmp_path / "r.json", {str(i): reminder(i) for i in (1, 2)})
    runner = CliRunner()
    dry = runner.invoke(app, ["import-json", str(path), "--url", sqlite_url, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["tables"]["tracked_events"]["inserted"] == 2
    done = runner.invoke(
        app,
        [
            "import-json",
            str(path),
            "--url",
            sqlite_url,
            "--format",
            "reminders",
            "--backup-dir",
            str(tmp_path / "bk"),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["verified"] is True
    bad = write(tmp_path / "bad.json", {"1": reminder(1, channel_id="abc")})
    refused = runner.invoke(app, ["import-json", str(bad), "--url", sqlite_url, "--json"])
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["problems"][0]["key"] == "1"


def test_cli_import_json_in_a_real_subprocess(sqlite_url: str, tmp_path: Path) -> None:
    asyncio.run(_create(sqlite_url))
    path = write(tmp_path / "members.json", {"1_2": member(1, 2)})
    proc = subprocess.run(
        [sys.executable, "-m", "botdb", "import-json", str(path), "--url", sqlite_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["format"] == "members"
    assert data["tables"]["members"]["inserted"] == 1


async def _create(url: str) -> None:
    async with botdb.connect(url) as db:
        await db.create_tables()


# -- nothing half-done when an input is wrong ------------------------------------------------


async def _events(db: botdb.Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tracked_events"))


@pytest.mark.parametrize("field", ["guild_id", "interval_minutes", "channel_id"])
async def test_a_number_beyond_64_bits_is_a_named_bad_record_and_nothing_is_written(
    db: botdb.Database, tmp_path: Path, field: str
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    path = write(store / "r.json", {"1": reminder(1), "2": reminder(2, **{field: 2**70})})
    with pytest.raises(ImportValidationError) as caught:
        await import_json(db, path, format="reminders")
    assert [p.key for p in caught.value.problems] == ["2"]
    assert "64 bits" in caught.value.problems[0].reason
    assert sorted(p.name for p in store.iterdir()) == ["r.json"]
    assert await _events(db) == 0


async def test_a_file_changed_during_the_import_is_rolled_back(
    db: botdb.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rewrites the store between validation and the write (same record
    count, other content): the import fails and nothing is committed."""
    path = write(tmp_path / "r.json", {"1": reminder(1), "2": reminder(2)})
    original = json_store._backup

    def backup_then_bot_writes(source: Path, backup_dir: Path | None) -> Path:
        copy = original(source, backup_dir)
        write(source, {"1": reminder(1, title="changed"), "2": reminder(2)})
        return copy

    monkeypatch.setattr(json_store, "_backup", backup_then_bot_writes)
    with pytest.raises(errors.DataError, match="changed while it was imported"):
        await import_json(db, path, format="reminders")
    assert await _events(db) == 0


async def test_an_unchanged_file_imports_and_is_left_byte_identical(
    db: botdb.Database, tmp_path: Path
) -> None:
    path = write(tmp_path / "r.json", {"1": reminder(1)})
    before = file_digest(path)
    report = await import_json(db, path, format="reminders")
    assert report.verified
    assert file_digest(path) == before
    assert await _events(db) == 1


async def test_the_import_backup_directory_is_created_private_and_a_file_there_is_typed(
    db: botdb.Database, tmp_path: Path
) -> None:
    path = write(tmp_path / "r.json", {"1": reminder(1)})
    report = await import_json(db, path, format="reminders", backup_dir=tmp_path / "bk")
    assert report.backup is not None
    assert (tmp_path / "bk").stat().st_mode & 0o777 == 0o700
    assert os.stat(report.backup).st_mode & 0o777 == 0o600
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.ConfigurationError, match="backup directory"):
        await import_json(db, path, format="reminders", backup_dir=blocker / "sub")


def stamp(value: Any) -> dt.datetime:
    """A timestamp column as read by raw SQL (SQLite returns its UTC text)."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    assert isinstance(value, dt.datetime)
    return value


class TestTimestampsAndSchema:
    async def test_the_stores_own_timestamps_are_kept(
        self, db: botdb.Database, tmp_path: Path
    ) -> None:
        """A record's created_at/updated_at become the row's (naive = UTC); a record without
        them in the same batch gets the column's default, never NULL."""
        stamped = reminder(
            2001, created_at="2023-05-06T07:08:09", updated_at="2023-06-01T00:00:00+02:00"
        )
        path = write(tmp_path / "watched.json", {"2001": stamped, "2002": reminder(2002)})
        await import_json(db, path)
        rows = {
            r["message_id"]: r
            for r in await db.fetch("SELECT message_id, created_at, updated_at FROM tracked_events")
        }
        assert stamp(rows[2001]["created_at"]) == dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
        assert stamp(rows[2001]["updated_at"]) == dt.datetime(2023, 5, 31, 22, tzinfo=dt.UTC)
        assert stamp(rows[2002]["created_at"]) > stamp(rows[2001]["created_at"])

        members = write(
            tmp_path / "members.json",
            {"42_7": member(42, 7, created_at="2022-02-02T02:02:02Z"), "42_8": member(42, 8)},
        )
        await import_json(db, members)
        created = await db.fetchval(
            "SELECT created_at FROM members WHERE guild_id = 42 AND user_id = 7"
        )
        assert stamp(created) == dt.datetime(2022, 2, 2, 2, 2, 2, tzinfo=dt.UTC)
        preferences = await db.fetchval(
            "SELECT preferences FROM members WHERE guild_id = 42 AND user_id = 7"
        )
        if isinstance(preferences, str):
            preferences = json.loads(preferences)
        assert "created_at" not in preferences.get("_legacy", {})

    async def test_an_uninitialised_database_is_refused_before_anything_is_written(
        self, make_db: Any, tmp_path: Path
    ) -> None:
        db = await make_db(create_tables=False)
        path = write(tmp_path / "watched.json", {"3001": reminder(3001)})
        with pytest.raises(errors.UndefinedTableError, match="run `botdb init` first") as info:
            await import_json(db, path)
        assert info.value.table == "guilds"
        assert files(tmp_path) == ["watched.json"], "no backup copy either"
        tables = await db.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            if db.backend == "sqlite"
            else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        assert list(tables) == []
