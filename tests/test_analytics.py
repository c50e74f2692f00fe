"""``db.stats``: every answer equals a plain SQL count over the raw rows, on both backends.

The reference queries below read ``messages``, ``reactions``, ``reaction_counts`` and
``join_leave_logs`` directly; the stats read the hourly summaries (materialized views on
PostgreSQL after a refresh, trigger-kept tables on SQLite with no refresh).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.analytics import DailyStats, Stats, TopChannel, TopEmoji, TopMember, UserActivity
from botdb.analytics._schema import SUMMARIES, sqlite_objects
from botdb.cli import app
from botdb.migrations import Migrator
from botdb.models import time_snowflake
from botdb.ops.transfer import transfer
from botdb.recorder import _events as ev
from botdb.recorder._writer import write_events
from tests.helpers import MakeDB, wait_until

BASE = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
GUILDS = {1: (10, 11), 2: (20,)}
HUMANS = (100, 101, 102, 103)
BOTS = (104,)
USERS = HUMANS + BOTS
#: emoji_key -> (emoji_id, emoji_name): unicode emoji are keyed by name, custom ones by id.
EMOJI = {"👍": (None, "👍"), "🔥": (None, "🔥"), "900": (900, "party"), "901": (901, "blob")}
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")

# -- the world every example starts from ----------------------------------------------------


async def seed(db: botdb.Database) -> None:
    """Guilds, channels, users (one a bot), and a nick for one member."""
    await db.execute_many("INSERT INTO guilds (id, name) VALUES ($1, $2)", [(1, "one"), (2, "two")])
    await db.execute_many(
        "INSERT INTO channels (id, guild_id, name) VALUES ($1, $2, $3)",
        [(c, g, f"chan-{c}") for g, cs in GUILDS.items() for c in cs],
    )
    await db.execute_many(
        "INSERT INTO users (id, username, display_name, is_bot) VALUES ($1, $2, $3, $4)",
        [(u, f"user{u}", f"User {u}" if u % 2 else None, u in BOTS) for u in USERS],
    )
    await db.execute("INSERT INTO members (guild_id, user_id, nick) VALUES (1, 101, 'nick101')")


async def clear(db: botdb.Database) -> None:
    for table in ("join_leave_logs", "members", "messages", "channels", "users", "guilds"):
        await db.execute(f"DELETE FROM {table}")


# -- random event streams -------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    messages: list[tuple[int, int, int | None, datetime, bool]]  # guild, channel, author, at, del
    reactions: list[tuple[int, int, str, bool, int]]  # message index, user, emoji, removed, min
    counts: list[tuple[int, str, int]]  # message index, emoji, count
    members: list[tuple[int, int, str, datetime]]  # guild, user, event, at
    deletes: list[int]  # message indexes hard-deleted at the end
    moves: list[tuple[int, int, int | None]]  # message index, +hours, new author (partial->full)
    toggles: list[int]  # reaction indexes whose removed flag flips afterwards
    recounts: list[tuple[int, int]]  # count index, new count (0 deletes the row)
    unlogged: list[int]  # join/leave indexes deleted afterwards


def _moment() -> st.SearchStrategy[datetime]:
    return st.builds(
        lambda h, s, us: BASE + timedelta(hours=h, seconds=s, microseconds=us),
        st.integers(0, 24 * 9 - 1),
        st.integers(0, 3599),
        st.integers(0, 999_999),
    )


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    guild_channel = st.sampled_from([(g, c) for g, cs in GUILDS.items() for c in cs])
    messages = draw(
        st.lists(
            st.tuples(
                guild_channel,
                st.one_of(st.none(), st.sampled_from(USERS)),
                _moment(),
                st.booleans(),
            ).map(lambda t: (t[0][0], t[0][1], t[1], t[2], t[3])),
            min_size=1,
            max_size=40,
        )
    )
    n = len(messages)
    index = st.integers(0, n - 1)
    reactions = draw(
        st.lists(
            st.tuples(
                index,
                st.sampled_from(USERS),
                st.sampled_from(sorted(EMOJI)),
                st.booleans(),
                st.integers(0, 600),
            ),
            max_size=40,
            unique_by=lambda r: (r[0], r[1], r[2]),
        )
    )
    counts = draw(
        st.lists(
            st.tuples(index, st.sampled_from(sorted(EMOJI)), st.integers(0, 6)),
            max_size=15,
            unique_by=lambda c: (c[0], c[1]),
        )
    )
    members = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(GUILDS)),
                st.sampled_from(USERS),
                st.sampled_from(["join", "leave"]),
                _moment(),
            ),
            max_size=15,
            unique_by=lambda m: (m[0], m[1], m[2], m[3]),
        )
    )
    deletes = draw(st.lists(index, max_size=4, unique=True))
    moves = draw(
        st.lists(
            st.tuples(index, st.integers(-30, 30), st.one_of(st.none(), st.sampled_from(USERS))),
            max_size=5,
            unique_by=lambda m: m[0],
        )
    )
    toggles = draw(st.lists(st.integers(0, max(len(reactions) - 1, 0)), max_size=5, unique=True))
    recounts = draw(
        st.lists(
            st.tuples(st.integers(0, max(len(counts) - 1, 0)), st.integers(0, 8)),
            max_size=4,
            unique_by=lambda r: r[0],
        )
    )
    unlogged = draw(st.lists(st.integers(0, max(len(members) - 1, 0)), max_size=3, unique=True))
    return Stream(
        messages,
        reactions,
        counts,
        members,
        deletes,
        moves,
        toggles if reactions else [],
        recounts if counts else [],
        unlogged if members else [],
    )


async def write(db: botdb.Database, stream: Stream) -> None:
    """The stream as plain SQL: inserts first, then the later changes (moves, deletions,
    reactions removed or re-added, counts changed, join/leave rows deleted)."""
    ids = [1000 + i for i in range(len(stream.messages))]
    await db.execute_many(
        "INSERT INTO messages (id, guild_id, channel_id, author_id, created_at, is_bot, deleted, "
        "deleted_at, partial) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (ids[i], g, c, a, at, a in BOTS, d, at + timedelta(minutes=5) if d else None, a is None)
            for i, (g, c, a, at, d) in enumerate(stream.messages)
        ],
    )
    for i, user, key, removed, minutes in stream.reactions:
        g, c, _, at, _ = stream.messages[i]
        emoji_id, name = EMOJI[key]
        when = at + timedelta(minutes=minutes)
        await db.execute(
            "INSERT INTO reactions (message_id, guild_id, channel_id, user_id, emoji_id, "
            "emoji_name, created_at, removed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            ids[i], g, c, user, emoji_id, name, when,
            when + timedelta(minutes=1) if removed else None,
        )  # fmt: skip
    for i, key, count in stream.counts:
        g, c, _, _, _ = stream.messages[i]
        emoji_id, name = EMOJI[key]
        await db.execute(
            "INSERT INTO reaction_counts (message_id, guild_id, emoji_key, channel_id, emoji_id, "
            "emoji_name, count) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ids[i], g, key, c, emoji_id, name, count,
        )  # fmt: skip
    await db.execute_many(
        "INSERT INTO join_leave_logs (guild_id, user_id, event, occurred_at) "
        "VALUES ($1, $2, $3, $4)",
        stream.members,
    )
    for i, hours, author in stream.moves:
        _, _, _, at, _ = stream.messages[i]
        await db.execute(
            "UPDATE messages SET created_at = $1, author_id = COALESCE(author_id, $2), "
            "is_bot = COALESCE(COALESCE(author_id, $2) = $3, false) WHERE id = $4",
            at + timedelta(hours=hours), author, BOTS[0], ids[i],
        )  # fmt: skip
    for r in stream.toggles:
        i, user, key, removed, minutes = stream.reactions[r]
        at = stream.messages[i][3] + timedelta(minutes=minutes + 2)
        await db.execute(
            "UPDATE reactions SET removed_at = $1 WHERE message_id = $2 AND user_id = $3 "
            "AND emoji_key = $4",
            None if removed else at, ids[i], user, key,
        )  # fmt: skip
    for r, count in stream.recounts:
        i, key, _ = stream.counts[r]
        if count:
            sql = "UPDATE reaction_counts SET count = $1 WHERE message_id = $2 AND emoji_key = $3"
            await db.execute(sql, count, ids[i], key)
        else:
            sql = "DELETE FROM reaction_counts WHERE message_id = $1 AND emoji_key = $2"
            await db.execute(sql, ids[i], key)
    for r in stream.unlogged:
        g, user, event, at = stream.members[r]
        await db.execute(
            "DELETE FROM join_leave_logs WHERE guild_id = $1 AND user_id = $2 AND event = $3 "
            "AND occurred_at = $4",
            g, user, event, at,
        )  # fmt: skip
    for i in stream.deletes:
        await db.execute("DELETE FROM messages WHERE id = $1", ids[i])


# -- the reference: plain SQL over the raw rows ---------------------------------------------


def ts(value: Any) -> datetime:
    """A raw timestamp as an aware datetime (the raw API returns SQLite's stored text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def day_of(db: botdb.Database, column: str) -> str:
    if db.backend == "sqlite":
        return f"substr({column}, 1, 10)"
    return f"({column} AT TIME ZONE 'UTC')::date::text"


def period(column: str, since: datetime | None, until: datetime | None, args: list[Any]) -> str:
    clause = ""
    if since is not None:
        args.append(since)
        clause += f" AND {column} >= ${len(args)}"
    if until is not None:
        args.append(until)
        clause += f" AND {column} < ${len(args)}"
    return clause


#: Per message and emoji, the larger of the live reactions and the imported count.
BEST = (
    "SELECT message_id, guild_id, emoji_key, max(emoji_name) AS emoji_name, "
    "max(emoji_id) AS emoji_id, max(n) AS n FROM ("
    " SELECT message_id, guild_id, emoji_key, emoji_name, emoji_id, count(*) AS n"
    " FROM reactions WHERE removed_at IS NULL GROUP BY message_id, guild_id, emoji_key,"
    " emoji_name, emoji_id"
    " UNION ALL"
    " SELECT message_id, guild_id, emoji_key, emoji_name, emoji_id, count FROM reaction_counts"
    ") AS sources GROUP BY message_id, guild_id, emoji_key"
)


async def expected_daily(
    db: botdb.Database, guild: int, since: datetime | None, until: datetime | None
) -> list[DailyStats]:
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    args: list[Any] = [guild]
    where = period("created_at", since, until, args)
    for row in await db.fetch(
        f"SELECT {day_of(db, 'created_at')} AS day, count(*) AS n, "
        "count(DISTINCT author_id) AS authors FROM messages "
        f"WHERE guild_id = $1 AND NOT is_bot{where} GROUP BY 1",
        *args,
    ):
        days[row["day"]][0:2] = [row["n"], row["authors"]]
    args = [guild]
    where = period("occurred_at", since, until, args)
    for row in await db.fetch(
        f"SELECT {day_of(db, 'occurred_at')} AS day, "
        "sum(CASE WHEN event = 'join' THEN 1 ELSE 0 END) AS joins, "
        "sum(CASE WHEN event = 'leave' THEN 1 ELSE 0 END) AS leaves "
        f"FROM join_leave_logs WHERE guild_id = $1{where} GROUP BY 1",
        *args,
    ):
        days[row["day"]][2:4] = [row["joins"], row["leaves"]]
    args = [guild]
    where = period("m.created_at", since, until, args)
    for row in await db.fetch(
        f"SELECT {day_of(db, 'm.created_at')} AS day, sum(b.n) AS n FROM ({BEST}) AS b "
        "JOIN messages m ON m.id = b.message_id AND m.guild_id = b.guild_id "
        f"WHERE m.guild_id = $1{where} GROUP BY 1 HAVING sum(b.n) > 0",
        *args,
    ):
        days[row["day"]][4] = row["n"]
    return [
        DailyStats(date.fromisoformat(d), *(int(v) for v in values))
        for d, values in sorted(days.items())
    ]


async def expected_heatmap(
    db: botdb.Database,
    guild: int,
    since: datetime | None,
    until: datetime | None,
    channel: int | None,
    tz: str,
) -> list[list[int]]:
    args: list[Any] = [guild]
    where = period("created_at", since, until, args)
    if channel is not None:
        args.append(channel)
        where += f" AND channel_id = ${len(args)}"
    grid = [[0] * 24 for _ in range(7)]
    rows = await db.fetch(
        f"SELECT created_at FROM messages WHERE guild_id = $1 AND NOT is_bot{where}", *args
    )
    for row in rows:
        # Counted in the local hour its UTC hour starts in (the documented rule).
        local = ts(row["created_at"]).replace(minute=0, second=0, microsecond=0)
        local = local.astimezone(ZoneInfo(tz))
        grid[local.weekday()][local.hour] += 1
    return grid


NAME = "COALESCE(mb.nick, u.display_name, u.username, u.first_name)"


async def expected_top_members(
    db: botdb.Database, guild: int, since: datetime | None, until: datetime | None, limit: int
) -> list[TopMember]:
    args: list[Any] = [guild]
    where = period("m.created_at", since, until, args)
    args.append(limit)
    rows = await db.fetch(
        f"SELECT m.author_id, {NAME} AS name, count(*) AS n, max(m.created_at) AS last "
        "FROM messages m LEFT JOIN users u ON u.id = m.author_id "
        "LEFT JOIN members mb ON mb.guild_id = m.guild_id AND mb.user_id = m.author_id "
        f"WHERE m.guild_id = $1 AND NOT m.is_bot AND m.author_id IS NOT NULL{where} "
        f"GROUP BY m.author_id, {NAME} ORDER BY n DESC, m.author_id LIMIT ${len(args)}",
        *args,
    )
    return [TopMember(r["author_id"], r["name"], r["n"], ts(r["last"])) for r in rows]


async def expected_top_channels(
    db: botdb.Database,
    guild: int,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    *,
    user: int | None = None,
) -> list[TopChannel]:
    args: list[Any] = [guild]
    where = period("m.created_at", since, until, args)
    if user is None:
        where += " AND NOT m.is_bot"
    else:
        args.append(user)
        where += f" AND m.author_id = ${len(args)}"
    args.append(limit)
    rows = await db.fetch(
        "SELECT m.channel_id, c.name, count(*) AS n FROM messages m "
        f"LEFT JOIN channels c ON c.id = m.channel_id WHERE m.guild_id = $1{where} "
        f"GROUP BY m.channel_id, c.name ORDER BY n DESC, m.channel_id LIMIT ${len(args)}",
        *args,
    )
    return [TopChannel(r["channel_id"], r["name"], r["n"]) for r in rows]


async def expected_top_emoji(
    db: botdb.Database, guild: int, since: datetime | None, until: datetime | None, limit: int
) -> list[TopEmoji]:
    args: list[Any] = [guild]
    where = period("m.created_at", since, until, args)
    args.append(limit)
    rows = await db.fetch(
        "SELECT b.emoji_key, max(b.emoji_name) AS name, max(b.emoji_id) AS eid, sum(b.n) AS n "
        f"FROM ({BEST}) AS b JOIN messages m ON m.id = b.message_id AND m.guild_id = b.guild_id "
        f"WHERE m.guild_id = $1 AND b.n > 0{where} GROUP BY b.emoji_key "
        f"ORDER BY n DESC, b.emoji_key LIMIT ${len(args)}",
        *args,
    )
    return [TopEmoji(r["emoji_key"], r["name"], r["eid"], int(r["n"])) for r in rows]


async def expected_user_activity(
    db: botdb.Database, guild: int, user: int, since: datetime | None, until: datetime | None
) -> UserActivity:
    args: list[Any] = [guild, user]
    where = period("created_at", since, until, args)
    row = await db.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS first, max(created_at) AS last FROM messages "
        f"WHERE guild_id = $1 AND author_id = $2{where}",
        *args,
    )
    given = await db.fetchval(
        "SELECT count(*) FROM reactions WHERE guild_id = $1 AND user_id = $2 "
        f"AND removed_at IS NULL{where}",
        *args,
    )
    name = await db.fetchval(
        f"SELECT {NAME} FROM users u LEFT JOIN members mb ON mb.guild_id = $1 "
        "AND mb.user_id = u.id WHERE u.id = $2",
        guild,
        user,
    )
    return UserActivity(
        user_id=user,
        name=name,
        messages=row["n"],
        reactions_given=given,
        first_message_at=None if row["first"] is None else ts(row["first"]),
        last_message_at=None if row["last"] is None else ts(row["last"]),
        top_channels=tuple(await expected_top_channels(db, guild, since, until, 5, user=user)),
    )


