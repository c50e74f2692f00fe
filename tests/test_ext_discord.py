"""botdb.ext.discord: a real discord.py ``commands.Bot``, fed gateway payloads offline
(``tests/discord_gateway.py``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.ext import commands
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import botdb
import botdb.ext.discord as ext
from botdb import errors
from botdb.recorder import (
    ChannelInfo,
    GuildInfo,
    MentionInfo,
    MessageCreated,
    ReactionAdded,
    ThreadInfo,
    UserInfo,
)
from botdb.recorder._validate import validate_events
from tests.discord_gateway import (
    BOT_ID,
    OWNER_ID,
    Gateway,
    at,
    channel,
    guild,
    member,
    message,
    reaction,
    role,
    slash_command,
    snowflake,
    thread,
    user,
)
from tests.helpers import MakeDB
from tests.test_recorder_faults import assert_typed

GUILD = 100_000_000_000_000_001
GUILD2 = 100_000_000_000_000_002
GENERAL = 200_000_000_000_000_001
CATEGORY = 200_000_000_000_000_009
OTHER_GENERAL = 200_000_000_000_000_002
THREAD = 200_000_000_000_000_050
DM = 200_000_000_000_000_077
ANN = user(OWNER_ID, "ann")
BOB_ID = 300_000_000_000_000_002
BOB = user(BOB_ID, "bob")
CAROL_ID = 300_000_000_000_000_003
MODS = 400_000_000_000_000_001


def guild_payload() -> dict[str, Any]:
    return guild(
        GUILD,
        "Botdb Lounge",
        channels=[
            channel(CATEGORY, "Text", kind=4),
            channel(GENERAL, "general", parent_id=CATEGORY),
        ],
        threads=[thread(THREAD, "a thread", GUILD, GENERAL)],
        members=[member(OWNER_ID, "ann"), member(BOB_ID, "bob", nick="Bobby")],
        roles=[role(MODS, "mods")],
    )


_BOTS: list[commands.Bot] = []


def make_bot(prefix: Any = "!") -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    bot = commands.Bot(command_prefix=prefix, intents=intents, chunk_guilds_at_startup=False)
    _BOTS.append(bot)
    return bot


@pytest.fixture(autouse=True)
async def _close_bots() -> AsyncIterator[None]:
    """Every bot a test built is closed (its HTTP session, its Database) even if it failed."""
    yield
    while _BOTS:
        await _BOTS.pop().close()


@pytest.fixture
def spool(tmp_path: Path) -> str:
    """A recorder spool of the test's own (the default for PostgreSQL is in the cwd)."""
    return str(tmp_path / "recorder.spool")


@pytest.fixture
async def schema(make_db: MakeDB, spool: str) -> botdb.Database:
    """The test's database with the built-in tables; read the bot's writes through it."""
    return await make_db(create_tables=True, recorder_spool_path=spool + ".reader")


async def started(bot: commands.Bot) -> Gateway:
    gateway = Gateway(bot)
    await gateway.login()
    return gateway


# -- import hygiene ---------------------------------------------------------------------------


def test_import_botdb_and_botdb_ext_do_not_import_discord() -> None:
    code = "import sys, botdb, botdb.ext\nprint('discord' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_discord_py_the_extension_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['discord'] = None  # as if discord.py were not installed\n"
        "import botdb\n"
        "try:\n"
        "    import botdb.ext.discord\n"
        "except botdb.MissingDependencyError as exc:\n"
        "    print(type(exc).__name__, isinstance(exc, ImportError), exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingDependencyError True")
    assert "pip install 'botdb[discord]'" in out.stdout


# -- the whole path: gateway payloads -> recorder -> rows, after bot.close() ------------------


