"""Telegram Desktop imports: single chats, a whole account, old exports; Bot API ids; topics,
service messages and reactions; written on both backends, idempotent; bad input typed."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.importers import ChatImportReport, import_telegram
from botdb.importers.samples import write_telegram_export
from botdb.importers.telegram import (
    CHANNEL_BOT_ID,
    GROUP_ANONYMOUS_BOT_ID,
    bot_api_chat_id,
    parse_telegram,
)
from botdb.recorder._events import (
    AttachmentInfo,
    GuildInfo,
    MemberJoined,
    MemberLeft,
    MentionInfo,
    MessageCreated,
    ReactionAdded,
    ReactionCounted,
    ThreadInfo,
    UserInfo,
)
from tests.helpers import MakeDB, file_digest, row_counts

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
FORUM = EXPORTS / "telegram_forum_supergroup.json"
OLD = EXPORTS / "telegram_old_group.json"
ACCOUNT = EXPORTS / "telegram_account.json"
DISCORD = EXPORTS / "discord_channel.json"
FORUM_ID = -1001987654321
ALICE, BOB, CAROL, DAVE = 1001, 1002, 1003, 1004


def parse(path: Path, **options: Any) -> tuple[list[Any], ChatImportReport]:
    report = ChatImportReport("telegram")
    return list(parse_telegram(path, report=report, **options)), report


def of(items: list[Any], kind: type) -> list[Any]:
    return [item for item in items if isinstance(item, kind)]


def messages(items: list[Any]) -> dict[tuple[int, int], MessageCreated]:
    return {(m.guild_id, m.id): m for m in of(items, MessageCreated)}


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bare", "expected"),
    [
        ("personal_chat", 3002, 3002),
        ("bot_chat", 3003, 3003),
        ("saved_messages", 3001, 3001),
        ("private_group", 311222333, -311222333),
        ("private_supergroup", 1987654321, -1001987654321),
        ("public_supergroup", 1333444555, -1001333444555),
        ("private_channel", 1444555666, -1001444555666),
        ("public_channel", 1444555666, -1001444555666),
    ],
)
def test_chat_ids_are_the_ones_the_bot_api_uses(kind: str, bare: int, expected: int) -> None:
    assert bot_api_chat_id(kind, bare) == expected


# -- export -> events -------------------------------------------------------------------------


def test_a_forum_supergroup_maps_topics_entities_reactions_and_senders() -> None:
    items, report = parse(FORUM)
    by_id = {m.id: m for m in messages(items).values()}
    assert of(items, GuildInfo) == [GuildInfo(FORUM_ID, "telegram", "Botdb Forum", "supergroup")]
    assert of(items, ThreadInfo) == [ThreadInfo(2, FORUM_ID, FORUM_ID, "Announcements")]
    # In the topic: replies to its first message, and replies to those.
    assert (by_id[3].thread_id, by_id[3].reply_to_id) == (2, None)
    assert (by_id[4].thread_id, by_id[4].reply_to_id) == (2, 3)
    assert by_id[16].thread_id is None  # the General topic
    assert by_id[3].content == "Welcome Bob and @carol_tg! See the docs "
    assert by_id[3].mentions == (MentionInfo("user", BOB),)
    assert by_id[3].created_at == datetime(2024, 1, 10, 9, 6, tzinfo=UTC)
    assert by_id[3].jump_url == "https://t.me/c/1987654321/3"
    assert by_id[4].edited_at == datetime(2024, 1, 10, 9, 12, tzinfo=UTC)
    assert by_id[6].extra == {"forwarded_from": "Some Channel"}
    assert by_id[6].attachments == (
        AttachmentInfo(
            filename="photo_1@11-01-2024_10-01-00.jpg",
            content_type="image/jpeg",
            size=48213,
            width=1280,
            height=720,
        ),
    )
    assert by_id[9].attachments[0].content_type == "application/pdf"
    # Sent on behalf of a chat: the anonymous admin and a channel get the Bot API's placeholders.
    assert by_id[7].author_id == GROUP_ANONYMOUS_BOT_ID
    assert by_id[7].extra == {"author": "Admin", "sender_chat_id": FORUM_ID}
    assert by_id[8].author_id == CHANNEL_BOT_ID
    assert by_id[8].extra == {"sender_chat_id": -1001555000111}
    assert [(c.emoji_name, c.emoji_id, c.count) for c in of(items, ReactionCounted)] == [
        ("\U0001f44d", None, 2),
        ("5368324170671202286", 5368324170671202286, 1),
    ]
    assert [(r.user_id, r.at) for r in of(items, ReactionAdded)] == [
        (BOB, datetime(2024, 1, 10, 9, 7, tzinfo=UTC)),
        (CAROL, datetime(2024, 1, 10, 9, 8, tzinfo=UTC)),
    ]
    assert report.skipped == {"unsupported message": 1}
    # Bob is mentioned before he is seen by name: his name still reaches his user row.
    names = {u.id: u.display_name for u in of(items, UserInfo)}
    assert (names[ALICE], names[BOB]) == ("Alice", "Bob")


def test_service_messages_become_kinds_and_member_events() -> None:
    items, report = parse(FORUM)
    by_id = {m.id: m for m in messages(items).values()}
    kinds = {i: by_id[i].kind for i in (1, 2, 5, 10, 12, 13)}
    assert kinds == {
        1: "create_group",
        2: "thread_created",
        5: "join",
        10: "join",
        12: "pin",
        13: "leave",
    }
    assert by_id[12].extra == {"action": "pin_message", "message_id": 3}
    at = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
    assert of(items, MemberJoined) == [
        MemberJoined(FORUM_ID, ALICE, at),  # the creator
        MemberJoined(FORUM_ID, BOB, at),  # a member named at creation, resolved by name
        MemberJoined(FORUM_ID, CAROL, datetime(2024, 1, 11, 10, 0, tzinfo=UTC)),  # by link
        MemberJoined(FORUM_ID, DAVE, datetime(2024, 1, 12, 8, 0, tzinfo=UTC)),  # invited
    ]
    assert of(items, MemberLeft) == [
        MemberLeft(FORUM_ID, BOB, datetime(2024, 1, 13, 9, 0, tzinfo=UTC))
    ]
    assert report.unresolved == 1  # "Somebody Unknown" never wrote in the chat
    assert (report.joins, report.leaves) == (4, 1)


def test_an_old_export_has_bare_ids_and_local_times() -> None:
    """No ``date_unixtime``: times are read in the zone given; the epoch means "never edited"."""
    berlin = timezone(timedelta(hours=2))
    items, _ = parse(OLD, naive_tz=berlin)
    by_id = {m.id: m for m in messages(items).values()}
    assert {m.guild_id for m in by_id.values()} == {-311222333}
    assert by_id[100].author_id == 2001
    assert by_id[100].created_at == datetime(2018, 6, 1, 10, 0, tzinfo=UTC)
    assert by_id[100].edited_at is None
    assert by_id[101].edited_at == datetime(2018, 6, 1, 10, 6, tzinfo=UTC)
    assert by_id[101].content == "hi Eve, see https://example.org"
    assert by_id[101].reply_to_id == 100
    assert of(items, MemberLeft) == [
        MemberLeft(-311222333, 2002, datetime(2018, 6, 2, 6, 0, tzinfo=UTC))
    ]
    assert of(items, GuildInfo)[0].chat_type == "group"


def test_a_whole_account_imports_every_chat_and_left_chat() -> None:
    items, report = parse(ACCOUNT)
    guilds = {g.id: g for g in of(items, GuildInfo)}
    assert set(guilds) == {3002, -1001444555666, 3001, 3003, -1001333444555}
    assert guilds[3002].chat_type == "private"
    assert guilds[3002].name is None  # private chats have no title
    assert guilds[-1001444555666].chat_type == "channel"
    by_key = messages(items)
    assert by_key[(3002, 2)].reply_to_id == 1
    assert by_key[(-1001444555666, 11)].author_id == CHANNEL_BOT_ID
    assert by_key[(3003, 8)].is_bot
    assert not by_key[(3003, 7)].is_bot
    assert by_key[(3003, 7)].content == "/start"
    counts = {(c.guild_id, c.emoji_name): c.count for c in of(items, ReactionCounted)}
    assert counts[(-1001444555666, "\u2b50")] == 3  # paid reactions
    assert of(items, MemberJoined) == [
        MemberJoined(-1001333444555, 3001, datetime(2021, 1, 1, tzinfo=UTC))
    ]
    assert (report.guilds, report.messages) == (5, 9)


# -- bad input (no database) ------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.05, 0.4, 0.8, 0.995])
def test_a_truncated_export_names_the_file_and_the_position(tmp_path: Path, cut: float) -> None:
    data = ACCOUNT.read_bytes()
    path = tmp_path / "result.json"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(errors.DataError, match=r"result\.json: .*message #\d+, near byte \d+"):
        parse(path)


def test_a_field_of_the_wrong_type_names_the_message(tmp_path: Path) -> None:
    document = orjson.loads(FORUM.read_bytes())
    document["messages"][3]["from_id"] = {"user": 1}
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(errors.DataError, match=r"message id 4 is not valid: from_id .*message #4"):
        parse(path)


def test_an_id_beyond_64_bits_names_the_message(tmp_path: Path) -> None:
    document = orjson.loads(FORUM.read_bytes())
    document["messages"][5]["from_id"] = f"user{1 << 64}"
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(errors.DataError, match=r"message id 6 is not valid: .*64 bits"):
        parse(path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b'{"about": "x", "contacts": {"list": []}}', "not a Telegram Desktop export"),
        (b'{"messages": [{"id": 1}]}', "before the chat's type and id"),
        (b'{"name": "x", "type": "private_group", "id": "abc", "messages": [{}]}', "chat id"),
        (b"[]", "not a Telegram Desktop export"),
        (b'{"name": "x"', "truncated"),
    ],
)
def test_files_that_are_not_telegram_exports_are_data_errors(
    tmp_path: Path, content: bytes, pattern: str
) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(content)
    with pytest.raises(errors.DataError, match=pattern):
        parse(path)


def test_deep_nesting_in_a_part_of_the_account_that_is_not_read_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "result.json"
    deep = b'{"a": ' * 50_000 + b"1" + b"}" * 50_000
    path.write_bytes(
        ACCOUNT.read_bytes().replace(b'"contacts": ', b'"other_data": ' + deep + b', "contacts": ')
    )
    with pytest.raises(errors.DataError, match="nested deeper than 256"):
        parse(path)


def test_a_discord_export_is_refused_with_a_hint() -> None:
    with pytest.raises(errors.DataError, match="DiscordChatExporter export"):
        parse(DISCORD)


def test_a_chat_of_an_unknown_type_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(
        b'{"chats": {"list": [{"type": "replies", "id": 1, "messages": '
        b'[{"id": 1, "type": "message", "date_unixtime": "1"}]}]}}'
    )
    items, report = parse(path)
    assert items == []
    assert report.skipped == {"message of a 'replies' chat": 1}


# -- into the database, both backends ---------------------------------------------------------

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
)


async def test_a_forum_export_lands_with_bot_api_ids_and_a_second_run_changes_nothing(
    db: botdb.Database,
) -> None:
    report = await import_telegram(db, FORUM, batch_size=5)
    counts = await row_counts(db, TABLES)
    assert counts == {
        "guilds": 1,
        "channels": 1,
        "threads": 1,
        "users": 6,
        "messages": 15,
        "attachments": 2,
        "mentions": 1,
        "reactions": 2,
        "reaction_counts": 2,
        "join_leave_logs": 5,
    }
    assert (report.messages, report.users, report.reactions, report.reaction_counts) == (
        15,
        6,
        2,
        2,
    )
    assert report.verified == 15
    again = await db.import_telegram(FORUM)
    assert await row_counts(db, TABLES) == counts
    assert again.to_dict() | {"seconds": 0} == report.to_dict() | {"seconds": 0}
    row = await db.fetchrow(
        "SELECT channel_id, thread_id, reply_to_id, author_id FROM messages "
        "WHERE guild_id = $1 AND id = $2",
        FORUM_ID,
        4,
    )
    assert tuple(row) == (FORUM_ID, 2, 3, BOB)
    guild = await db.fetchrow("SELECT platform, chat_type FROM guilds WHERE id = $1", FORUM_ID)
    assert tuple(guild) == ("telegram", "supergroup")
    active = await db.fetchval(
        "SELECT is_active FROM members WHERE guild_id = $1 AND user_id = $2", FORUM_ID, BOB
    )
    assert active in (False, 0)


async def test_the_whole_account_and_the_old_export_on_both_backends(db: botdb.Database) -> None:
    await import_telegram(db, ACCOUNT)
    await import_telegram(db, OLD)
    per_chat = {
        int(row[0]): int(row[1])
        for row in await db.fetch("SELECT guild_id, count(*) FROM messages GROUP BY guild_id")
    }
    assert per_chat == {
        3002: 2,
        -1001444555666: 2,
        3001: 1,
        3003: 2,
        -1001333444555: 2,
        -311222333: 3,
    }
    total = await db.fetchval(
        "SELECT sum(count) FROM reaction_counts WHERE guild_id = $1", -1001444555666
    )
    assert total == 123


async def test_a_truncated_export_writes_nothing_and_is_left_untouched(
    db: botdb.Database, tmp_path: Path
) -> None:
    path = tmp_path / "result.json"
    shutil.copyfile(FORUM, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    before = file_digest(path)
    with pytest.raises(errors.DataError, match=r"result\.json: .*message #"):
        await import_telegram(db, path, batch_size=2)
    assert file_digest(path) == before
    assert all(count == 0 for count in (await row_counts(db, TABLES)).values())


async def test_a_database_never_initialised_is_refused(make_db: MakeDB) -> None:
    bare = await make_db(create_tables=False)
    with pytest.raises(errors.UndefinedTableError, match="botdb init"):
        await import_telegram(bare, FORUM)


# -- the command ------------------------------------------------------------------------------


def test_cli_imports_a_telegram_export_and_refuses_bad_input(
    sqlite_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--url", sqlite_url]).exit_code == 0
    done = runner.invoke(
        app, ["import", "telegram", str(OLD), "--url", sqlite_url, "--timezone", "Europe/Berlin"]
    )
    assert done.exit_code == 0, done.stderr
    assert "imported" in done.stderr
    result = runner.invoke(app, ["import", "telegram", str(ACCOUNT), "--url", sqlite_url, "--json"])
    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout)["messages"] == 9
    empty = tmp_path / "result.json"
    empty.write_bytes(b"")
    for bad, message in (
        (DISCORD, "not a Telegram Desktop export"),
        (empty, "result.json is empty"),
        (tmp_path / "nope.json", "cannot read"),
    ):
        failed = runner.invoke(app, ["import", "telegram", str(bad), "--url", sqlite_url])
        assert failed.exit_code == 1, (bad, failed.stdout)
        assert failed.stderr.count("error:") == 1, failed.stderr
        assert message in " ".join(failed.stderr.split()), failed.stderr
    zone = runner.invoke(
        app, ["import", "telegram", str(OLD), "--url", sqlite_url, "--timezone", "Mars/Base"]
    )
    assert zone.exit_code == 1
    assert "unknown time zone" in zone.stderr


async def test_a_generated_export_imports_whole_with_its_topic(
    db: botdb.Database, tmp_path: Path
) -> None:
    path = write_telegram_export(tmp_path / "result.json", messages=700, users=9, seed=2)
    report = await import_telegram(db, path, batch_size=300)
    assert report.messages == report.verified == 700
    assert report.threads == 1
    assert report.joins > 0
    chat = -(10**12 + 1700000001)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE guild_id = $1", chat) == 700
    in_topic = await db.fetchval("SELECT count(*) FROM messages WHERE thread_id = $1", 2)
    assert in_topic > 1