# -- the property ---------------------------------------------------------------------------

hour_bound = st.one_of(
    st.none(), st.integers(-2, 24 * 9 + 2).map(lambda h: BASE + timedelta(hours=h))
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stream=streams(),
    since=hour_bound,
    until=hour_bound,
    tz=st.sampled_from(ZONES),
    channel=st.sampled_from([None, 10, 11]),
    limit=st.integers(1, 4),
)
async def test_every_stat_equals_a_plain_count_over_the_raw_rows(
    db: botdb.Database,
    stream: Stream,
    since: datetime | None,
    until: datetime | None,
    tz: str,
    channel: int | None,
    limit: int,
) -> None:
    """Random messages (bots, partial, deleted, moved, hard-deleted), reactions (added,
    removed, re-added), imported counts and joins/leaves: each stat is the raw rows' count."""
    if since is not None and until is not None and since > until:
        since, until = until, since
    await clear(db)
    await seed(db)
    await write(db, stream)
    await db.stats.refresh()
    for guild in (1, 2, 3):  # 3 is not a guild at all: empty answers
        assert await db.stats.daily(guild, since=since, until=until) == await expected_daily(
            db, guild, since, until
        )
        assert await db.stats.heatmap(
            guild, since=since, until=until, channel_id=channel, tz=tz
        ) == await expected_heatmap(db, guild, since, until, channel, tz)
        assert await db.stats.top_members(
            guild, since=since, until=until, limit=limit
        ) == await expected_top_members(db, guild, since, until, limit)
        assert await db.stats.top_channels(
            guild, since=since, until=until, limit=limit
        ) == await expected_top_channels(db, guild, since, until, limit)
        assert await db.stats.top_emoji(
            guild, since=since, until=until, limit=limit
        ) == await expected_top_emoji(db, guild, since, until, limit)
        for user in (101, 104, 105):  # a member with a nick, the bot, an unknown user
            assert await db.stats.user_activity(
                guild, user, since=since, until=until
            ) == await expected_user_activity(db, guild, user, since, until)


