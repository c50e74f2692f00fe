"""The built-in chat models on real SQLite and PostgreSQL: schema, constraints, indexes, types."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Index, Table, event, func, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from botdb.models import (
    Attachment,
    Base,
    Channel,
    CommandHistory,
    EventReaction,
    Guild,
    GuildCaseCounter,
    GuildConfig,
    JoinLeaveLog,
    KeyValue,
    Level,
    Member,
    MemberRole,
    Mention,
    Message,
    ModerationCase,
    Reaction,
    ReactionCount,
    ReminderLog,
    Role,
    ScheduledJob,
    Snippet,
    Thread,
    TrackedEvent,
    User,
    UserReminder,
    builtin_tables,
    is_builtin,
    snowflake_time,
    time_snowflake,
)

BIG = 1_234_567_890_123_456_789  # > 2**32: only a BIGINT holds it
GUILD = BIG
USER = BIG - 1
CATEGORY, CHANNEL, THREAD, ROLE, MESSAGE, THREAD_MESSAGE = (BIG + n for n in range(1, 7))
TG_CHAT = -1_001_234_567_890  # a Telegram supergroup: negative id
TG_USER = 987_654_321
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GLOBAL_TABLES = {"guilds", "users", "kv_store"}  # not chat-scoped


def _async_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return url.replace("sqlite:", "sqlite+aiosqlite:", 1)
    return url.replace("postgresql:", "postgresql+asyncpg:", 1)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine with every built-in table created (SQLite: foreign keys enforced)."""
    eng = create_async_engine(_async_url(db_url))
    if eng.dialect.name == "sqlite":

        @event.listens_for(eng.sync_engine, "connect")
        def _fk_on(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=builtin_tables())
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A small, coherent data set with at least one row in every built-in table."""
    stages: list[list[Base]] = [
        [
            Guild(id=GUILD, name="Discord guild", owner_id=USER, joined_at=NOW),
            Guild(id=TG_CHAT, platform="telegram", chat_type="supergroup", name="TG group"),
            User(id=USER, username="alice", display_name="Alice"),
            User(id=TG_USER, platform="telegram", first_name="Bob", language_code="en"),
            KeyValue(namespace="gallery", scope=f"guild:{GUILD}", key="channel", value=CHANNEL),
            ScheduledJob(
                kind="reminder",
                key="r:1",
                payload={"text": "hi"},
                guild_id=GUILD,
                run_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            ),
        ],
        [
            GuildConfig(guild_id=GUILD, prefix="!", settings={"auto_delete": True}),
            Channel(id=CATEGORY, guild_id=GUILD, name="Text", type="category"),
            Channel(id=TG_CHAT, guild_id=TG_CHAT, type="supergroup"),
            Role(id=ROLE, guild_id=GUILD, name="mod", color=0xFF0000, permissions=1 << 40),
            Member(guild_id=GUILD, user_id=USER, nick="al", preferences={"language": "ja"}),
            Member(guild_id=TG_CHAT, user_id=TG_USER),
            GuildCaseCounter(guild_id=GUILD, last_case_number=1),
            JoinLeaveLog(guild_id=GUILD, user_id=USER, event="join"),
            CommandHistory(guild_id=None, user_id=USER, command="help", args={"args": [1]}),
            TrackedEvent(message_id=MESSAGE, guild_id=GUILD, channel_id=CHANNEL, title="Raid"),
            UserReminder(channel_id=TG_USER, user_id=TG_USER, content="hi", due_at=NOW),
            Snippet(guild_id=GUILD, name="rules", content="Be nice", author_id=USER),
            ModerationCase(
                guild_id=GUILD, case_number=1, user_id=TG_USER, moderator_id=USER, action="warn"
            ),
        ],
        [
            Channel(id=CHANNEL, guild_id=GUILD, parent_id=CATEGORY, name="general"),
            MemberRole(guild_id=GUILD, user_id=USER, role_id=ROLE),
            Level(guild_id=GUILD, user_id=USER, xp=12.5, level=1),
            Snippet(guild_id=GUILD, name="r", alias_of_id=1, author_id=USER),
        ],
        [Thread(id=THREAD, guild_id=GUILD, parent_id=CHANNEL, owner_id=USER, name="t")],
        [
            Message(id=MESSAGE, guild_id=GUILD, channel_id=CHANNEL, author_id=USER, content="a"),
            Message(
                id=THREAD_MESSAGE,
                guild_id=GUILD,
                channel_id=CHANNEL,
                thread_id=THREAD,
                author_id=USER,
                reply_to_id=MESSAGE,
            ),
            Message(id=42, guild_id=TG_CHAT, channel_id=TG_CHAT, author_id=TG_USER),
            EventReaction(event_id=1, guild_id=GUILD, user_id=USER, emoji="👍"),
            ReminderLog(event_id=1, guild_id=GUILD, scheduled_at=NOW, users_notified=2),
        ],
        [
            Attachment(message_id=MESSAGE, guild_id=GUILD, external_id="1", filename="a.png"),
            Mention(message_id=MESSAGE, guild_id=GUILD, target_type="user", target_id=USER),
            Mention(message_id=MESSAGE, guild_id=GUILD, target_type="everyone", target_id=GUILD),
            Reaction(
                message_id=MESSAGE,
                guild_id=GUILD,
                channel_id=CHANNEL,
                user_id=USER,
                emoji_name="👍",
            ),
            Reaction(
                message_id=MESSAGE,
                guild_id=GUILD,
                channel_id=CHANNEL,
                user_id=USER,
                emoji_id=BIG + 99,
                emoji_name="pepe",
            ),
            ReactionCount(
                message_id=MESSAGE,
                guild_id=GUILD,
                channel_id=CHANNEL,
                emoji_key="👍",
                emoji_name="👍",
                count=3,
            ),
        ],
    ]
    async with sessions() as session, session.begin():
        for stage in stages:
            session.add_all(stage)
            await session.flush()


async def test_every_builtin_table_accepts_a_coherent_data_set(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """create_all succeeds on the backend and every built-in table takes rows."""
    await _seed(sessions)
    async with sessions() as session:
        for table in builtin_tables():
            count = await session.scalar(select(func.count()).select_from(table))
            assert count, f"{table.name} is empty"


async def test_bigint_ids_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    """64-bit Discord ids and negative Telegram chat ids come back unchanged."""
    await _seed(sessions)
    async with sessions() as session:
        message = await session.get(Message, (MESSAGE, GUILD))
        assert message is not None
        assert (message.author_id, message.channel_id) == (USER, CHANNEL)
        assert await session.scalar(select(Role.permissions).where(Role.id == ROLE)) == 1 << 40
        assert await session.scalar(select(Channel.guild_id).where(Channel.id == TG_CHAT)) == (
            TG_CHAT
        )


async def test_telegram_message_ids_are_unique_per_chat_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The same Telegram message_id may exist in two chats: the key is (id, guild_id)."""
    await _seed(sessions)
    other_chat = TG_CHAT - 1
    async with sessions() as session, session.begin():
        session.add(Guild(id=other_chat, platform="telegram", chat_type="group"))
        await session.flush()  # no relationship() between models: flush parents first
        session.add(Channel(id=other_chat, guild_id=other_chat, type="group"))
        await session.flush()
        session.add(Message(id=42, guild_id=other_chat, channel_id=other_chat, author_id=TG_USER))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(Message.id == 42)) == 2