async def test_gateway_events_are_all_in_the_database_after_bot_close(
    schema: botdb.Database, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_extension (URL from the environment) + the recorder extension; every fed event
    is stored once bot.close() returns, the command's completion included."""
    monkeypatch.setenv("BOTDB_DATABASE_URL", db_url)
    monkeypatch.setenv("BOTDB_RECORDER_SPOOL_PATH", spool)
    monkeypatch.setenv("BOTDB_RECORDER_FLUSH_INTERVAL", "60")  # only close() writes them

    bot = make_bot()

    @bot.command()
    async def echo(ctx: commands.Context[Any], word: str, times: int = 1) -> None:
        await ctx.send(word * times)

    async def setup_hook() -> None:
        await bot.load_extension("botdb.ext.discord")
        await bot.load_extension("botdb.ext.discord.recorder")

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    gw = await started(bot)
    db: botdb.Database = bot.db  # type: ignore[attr-defined]
    assert isinstance(db, botdb.Database)
    assert str(db.settings.recorder_spool_path) == spool

    first, edited, deleted, uncached = (snowflake(1000 * n) for n in (1, 2, 3, 4))
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed(
        "MESSAGE_CREATE",
        message(first, GENERAL, ANN, "hello <@300000000000000002>", guild_id=GUILD, mentions=[BOB]),
    )
    gw.feed("MESSAGE_CREATE", message(edited, GENERAL, BOB, "typo", guild_id=GUILD))
    gw.feed(
        "MESSAGE_UPDATE", message(edited, GENERAL, BOB, "fixed", guild_id=GUILD, edited_ms=2500)
    )
    gw.feed("MESSAGE_CREATE", message(deleted, THREAD, ANN, "in a thread", guild_id=GUILD))
    gw.feed(
        "MESSAGE_DELETE", {"id": str(deleted), "channel_id": str(THREAD), "guild_id": str(GUILD)}
    )
    # A reaction to a message this process never saw (older than the cache): raw event only.
    gw.feed("MESSAGE_REACTION_ADD", reaction(uncached, GENERAL, BOB_ID, "👍", guild_id=GUILD))
    gw.feed("GUILD_MEMBER_ADD", member(CAROL_ID, "carol", joined_ms=5000, guild_id=GUILD))
    gw.feed("GUILD_MEMBER_REMOVE", {"guild_id": str(GUILD), "user": BOB})
    gw.feed(
        "GUILD_MEMBER_UPDATE", member(OWNER_ID, "ann", nick="Annie", roles=(MODS,), guild_id=GUILD)
    )
    # The gateway hands over one payload at a time; let the handlers see this state before
    # the next payload (Ann's message below, whose member data has no nick) changes the
    # cached member they are given.
    await gw.settle()
    gw.feed(
        "MESSAGE_DELETE_BULK",
        {"ids": [str(first)], "channel_id": str(GENERAL), "guild_id": str(GUILD)},
    )
    command = snowflake(6000)
    ctx = await gw.invoke(message(command, GENERAL, ANN, "!echo ab 2", guild_id=GUILD))
    assert ctx.command is not None
    assert ctx.command.name == "echo"
    assert gw.sent == [(GENERAL, "abab")]

    await bot.close()
    assert not hasattr(bot, "db")
    assert not db._core.is_open

    rows = {
        r["id"]: r
        for r in await schema.fetch(
            "SELECT id, channel_id, thread_id, author_id, content, edited_at, deleted, partial "
            "FROM messages WHERE guild_id = $1",
            GUILD,
        )
    }
    assert set(rows) == {first, edited, deleted, uncached, command}
    assert rows[first]["deleted"]
    assert rows[first]["content"] == "hello <@300000000000000002>"
    assert rows[edited]["content"] == "fixed"
    assert rows[edited]["edited_at"] is not None
    assert (rows[deleted]["channel_id"], rows[deleted]["thread_id"]) == (GENERAL, THREAD)
    assert rows[deleted]["deleted"]
    assert rows[uncached]["partial"]
    assert rows[uncached]["author_id"] is None
    assert rows[command]["content"] == "!echo ab 2"
    assert (
        await schema.fetchval(
            "SELECT count(*) FROM mentions WHERE message_id = $1 AND target_type = 'user' "
            "AND target_id = $2",
            first,
            BOB_ID,
        )
        == 1
    )
    reactions = await schema.fetch(
        "SELECT user_id, emoji_name, removed_at FROM reactions WHERE message_id = $1", uncached
    )
    assert [(r["user_id"], r["emoji_name"], r["removed_at"]) for r in reactions] == [
        (BOB_ID, "👍", None)
    ]
    members = {
        r["user_id"]: r
        for r in await schema.fetch(
            "SELECT user_id, is_active, nick FROM members WHERE guild_id = $1", GUILD
        )
    }
    assert members[CAROL_ID]["is_active"]
    assert not members[BOB_ID]["is_active"]
    assert members[OWNER_ID]["nick"] == "Annie"
    assert (
        await schema.fetchval(
            "SELECT role_id FROM member_roles WHERE guild_id = $1 AND user_id = $2", GUILD, OWNER_ID
        )
        == MODS
    )
    logs = await schema.fetch(
        "SELECT user_id, event FROM join_leave_logs WHERE guild_id = $1 ORDER BY user_id", GUILD
    )
    assert [(r["user_id"], r["event"]) for r in logs] == [(BOB_ID, "leave"), (CAROL_ID, "join")]
    history = await schema.fetchrow(
        "SELECT user_id, command, guild_id, channel_id, args, success FROM command_history"
    )
    assert history is not None
    assert (history["user_id"], history["command"], history["guild_id"]) == (
        OWNER_ID,
        "echo",
        GUILD,
    )
    args = history["args"]
    if isinstance(args, str | bytes):
        import orjson

        args = orjson.loads(args)
    assert args == {"word": "ab", "times": 2}
    assert history["success"] == 1  # a bool on PostgreSQL, 1 on SQLite (raw API)
    names = {r["id"]: r["name"] for r in await schema.fetch("SELECT id, name FROM channels")}
    assert names[GENERAL] == "general"
    assert names[CATEGORY] == "Text"
    assert await schema.fetchval("SELECT name FROM threads WHERE id = $1", THREAD) == "a thread"
    assert await schema.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD) == "Botdb Lounge"
    users = {r["id"]: r for r in await schema.fetch("SELECT id, username, display_name FROM users")}
    assert users[OWNER_ID]["username"] == "ann"
    assert users[CAROL_ID]["display_name"] == "Carol"


async def test_attach_in_setup_hook_records_the_chosen_events_only(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    bot = make_bot()

    async def setup_hook() -> None:
        await ext.attach(bot, url=db_url, record={"on_message"}, recorder_spool_path=spool)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    gw = await started(bot)
    gw.feed("GUILD_CREATE", guild_payload())
    # A NUL (which PostgreSQL text refuses) does not cost the message: it is replaced.
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, ANN, "kept\x00", guild_id=GUILD))
    gw.feed("MESSAGE_REACTION_ADD", reaction(snowflake(1), GENERAL, BOB_ID, "x", guild_id=GUILD))
    await bot.close()
    assert await schema.fetchval("SELECT content FROM messages") == "kept\ufffd"
    assert await schema.fetchval("SELECT count(*) FROM reactions") == 0
    # The guild's name comes from guild_join/guild_available, not recorded here.
    assert await schema.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD) is None


async def test_unloading_the_extension_flushes_and_closes_the_database(
    schema: botdb.Database, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTDB_DATABASE_URL", db_url)
    monkeypatch.setenv("BOTDB_RECORDER_SPOOL_PATH", spool)
    monkeypatch.setenv("BOTDB_RECORDER_FLUSH_INTERVAL", "60")
    bot = make_bot()
    gw = Gateway(bot)
    await gw.login()
    await bot.load_extension("botdb.ext.discord")
    await bot.load_extension("botdb.ext.discord.recorder")
    db: botdb.Database = bot.db  # type: ignore[attr-defined]
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, ANN, "before", guild_id=GUILD))
    await gw.settle()  # the listener has run
    await bot.unload_extension("botdb.ext.discord.recorder")
    assert bot.get_cog("botdb recorder") is None
    assert bot.db is db  # type: ignore[attr-defined]
    gw.feed("MESSAGE_CREATE", message(snowflake(2), GENERAL, ANN, "not recorded", guild_id=GUILD))
    await bot.unload_extension("botdb.ext.discord")
    assert not hasattr(bot, "db")
    assert not db._core.is_open
    assert [r["content"] for r in await schema.fetch("SELECT content FROM messages")] == ["before"]
    await bot.close()  # the class's own close again: nothing of botdb's left to run