# -- the same through the recorder's batch writer -------------------------------------------


@st.composite
def event_streams(draw: st.DrawFn) -> list[Any]:
    """Recorder events in any order: messages (some only ever edited, deleted or reacted
    to, so known as partial rows), reactions added/removed/cleared, counts, joins/leaves."""
    guild_channel = st.sampled_from([(g, c) for g, cs in GUILDS.items() for c in cs])
    count = draw(st.integers(1, 12))
    places = [draw(guild_channel) for _ in range(count)]
    ids = [time_snowflake(BASE + timedelta(hours=draw(st.integers(0, 24 * 5)))) + i
           for i in range(count)]  # fmt: skip
    events: list[Any] = []
    for i, (g, c) in enumerate(places):
        author = draw(st.one_of(st.none(), st.sampled_from(USERS)))
        if draw(st.integers(0, 4)):  # most messages are seen; the others stay partial
            at = draw(_moment())
            events.append(ev.MessageCreated(ids[i], g, c, author, at, is_bot=author in BOTS))
        if draw(st.booleans()):
            events.append(ev.MessageEdited(ids[i], g, c, draw(_moment()), content="edited"))
        if not draw(st.integers(0, 4)):
            events.append(ev.MessageDeleted(ids[i], g, c, draw(_moment())))
    for _ in range(draw(st.integers(0, 15))):
        i = draw(st.integers(0, count - 1))
        g, c = places[i]
        key = draw(st.sampled_from(sorted(EMOJI)))
        emoji_id, name = EMOJI[key]
        kind = draw(st.sampled_from(["add", "add", "remove", "clear", "count"]))
        at = draw(_moment())
        if kind == "count":
            events.append(ev.ReactionCounted(ids[i], g, c, name, draw(st.integers(0, 5)), emoji_id))
        elif kind == "clear":
            events.append(ev.ReactionsCleared(ids[i], g, c, at, name, emoji_id))
        else:
            user = draw(st.sampled_from(USERS))
            kind_of = ev.ReactionAdded if kind == "add" else ev.ReactionRemoved
            events.append(kind_of(ids[i], g, c, user, name, at, emoji_id))
    for _ in range(draw(st.integers(0, 6))):
        kind_of = draw(st.sampled_from([ev.MemberJoined, ev.MemberLeft]))
        guild = draw(st.sampled_from(sorted(GUILDS)))
        events.append(kind_of(guild, draw(st.sampled_from(USERS)), draw(_moment())))
    return draw(st.permutations(events))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_streams(), batch=st.integers(1, 8), since=hour_bound)
