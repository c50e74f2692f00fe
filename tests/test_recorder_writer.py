"""The batch writer: every event kind lands in its rows, idempotently, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import botdb
from botdb.errors import DataError, IntegrityError
from botdb.recorder import (
    AttachmentInfo,
    ChannelInfo,
    CommandInvoked,
    GuildInfo,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    MentionInfo,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    MessagesBulkDeleted,
    ReactionAdded,
    ReactionCounted,
    ReactionRemoved,
    ReactionsCleared,
    ThreadInfo,
    UserInfo,
    _rows,
)
from botdb.recorder._writer import COPY_MIN_ROWS, write_events

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
G, C, U = 1000, 2000, 3000


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def created(mid: int, **kw: Any) -> MessageCreated:
    kw.setdefault("content", f"m{mid}")
    kw.setdefault("author_id", U)
    return MessageCreated(id=mid, guild_id=G, channel_id=C, created_at=at(mid), **kw)


def aware(value: Any) -> datetime | None:
    """A timestamp as read back by the raw API (text on SQLite) as an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


async def write(db: botdb.Database, events: list[Any], **kw: Any) -> dict[str, int]:
    async with db.transaction() as conn:
        return dict(await write_events(conn, events, **kw))


async def message(db: botdb.Database, mid: int) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT content, author_id, edited_at, deleted, deleted_at, partial, pinned, kind, "
        "attachment_count, channel_id, thread_id, is_bot, extra FROM messages "
        "WHERE id = $1 AND guild_id = $2",
        mid,
        G,
    )
    assert row is not None, f"message {mid} missing"
    return dict(row)


async def table_rows(db: botdb.Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.fetch(sql, *args)]