async def test_detach_writes_buffered_events_and_those_of_handlers_in_flight(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    """detach (the teardown path) waits for the handlers already dispatched (the guild's
    listener has not run when detach is called) and closes the Database, which flushes."""
    bot = make_bot()
    gw = await started(bot)
    db = await ext.attach(
        bot, url=db_url, record=True, recorder_spool_path=spool, recorder_flush_interval=60
    )
    gw.feed("GUILD_CREATE", guild_payload())
    await db.recorder.record(GuildInfo(GUILD2, name="recorded directly"))
    await ext.detach(bot)
    assert await schema.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD2) == (
        "recorded directly"
    )
    name = await schema.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD)
    assert name == "Botdb Lounge"
    await bot.close()


async def test_slash_command_completions_are_recorded(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    bot = make_bot()
    rolled: list[int] = []

    @bot.tree.command(name="roll")
    async def roll(interaction: discord.Interaction[Any], sides: int) -> None:
        rolled.append(sides)

    gw = await started(bot)
    await ext.attach(bot, url=db_url, record={"app_command_completion"}, recorder_spool_path=spool)
    gw.feed("GUILD_CREATE", guild_payload())
    done = asyncio.ensure_future(bot.wait_for("app_command_completion"))
    iid = snowflake(7000)
    gw.feed(
        "INTERACTION_CREATE",
        slash_command(
            iid,
            "roll",
            {"sides": 6},
            user_member=member(OWNER_ID, "ann"),
            guild_id=GUILD,
            channel_id=GENERAL,
        ),
    )
    await asyncio.wait_for(done, 30)
    assert rolled == [6]
    await bot.close()
    row = await schema.fetchrow(
        "SELECT user_id, command, guild_id, channel_id, started_at FROM command_history"
    )
    assert row is not None
    assert (row["user_id"], row["command"], row["guild_id"], row["channel_id"]) == (
        OWNER_ID,
        "roll",
        GUILD,
        GENERAL,
    )


# -- closing: handlers finish first, cogs unload with the database still open ------------------


async def test_close_waits_for_running_handlers_before_closing_the_database(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    bot = make_bot()
    entered, release = asyncio.Event(), asyncio.Event()

    @bot.listen("on_message")
    async def slow_writer(msg: discord.Message) -> None:
        entered.set()
        await release.wait()  # still running when close() begins
        await bot.db.execute(  # type: ignore[attr-defined]
            "INSERT INTO notes_for_test (body) VALUES ($1)", msg.content
        )

    await schema.execute("CREATE TABLE notes_for_test (body TEXT)")
    gw = await started(bot)
    db = await ext.attach(bot, url=db_url, recorder_spool_path=spool)
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, ANN, "late", guild_id=GUILD))
    await asyncio.wait_for(entered.wait(), 30)
    closing = asyncio.ensure_future(bot.close())
    # discord.py's own close is over (its HTTP session closed last); close() now waits for
    # the handler, so the database is still open, and the handler's write below succeeds.
    await asyncio.wait_for(gw.http_closed.wait(), 30)
    assert not closing.done()
    assert db._core.is_open
    release.set()
    await asyncio.wait_for(closing, 30)
    assert not db._core.is_open
    assert await schema.fetchval("SELECT body FROM notes_for_test") == "late"


async def test_a_handler_outliving_drain_timeout_gets_a_typed_error(
    db_url: str, spool: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot()
    entered, release = asyncio.Event(), asyncio.Event()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    @bot.listen("on_message")
    async def stuck(msg: discord.Message) -> None:
        db = bot.db  # type: ignore[attr-defined]
        entered.set()
        await release.wait()
        try:
            await db.fetchval("SELECT 1")
        except Exception as exc:  # what a handler sees once the database is closed
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    gw = await started(bot)
    db = await ext.attach(bot, url=db_url, recorder_spool_path=spool, drain_timeout=0)
    gw.feed("MESSAGE_CREATE", message(snowflake(1), DM, ANN, "x"))
    await asyncio.wait_for(entered.wait(), 30)
    with caplog.at_level("WARNING", logger="botdb.ext.discord"):
        await bot.close()
    assert not db._core.is_open
    assert "still run" in caplog.text
    release.set()
    error = await asyncio.wait_for(outcome, 30)
    assert isinstance(error, errors.BotDBError)


async def test_a_command_that_closes_the_bot_does_not_wait_for_itself(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    """``!shutdown`` runs inside an event handler: close() must not wait for that handler."""
    bot = make_bot()
    closed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @bot.command()
    async def shutdown(ctx: commands.Context[Any]) -> None:
        await ctx.bot.close()
        closed.set_result(True)

    gw = await started(bot)
    db = await ext.attach(
        bot, url=db_url, record=True, recorder_spool_path=spool, drain_timeout=3600
    )
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, ANN, "!shutdown", guild_id=GUILD))
    assert await asyncio.wait_for(closed, 30)
    assert not db._core.is_open
    assert await schema.fetchval("SELECT content FROM messages") == "!shutdown"


async def test_close_does_not_wait_for_another_bots_handlers(db_url: str, spool: str) -> None:
    """Two bots in one event loop: closing one waits for its own handlers only."""
    mine, other = make_bot(), make_bot()
    entered, release = asyncio.Event(), asyncio.Event()

    @other.listen("on_message")
    async def blocked(msg: discord.Message) -> None:
        entered.set()
        await release.wait()

    await started(mine)
    other_gw = await started(other)
    db = await ext.attach(mine, url=db_url, recorder_spool_path=spool, drain_timeout=3600)
    other_gw.feed("MESSAGE_CREATE", message(snowflake(1), DM, ANN, "x"))
    await asyncio.wait_for(entered.wait(), 30)
    await asyncio.wait_for(mine.close(), 30)  # would wait an hour for the other bot's handler
    assert not db._core.is_open
    release.set()
    await other.close()