async def test_reactions_get_a_computed_emoji_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """emoji_key is the custom emoji id as text, or the unicode emoji, set by the database."""
    await _seed(sessions)
    async with sessions() as session:
        keys = set(await session.scalars(select(Reaction.emoji_key)))
    assert keys == {"👍", str(BIG + 99)}


async def test_timestamps_are_set_by_the_database(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """created_at/updated_at come from the server, as aware UTC, and updated_at moves on UPDATE."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    async with sessions() as session, session.begin():
        guild = Guild(id=GUILD, name="old")
        session.add(guild)
        await session.flush()
        created, updated = guild.created_at, guild.updated_at  # no refresh: eager defaults
    assert created.tzinfo is not None
    assert created.utcoffset() == timedelta(0)
    assert before < created < datetime.now(UTC) + timedelta(seconds=5)
    assert updated == created
    async with sessions() as session, session.begin():
        stored = await session.get(Guild, GUILD)
        assert stored is not None
        assert stored.created_at == created
        stored.name = "new"
        await session.flush()
        assert stored.updated_at > created
        assert stored.created_at == created


async def test_datetimes_round_trip_as_aware_utc(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A datetime written with any offset is read back as the same instant in UTC."""
    paris = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    async with sessions() as session, session.begin():
        session.add(User(id=USER, last_seen=paris))
    async with sessions() as session:
        value = await session.scalar(select(User.last_seen))
    assert value == paris
    assert value is not None
    assert value.tzinfo == UTC


async def test_naive_datetimes_are_rejected(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A naive datetime is ambiguous, so binding one raises instead of guessing a zone."""
    async with sessions() as session:
        session.add(User(id=USER, last_seen=datetime(2024, 1, 1)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()


@dataclass(frozen=True)
class BadRow:
    """A row one constraint must reject; ``name`` is the constraint's name where it is named."""

    label: str
    make: Callable[[], Base]
    name: str | None = None


BAD_ROWS = [
    # CHECK
    BadRow("platform", lambda: User(id=5, platform="irc"), "ck_users_platform"),
    BadRow("user id > 0", lambda: User(id=-5), "ck_users_id_positive"),
    BadRow(
        "interval > 0",
        lambda: TrackedEvent(
            message_id=1, guild_id=GUILD, channel_id=1, title="x", interval_minutes=0
        ),
        "ck_tracked_events_interval_positive",
    ),
    BadRow(
        "status",
        lambda: ReminderLog(event_id=1, guild_id=GUILD, scheduled_at=NOW, status="lost"),
        "ck_reminder_logs_status",
    ),
    BadRow(
        "sent has sent_at",
        lambda: ReminderLog(event_id=1, guild_id=GUILD, scheduled_at=NOW, status="sent"),
        "ck_reminder_logs_sent_has_sent_at",
    ),
    BadRow(
        "users_notified >= 0",
        lambda: ReminderLog(event_id=1, guild_id=GUILD, scheduled_at=NOW, users_notified=-1),
        "ck_reminder_logs_users_notified_non_negative",
    ),
    BadRow(
        "case action",
        lambda: ModerationCase(
            guild_id=GUILD, case_number=9, user_id=1, moderator_id=1, action="nuke"
        ),
        "ck_moderation_cases_action",
    ),
    BadRow(
        "message_count >= 0",
        lambda: Member(guild_id=TG_CHAT, user_id=USER, message_count=-1),
        "ck_members_message_count_non_negative",
    ),
    BadRow(
        "everyone targets guild",
        lambda: Mention(message_id=MESSAGE, guild_id=GUILD, target_type="everyone", target_id=1),
        "ck_mentions_everyone_targets_guild",
    ),
    BadRow(
        "mention target type",
        lambda: Mention(message_id=MESSAGE, guild_id=GUILD, target_type="emoji", target_id=1),
        "ck_mentions_target_type",
    ),
    BadRow(
        "snippet content xor alias",
        lambda: Snippet(guild_id=GUILD, name="both", content="x", alias_of_id=1, author_id=1),
        "ck_snippets_content_xor_alias",
    ),
    BadRow(
        "claim complete",
        lambda: UserReminder(
            channel_id=1, user_id=USER, content="x", due_at=NOW, claimed_by="worker-1"
        ),
        "ck_user_reminders_claim_complete",
    ),
    BadRow(
        "recurrence > 0",
        lambda: UserReminder(
            channel_id=1, user_id=USER, content="x", due_at=NOW, recurrence_seconds=0
        ),
        "ck_user_reminders_recurrence_positive",
    ),
    BadRow(
        "role color",
        lambda: Role(id=1, guild_id=GUILD, name="x", color=0x1000000),
        "ck_roles_color_rgb",
    ),
    BadRow(
        "deleted_at implies deleted",
        lambda: Message(id=7, guild_id=GUILD, channel_id=CHANNEL, author_id=USER, deleted_at=NOW),
        "ck_messages_deleted_at_implies_deleted",
    ),
    BadRow(
        "join/leave event",
        lambda: JoinLeaveLog(guild_id=GUILD, user_id=USER, event="kick"),
        "ck_join_leave_logs_event",
    ),
    BadRow(
        "xp >= 0",
        lambda: Level(guild_id=TG_CHAT, user_id=TG_USER, xp=-1),
        "ck_levels_xp_non_negative",
    ),
    # UNIQUE
    BadRow(
        "case number per guild",
        lambda: ModerationCase(
            guild_id=GUILD, case_number=1, user_id=1, moderator_id=1, action="ban"
        ),
        None,
    ),
    BadRow(
        "unicode reaction once per user",
        lambda: Reaction(
            message_id=MESSAGE, guild_id=GUILD, channel_id=CHANNEL, user_id=USER, emoji_name="👍"
        ),
        None,
    ),
    BadRow(
        "custom reaction once per user, whatever its name",
        lambda: Reaction(
            message_id=MESSAGE,
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=USER,
            emoji_id=BIG + 99,
            emoji_name="renamed",
        ),
        None,
    ),
    BadRow(
        "tracked message",
        lambda: TrackedEvent(message_id=MESSAGE, guild_id=GUILD, channel_id=1, title="again"),
        None,
    ),
    BadRow(
        "snippet name",
        lambda: Snippet(guild_id=GUILD, name="rules", content="x", author_id=1),
        None,
    ),
    BadRow("attachment position", lambda: Attachment(message_id=MESSAGE, guild_id=GUILD), None),
    # FOREIGN KEY
    BadRow(
        "unknown channel", lambda: Message(id=8, guild_id=GUILD, channel_id=1, author_id=USER), None
    ),
    BadRow("unknown role", lambda: MemberRole(guild_id=GUILD, user_id=USER, role_id=1), None),
    BadRow("member of unknown guild", lambda: Member(guild_id=1, user_id=USER), None),
    BadRow(
        "attachment of a message in another guild",
        lambda: Attachment(message_id=MESSAGE, guild_id=TG_CHAT),
        None,
    ),
    BadRow(
        "thread of another guild",
        lambda: Message(
            id=9, guild_id=TG_CHAT, channel_id=TG_CHAT, thread_id=THREAD, author_id=TG_USER
        ),
        None,
    ),
    BadRow(
        "reaction by unknown user",
        lambda: Reaction(
            message_id=MESSAGE, guild_id=GUILD, channel_id=1, user_id=1, emoji_name="x"
        ),
        None,
    ),
    # NOT NULL
    BadRow(
        "message channel",
        lambda: Message(id=10, guild_id=GUILD, channel_id=None, author_id=USER),
        None,
    ),
    BadRow(
        "negative reaction count",
        lambda: ReactionCount(
            message_id=MESSAGE,
            guild_id=GUILD,
            channel_id=CHANNEL,
            emoji_key="x",
            emoji_name="x",
            count=-1,
        ),
        None,
    ),
    BadRow(
        "case moderator",
        lambda: ModerationCase(
            guild_id=GUILD, case_number=5, user_id=1, moderator_id=None, action="warn"
        ),
        None,
    ),
    BadRow("kv value", lambda: KeyValue(namespace="n", scope="global", key="k", value=None), None),
]


async def test_constraints_reject_bad_rows(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Every CHECK, UNIQUE, FOREIGN KEY and NOT NULL below rejects its bad row on the backend."""
    await _seed(sessions)
    accepted: list[str] = []
    wrong_constraint: list[tuple[str, str]] = []
    for bad in BAD_ROWS:
        async with sessions() as session:
            session.add(bad.make())
            try:
                await session.flush()
            except IntegrityError as exc:
                if bad.name is not None and bad.name not in str(exc.orig):
                    wrong_constraint.append((bad.label, str(exc.orig)))
            else:
                accepted.append(bad.label)
            await session.rollback()
    assert accepted == []
    assert wrong_constraint == []


async def test_deleting_a_guild_cascades_to_its_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """ON DELETE CASCADE removes a guild's channels, messages and their reactions."""
    await _seed(sessions)
    async with sessions() as session, session.begin():
        await session.execute(Guild.__table__.delete().where(Guild.id == GUILD))
    async with sessions() as session:
        for model in (Channel, Message, Reaction, Attachment, Member, ModerationCase, Level):
            count = await session.scalar(
                select(func.count()).select_from(model).where(model.guild_id == GUILD)
            )
            assert count == 0, model.__tablename__
        assert await session.get(User, USER) is not None  # users are global


async def test_partial_indexes_exist(engine: AsyncEngine) -> None:
    """Live-message and due-reminder indexes are partial on both backends."""
    names = ("ix_messages_live_channel_id_created_at", "ix_user_reminders_due")
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
            )
        else:
            rows = await conn.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
        ddl = {str(name): str(sql) for name, sql in rows.all()}
    assert "deleted" in ddl[names[0]].split("WHERE", 1)[1]
    assert "sent_at IS NULL" in ddl[names[1]].split("WHERE", 1)[1]


async def test_sqlite_live_message_filter_matches_the_partial_index(
    sqlite_url: str,
) -> None:
    """Message.not_deleted() renders so that SQLite can use the partial index (INDEXED BY)."""
    eng = create_async_engine(_async_url(sqlite_url))
    try:
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=builtin_tables())
            where = Message.not_deleted().compile(
                dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
            )
            plan = await conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM messages INDEXED BY "
                    f"ix_messages_live_channel_id_created_at WHERE channel_id = 1 AND {where} "
                    "ORDER BY created_at DESC"
                )
            )
            assert "ix_messages_live_channel_id_created_at" in str(plan.all())
    finally:
        await eng.dispose()