async def test_stats_of_events_written_by_the_recorder_equal_plain_counts(
    db: botdb.Database, events: list[Any], batch: int, since: datetime | None
) -> None:
    """Events in any order and batching, written by ``write_events``: every stat is still the
    plain count over the rows the writer left."""
    await clear(db)
    await seed(db)
    for start in range(0, len(events), batch):
        async with db.transaction() as conn:
            await write_events(conn, events[start : start + batch])
    await db.stats.refresh()
    for guild in (1, 2):
        assert await db.stats.daily(guild, since=since) == await expected_daily(
            db, guild, since, None
        )
        assert await db.stats.heatmap(guild, since=since) == await expected_heatmap(
            db, guild, since, None, None, "UTC"
        )
        assert await db.stats.top_members(guild, since=since) == await expected_top_members(
            db, guild, since, None, 10
        )
        assert await db.stats.top_channels(guild, since=since) == await expected_top_channels(
            db, guild, since, None, 10
        )
        assert await db.stats.top_emoji(guild, since=since) == await expected_top_emoji(
            db, guild, since, None, 10
        )
        for user in USERS:
            assert await db.stats.user_activity(
                guild, user, since=since
            ) == await expected_user_activity(db, guild, user, since, None)


def sample_stream() -> Stream:
    """A small fixed stream touching every summary (for the focused tests below)."""
    at = BASE + timedelta(hours=30, minutes=15)
    return Stream(
        messages=[
            (1, 10, 100, at, False),
            (1, 10, 101, at + timedelta(minutes=20), True),
            (1, 11, 101, at + timedelta(days=1), False),
            (1, 11, 104, at + timedelta(days=1), False),
            (1, 10, None, at + timedelta(days=2), False),
        ],
        reactions=[(0, 101, "👍", False, 3), (0, 102, "👍", False, 4), (2, 100, "900", False, 1)],
        counts=[(0, "👍", 5), (2, "🔥", 2)],
        members=[(1, 101, "join", at), (1, 103, "leave", at + timedelta(days=2))],
        deletes=[],
        moves=[],
        toggles=[],
        recounts=[],
        unlogged=[],
    )