class TestEveryKind:
    async def test_message_with_children_creates_bare_references(self, db: botdb.Database) -> None:
        event = created(
            1,
            thread_id=77,
            attachments=(AttachmentInfo(position=0, filename="a.png", size=10),),
            mentions=(MentionInfo("user", 5), MentionInfo("everyone", G)),
            extra={"embeds": [1, 2]},
            kind="reply",
            reply_to_id=9,
        )
        counts = await write(db, [event])
        assert counts["messages"] == 1
        assert counts["attachments"] == 1
        assert counts["mentions"] == 2
        row = await message(db, 1)
        assert row["content"] == "m1"
        assert row["partial"] is False or row["partial"] == 0
        assert row["attachment_count"] == 1
        assert row["thread_id"] == 77
        assert row["kind"] == "reply"
        assert await db.fetchval("SELECT platform FROM guilds WHERE id = $1", G) == "discord"
        assert await db.fetchval("SELECT guild_id FROM channels WHERE id = $1", C) == G
        assert await db.fetchval("SELECT parent_id FROM threads WHERE id = 77") == C
        assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", U) == 1
        assert await table_rows(
            db, "SELECT target_type, target_id FROM mentions ORDER BY target_type"
        ) == [("everyone", G), ("user", 5)]

    async def test_info_events_fill_fields(self, db: botdb.Database) -> None:
        await write(db, [created(1)])
        await write(
            db,
            [
                GuildInfo(G, name="Guild"),
                ChannelInfo(C, G, name="general", type="text"),
                ThreadInfo(77, G, C, name="t"),
                UserInfo(U, username="alice", is_bot=False),
            ],
        )
        await write(db, [GuildInfo(G), UserInfo(U, display_name="Alice")])
        assert await db.fetchval("SELECT name FROM guilds WHERE id = $1", G) == "Guild"
        assert await db.fetchval("SELECT name FROM channels WHERE id = $1", C) == "general"
        assert await db.fetchval("SELECT name FROM threads WHERE id = 77") == "t"
        row = await db.fetchrow("SELECT username, display_name FROM users WHERE id = $1", U)
        assert tuple(row) == ("alice", "Alice")

    async def test_a_channel_before_its_parent_category(self, db: botdb.Database) -> None:
        await write(
            db,
            [
                ChannelInfo(C, G, name="general", parent_id=C + 1),
                ChannelInfo(C + 1, G, name="Text channels", type="category"),
            ],
        )
        rows = await table_rows(db, "SELECT id, name, type, parent_id FROM channels ORDER BY id")
        assert rows == [(C, "general", "text", C + 1), (C + 1, "Text channels", "category", None)]

    async def test_edit_delete_and_bulk_delete(self, db: botdb.Database) -> None:
        await write(db, [created(1), created(2), created(3)])
        await write(
            db,
            [
                MessageEdited(1, G, C, edited_at=at(100), content="edited", pinned=True),
                MessageDeleted(2, G, C, deleted_at=at(200)),
                MessagesBulkDeleted((3, 4), G, C, deleted_at=at(300)),
            ],
        )
        one = await message(db, 1)
        assert one["content"] == "edited"
        assert bool(one["pinned"])
        assert bool((await message(db, 2))["deleted"])
        assert bool((await message(db, 3))["deleted"])
        four = await message(db, 4)
        assert bool(four["deleted"])
        assert bool(four["partial"])
        assert four["author_id"] is None

    async def test_reactions_and_counts(self, db: botdb.Database) -> None:
        await write(
            db,
            [
                ReactionAdded(1, G, C, U, "👍", at(1)),
                ReactionAdded(1, G, C, U + 1, "x", at(2), emoji_id=555, animated=True),
                ReactionRemoved(1, G, C, U, "👍", at(3)),
                ReactionCounted(1, G, C, "👍", 7),
            ],
        )
        rows = await table_rows(
            db,
            "SELECT user_id, emoji_key, removed_at IS NULL FROM reactions ORDER BY user_id",
        )
        assert [(r[0], r[1], bool(r[2])) for r in rows] == [(U, "👍", False), (U + 1, "555", True)]
        assert await db.fetchval("SELECT count FROM reaction_counts") == 7
        assert bool((await message(db, 1))["partial"])
        await write(db, [ReactionCounted(1, G, C, "👍", 9)])
        assert await db.fetchval("SELECT count FROM reaction_counts") == 9

    async def test_clear_removes_reactions(self, db: botdb.Database) -> None:
        await write(
            db,
            [ReactionAdded(1, G, C, U, "a", at(1)), ReactionAdded(1, G, C, U, "b", at(1))],
        )
        await write(db, [ReactionsCleared(1, G, C, at(5), emoji_name="a")])
        live = await table_rows(
            db, "SELECT emoji_name FROM reactions WHERE removed_at IS NULL ORDER BY emoji_name"
        )
        assert live == [("b",)]
        await write(db, [ReactionsCleared(1, G, C, at(6))])
        assert await db.fetchval("SELECT count(*) FROM reactions WHERE removed_at IS NULL") == 0

    async def test_members_and_logs(self, db: botdb.Database) -> None:
        await write(
            db,
            [
                MemberJoined(G, U, at(1), nick="n"),
                MemberUpdated(G, U, at(2), nick="n2", role_ids=(11, 12)),
                MemberLeft(G, U + 1, at(3)),
            ],
        )
        rows = await table_rows(db, "SELECT user_id, nick, is_active FROM members ORDER BY user_id")
        assert [(r[0], r[1], bool(r[2])) for r in rows] == [(U, "n2", True), (U + 1, None, False)]
        roles = await table_rows(db, "SELECT role_id FROM member_roles ORDER BY role_id")
        assert roles == [(11,), (12,)]
        logs = await table_rows(db, "SELECT user_id, event FROM join_leave_logs ORDER BY user_id")
        assert logs == [(U, "join"), (U + 1, "leave")]
        # A leave recorded before a later join (across batches) leaves the member active.
        await write(db, [MemberJoined(G, U + 1, at(10))])
        assert bool(await db.fetchval("SELECT is_active FROM members WHERE user_id = $1", U + 1))
        await write(db, [MemberLeft(G, U + 1, at(5))])
        assert bool(await db.fetchval("SELECT is_active FROM members WHERE user_id = $1", U + 1))

    async def test_commands_upsert_on_natural_key(self, db: botdb.Database) -> None:
        start = CommandInvoked(U, "ping", at(1), guild_id=G, args={"a": 1})
        await write(db, [start])
        await write(db, [CommandInvoked(U, "ping", at(1), guild_id=G, duration_ms=5, success=True)])
        rows = await table_rows(db, "SELECT duration_ms, success, guild_id FROM command_history")
        assert [(r[0], bool(r[1]), r[2]) for r in rows] == [(5, True, G)]

    async def test_telegram_platform(self, db: botdb.Database) -> None:
        await write(db, [created(1)], platform="telegram")
        assert await db.fetchval("SELECT platform FROM users WHERE id = $1", U) == "telegram"

    async def test_a_telegram_partial_message_is_dated_by_its_first_event(
        self, db: botdb.Database
    ) -> None:
        """Telegram ids carry no time: the earliest event about the message dates it."""
        await write(
            db,
            [
                MessageEdited(5, G, C, edited_at=at(40), content="e"),
                ReactionAdded(5, G, C, U, "a", at(30)),
            ],
            platform="telegram",
        )
        created_at = await db.fetchval("SELECT created_at FROM messages WHERE id = 5")
        assert aware(created_at) == at(30)

    async def test_outside_a_transaction_the_batch_is_its_own(self, db: botdb.Database) -> None:
        """On a connection in autocommit mode the batch (COPY path included) is atomic."""
        events = [created(i) for i in range(1, COPY_MIN_ROWS + 10)]
        async with db.acquire() as conn:
            counts = await write_events(conn, events)
            assert not conn.in_transaction
        assert counts["messages"] == len(events)
        assert await db.fetchval("SELECT count(*) FROM messages") == len(events)

    async def test_many_copy_batches_in_one_transaction_hold_a_bounded_lock_set(
        self, db: botdb.Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An import writes thousands of COPY batches in one transaction: the staging table is
        made once, so the locks held do not grow with the batches (PostgreSQL's lock table
        is a few thousand entries for the whole server)."""
        if db.backend != "postgresql":
            pytest.skip("staging tables and pg_locks are PostgreSQL's")
        monkeypatch.setattr(_rows, "COPY_MIN_ROWS", 5)
        held = []
        async with db.transaction() as conn:
            for batch in range(30):
                await write_events(conn, [created(batch * 10 + i) for i in range(1, 9)])
                held.append(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                    )
                )
        assert held[-1] == held[2], held
        assert await db.fetchval("SELECT count(*) FROM messages") == 30 * 8

    async def test_sqlite_counts_leave_trigger_writes_out(self, db: botdb.Database) -> None:
        """The full-text index and the stats' summaries are kept by triggers on SQLite: the
        counts (which decide whether a message existed) are the statement's own rows."""
        counts = await write(db, [created(1), created(2)])
        assert counts["messages"] == 2
        await write(db, [MessageEdited(3, G, C, edited_at=at(50), content="edited first")])
        counts = await write(db, [created(3, content="old"), created(4)])
        assert counts["messages"] == 2
        assert (await message(db, 3))["content"] == "edited first"


class TestOrderAndIdempotence:
    async def test_edit_before_create_keeps_the_edit(self, db: botdb.Database) -> None:
        await write(db, [MessageEdited(1, G, C, edited_at=at(50), content="new")])
        partial = await message(db, 1)
        assert bool(partial["partial"])
        assert partial["author_id"] is None
        await write(db, [created(1, content="old")])
        row = await message(db, 1)
        assert row["content"] == "new"
        assert not row["partial"]
        assert row["author_id"] == U
        assert aware(row["edited_at"]) == at(50)

    async def test_delete_before_create_is_sticky(self, db: botdb.Database) -> None:
        await write(db, [MessageDeleted(1, G, C, deleted_at=at(9))])
        await write(db, [created(1)])
        row = await message(db, 1)
        assert bool(row["deleted"])
        assert row["content"] == "m1"

    async def test_pin_only_edit_before_create_keeps_content_of_create(
        self, db: botdb.Database
    ) -> None:
        await write(db, [MessageEdited(1, G, C, edited_at=at(50), pinned=True)])
        await write(db, [created(1, content="hello")])
        row = await message(db, 1)
        assert row["content"] == "hello"
        assert bool(row["pinned"])

    async def test_rewrite_is_idempotent(self, db: botdb.Database) -> None:
        batch = [
            created(1, attachments=(AttachmentInfo(0, filename="a"),)),
            MessageEdited(1, G, C, edited_at=at(100), content="e"),
            ReactionAdded(1, G, C, U, "a", at(5)),
            MemberJoined(G, U, at(1)),
            CommandInvoked(U, "x", at(1)),
        ]
        await write(db, batch)
        before = await snapshot(db)
        await write(db, batch)
        assert await snapshot(db) == before

    async def test_json_and_children_through_the_copy_path(self, db: botdb.Database) -> None:
        n = COPY_MIN_ROWS + 5
        events: list[Any] = [
            created(
                i,
                extra={"embeds": [{"title": f"t{i}"}]},
                attachments=(AttachmentInfo(0, filename=f"{i}.png"), AttachmentInfo(1)),
                mentions=(MentionInfo("user", i),),
            )
            for i in range(1, n + 1)
        ]
        events += [CommandInvoked(U, "ping", at(i), args={"n": i}) for i in range(n)]
        counts = await write(db, events)
        assert counts["messages"] == counts["mentions"] == counts["command_history"] == n
        assert counts["attachments"] == 2 * n
        row = await message(db, 7)
        extra = row["extra"] if isinstance(row["extra"], dict) else orjson.loads(row["extra"])
        assert extra == {"embeds": [{"title": "t7"}]}
        assert row["attachment_count"] == 2
        args = await db.fetchval("SELECT args FROM command_history WHERE started_at = $1", at(3))
        assert (args if isinstance(args, dict) else orjson.loads(args)) == {"n": 3}

    async def test_large_batch_uses_the_copy_path(self, db: botdb.Database) -> None:
        events = [created(i) for i in range(1, COPY_MIN_ROWS * 2)]
        counts = await write(db, events)
        assert counts["messages"] == len(events)
        counts = await write(db, events)
        assert counts.get("messages", 0) == 0
        assert await db.fetchval("SELECT count(*) FROM messages") == len(events)


class TestValidation:
    async def test_unknown_platform(self, db: botdb.Database) -> None:
        with pytest.raises(DataError, match="platform"):
            await write(db, [created(1)], platform="slack")
        assert await db.fetchval("SELECT count(*) FROM messages") == 0

    @pytest.mark.parametrize(
        "bad",
        [
            MessageCreated(1, G, C, U, datetime(2024, 1, 1)),  # naive
            MessageCreated(1, G, C, U, T0, content=5),  # type: ignore[arg-type]
            MessageCreated(1, G, C, U, T0, mentions=(MentionInfo("planet", 1),)),
            ReactionCounted(1, G, C, "x", -1),
            ReactionAdded(1, G, C, True, "x", T0),  # bool is not an id
            UserInfo(0),
            "not an event",
        ],
    )
    async def test_bad_event_writes_nothing(self, db: botdb.Database, bad: Any) -> None:
        with pytest.raises(DataError, match="event 1"):
            await write(db, [created(1), bad])
        assert await db.fetchval("SELECT count(*) FROM messages") == 0
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0


async def snapshot(db: botdb.Database) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "messages": "SELECT * FROM messages ORDER BY id, guild_id",
        "attachments": "SELECT message_id, position, filename FROM attachments ORDER BY 1, 2",
        "mentions": "SELECT * FROM mentions ORDER BY 1, 2, 3, 4",
        "reactions": "SELECT message_id, user_id, emoji_key, created_at, removed_at "
        "FROM reactions ORDER BY 1, 2, 3",
        "reaction_counts": "SELECT * FROM reaction_counts ORDER BY 1, 2, 3",
        "members": "SELECT guild_id, user_id, nick, joined_at, left_at, is_active "
        "FROM members ORDER BY 1, 2",
        "member_roles": "SELECT * FROM member_roles ORDER BY 1, 2, 3",
        "join_leave_logs": "SELECT guild_id, user_id, event, occurred_at "
        "FROM join_leave_logs ORDER BY 1, 2, 3, 4",
        "command_history": "SELECT user_id, command, started_at, duration_ms, success "
        "FROM command_history ORDER BY 1, 2, 3",
    }
    return {name: await table_rows(db, sql) for name, sql in queries.items()}