def _index_prefixes(table: Table) -> list[list[str]]:
    """Leading column lists of the table's PK, unique constraints and usable indexes."""
    prefixes = [[c.name for c in table.primary_key.columns]]
    prefixes += [
        [c.name for c in uq.columns]
        for uq in table.constraints
        if uq.__class__.__name__ == "UniqueConstraint"
    ]
    for index in table.indexes:
        where = index.dialect_options["postgresql"]["where"]
        # a partial index serves an FK lookup only if its predicate is "<fk col> IS NOT NULL"
        if where is not None and not str(where).endswith("IS NOT NULL"):
            continue
        prefixes.append([c.name for c in index.columns])
    return prefixes


def test_every_foreign_key_is_covered_by_an_index() -> None:
    """Each FK's columns lead some index/PK/unique, so cascades and joins never scan."""
    missing = []
    for table in builtin_tables():
        prefixes = _index_prefixes(table)
        for fk in table.foreign_key_constraints:
            cols = set(fk.column_keys)
            if not any(set(p[: len(cols)]) == cols for p in prefixes):
                missing.append(f"{table.name}{sorted(cols)}")
    assert missing == []


def test_every_chat_scoped_table_has_guild_id() -> None:
    """All built-in tables but guilds, users and kv_store carry a guild_id column."""
    names = {table.name for table in builtin_tables()}
    assert names >= GLOBAL_TABLES
    lacking = [
        t.name for t in builtin_tables() if t.name not in GLOBAL_TABLES and "guild_id" not in t.c
    ]
    assert lacking == []