async def all_stats(db: botdb.Database, guild: int = 1) -> list[Any]:
    return [
        await db.stats.daily(guild),
        await db.stats.heatmap(guild),
        await db.stats.top_members(guild),
        await db.stats.top_channels(guild),
        await db.stats.top_emoji(guild),
        await db.stats.user_activity(guild, 101),
    ]


async def expected_stats(db: botdb.Database, guild: int = 1) -> list[Any]:
    return [
        await expected_daily(db, guild, None, None),
        await expected_heatmap(db, guild, None, None, None, "UTC"),
        await expected_top_members(db, guild, None, None, 10),
        await expected_top_channels(db, guild, None, None, 10),
        await expected_top_emoji(db, guild, None, None, 10),
        await expected_user_activity(db, guild, 101, None, None),
    ]


async def test_sample_stream_answers(db: botdb.Database) -> None:
    """The fixed stream's answers, written out (the deleted message and imported counts
    count, the bot and the unknown author do not make members)."""
    await seed(db)
    await write(db, sample_stream())
    await db.stats.refresh()
    daily = await db.stats.daily(1)
    assert daily == [
        DailyStats(date(2026, 11, 3), messages=2, active_members=2, joins=1, leaves=0, reactions=5),
        DailyStats(date(2026, 11, 4), messages=1, active_members=1, joins=0, leaves=0, reactions=3),
        DailyStats(date(2026, 11, 5), messages=1, active_members=0, joins=0, leaves=1, reactions=0),
    ]
    assert await db.stats.daily(1, include_bots=True) != daily
    assert [(m.user_id, m.name, m.messages) for m in await db.stats.top_members(1)] == [
        (101, "nick101", 2),
        (100, "user100", 1),
    ]
    assert await db.stats.top_emoji(1) == [
        TopEmoji("👍", "👍", None, 5),
        TopEmoji("🔥", "🔥", None, 2),
        TopEmoji("900", "party", 900, 1),
    ]
    activity = await db.stats.user_activity(1, 100)
    assert (activity.messages, activity.reactions_given) == (1, 1)
    assert activity.top_channels == (TopChannel(10, "chan-10", 1),)
    grid = await db.stats.heatmap(1, tz="Europe/Berlin")
    assert grid[1][7] == 2  # Tuesday 06:xx UTC is 07:xx in Berlin (CET)
    assert sum(map(sum, grid)) == 4


