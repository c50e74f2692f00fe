"""DiscordChatExporter imports: every fixture version read into events, then written on both
backends (idempotent, one transaction), and every bad input a typed error that changes nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.importers import ChatImportReport, import_discord
from botdb.importers._chat import MessageKeys, verify_messages
from botdb.importers.discord import parse_discord
from botdb.importers.samples import main, write_discord_export
from botdb.recorder._events import (
    AttachmentInfo,
    ChannelInfo,
    CommandInvoked,
    GuildInfo,
    MemberJoined,
    MentionInfo,
    MessageCreated,
    ReactionAdded,
    ReactionCounted,
    ThreadInfo,
    UserInfo,
)
from tests.helpers import MakeDB, file_digest, row_counts

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
V2 = EXPORTS / "discord_v2_channel.json"
CHANNEL = EXPORTS / "discord_channel.json"
THREAD = EXPORTS / "discord_thread.json"
THREAD_NO_PARENT = EXPORTS / "discord_thread_unlinked_header.json"
DM = EXPORTS / "discord_dm.json"
TELEGRAM = EXPORTS / "telegram_forum_supergroup.json"
GUILD = 603246092402032670
GENERAL = 603246092402032680
THREAD_ID = 1100000000000000500


def events(*paths: Path) -> list[Any]:
    return list(parse_discord(*paths))


def of(items: list[Any], kind: type) -> list[Any]:
    return [item for item in items if isinstance(item, kind)]


def messages(items: list[Any]) -> dict[int, MessageCreated]:
    return {m.id: m for m in of(items, MessageCreated)}


# -- export -> events -------------------------------------------------------------------------


def test_an_old_export_without_mentions_or_reaction_users_keeps_the_counts() -> None:
    """2.x exports: null emoji ids, no mentions or users, offsets other than UTC."""
    items = events(V2)
    by_id = messages(items)
    first, second = by_id[700000000000000001], by_id[700000000000000002]
    assert first.created_at == datetime(2020, 4, 14, 18, 3, 12, tzinfo=UTC)
    assert second.created_at == datetime(2020, 4, 14, 18, 10, 0, 500000, tzinfo=UTC)
    assert second.edited_at == datetime(2020, 4, 14, 18, 15, 30, 250000, tzinfo=UTC)
    assert second.pinned
    assert second.is_bot
    assert not first.pinned
    assert second.mentions == (MentionInfo("everyone", GUILD),)
    assert second.extra == {"embeds": [orjson.loads(V2.read_bytes())["messages"][1]["embeds"][0]]}
    assert second.attachments == (
        AttachmentInfo(
            position=0,
            external_id="700000000000000900",
            filename="chart.png",
            url="https://cdn.discordapp.com/attachments/603246092402032673/700000000000000900/chart.png",
            content_type="image/png",
            size=20480,
        ),
    )
    counts = of(items, ReactionCounted)
    assert [(c.emoji_name, c.emoji_id, c.count, c.animated) for c in counts] == [
        ("\U0001f44d", None, 3, False),
        ("blobwave", 612345678901234567, 1, True),
    ]
    assert of(items, ReactionAdded) == []
    assert of(items, GuildInfo) == [GuildInfo(GUILD, "discord", "Botdb Test Guild")]


def test_a_current_export_maps_every_field() -> None:
    """7 fractional digits, replies, pins, member joins, reaction users, stickers, commands."""
    items = events(CHANNEL)
    by_id = messages(items)
    join, welcome, reply = (by_id[1100000000000000000 + n] for n in (1, 2, 3))
    assert join.kind == "join"
    assert join.author_id == 333333333333333333
    assert join.created_at == datetime(2023, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    assert MemberJoined(GUILD, 333333333333333333, join.created_at) in items
    assert welcome.created_at == datetime(2023, 5, 1, 8, 30, tzinfo=UTC)  # +02:00 in the file
    assert welcome.pinned
    assert welcome.mentions == (MentionInfo("user", 333333333333333333),)
    assert welcome.jump_url == f"https://discord.com/channels/{GUILD}/{GENERAL}/{welcome.id}"
    assert reply.kind == "reply"
    assert reply.reply_to_id == welcome.id
    assert reply.edited_at == datetime(2023, 5, 1, 8, 40, tzinfo=UTC)
    assert [a.content_type for a in reply.attachments] == ["text/plain", "image/jpeg"]
    assert reply.extra is not None
    assert reply.extra["stickers"][0]["name"] == "Wave"
    assert by_id[1100000000000000006].kind == "pin"
    assert by_id[1100000000000000006].reply_to_id is None
    added = {(r.user_id, r.emoji_name, r.emoji_id) for r in of(items, ReactionAdded)}
    assert added == {
        (333333333333333333, "\u2764\ufe0f", None),
        (444444444444444444, "\u2764\ufe0f", None),
        (333333333333333333, "blobwave", 612345678901234567),
    }
    assert {r.at for r in of(items, ReactionAdded)} == {welcome.created_at}
    assert (
        CommandInvoked(
            444444444444444444,
            "quiz",
            datetime(2023, 5, 2, 12, 5, tzinfo=UTC),
            guild_id=GUILD,
            channel_id=GENERAL,
            args={"interaction_id": "1100000000000000600"},
        )
        in items
    )
    users = {u.id: u for u in of(items, UserInfo)}
    assert users[111111111111111111].display_name == "Alice (mod)"
    assert users[555555555555555555].is_bot is True
    assert len(of(items, UserInfo)) == len(users) == 4  # each user announced once
    # The category is a channel of its own, the parent of #general.
    assert ChannelInfo(603246092402032671, GUILD, "Text Channels", "category") in items
    assert ChannelInfo(GENERAL, GUILD, "general", "text", 603246092402032671) in items


def test_a_thread_file_goes_under_its_parent_channel() -> None:
    items = events(CHANNEL, THREAD)
    assert of(items, ThreadInfo) == [ThreadInfo(THREAD_ID, GUILD, GENERAL, "Planning")]
    in_thread = [m for m in of(items, MessageCreated) if m.thread_id == THREAD_ID]
    assert {m.id for m in in_thread} == {1100000000000000501, 1100000000000000502}
    assert {m.channel_id for m in in_thread} == {GENERAL}
    assert [(c.emoji_name, c.count) for c in of(items, ReactionCounted)][-1] == ("\U0001f525", 4)


def test_a_thread_file_without_a_parent_is_linked_by_its_thread_created_message() -> None:
    """Given before the channel file: thread files are read after channel files."""
    report = ChatImportReport("discord")
    items = list(parse_discord(THREAD_NO_PARENT, CHANNEL, report=report))
    message = messages(items)[1100000000000000503]
    assert (message.channel_id, message.thread_id) == (GENERAL, THREAD_ID)
    assert report.threads == 1
    assert report.skipped == {}


def test_a_thread_nobody_links_is_imported_as_a_channel_and_reported() -> None:
    report = ChatImportReport("discord")
    items = list(parse_discord(THREAD_NO_PARENT, report=report))
    assert messages(items)[1100000000000000503].channel_id == THREAD_ID
    assert report.skipped == {"thread file without a known parent: imported as a channel": 1}


def test_a_dm_is_a_private_guild_whose_id_is_the_channel_id() -> None:
    items = events(DM)
    dm = 900000000000000123
    assert of(items, GuildInfo) == [GuildInfo(dm, "discord", "dave", "private")]
    assert of(items, ChannelInfo) == [ChannelInfo(dm, dm, "dave", "private")]
    by_id = messages(items)
    assert {m.guild_id for m in by_id.values()} == {dm}
    assert by_id[1100000000000000701].created_at == datetime(2023, 6, 1, 13, 0, tzinfo=UTC)
    assert (
        by_id[1100000000000000702].jump_url
        == f"https://discord.com/channels/@me/{dm}/{1100000000000000702}"
    )


# -- bad input (no database) ------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.93, 0.999])
def test_a_truncated_file_names_the_file_and_the_position(tmp_path: Path, cut: float) -> None:
    data = CHANNEL.read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(errors.DataError, match=r"cut\.json: .*(message #\d+|not a Discord)"):
        events(path)


def test_a_field_of_the_wrong_type_names_the_message(tmp_path: Path) -> None:
    document = orjson.loads(CHANNEL.read_bytes())
    document["messages"][2]["timestamp"] = 12345
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(errors.DataError) as caught:
        events(path)
    text = str(caught.value)
    assert "bad.json" in text
    assert "'1100000000000000003'" in text
    assert "message #3" in text
    assert "time must be a string" in text


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("count", -1, "must be a non-negative integer"),
        ("count", 1 << 40, "is too large"),
        ("count", "3", "must be a non-negative integer"),
    ],
)
def test_a_bad_reaction_count_names_the_message(
    tmp_path: Path, field: str, value: Any, reason: str
) -> None:
    document = orjson.loads(V2.read_bytes())
    document["messages"][0]["reactions"][1][field] = value
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(
        errors.DataError, match=rf"'700000000000000001'.*reactions\[1\]\.count .*{reason}"
    ):
        events(path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"[1, 2, 3]", "not a DiscordChatExporter export"),
        (b'{"guild": {"id": "1"}, "messages": []}', "not a DiscordChatExporter export"),
        (b'{"guild": {"id": "x1"}, "channel": {"id": "2"}, "messages": []}', "guild.id"),
        (b"   \n", "truncated"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_files_that_are_not_exports_are_data_errors(
    tmp_path: Path, content: bytes, pattern: str
) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(errors.DataError, match=pattern):
        events(path)


def test_a_telegram_export_is_refused_with_a_hint() -> None:
    with pytest.raises(errors.DataError, match="Telegram Desktop export"):
        events(TELEGRAM)


def test_empty_missing_and_directory_paths(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(errors.DataError, match=r"empty\.json is empty"):
        events(tmp_path / "empty.json")
    with pytest.raises(errors.ConfigurationError, match="cannot read"):
        events(tmp_path / "missing.json")
    with pytest.raises(errors.ConfigurationError, match="is a directory"):
        events(tmp_path)
    with pytest.raises(errors.ConfigurationError, match="no export file"):
        events()


# -- into the database, both backends ---------------------------------------------------------

ALL = (V2, CHANNEL, THREAD, DM)
TABLES = (
    "guilds",
    "channels",
    "threads",
    "users",
    "messages",
    "attachments",
    "mentions",
    "reactions",
    "reaction_counts",
    "join_leave_logs",
    "command_history",
)


async def test_import_writes_every_row_and_a_second_run_changes_nothing(
    db: botdb.Database,
) -> None:
    report = await import_discord(db, *ALL, batch_size=7)
    assert (report.messages, report.users, report.reactions, report.reaction_counts) == (
        12,
        5,
        3,
        5,
    )
    assert (report.threads, report.joins, report.commands, report.attachments) == (1, 1, 1, 3)
    assert report.verified == 12
    counts = await row_counts(db, TABLES)
    assert counts == {
        "guilds": 2,
        "channels": 4,
        "threads": 1,
        "users": 5,
        "messages": 12,
        "attachments": 3,
        "mentions": 2,
        "reactions": 3,
        "reaction_counts": 5,
        "join_leave_logs": 1,
        "command_history": 1,
    }
    again = await db.import_discord(*ALL)
    assert await row_counts(db, TABLES) == counts
    assert again.messages == report.messages
    assert again.reactions == report.reactions
    row = await db.fetchrow(
        "SELECT channel_id, thread_id, author_id, partial FROM messages WHERE id = $1",
        1100000000000000502,
    )
    assert tuple(row) == (GENERAL, THREAD_ID, 444444444444444444, False)
    dm = await db.fetchrow(
        "SELECT platform, chat_type FROM guilds WHERE id = $1", 900000000000000123
    )
    assert tuple(dm) == ("discord", "private")
    reply = await db.fetchrow(
        "SELECT reply_to_id, kind, edited_at FROM messages WHERE id = $1", 1100000000000000003
    )
    assert reply[0] == 1100000000000000002
    assert reply[1] == "reply"
    assert reply[2] is not None
    pinned = await db.fetchval("SELECT count(*) FROM messages WHERE pinned")
    assert pinned == 2


async def test_a_bad_file_among_good_ones_writes_nothing_and_is_left_untouched(
    db: botdb.Database, tmp_path: Path
) -> None:
    bad = tmp_path / "thread.json"
    data = THREAD.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    before = file_digest(bad)
    good = tmp_path / "channel.json"
    shutil.copyfile(CHANNEL, good)
    with pytest.raises(errors.DataError, match=r"thread\.json: .*message #"):
        await import_discord(db, good, bad, batch_size=3)
    assert file_digest(bad) == before
    assert file_digest(good) == file_digest(CHANNEL)
    assert all(count == 0 for count in (await row_counts(db, TABLES)).values())


async def test_verification_finds_a_message_missing_from_the_table(db: botdb.Database) -> None:
    """After the writes, every message of the files must be a full row, or all rolls back."""
    await import_discord(db, DM)
    keys = MessageKeys()
    dm = 900000000000000123
    stream = [
        MessageCreated(1100000000000000701, dm, dm, 1, datetime(2023, 6, 1, tzinfo=UTC)),
        MessageCreated(1100000000000000799, dm, dm, 1, datetime(2023, 6, 1, tzinfo=UTC)),
    ]
    assert list(keys.track(iter(stream))) == stream
    report = ChatImportReport("discord")
    async with db.transaction() as conn:
        with pytest.raises(
            errors.VerificationError, match=r"1 message.*e\.g\. 1100000000000000799"
        ):
            await verify_messages(conn, keys, report)
    await db.execute("UPDATE messages SET partial = $1 WHERE id = $2", True, 1100000000000000701)
    keys = MessageKeys()
    list(keys.track(iter(stream[:1])))
    async with db.transaction() as conn:
        with pytest.raises(errors.VerificationError, match=r"e\.g\. 1100000000000000701"):
            await verify_messages(conn, keys, report)


async def test_a_database_never_initialised_is_refused(make_db: MakeDB) -> None:
    bare = await make_db(create_tables=False)
    with pytest.raises(errors.UndefinedTableError, match="botdb init"):
        await import_discord(bare, CHANNEL)


async def test_a_batch_size_below_one_is_a_configuration_error(db: botdb.Database) -> None:
    with pytest.raises(errors.ConfigurationError, match="batch_size"):
        await import_discord(db, CHANNEL, batch_size=0)


# -- the command ------------------------------------------------------------------------------


def test_cli_imports_with_a_json_summary_and_refuses_bad_files(
    sqlite_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    init = runner.invoke(app, ["init", "--url", sqlite_url])
    assert init.exit_code == 0, init.stderr
    done = runner.invoke(
        app, ["import", "discord", str(CHANNEL), str(THREAD), "--url", sqlite_url, "--json"]
    )
    assert done.exit_code == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["messages"] == 8
    assert summary["threads"] == 1
    for bad, message in (
        (TELEGRAM, "not a DiscordChatExporter export"),
        (tmp_path / "missing.json", "cannot read"),
        (tmp_path, "is a directory"),
    ):
        result = runner.invoke(app, ["import", "discord", str(bad), "--url", sqlite_url])
        assert result.exit_code == 1, (bad, result.stdout)
        # One message (rich wraps it at the test console's 80 columns).
        assert result.stderr.count("error:") == 1, result.stderr
        assert message in " ".join(result.stderr.split()), result.stderr


def test_cli_json_output_reports_a_bad_file_as_json(sqlite_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--url", sqlite_url]).exit_code == 0
    result = runner.invoke(app, ["import", "discord", str(TELEGRAM), "--url", sqlite_url, "--json"])
    assert result.exit_code == 1
    assert orjson.loads(result.stdout) == {
        "ok": False,
        "error": "DataError",
        "message": "telegram_forum_supergroup.json is not a DiscordChatExporter export: "
        "it looks like a Telegram Desktop export (use `botdb import telegram`)",
    }


def test_cli_on_a_database_never_initialised_says_to_run_init(
    sqlite_url: str,
) -> None:
    result = CliRunner().invoke(app, ["import", "discord", str(CHANNEL), "--url", sqlite_url])
    assert result.exit_code == 1
    assert "botdb init" in result.stderr


# -- bounded memory ---------------------------------------------------------------------------

_MEASURE = """
import asyncio, json, resource, sys
import botdb