def test_builtin_tables_are_marked_and_in_dependency_order() -> None:
    """builtin_tables() lists only marked tables, each after every table it references."""
    tables = builtin_tables()
    assert len(tables) == 25
    assert all(is_builtin(t) for t in tables)
    seen: set[str] = set()
    for table in tables:
        parents = {fk.referred_table.name for fk in table.foreign_key_constraints} - {table.name}
        assert parents <= seen, table.name
        seen.add(table.name)


def test_ids_are_bigint_and_constraints_are_named() -> None:
    """Every *_id / id column holding a chat id is BIGINT; every constraint has a name."""
    for table in builtin_tables():
        for col in table.columns:
            if col.name == "id" or col.name.endswith("_id"):
                if col.name in ("external_id", "file_id"):
                    continue
                assert (
                    col.type.compile(
                        dialect=__import__(
                            "sqlalchemy.dialects.postgresql", fromlist=["dialect"]
                        ).dialect()
                    )
                    == "BIGINT"
                ), f"{table.name}.{col.name}"
        for constraint in table.constraints:
            assert constraint.name, f"unnamed constraint on {table.name}"
        for index in table.indexes:
            assert isinstance(index, Index)
            assert index.name


def test_repr_shows_the_primary_key_only() -> None:
    """repr names the class and primary key, nothing else (no content, no lazy load)."""
    message = Message(id=MESSAGE, guild_id=GUILD, channel_id=CHANNEL, author_id=USER, content="s")
    assert repr(message) == f"<Message id={MESSAGE} guild_id={GUILD}>"
    assert repr(KeyValue(namespace="a", scope="global", key="k")) == (
        "<KeyValue namespace='a' scope='global' key='k'>"
    )