async def test_unknown_guild_and_user_give_empty_answers(db: botdb.Database) -> None:
    await seed(db)
    await write(db, sample_stream())
    await db.stats.refresh()
    assert await db.stats.daily(999) == []
    assert await db.stats.heatmap(999) == [[0] * 24 for _ in range(7)]
    assert await db.stats.top_members(999) == []
    assert await db.stats.top_channels(999) == []
    assert await db.stats.top_emoji(999) == []
    assert await db.stats.user_activity(999, 5) == UserActivity(5, None, 0, 0, None, None, ())


async def test_answers_are_current_on_sqlite_at_once_and_on_postgresql_after_refresh(
    db: botdb.Database,
) -> None:
    await seed(db)
    await db.stats.refresh()
    await write(db, sample_stream())
    if db.backend == "postgresql":
        # The views hold what they held at the last refresh...
        assert await db.stats.daily(1) == []
        assert await db.stats.refresh() == list(SUMMARIES)
    else:
        assert await db.stats.refresh() == []  # ...SQLite's tables are kept at every commit.
    assert await all_stats(db) == await expected_stats(db)
    more = BASE + timedelta(days=4)
    await db.execute(
        "INSERT INTO messages (id, guild_id, channel_id, author_id, created_at) "
        "VALUES (5000, 1, 11, 102, $1)",
        more,
    )
    await db.execute("DELETE FROM messages WHERE id = 1000")
    await db.stats.refresh()
    assert await all_stats(db) == await expected_stats(db)


async def test_deleting_everything_empties_the_summaries(db: botdb.Database) -> None:
    """Cascades (guild -> messages -> reactions) reach the summaries too."""
    await seed(db)
    await write(db, sample_stream())
    await db.execute("DELETE FROM guilds WHERE id = 1")
    await db.stats.refresh()
    for table in SUMMARIES:
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    if db.backend == "sqlite":
        assert await db.fetchval("SELECT count(*) FROM stats_reaction_message") == 0


async def test_refresher_keeps_postgresql_current_and_stops_on_close(make_db: MakeDB) -> None:
    db = await make_db(create_tables=True)
    await seed(db)
    db.stats.start_refresher(interval=0.05)  # on SQLite: nothing to refresh, no task
    assert db.stats.refresher_running is (db.backend == "postgresql")
    if db.backend == "postgresql":
        with pytest.raises(errors.InterfaceError, match="already running"):
            db.stats.start_refresher(interval=0.05)
    await write(db, sample_stream())
    expected = await expected_daily(db, 1, None, None)

    async def current() -> bool:
        return await db.stats.daily(1) == expected

    await wait_until(current, what="the refresher to bring the stats up to date")
    await db.close()
    assert not db.stats.refresher_running