async def main(path, url, guild):
    async with botdb.connect(url) as db:
        await db.migrate()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = await db.import_discord(path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows = await db.fetchval("SELECT count(*) FROM messages WHERE guild_id = $1", guild)
    print(json.dumps({"growth_kb": peak - before, "messages": report.messages, "rows": rows}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _import_growth_mb(tmp_path: Path, url: str, messages: int) -> tuple[float, float]:
    """Peak RSS growth of a fresh process importing a generated export, and the file's size."""
    guild = 811_000_000_000_000_001 + messages
    path = write_discord_export(
        tmp_path / f"export-{messages}.json", messages=messages, seed=11, guild_id=guild
    )
    env = {**os.environ, "PYTHONPATH": str(Path(botdb.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), url, str(guild)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["messages"] == result["rows"] == messages
    return result["growth_kb"] / 1024, path.stat().st_size / 2**20


@pytest.mark.slow
async def test_a_generated_100k_message_export_imports_in_bounded_memory(
    tmp_path: Path, pg_url: str
) -> None:
    """Memory does not grow with the file: 5x the messages, about the same peak RSS growth.

    Measured on PostgreSQL, whose pages live in the server: on SQLite the process's RSS also
    holds the page cache and the WAL index, which grow with one long transaction.
    """
    small, small_mb = await asyncio.to_thread(_import_growth_mb, tmp_path, pg_url, 20_000)
    big, big_mb = await asyncio.to_thread(_import_growth_mb, tmp_path, pg_url, 100_000)
    assert big_mb > 50
    assert big < small + 32, (
        f"{small:.0f} MB for {small_mb:.0f} MB, {big:.0f} MB for {big_mb:.0f} MB"
    )
    assert big < big_mb, f"peak RSS grew {big:.0f} MB importing {big_mb:.0f} MB"


def test_a_hostile_nesting_depth_is_refused_quickly(tmp_path: Path) -> None:
    """100,000 nested arrays in a message: a typed error, not minutes and gigabytes."""
    deep = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "deep.json"
    path.write_bytes(V2.read_bytes().replace(b'"embeds": [],', b'"embeds": ' + deep + b",", 1))
    with pytest.raises(errors.DataError, match=r"deep\.json: the JSON is nested deeper than 256"):
        events(path)


async def test_a_generated_export_is_reproducible_and_imports_whole(
    db: botdb.Database, tmp_path: Path
) -> None:
    first = write_discord_export(tmp_path / "a.json", messages=600, users=12, seed=5)
    main(["discord", str(tmp_path / "b.json"), "--messages", "600", "--users", "12", "--seed", "5"])
    assert file_digest(first) == file_digest(tmp_path / "b.json")
    report = await import_discord(db, first, batch_size=500)
    assert report.messages == report.verified == 600
    assert report.reactions > 0
    assert report.reaction_counts > 0
    assert report.joins == 12  # a member join every 50 messages
    assert await db.fetchval("SELECT count(*) FROM messages") == 600
    replies = await db.fetchval("SELECT count(*) FROM messages WHERE reply_to_id IS NOT NULL")
    assert replies > 0