def test_soft_delete_contract() -> None:
    """Soft-deletable models expose the flag, the live filter and the values to set."""
    assert Channel.__soft_delete__
    assert Message.__soft_delete__
    assert not getattr(Guild, "__soft_delete__", False)
    assert Channel.soft_delete_values(NOW) == {"deleted_at": NOW}
    assert Message.soft_delete_values(NOW) == {"deleted": True, "deleted_at": NOW}
    assert str(Channel.not_deleted()) == "channels.deleted_at IS NULL"
    assert Channel(id=1, guild_id=1, deleted_at=NOW).is_deleted
    assert not Message(id=1, guild_id=1, deleted=False).is_deleted


def test_user_tables_extend_the_same_base() -> None:
    """A user's model on Base references built-in tables and is not listed as built-in."""
    script = textwrap.dedent(
        """
        from sqlalchemy import BigInteger, ForeignKey, create_engine, inspect
        from sqlalchemy.orm import Mapped, mapped_column
        from botdb.models import Base, builtin_tables

        class GalleryChannel(Base):
            __tablename__ = "gallery_channels"
            channel_id: Mapped[int] = mapped_column(
                BigInteger, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)

        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        assert "gallery_channels" in inspect(engine).get_table_names()
        assert "gallery_channels" not in {t.name for t in builtin_tables()}
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


# --- snowflakes ---------------------------------------------------------------------------


def test_snowflake_time_matches_discord_documentation() -> None:
    """Discord's documented example id decodes to 2016-04-30 11:18:25.796 UTC."""
    assert snowflake_time(175928847299117063) == datetime(
        2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC
    )


def test_time_snowflake_bounds_a_millisecond() -> None:
    """The low and high ids of a millisecond bracket every id created in it."""
    message_id = 175928847299117063
    at = snowflake_time(message_id)
    assert time_snowflake(at) <= message_id <= time_snowflake(at, high=True)
    assert time_snowflake(at, high=True) - time_snowflake(at) == (1 << 22) - 1
    assert time_snowflake(datetime(2015, 1, 1, tzinfo=UTC)) == 0


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_snowflake_round_trip(snowflake_id: int) -> None:
    """Any id maps to a time whose low/high bounds contain it."""
    at = snowflake_time(snowflake_id)
    assert time_snowflake(at) <= snowflake_id <= time_snowflake(at, high=True)
    assert snowflake_time(time_snowflake(at)) == at


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: time_snowflake(datetime(2020, 1, 1)), "naive"),
        (lambda: time_snowflake(datetime(2014, 12, 31, tzinfo=UTC)), "before the Discord epoch"),
        (lambda: snowflake_time(-1), "not a Discord snowflake"),
        (lambda: snowflake_time(1 << 63), "not a Discord snowflake"),
    ],
)
def test_snowflake_helpers_reject_bad_input(call: Callable[[], object], message: str) -> None:
    """Naive or pre-epoch datetimes and out-of-range ids raise ValueError."""
    with pytest.raises(ValueError, match=message):
        call()