@pytest.mark.postgres
async def test_a_failed_scheduled_refresh_is_logged_and_tried_again(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with botdb.connect(pg_url) as db:
        await db.create_tables()
        await db.execute("DROP MATERIALIZED VIEW stats_member_hourly")
        with pytest.raises(errors.UndefinedTableError):
            await db.stats.refresh()
        db.stats.start_refresher(interval=0.01)

        def failures() -> int:
            return sum("stats refresh failed" in r.getMessage() for r in caplog.records)

        await wait_until(lambda: failures() >= 2, what="two failed refreshes logged")
        assert db.stats.refresher_running  # still scheduled after failing
        await db.stats.stop_refresher()
        assert not db.stats.refresher_running


async def test_refresher_interval_must_be_positive(db: botdb.Database) -> None:
    for bad in (0, -1.0, "5", True):
        with pytest.raises(errors.DataError, match="interval"):
            db.stats.start_refresher(interval=bad)  # type: ignore[arg-type]
    assert not db.stats.refresher_running
    await db.stats.stop_refresher()  # none running: nothing to do


async def test_calling_stats_still_returns_the_engine_statistics(db: botdb.Database) -> None:
    before = db.stats()["queries"]
    await db.fetchval("SELECT 1")
    snapshot = db.stats()
    assert snapshot["queries"] == before + 1
    assert snapshot["backend"] == db.backend
    assert "pool" in snapshot
    assert isinstance(db.stats, Stats)
    assert db.stats is db.stats


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.daily(1, since=datetime(2026, 1, 1)), "naive"),
        (lambda s: s.daily(1, until="2026-01-01"), "must be a datetime"),
        (lambda s: s.daily("1"), "guild_id must be an int"),
        (lambda s: s.daily(True), "guild_id must be an int"),
        (lambda s: s.daily(2**63), "64-bit"),
        (lambda s: s.daily(1, include_bots=1), "include_bots"),
        (
            lambda s: s.daily(1, since=BASE + timedelta(days=1), until=BASE),
            "since .* is after until",
        ),
        (lambda s: s.heatmap(1, tz="Mars/Olympus"), "unknown time zone"),
        (lambda s: s.heatmap(1, tz=5), "tz must be"),
        (lambda s: s.heatmap(1, channel_id=1.5), "channel_id must be an int"),
        (lambda s: s.top_members(1, limit=0), "limit must be"),
        (lambda s: s.top_channels(1, limit=10_001), "limit must be"),
        (lambda s: s.top_emoji(1, limit="3"), "limit must be"),
        (lambda s: s.user_activity(1, None), "user_id must be an int"),
        (lambda s: s.user_activity(1, 2, channels=0), "channels must be"),
    ],
)
async def test_bad_arguments_raise_data_error_and_change_nothing(
    db: botdb.Database, call: Any, message: str
) -> None:
    await seed(db)
    await write(db, sample_stream())
    await db.stats.refresh()
    before = await all_stats(db)
    queries = db.stats()["queries"]
    with pytest.raises(errors.DataError, match=message):
        await call(db.stats)
    assert db.stats()["queries"] == queries  # refused before any SQL
    assert await all_stats(db) == before


async def test_bounds_are_rounded_down_to_the_hour(db: botdb.Database) -> None:
    await seed(db)
    await write(db, sample_stream())
    await db.stats.refresh()
    at = BASE + timedelta(hours=30)  # the first message is at 06:15 on Tuesday
    inside = await db.stats.top_channels(1, since=at + timedelta(minutes=59))
    assert inside == await db.stats.top_channels(1, since=at)
    assert await db.stats.top_channels(1, until=at + timedelta(minutes=59)) == []
    other_zone = (at + timedelta(minutes=30)).astimezone(ZoneInfo("America/New_York"))
    assert await db.stats.daily(1, since=other_zone) == await db.stats.daily(1, since=at)


# -- the plans --------------------------------------------------------------------------------


class Recorder:
    """Delegates to a Database and keeps every (query, args) the stats send."""

    def __init__(self, db: botdb.Database) -> None:
        self.db = db
        self.backend = db.backend
        self.settings = db.settings
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        self.seen.append((query, args))
        return await self.db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        self.seen.append((query, args))
        return await self.db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        self.seen.append((query, args))
        return await self.db.fetchval(query, *args)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        self.seen.append((query, args))
        return await self.db.execute(query, *args)


def _pg_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_pg_nodes(child))
    return nodes


async def test_stats_queries_read_the_summaries_by_index_never_the_messages(
    db: botdb.Database,
) -> None:
    """EXPLAIN every statement the stats send (with and without a period): the summaries
    are searched by index, ``messages`` and ``reactions`` are not read at all."""
    await seed(db)
    await write(db, sample_stream())
    await db.stats.refresh()
    recorder = Recorder(db)
    stats = Stats(recorder, dict)
    for since, until in ((None, None), (BASE, BASE + timedelta(days=3))):
        await stats.daily(1, since=since, until=until)
        await stats.heatmap(1, since=since, until=until, channel_id=10)
        await stats.top_members(1, since=since, until=until)
        await stats.top_channels(1, since=since, until=until)
        await stats.top_emoji(1, since=since, until=until)
        await stats.user_activity(1, 101, since=since, until=until)
    assert len(recorder.seen) == 2 * 9
    summaries = set(SUMMARIES)
    async with db.acquire() as conn:
        if db.backend == "postgresql":
            # Tiny tables: make the planner show the index path it has (a plan with no
            # usable index still scans, at a prohibitive cost, so a Seq Scan below fails).
            await conn.execute("SET enable_seqscan = off")
        for query, args in recorder.seen:
            if db.backend == "postgresql":
                raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
                (plan,) = raw if isinstance(raw, list) else json.loads(raw)
                nodes = _pg_nodes(plan["Plan"])
                read = {n["Relation Name"]: n["Node Type"] for n in nodes if "Relation Name" in n}
                assert not read.keys() & {"messages", "reactions", "reaction_counts"}, query
                assert bool(read.keys() & summaries) is ("stats_" in query), query
                for relation, node in read.items():
                    assert node != "Seq Scan", (relation, query)
            else:
                rows = await conn.fetch(f"EXPLAIN QUERY PLAN {query}", *args)
                details = [str(r["detail"]) for r in rows]
                for detail in details:
                    words = detail.split()
                    if words[0] in ("SCAN", "SEARCH"):
                        assert words[1] not in ("messages", "reactions", "reaction_counts"), query
                        assert words[0] == "SEARCH" or words[1] not in summaries, (detail, query)
                reads = any(d.split()[1:2] and d.split()[1] in summaries for d in details)
                assert reads is ("stats_" in query), query