async def test_cogs_can_use_the_database_while_the_bot_closes(
    schema: botdb.Database, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """commands.Bot.close() unloads extensions (botdb's first) and then removes cogs: a
    cog's cog_unload still finds bot.db open."""
    monkeypatch.setenv("BOTDB_DATABASE_URL", db_url)
    monkeypatch.setenv("BOTDB_RECORDER_SPOOL_PATH", spool)
    saved: list[int] = []

    class Saver(ext.BotDBCog):
        async def cog_unload(self) -> None:
            await self.config.set(GUILD, prefix="?")
            saved.append(GUILD)

    bot = make_bot()

    async def setup_hook() -> None:
        await bot.load_extension("botdb.ext.discord")
        await bot.add_cog(Saver(bot))

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    await started(bot)
    await bot.close()
    assert saved == [GUILD]
    assert await schema.fetchval("SELECT prefix FROM guild_configs") == "?"


# -- attach: one pool, typed errors -----------------------------------------------------------


async def test_attach_twice_returns_the_same_database_and_opens_no_second_pool(
    schema: botdb.Database, db_url: str, spool: str
) -> None:
    bot = make_bot()
    await started(bot)
    db = await ext.attach(bot, url=db_url, recorder_spool_path=spool)
    assert await ext.attach(bot) is db
    assert await ext.attach(bot, db) is db
    with pytest.raises(errors.ConfigurationError, match="different Database"):
        await ext.attach(bot, schema)
    # record= on a later call adds recording to the Database already attached; the events
    # asked for add up (a generator is read once).
    assert await ext.attach(bot, record=(name for name in ["message"])) is db
    assert await ext.attach(bot, record={"on_raw_reaction_add"}) is db
    cog = bot.get_cog("botdb recorder")
    assert isinstance(cog, ext.RecorderCog)
    assert cog.events == {"message", "raw_reaction_add"}
    assert set(bot.extra_events) >= {"on_message", "on_raw_reaction_add"}
    assert "on_member_join" not in bot.extra_events
    await bot.close()
    assert not db._core.is_open


async def test_attach_refuses_bad_arguments_and_attaches_nothing(db_url: str, spool: str) -> None:
    bot = make_bot()
    await started(bot)
    with pytest.raises(errors.ConfigurationError, match="unknown event"):
        await ext.attach(bot, url=db_url, record={"on_typing"})
    assert not hasattr(bot, "db")
    with pytest.raises(errors.ConfigurationError, match="drain_timeout"):
        await ext.attach(bot, url=db_url, drain_timeout=-1)
    with pytest.raises(errors.ConfigurationError):
        await ext.attach(bot, url="mysql://nowhere/db")
    assert not hasattr(bot, "db")
    own = botdb.connect(db_url, recorder_spool_path=spool)
    with pytest.raises(errors.ConfigurationError, match="either db or url"):
        await ext.attach(bot, own, url=db_url)
    bot.db = "something else"  # type: ignore[attr-defined]
    with pytest.raises(errors.ConfigurationError, match=r"bot\.db is already set"):
        await ext.attach(bot, url=db_url)
    del bot.db  # type: ignore[attr-defined]
    assert "close" not in bot.__dict__  # no wrapper left behind by a failed attach
    await bot.close()


async def test_attach_adopts_a_database_the_author_built(db_url: str, spool: str) -> None:
    bot = make_bot()
    await started(bot)
    db = botdb.connect(db_url, recorder_spool_path=spool)
    bot.db = db  # type: ignore[attr-defined]
    assert await ext.attach(bot) is db
    assert await db.fetchval("SELECT 1") == 1  # connected by attach
    await bot.close()
    assert not db._core.is_open


async def test_attach_with_close_false_leaves_the_database_open(db_url: str, spool: str) -> None:
    bot = make_bot()
    await started(bot)
    async with botdb.connect(db_url, recorder_spool_path=spool) as db:
        await ext.attach(bot, db, close=False)
        await bot.close()
        assert await db.fetchval("SELECT 2") == 2


# -- the cog pattern and the prefix resolver --------------------------------------------------


class Settings(ext.BotDBCog):
    """A cog of the kind seed 002 writes, on BotDBCog."""

    @commands.command()
    async def setprefix(self, ctx: commands.Context[Any], new: str) -> None:
        assert ctx.guild is not None
        settings = await self.config.set(ctx.guild.id, prefix=new)
        await ctx.send(f"prefix {settings.prefix}")

    @commands.command()
    async def whoami(self, ctx: commands.Context[Any]) -> None:
        row = await self.upsert_member(ctx.author)  # type: ignore[arg-type]
        record = await self.users.get(ctx.author.id)
        await ctx.send(f"{record.username} nick={row.nick} in {row.guild_id}")


@pytest.fixture
async def cog_bot(
    schema: botdb.Database, db_url: str, spool: str
) -> AsyncIterator[tuple[commands.Bot, Gateway]]:
    bot = make_bot(ext.prefix_from_config(default="!", mention=True))

    async def setup_hook() -> None:
        await ext.attach(bot, url=db_url, recorder_spool_path=spool)
        await bot.add_cog(Settings(bot))

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    gw = await started(bot)
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed(
        "GUILD_CREATE",
        guild(
            GUILD2,
            "Other",
            channels=[channel(OTHER_GENERAL, "general")],
            members=[member(OWNER_ID, "ann")],
        ),
    )
    yield bot, gw
    await bot.close()


async def test_cog_commands_read_and_write_through_self_db(
    cog_bot: tuple[commands.Bot, Gateway], schema: botdb.Database
) -> None:
    _, gw = cog_bot
    await gw.invoke(message(snowflake(1), GENERAL, BOB, "!whoami", guild_id=GUILD, nick="Bobby"))
    assert gw.sent[-1] == (GENERAL, f"bob nick=Bobby in {GUILD}")
    row = await schema.fetchrow(
        "SELECT nick, is_active FROM members WHERE guild_id = $1 AND user_id = $2", GUILD, BOB_ID
    )
    assert row is not None
    assert (row["nick"], row["is_active"]) == ("Bobby", True)
    assert await schema.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD) == "Botdb Lounge"