# -- any arrival order, any batching: the same final state ------------------------------------

EVENT_KINDS = ("create", "edit", "delete", "add", "remove", "count", "join", "leave", "command")


@st.composite
def event_streams(draw: st.DrawFn, kinds: tuple[str, ...] = EVENT_KINDS) -> list[Any]:
    """Events about a few messages, users and emojis, each at its own time (ties would be
    decided by arrival, which is what is permuted)."""
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.integers(1, 3),  # message
                st.integers(10, 11),  # user
                st.sampled_from(["a", "b"]),  # emoji
                st.sampled_from(["x", "y", "z"]),  # content
            ),
            min_size=1,
            max_size=24,
        )
    )
    events: list[Any] = []
    created_ids: set[int] = set()
    for index, (kind, mid, user, emoji, content) in enumerate(specs):
        when = at(10 + index)
        if kind == "create":
            if mid in created_ids:
                continue
            created_ids.add(mid)
            events.append(
                created(
                    mid,
                    content=f"created {mid}",
                    attachments=(AttachmentInfo(0, filename=f"{mid}.png"),),
                    mentions=(MentionInfo("user", user),),
                )
            )
        elif kind == "edit":
            events.append(
                MessageEdited(
                    mid,
                    G,
                    C,
                    edited_at=when,
                    content=content,
                    attachments=(AttachmentInfo(0, filename=content), AttachmentInfo(1)),
                )
            )
        elif kind == "delete":
            events.append(MessageDeleted(mid, G, C, deleted_at=when))
        elif kind == "add":
            events.append(ReactionAdded(mid, G, C, user, emoji, when))
        elif kind == "remove":
            events.append(ReactionRemoved(mid, G, C, user, emoji, when))
        elif kind == "clear":
            events.append(
                ReactionsCleared(mid, G, C, when, emoji_name=emoji if user == 10 else None)
            )
        elif kind == "count":
            events.append(ReactionCounted(mid, G, C, emoji, len(content) + mid))
        elif kind == "join":
            events.append(MemberJoined(G, user, when))
        elif kind == "leave":
            events.append(MemberLeft(G, user, when))
        else:
            events.append(CommandInvoked(user, content, at(mid), duration_ms=3))
    return events