# -- migrations -------------------------------------------------------------------------------


async def test_migration_fills_the_summaries_from_existing_rows_and_downgrade_drops_them(
    make_db: MakeDB,
) -> None:
    db = await make_db()
    migrator = Migrator(db)
    await migrator.upgrade("botdb_0003")
    await seed(db)
    await write(db, sample_stream())
    assert await migrator.upgrade() == ["botdb_0004"]
    assert await all_stats(db) == await expected_stats(db)  # no refresh: filled when made
    await db.execute(
        "INSERT INTO messages (id, guild_id, channel_id, author_id, created_at) "
        "VALUES (5000, 1, 11, 102, $1)",
        BASE,
    )
    await db.stats.refresh()
    assert await all_stats(db) == await expected_stats(db)
    assert await migrator.downgrade("botdb_0003") == ["botdb_0004"]
    if db.backend == "postgresql":
        assert await db.fetchval("SELECT count(*) FROM pg_matviews") == 0
    else:
        names = {r["name"] for r in await db.fetch("SELECT name FROM sqlite_master")}
        assert not names & {n for kind in sqlite_objects().values() for n in kind}


async def test_create_tables_twice_keeps_the_summaries(db: botdb.Database) -> None:
    await seed(db)
    await write(db, sample_stream())
    await db.create_tables()
    await db.stats.refresh()
    assert await all_stats(db) == await expected_stats(db)


# -- the command ------------------------------------------------------------------------------


def _seeded(url: str) -> None:
    async def fill() -> None:
        async with botdb.connect(url) as db:
            await db.create_tables()
            await seed(db)
            await write(db, sample_stream())

    asyncio.run(fill())


def test_cli_prints_tables_and_json(db_url: str) -> None:
    _seeded(db_url)
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--url", db_url, "--guild", "1", "--refresh"])
    assert result.exit_code == 0, result.output
    assert "4 messages" in result.output
    assert "nick101" in result.output
    assert "chan-10" in result.output
    result = runner.invoke(
        app,
        ["stats", "-u", db_url, "-g", "1", "--since", "2026-11-04", "--until",
         "2026-11-05T00:00:00+00:00", "--json", "--refresh", "--tz", "Europe/Berlin"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["daily"] == [
        {"day": "2026-11-04", "messages": 1, "active_members": 1, "joins": 0, "leaves": 0,
         "reactions": 3},
    ]  # fmt: skip
    assert data["top_members"][0]["user_id"] == 101
    assert data["top_emoji"][0] == {
        "emoji_key": "🔥", "emoji_name": "🔥", "emoji_id": None, "count": 2,
    }  # fmt: skip
    assert sum(map(sum, data["heatmap"])) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--guild", "abc"], "not an integer id"),
        (["--guild", "1", "--since", "yesterday"], "not an ISO date"),
        (["--guild", "1", "--since", "2026-11-01T12:00"], "no UTC offset"),
        (["--guild", "1", "--since", "2026-11-05", "--until", "2026-11-01"], "is after until"),
        (["--guild", "1", "--limit", "0"], "limit must be"),
        (["--guild", "1", "--tz", "Nowhere/Land"], "unknown time zone"),
    ],
)
def test_cli_bad_input_exits_1_with_one_line(db_url: str, args: list[str], message: str) -> None:
    _seeded(db_url)
    wide = {"COLUMNS": "200"}  # the message is one line; a narrow terminal would wrap it
    result = CliRunner().invoke(app, ["stats", "--url", db_url, *args], env=wide)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    result = CliRunner().invoke(app, ["stats", "--url", db_url, "--json", *args])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "DataError"


def test_cli_without_the_summaries_says_to_migrate(db_url: str) -> None:
    async def bare() -> None:
        async with botdb.connect(db_url) as db:
            await db.execute("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)")

    asyncio.run(bare())
    wide = {"COLUMNS": "200"}
    result = CliRunner().invoke(app, ["stats", "--url", db_url, "--guild", "1"], env=wide)
    assert result.exit_code == 1
    assert "botdb migrate upgrade" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.postgres
async def test_transfer_sqlite_to_postgresql_and_back_gives_the_same_stats(
    sqlite_url: str, pg_url: str, tmp_path: Path
) -> None:
    """The summaries are not copied: the target's own triggers or views make them."""
    async with botdb.connect(sqlite_url) as source, botdb.connect(pg_url) as target:
        await source.migrate()
        await seed(source)
        await write(source, sample_stream())
        expected = await all_stats(source)
        await transfer(source, target)
        assert await target.stats.daily(1) == []  # the views, made empty before the copy...
        await target.stats.refresh()
        assert await all_stats(target) == expected  # ...hold the copy once refreshed
        back_url = f"sqlite:///{tmp_path / 'back.db'}"
        async with botdb.connect(back_url) as back:
            await transfer(target, back)
            assert await all_stats(back) == expected  # the triggers kept them as rows came