async def test_prefix_is_read_per_guild_from_the_config(
    cog_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = cog_bot
    await gw.invoke(message(snowflake(1), GENERAL, ANN, "!setprefix ?", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "prefix ?")
    # Guild 1 now answers to "?" only; guild 2 keeps the default; a mention always works.
    await gw.invoke(message(snowflake(2), GENERAL, ANN, "?setprefix $", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "prefix $")
    await gw.invoke(message(snowflake(3), OTHER_GENERAL, ANN, "!setprefix %", guild_id=GUILD2))
    assert gw.sent[-1] == (OTHER_GENERAL, "prefix %")
    await gw.invoke(message(snowflake(4), GENERAL, ANN, f"<@{BOT_ID}> setprefix ~", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "prefix ~")
    guild_msg = bot._connection._get_message(snowflake(4))
    assert guild_msg is not None
    assert await bot.get_prefix(guild_msg) == [f"<@{BOT_ID}> ", f"<@!{BOT_ID}> ", "~"]
    gw.feed("MESSAGE_CREATE", message(snowflake(5), DM, ANN, "hi"))
    dm_msg = bot._connection._get_message(snowflake(5))
    assert dm_msg is not None
    assert dm_msg.guild is None
    assert (await bot.get_prefix(dm_msg))[-1] == "!"


async def test_prefix_from_a_settings_key_with_several_prefixes(
    cog_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = cog_bot
    db: botdb.Database = bot.db  # type: ignore[attr-defined]
    resolve = ext.prefix_from_config(default=("!", "."), key="prefixes")
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, ANN, "x", guild_id=GUILD))
    msg = bot._connection._get_message(snowflake(1))
    assert msg is not None
    assert await resolve(bot, msg) == ["!", "."]
    await db.config.set(GUILD, settings={"prefixes": ["$", "", 7, "&"]})
    assert await resolve(bot, msg) == ["$", "&"]  # unusable entries are skipped
    await db.config.set(GUILD, settings={"prefixes": "?"})
    assert await resolve(bot, msg) == ["?"]
    await db.config.set(GUILD, settings={"prefixes": []})
    assert await resolve(bot, msg) == ["!", "."]


def test_prefix_from_config_refuses_bad_defaults() -> None:
    for bad in ("", [], ["!", ""], "x" * 33):
        with pytest.raises(errors.ConfigurationError):
            ext.prefix_from_config(default=bad)
    with pytest.raises(errors.ConfigurationError):
        ext.prefix_from_config(key="")


async def test_cog_without_a_database_and_bad_objects_raise_typed_errors(
    cog_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, _ = cog_bot
    bare = make_bot()
    with pytest.raises(errors.ConfigurationError, match=r"bot\.db is not set"):
        _ = ext.BotDBCog(bare).db
    with pytest.raises(errors.ConfigurationError, match=r"bot\.db is not set"):
        ext.database_of(bare)
    cog = bot.get_cog("Settings")
    assert isinstance(cog, ext.BotDBCog)
    user_obj = bot.get_user(OWNER_ID)
    assert user_obj is not None
    with pytest.raises(errors.ArgumentError, match=r"discord\.Member"):
        await cog.upsert_member(user_obj)  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentError):
        await cog.upsert_user("ann")  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentError):
        await cog.upsert_guild(GUILD)  # type: ignore[arg-type]
    record = await cog.upsert_user(user_obj)
    assert (record.username, record.display_name, record.platform) == ("ann", "Ann", "discord")


# -- conversions ------------------------------------------------------------------------------


@pytest.fixture
async def offline_bot() -> AsyncIterator[tuple[commands.Bot, Gateway]]:
    """A logged-in bot without any database: conversions need only discord.py objects."""
    bot = make_bot()
    gw = await started(bot)
    gw.feed("GUILD_CREATE", guild_payload())
    yield bot, gw
    await bot.close()


def _message(bot: commands.Bot, gw: Gateway, payload: dict[str, Any]) -> discord.Message:
    gw.feed("MESSAGE_CREATE", payload)
    found = bot._connection._get_message(int(payload["id"]))
    assert found is not None
    return found


async def test_message_created_carries_what_the_importer_stores(
    offline_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = offline_bot
    reply_to = snowflake(1)
    mid = snowflake(2)
    msg = _message(
        bot,
        gw,
        message(
            mid,
            GENERAL,
            ANN,
            f"<@{BOB_ID}> <@&{MODS}> <#{GENERAL}> @here look",
            guild_id=GUILD,
            type=19,
            pinned=True,
            mentions=[BOB],
            mention_roles=[str(MODS)],
            mention_everyone=True,
            message_reference={"message_id": str(reply_to), "channel_id": str(GENERAL)},
            attachments=[
                {
                    "id": "55",
                    "filename": "a.png",
                    "size": 10,
                    "url": "https://cdn/a.png",
                    "proxy_url": "https://p/a.png",
                    "width": 2,
                    "height": 3,
                    "content_type": "image/png",
                }
            ],
            embeds=[{"title": "t", "type": "rich"}],
        ),
    )
    event = ext.message_created(msg)
    assert (event.id, event.guild_id, event.channel_id) == (mid, GUILD, GENERAL)
    assert event.thread_id is None
    assert (event.author_id, event.kind, event.reply_to_id, event.pinned) == (
        OWNER_ID,
        "reply",
        reply_to,
        True,
    )
    assert event.created_at == discord.utils.snowflake_time(mid)
    assert event.jump_url == f"https://discord.com/channels/{GUILD}/{GENERAL}/{mid}"
    assert set(event.mentions) == {
        MentionInfo("user", BOB_ID),
        MentionInfo("role", MODS),
        MentionInfo("channel", GENERAL),
        MentionInfo("here", GUILD),
    }
    (attachment,) = event.attachments
    assert (attachment.external_id, attachment.filename, attachment.size) == ("55", "a.png", 10)
    assert (attachment.width, attachment.height, attachment.content_type) == (2, 3, "image/png")
    assert event.extra is not None
    assert event.extra["embeds"][0]["title"] == "t"


async def test_thread_and_dm_messages_are_placed_as_the_importer_places_them(
    offline_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = offline_bot
    in_thread = ext.message_created(
        _message(bot, gw, message(snowflake(1), THREAD, ANN, "t", guild_id=GUILD))
    )
    assert (in_thread.guild_id, in_thread.channel_id, in_thread.thread_id) == (
        GUILD,
        GENERAL,
        THREAD,
    )
    dm = _message(bot, gw, message(snowflake(2), DM, ANN, "psst"))
    event = ext.message_created(dm)
    assert (event.guild_id, event.channel_id, event.thread_id) == (DM, DM, None)
    assert event.jump_url is not None
    assert "/@me/" in event.jump_url
    assert ext.guild_info(dm.channel) == GuildInfo(DM, "discord", None, "private")  # type: ignore[arg-type]


async def test_entity_conversions(offline_bot: tuple[commands.Bot, Gateway]) -> None:
    bot, _ = offline_bot
    g = bot.get_guild(GUILD)
    assert g is not None
    assert ext.guild_info(g) == GuildInfo(GUILD, "discord", "Botdb Lounge")
    general = g.get_channel(GENERAL)
    category = g.get_channel(CATEGORY)
    assert general is not None
    assert category is not None
    assert ext.channel_info(general) == ChannelInfo(GENERAL, GUILD, "general", "text", CATEGORY)
    assert ext.channel_info(category) == ChannelInfo(CATEGORY, GUILD, "Text", "category", None)
    t = g.get_thread(THREAD)
    assert t is not None
    assert ext.channel_info(t) == ThreadInfo(THREAD, GUILD, GENERAL, "a thread")
    bob = g.get_member(BOB_ID)
    assert bob is not None
    assert ext.user_info(bob) == UserInfo(BOB_ID, "discord", "bob", "Bob", is_bot=False)
    joined = ext.member_joined(bob)
    assert (joined.guild_id, joined.user_id, joined.nick, joined.at) == (
        GUILD,
        BOB_ID,
        "Bobby",
        at(0),
    )
    updated = ext.member_updated(bob)
    assert (updated.nick, updated.role_ids) == ("Bobby", ())
    left = ext.member_left(bob)
    assert (left.guild_id, left.user_id) == (GUILD, BOB_ID)


async def test_raw_event_conversions_without_the_message_cache(
    offline_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = offline_bot
    seen: dict[str, Any] = {}
    names = (
        "raw_reaction_add",
        "raw_reaction_remove",
        "raw_reaction_clear",
        "raw_reaction_clear_emoji",
        "raw_message_delete",
        "raw_bulk_message_delete",
        "raw_message_edit",
    )
    futures = {name: asyncio.ensure_future(bot.wait_for(name)) for name in names}
    mid = snowflake(9)
    before = dt.datetime.now(dt.UTC)
    gw.feed("MESSAGE_REACTION_ADD", reaction(mid, THREAD, BOB_ID, "🎉", guild_id=GUILD))
    gw.feed("MESSAGE_REACTION_REMOVE", reaction(mid, THREAD, BOB_ID, "🎉", guild_id=GUILD))
    gw.feed(
        "MESSAGE_REACTION_REMOVE_ALL",
        {"message_id": str(mid), "channel_id": str(GENERAL), "guild_id": str(GUILD)},
    )
    gw.feed(
        "MESSAGE_REACTION_REMOVE_EMOJI",
        {
            "message_id": str(mid),
            "channel_id": str(GENERAL),
            "guild_id": str(GUILD),
            "emoji": {"id": "77", "name": None},
        },
    )
    gw.feed("MESSAGE_DELETE", {"id": str(mid), "channel_id": str(DM)})
    gw.feed(
        "MESSAGE_DELETE_BULK",
        {"ids": [str(mid), str(mid + 1)], "channel_id": str(GENERAL), "guild_id": str(GUILD)},
    )
    gw.feed("MESSAGE_UPDATE", message(mid, GENERAL, ANN, "now", guild_id=GUILD, edited_ms=9))
    for name, future in futures.items():
        seen[name] = await asyncio.wait_for(future, 30)
    added = ext.reaction_added(seen["raw_reaction_add"], client=bot)
    assert isinstance(added, ReactionAdded)
    # A cached thread resolves to its parent channel (where the message row lives).
    assert (added.message_id, added.guild_id, added.channel_id, added.user_id) == (
        mid,
        GUILD,
        GENERAL,
        BOB_ID,
    )
    assert added.emoji_name == "🎉"
    assert added.emoji_id is None
    assert added.at >= before
    assert ext.reaction_added(seen["raw_reaction_add"]).channel_id == THREAD  # no client
    removed = ext.reaction_removed(seen["raw_reaction_remove"], client=bot)
    assert (removed.user_id, removed.emoji_name) == (BOB_ID, "🎉")
    cleared = ext.reactions_cleared(seen["raw_reaction_clear"])
    assert cleared.emoji_name is None
    one_emoji = ext.reactions_cleared(seen["raw_reaction_clear_emoji"])
    assert (one_emoji.emoji_name, one_emoji.emoji_id) == ("77", 77)
    deleted = ext.message_deleted(seen["raw_message_delete"])
    assert (deleted.id, deleted.guild_id, deleted.channel_id) == (mid, DM, DM)  # a DM
    bulk = ext.messages_bulk_deleted(seen["raw_bulk_message_delete"])
    assert bulk.ids == (mid, mid + 1)
    edit = ext.message_edited(seen["raw_message_edit"])
    assert edit is not None
    assert (edit.content, edit.edited_at) == ("now", at(9))


async def test_an_update_without_edit_time_is_not_an_edit(
    offline_bot: tuple[commands.Bot, Gateway],
) -> None:
    bot, gw = offline_bot
    msg = _message(bot, gw, message(snowflake(1), GENERAL, ANN, "link", guild_id=GUILD))
    assert ext.message_edited(msg) is None


# Any code point, NUL and lone surrogates included (JSON escapes can carry both).
_chars = st.characters(exclude_categories=())
_names = st.text(_chars, min_size=1, max_size=300)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.text(_chars, max_size=4000),
    username=_names,
    global_name=_names,
    nick=st.none() | _names,
    filename=_names,
    content_type=st.none() | _names,
    thread_name=_names,
)
@example(
    content="a\x00b\ud800c",
    username="\x00",
    global_name="\udfff",
    nick="n" * 300,
    filename="f" * 300,
    content_type="\x00",
    thread_name="\x00",
)
def test_conversions_of_any_names_and_texts_are_accepted_by_the_recorder(
    content: str,
    username: str,
    global_name: str,
    nick: str | None,
    filename: str,
    content_type: str | None,
    thread_name: str,
) -> None:
    """Whatever text Discord sends (names longer than the columns included), the events
    built from it pass the recorder's checks: texts are clipped to their columns."""
    bot = make_bot()
    _BOTS.remove(bot)  # never logged in: nothing to close
    state = bot._connection
    payload = guild_payload()
    payload["threads"] = [thread(THREAD, thread_name, GUILD, GENERAL)]
    payload["members"] = [member(BOB_ID, username, nick=nick)]
    g = discord.Guild(data=payload, state=state)  # type: ignore[arg-type]  # a JSON payload
    author = user(BOB_ID, username, global_name=global_name)
    attachment = {
        "id": "1",
        "filename": filename,
        "size": 1,
        "url": "https://cdn/x",
        "proxy_url": "https://p/x",
        "content_type": content_type,
    }
    msg = discord.Message(
        state=state,
        channel=g.get_thread(THREAD),  # type: ignore[arg-type]
        data=message(
            snowflake(1), THREAD, author, content, guild_id=GUILD, attachments=[attachment]
        ),  # type: ignore[arg-type]
    )
    bob = g.get_member(BOB_ID)
    assert bob is not None
    thread_obj = g.get_thread(THREAD)
    assert thread_obj is not None
    events = [
        ext.message_created(msg),
        ext.user_info(msg.author),
        ext.member_joined(bob),
        ext.member_updated(bob),
        ext.guild_info(g),
        ext.channel_info(thread_obj),
    ]
    validate_events(events)
    created = events[0]
    assert isinstance(created, MessageCreated)
    assert len(created.content) == len(content)  # message text is never clipped
    if "\x00" not in content and content.isascii():
        assert created.content == content


def test_recorder_cog_refuses_unknown_events() -> None:
    bot = make_bot()
    with pytest.raises(errors.ConfigurationError, match="unknown event"):
        ext.RecorderCog(bot, {"typing"})
    cog = ext.RecorderCog(bot, "on_message")
    assert cog.events == {"message"}
    assert [name for name, _ in cog.get_listeners()] == ["on_message"]
    assert ext.RecorderCog(bot).events == ext.RECORDED_EVENTS


# -- the example bot --------------------------------------------------------------------------


def _example_module() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "discord_bot.py"
    spec = importlib.util.spec_from_file_location("discord_bot_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_bot_without_a_token_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert _example_module().main() == 2
    assert "DISCORD_TOKEN" in capsys.readouterr().out


async def test_example_bot_runs_offline(
    make_db: MakeDB, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTDB_DATABASE_URL", db_url)
    monkeypatch.setenv("BOTDB_RECORDER_SPOOL_PATH", spool)
    bot = _example_module().ExampleBot(chunk_guilds_at_startup=False)
    _BOTS.append(bot)
    gw = await started(bot)  # setup_hook: extension, migrations, recorder, cog
    gw.feed("GUILD_CREATE", guild_payload())
    gw.feed("MESSAGE_CREATE", message(snowflake(1), GENERAL, BOB, "hi all", guild_id=GUILD))
    await gw.invoke(message(snowflake(2), GENERAL, ANN, "!prefix set ?", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "Prefix set to '?'.")
    await gw.invoke(message(snowflake(3), GENERAL, ANN, "?stats", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "3 messages in Botdb Lounge, 2 of them yours.")
    with pytest.raises(commands.MissingPermissions):
        await gw.invoke(message(snowflake(4), GENERAL, BOB, "?prefix set !", guild_id=GUILD))
    await gw.invoke(message(snowflake(5), GENERAL, ANN, "?prefix", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "My prefix here is '?'.")
    await bot.close()
    reader = await make_db(recorder_spool_path=spool + ".reader")
    assert await reader.fetchval("SELECT count(*) FROM messages WHERE guild_id = $1", GUILD) == 5
    assert await reader.fetchval("SELECT count(*) FROM command_history") == 3
    prefix = await reader.fetchval("SELECT prefix FROM guild_configs WHERE guild_id = $1", GUILD)
    assert prefix == "?"


async def example_bot(db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """The example bot logged in offline, in a guild where @everyone reads the channels."""
    monkeypatch.setenv("BOTDB_DATABASE_URL", db_url)
    monkeypatch.setenv("BOTDB_RECORDER_SPOOL_PATH", spool)
    bot = _example_module().ExampleBot(chunk_guilds_at_startup=False)
    _BOTS.append(bot)
    gw = await started(bot)  # setup_hook: ... the reminders' worker starts
    payload = guild_payload()
    everyone = discord.Permissions(view_channel=True, send_messages=True, add_reactions=True)
    payload["roles"][0]["permissions"] = str(everyone.value)
    gw.feed("GUILD_CREATE", payload)
    return gw


async def test_example_bot_reminders_are_set_listed_cancelled_and_sent(
    make_db: MakeDB, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await example_bot(db_url, spool, monkeypatch)
    bot = gw.bot
    assert bot.db.scheduler.running  # type: ignore[attr-defined]
    await gw.invoke(message(snowflake(1), GENERAL, ANN, "!remind 2h stretch", guild_id=GUILD))
    assert gw.sent[-1][1].startswith("Reminder #1 set, <t:")
    await gw.invoke(message(snowflake(2), GENERAL, BOB, "!remind 1d call mum", guild_id=GUILD))
    await gw.invoke(message(snowflake(3), GENERAL, ANN, "!reminders", guild_id=GUILD))
    (line,) = gw.sent[-1][1].splitlines()
    assert line.startswith("#1 <t:")
    assert line.endswith(":R>: stretch")
    await gw.invoke(message(snowflake(4), GENERAL, ANN, "!cancel 2", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "You have no reminder #2.")  # Bob's
    await gw.invoke(message(snowflake(5), GENERAL, ANN, "!cancel #1", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "Reminder #1 cancelled: stretch")
    await gw.invoke(message(snowflake(6), GENERAL, ANN, "!reminders", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "No reminders. Set one with !remind 10m text")
    await gw.invoke(message(snowflake(7), GENERAL, ANN, "!remind soon tea", guild_id=GUILD))
    assert gw.sent[-1][1].startswith("Cannot set that reminder: not a duration: 'soon'")
    await gw.invoke(message(snowflake(8), GENERAL, ANN, "!remind 10m", guild_id=GUILD))
    assert gw.sent[-1][1].startswith("Usage: !remind 10m take the cake out")

    await gw.invoke(message(snowflake(9), GENERAL, ANN, "!remind 1s tea is ready", guild_id=GUILD))
    count = len(gw.sent)
    sent = await gw.wait_sent(count + 1)  # from the worker, about a second later
    assert sent[-1] == (GENERAL, f"<@{OWNER_ID}> ⏰ tea is ready")
    await bot.close()  # the cog stops the worker before the database closes
    reader = await make_db(recorder_spool_path=spool + ".reader")
    rows = await reader.fetch("SELECT content, sent_at FROM user_reminders ORDER BY id")
    assert [(r["content"], r["sent_at"] is not None) for r in rows] == [
        ("call mum", False),
        ("tea is ready", True),
    ]
    assert len(gw.sent) == count + 1  # sent once


async def test_example_bot_tracked_event_pings_who_has_not_reacted(
    make_db: MakeDB, db_url: str, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await example_bot(db_url, spool, monkeypatch)
    match = snowflake(1)
    gw.feed("MESSAGE_CREATE", message(match, GENERAL, ANN, "Saturday match 18:00", guild_id=GUILD))
    await gw.invoke(message(snowflake(2), GENERAL, ANN, f"!track {match} ✅ ❌", guild_id=GUILD))
    assert gw.sent[-1] == (
        GENERAL,
        f"Tracking message {match}: reminding who has not reacted with ✅ ❌ every 360 min.",
    )
    gw.feed("MESSAGE_REACTION_ADD", reaction(match, GENERAL, OWNER_ID, "✅", guild_id=GUILD))
    gw.feed("MESSAGE_REACTION_ADD", reaction(match, GENERAL, BOB_ID, "👍", guild_id=GUILD))
    await gw.settle()  # the raw reaction listeners have recorded them

    link = f"https://discord.com/channels/{GUILD}/{GENERAL}/{match}"
    ping = (GENERAL, f"**Saturday match 18:00**: please react with ✅ ❌ {link}\n<@{BOB_ID}>")
    await gw.invoke(message(snowflake(3), GENERAL, ANN, f"!nag {match}", guild_id=GUILD))
    count = len(gw.sent)
    assert (await gw.wait_sent(count + 1))[-1] == ping  # Bob's 👍 is not one of them

    gw.feed("MESSAGE_REACTION_ADD", reaction(match, GENERAL, BOB_ID, "❌", guild_id=GUILD))
    await gw.settle()  # listeners run as tasks: the removal must come after the add
    gw.feed("MESSAGE_REACTION_REMOVE", reaction(match, GENERAL, BOB_ID, "❌", guild_id=GUILD))
    await gw.settle()
    await gw.invoke(message(snowflake(4), GENERAL, ANN, f"!nag {match}", guild_id=GUILD))
    assert (await gw.wait_sent(count + 2))[-1] == ping  # took it back: still pending

    with pytest.raises(commands.MissingPermissions):
        await gw.invoke(message(snowflake(5), GENERAL, BOB, f"!untrack {match}", guild_id=GUILD))
    await gw.invoke(message(snowflake(6), GENERAL, ANN, "!nag 12345", guild_id=GUILD))
    assert gw.sent[-1] == (GENERAL, "Message 12345 is not tracked.")
    await gw.invoke(message(snowflake(7), GENERAL, ANN, f"!track {match} ✅", guild_id=GUILD))
    assert gw.sent[-1][1].startswith("Cannot track that message: ")
    await gw.bot.close()

    reader = await make_db(recorder_spool_path=spool + ".reader")
    event = await reader.reminders.get_event_by_message(GUILD, match)
    assert event is not None
    logs = await reader.reminders.logs(event)
    assert [(log["status"], log["users_notified"]) for log in logs] == [("sent", 1), ("sent", 1)]
    assert await reader.reminders.reactions(event) == {OWNER_ID: ["✅"], BOB_ID: ["👍"]}
    assert [job.state for job in await reader.scheduler.jobs(kind="event_reminder")] == [
        "done",
        "done",
        "scheduled",
    ]


# -- the database away when the bot closes ----------------------------------------------------


@pytest.fixture
def private_cluster() -> Iterator[Any]:
    """A PostgreSQL cluster of this test's own, which the test stops and starts."""
    from tests.test_recorder_faults import started_private_cluster  # the fault tests' cluster

    yield from started_private_cluster()


@pytest.mark.slow
@pytest.mark.postgres
async def test_events_of_a_bot_closed_while_the_database_is_away_reach_it_on_next_start(
    private_cluster: Any, tmp_path: Path
) -> None:
    """bot.close() with PostgreSQL down: the recorder's buffer goes to the spool file; the
    next bot attached to the same database and spool replays it. Every error is typed."""
    options: dict[str, Any] = {
        "recorder_spool_path": tmp_path / "spool",
        "retry_initial_delay": 0.02,
        "retry_max_delay": 0.2,
        "pool_acquire_timeout": 2.0,
        "cache_via_database": False,
        "recorder_flush_interval": 60,
    }
    async with botdb.connect(private_cluster.url, cache_via_database=False) as setup:
        await setup.create_tables()

    bot = make_bot()
    gw = await started(bot)
    db = await ext.attach(bot, url=private_cluster.url, record=True, **options)
    gw.feed("GUILD_CREATE", guild_payload())
    ids = [snowflake(n) for n in range(1, 51)]
    for mid in ids:
        gw.feed("MESSAGE_CREATE", message(mid, GENERAL, ANN, f"m{mid}", guild_id=GUILD))
    await gw.settle()
    recorder = db.recorder
    await asyncio.to_thread(private_cluster.ctl, "stop")
    await bot.close()  # flushes into the spool: the database is away
    assert not db._core.is_open
    seen = recorder.stats()
    assert seen["errors"], "the recorder never met the stopped server"
    assert_typed(seen)
    assert (tmp_path / "spool").stat().st_size > 0

    await asyncio.to_thread(private_cluster.ctl, "start")
    again = make_bot()
    await started(again)
    db2 = await ext.attach(again, url=private_cluster.url, **options)  # replays the spool
    await db2.recorder.flush()
    stored = await db2.fetchval("SELECT count(*) FROM messages WHERE guild_id = $1", GUILD)
    assert stored == len(ids)
    assert await db2.fetchval("SELECT name FROM guilds WHERE id = $1", GUILD) == "Botdb Lounge"
    assert db2.recorder.stats()["replayed"] >= len(ids)
    await again.close()
