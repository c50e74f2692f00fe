"""``db.messages.search``: full-text search over messages, on both backends.

FTS5 on SQLite and a GIN ``tsvector`` index on PostgreSQL, made by ``create_tables`` and by the
migrations; ranked, keyset-paginated, filtered, safe with any user text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import botdb
from botdb import errors
from botdb.migrations import Migrator
from botdb.models import Channel, Guild, Message, User
from botdb.repository import MessageRepository, SearchHit
from botdb.repository._messages import search_terms
from tests.helpers import MakeDB

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _chat(db: botdb.Database) -> None:
    """Guilds 1 and 2; channels 10, 11 (guild 1) and 20 (guild 2); users 3 and 4."""
    await db.repo(Guild).create_many([{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
    await db.repo(Channel).create_many(
        [
            {"id": 10, "guild_id": 1, "name": "general"},
            {"id": 11, "guild_id": 1, "name": "raids"},
            {"id": 20, "guild_id": 2, "name": "general"},
        ]
    )
    await db.repo(User).create_many([{"id": 3, "username": "ana"}, {"id": 4}])


async def _messages(db: botdb.Database, rows: list[tuple[int, int, int, int, str]]) -> None:
    """Messages from ``(id, guild_id, channel_id, author_id, content)``, a minute apart."""
    await db.messages.create_many(
        [
            {
                "id": mid,
                "guild_id": gid,
                "channel_id": cid,
                "author_id": uid,
                "content": content,
                "created_at": T0 + dt.timedelta(minutes=mid),
            }
            for mid, gid, cid, uid, content in rows
        ]
    )


def _ids(hits: list[SearchHit]) -> list[int]:
    return [hit.message.id for hit in hits]


async def _all_ids(db: botdb.Database, text: str, **options: Any) -> list[int]:
    page = await db.messages.search(text, limit=1000, **options)
    assert page.next_cursor is None
    return _ids(page.items)


@pytest.fixture
async def chat(db: botdb.Database) -> botdb.Database:
    await _chat(db)
    await _messages(
        db,
        [
            (1, 1, 10, 3, "Raid tonight at nine, bring potions"),
            (2, 1, 10, 4, "raid raid raid"),
            (3, 1, 11, 3, "who is up for the raid?"),
            (4, 1, 11, 4, "Привет, МИР! Как дела?"),
            (5, 1, 10, 3, "party🎉time at the tavern"),
            (6, 2, 20, 3, "raid in the other guild"),
            (7, 1, 10, 4, "e-mail me: ana_b@example.com"),
            (8, 1, 10, 3, 'quotes " and NEAR(a b) OR NOT * ^ - stay words'),
        ],
    )
    return db


class TestSearch:
    """What a bot author sees of ``db.messages.search``."""

    async def test_messages_repository_is_the_searchable_one(self, db: botdb.Database) -> None:
        assert isinstance(db.messages, MessageRepository)
        assert db.repo(Message) is db.messages

    async def test_finds_every_message_with_the_word_best_first(self, chat: botdb.Database) -> None:
        page = await chat.messages.search("raid")
        assert sorted(_ids(page.items)) == [1, 2, 3, 6]
        assert page.items[0].message.id == 2  # three times in three words ranks first
        ranks = [hit.rank for hit in page.items]
        assert ranks == sorted(ranks, reverse=True)
        assert all(isinstance(hit.message, Message) for hit in page.items)
        assert page.items[0].message.content == "raid raid raid"

    async def test_every_word_must_occur_in_any_case(self, chat: botdb.Database) -> None:
        assert await _all_ids(chat, "RAID tonight") == [1]
        assert await _all_ids(chat, "tonight potions raid") == [1]
        assert await _all_ids(chat, "raid dragons") == []

    async def test_filters_by_guild_channel_author_and_time(self, chat: botdb.Database) -> None:
        assert sorted(await _all_ids(chat, "raid", guild_id=1)) == [1, 2, 3]
        assert sorted(await _all_ids(chat, "raid", guild_id=2)) == [6]
        assert sorted(await _all_ids(chat, "raid", channel_id=10)) == [1, 2]
        assert sorted(await _all_ids(chat, "raid", user_id=3)) == [1, 3, 6]
        assert sorted(await _all_ids(chat, "raid", guild_id=1, user_id=4)) == [2]
        after, before = T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=6)
        assert sorted(await _all_ids(chat, "raid", after=after)) == [2, 3, 6]
        assert sorted(await _all_ids(chat, "raid", before=before)) == [1, 2, 3]
        assert sorted(await _all_ids(chat, "raid", after=after, before=before)) == [2, 3]

    async def test_deleted_messages_are_left_out_unless_asked_for(
        self, chat: botdb.Database
    ) -> None:
        assert await chat.messages.delete_by_id({"id": 2, "guild_id": 1}) == 1
        assert sorted(await _all_ids(chat, "raid")) == [1, 3, 6]
        assert sorted(await _all_ids(chat, "raid", include_deleted=True)) == [1, 2, 3, 6]

    async def test_edits_and_hard_deletes_reach_the_index(self, chat: botdb.Database) -> None:
        await chat.messages.update_by_id({"id": 1, "guild_id": 1}, content="dungeon at ten")
        assert sorted(await _all_ids(chat, "raid")) == [2, 3, 6]
        assert await _all_ids(chat, "dungeon") == [1]
        await chat.messages.delete_by_id({"id": 1, "guild_id": 1}, hard=True)
        assert await _all_ids(chat, "dungeon") == []
        # Writing the same text again (a replayed event) keeps one entry.
        again = {"id": 3, "guild_id": 1, "channel_id": 11, "content": "who is up for the raid?"}
        await chat.messages.upsert(again)
        assert sorted(await _all_ids(chat, "raid")) == [2, 3, 6]

    async def test_cyrillic_is_found_in_any_case(self, chat: botdb.Database) -> None:
        assert await _all_ids(chat, "привет") == [4]
        assert await _all_ids(chat, "мир ДЕЛА") == [4]

    async def test_emoji_and_punctuation_only_separate_words(self, chat: botdb.Database) -> None:
        assert await _all_ids(chat, "🎉 party") == [5]
        assert await _all_ids(chat, "time🎉") == [5]
        assert await _all_ids(chat, "e-mail") == [7]
        assert await _all_ids(chat, "ana_b") == [7]

    async def test_query_syntax_in_user_text_is_plain_words(self, chat: botdb.Database) -> None:
        assert await _all_ids(chat, 'NEAR(a b) OR NOT * ^ - "quotes') == [8]
        assert await _all_ids(chat, "raid OR tonight") == []  # OR is a word, not an operator
        assert await _all_ids(chat, 'raid" OR "x') == []

    @pytest.mark.parametrize("text", ["", "   ", "🎉🎉", "?!*()\"'", "_"])
    async def test_text_without_words_is_an_argument_error(
        self, chat: botdb.Database, text: str
    ) -> None:
        with pytest.raises(errors.ArgumentError, match="nothing to search for"):
            await chat.messages.search(text)

    async def test_bad_arguments_raise_typed_errors_before_any_query(
        self, chat: botdb.Database
    ) -> None:
        search = chat.messages.search
        with pytest.raises(errors.ArgumentError, match="must be a str"):
            await search(42)  # type: ignore[arg-type]
        with pytest.raises(errors.ArgumentError, match="timezone-aware"):
            await search("raid", before=dt.datetime(2026, 1, 1))
        with pytest.raises(errors.ArgumentError, match="must be a datetime"):
            await search("raid", after="2026-01-01")  # type: ignore[arg-type]
        with pytest.raises(errors.ArgumentError, match="guild_id"):
            await search("raid", guild_id="1")  # type: ignore[arg-type]
        with pytest.raises(errors.ArgumentError, match="limit"):
            await search("raid", limit=0)
        with pytest.raises(errors.ArgumentError, match="at most"):
            await search("x" * 1001)
        with pytest.raises(errors.ArgumentError, match="different words"):
            await search(" ".join(f"w{i}" for i in range(33)))

    async def test_pages_cover_every_match_once_in_rank_order(self, db: botdb.Database) -> None:
        await _chat(db)
        # Ranks tie in groups (same text): the key breaks the ties.
        texts = ["loot", "loot loot", "loot and more", "loot loot loot"]
        await _messages(db, [(i, 1, 10, 3, texts[i % 4]) for i in range(1, 24)])
        everything = await db.messages.search("loot", limit=1000)
        seen: list[SearchHit] = []
        cursor = None
        while True:
            page = await db.messages.search("loot", limit=5, cursor=cursor)
            seen.extend(page.items)
            if page.next_cursor is None:
                break
            assert len(page.items) == 5
            cursor = page.next_cursor
        assert _ids(seen) == _ids(everything.items)
        assert sorted(_ids(seen)) == list(range(1, 24))
        assert [hit.rank for hit in seen] == [hit.rank for hit in everything.items]

    async def test_a_cursor_of_another_search_or_tampered_is_refused(
        self, chat: botdb.Database
    ) -> None:
        page = await chat.messages.search("raid", limit=1)
        assert page.next_cursor is not None
        with pytest.raises(errors.ArgumentError, match="another listing"):
            await chat.messages.search("potions", cursor=page.next_cursor)
        again = await chat.messages.search("RAID", limit=1, cursor=page.next_cursor)
        assert again.items[0].message.id != page.items[0].message.id  # same words, any case
        tampered = page.next_cursor[:-2] + ("AA" if page.next_cursor[-2:] != "AA" else "BB")
        with pytest.raises(errors.ArgumentError, match="cursor"):
            await chat.messages.search("raid", cursor=tampered)
        listing = await chat.messages.find_page(limit=1)
        assert listing.next_cursor is not None
        with pytest.raises(errors.ArgumentError, match="cursor"):
            await chat.messages.search("raid", cursor=listing.next_cursor)

    async def test_runs_in_the_callers_session(self, chat: botdb.Database) -> None:
        # The first search of a Database reads (or makes) the cursor secret on a connection of
        # its own: done before the session takes SQLite's write lock.
        assert await _all_ids(chat, "potions") == [1]
        async with chat.session() as session:
            session.add(
                Message(id=99, guild_id=1, channel_id=10, author_id=3, content="uncommitted raid")
            )
            await session.flush()
            page = await chat.messages.search("uncommitted", session=session)
            assert _ids(page.items) == [99]
            await session.rollback()
        assert await _all_ids(chat, "uncommitted") == []

    async def test_search_survives_optimize(self, chat: botdb.Database) -> None:
        """VACUUM (SQLite) and VACUUM ANALYZE (PostgreSQL) leave the index matching the rows."""
        await chat.messages.delete_by_id({"id": 1, "guild_id": 1}, hard=True)
        await chat.optimize()
        assert sorted(await _all_ids(chat, "raid")) == [2, 3, 6]
        assert await _all_ids(chat, "привет") == [4]


async def test_migration_indexes_the_messages_already_there(make_db: MakeDB) -> None:
    """Upgrading to botdb_0005 indexes existing messages; its downgrade drops the index."""
    from botdb.migrations.versions import botdb_0005_search as revision

    db = await make_db()
    migrator = Migrator(db)
    previous = str(revision.down_revision)
    await migrator.upgrade(previous)
    await _chat(db)
    await _messages(db, [(1, 1, 10, 3, "Old raid notes"), (2, 1, 10, 4, "nothing here")])
    assert await migrator.upgrade(revision.revision) == ["botdb_0005"]
    assert await _all_ids(db, "raid") == [1]
    await _messages(db, [(3, 1, 11, 3, "a new raid")])
    assert sorted(await _all_ids(db, "raid")) == [1, 3]
    assert await migrator.downgrade(previous) == ["botdb_0005"]
    if db.backend == "sqlite":
        left = await db.fetch("SELECT name FROM sqlite_master WHERE name LIKE 'messages_fts%'")
        with pytest.raises(errors.UndefinedTableError):
            await db.messages.search("raid")
    else:
        left = await db.fetch(
            "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_messages_content_search'"
        )
    assert left == []
    assert await db.messages.count() == 3  # the messages themselves are untouched


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=60))
async def test_any_user_text_is_a_search_or_an_argument_error(
    chat: botdb.Database, text: str
) -> None:
    """No text, however odd, reaches a parser: a page comes back, or ArgumentError."""
    try:
        terms = search_terms(text)
    except errors.ArgumentError:
        with pytest.raises(errors.ArgumentError):
            await chat.messages.search(text)
        return
    page = await chat.messages.search(text)
    for hit in page.items:
        words = {word.lower() for word in search_terms(hit.message.content)}
        assert {term.lower() for term in terms} <= words, (text, hit.message.content)