async def reset(db: botdb.Database) -> None:
    for table in (
        "mentions",
        "attachments",
        "reactions",
        "reaction_counts",
        "messages",
        "member_roles",
        "join_leave_logs",
        "command_history",
        "members",
        "threads",
        "channels",
        "roles",
        "users",
        "guilds",
    ):
        await db.execute(f"DELETE FROM {table}")


async def final_state(db: botdb.Database) -> dict[str, list[tuple[Any, ...]]]:
    return await snapshot(db)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=event_streams(), data=st.data())
async def test_any_order_and_batching_gives_the_in_order_state(
    db: botdb.Database, events: list[Any], data: st.DataObject
) -> None:
    """Edits, deletions and reactions before their message, batches cut anywhere: the
    final rows equal those of the in-order stream written in one batch."""
    await reset(db)
    await write(db, events)
    expected = await final_state(db)
    await reset(db)
    shuffled = data.draw(st.permutations(events))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=4)))
    start = 0
    for cut in [*cuts, len(shuffled)]:
        if cut > start:
            await write(db, shuffled[start:cut])
            start = cut
    assert await final_state(db) == expected
    # Writing everything again changes nothing.
    await write(db, shuffled)
    assert await final_state(db) == expected


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=event_streams(kinds=("create", "add", "remove", "clear", "delete")), data=st.data())
async def test_reaction_clears_in_any_order_within_a_batch(
    db: botdb.Database, events: list[Any], data: st.DataObject
) -> None:
    """A clear removes the reactions added before it, whatever order the batch holds them in
    (across batches a clear only reaches the reactions already written: documented)."""
    await reset(db)
    await write(db, events)
    expected = await final_state(db)
    await reset(db)
    await write(db, data.draw(st.permutations(events)))
    assert await final_state(db) == expected


@pytest.mark.parametrize("size", [10, COPY_MIN_ROWS * 2])
async def test_a_database_refusal_is_typed_and_writes_nothing(
    db: botdb.Database, size: int
) -> None:
    """An integrity error (small batch: arrays; large: the COPY staging path) surfaces as a
    typed IntegrityError, and the batch leaves nothing behind."""
    if db.backend == "sqlite":
        await db.execute(
            "CREATE TRIGGER no_poison BEFORE INSERT ON messages WHEN NEW.content = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poison'); END"
        )
    else:
        await db.execute(
            "ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content <> 'poison')"
        )
    events = [created(i) for i in range(1, size)] + [created(size, content="poison")]
    with pytest.raises(IntegrityError):
        await write(db, events)
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    assert await db.fetchval("SELECT count(*) FROM guilds") == 0
