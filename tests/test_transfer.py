"""``botdb.ops.transfer``: SQLite <-> PostgreSQL copies, resumed after interruption, verified;
and ``botdb transfer``, which opens the two URLs."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import BigInteger, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, configure_mappers, mapped_column
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.models import (
    Attachment,
    Base,
    Channel,
    CommandHistory,
    EventReaction,
    FSMLock,
    FSMState,
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
    PersistenceEntry,
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
)
from botdb.ops.transfer import (
    STATE_TABLE,
    TargetNotEmptyError,
    TransferReport,
    VerificationError,
    row_digest,
    transfer,
)

T0 = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


class TransferTestWallet(Base):
    """A user's own model (unique table name), with a foreign key to a built-in table."""

    __tablename__ = "transfer_test_wallets"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    coins: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str | None] = mapped_column(String(100), default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated: Mapped[dt.datetime | None] = mapped_column(default=None)


# The user's table stays off Base.metadata, which the migration tests compare with the
# packaged migrations; transfer finds it in the source by reflection, as it finds any table
# the bot created itself. Mappers are configured first, so its foreign key is resolved.
configure_mappers()
WALLETS = Base.metadata.tables["transfer_test_wallets"]
Base.metadata.remove(WALLETS)


async def populate(url: str, *, users: int = 30) -> None:
    """Fill every built-in table, the user's table and a source-only raw table."""
    async with botdb.connect(url) as db:
        await db.create_tables()
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda sync: WALLETS.create(sync))
        async with db.session() as s:
            s.add_all(
                [
                    Guild(id=1, name="one", joined_at=T0),
                    Guild(id=-100, platform="telegram", chat_type="supergroup", name="tg"),
                ]
            )
            s.add_all(
                [
                    User(id=i, username=f"u{i}", last_seen=T0 + dt.timedelta(minutes=i))
                    for i in range(1, users + 1)
                ]
            )
            await s.flush()
            s.add(Role(id=500, guild_id=1, name="mods", color=0xFF0000, permissions=2**40))
            # A child channel whose parent has a HIGHER id: copied rows reference forward.
            s.add_all(
                [
                    Channel(id=20, guild_id=1, name="category", type="category"),
                    Channel(id=10, guild_id=1, name="general", parent_id=20),
                ]
            )
            await s.flush()
            s.add(Thread(id=30, guild_id=1, parent_id=10, name="thread", is_archived=True))
            s.add_all(
                [
                    Member(
                        guild_id=1,
                        user_id=i,
                        nick=f"n{i}",
                        preferences={"lang": "ja", "n": i},
                        message_count=i * 3,
                        joined_at=T0,
                    )
                    for i in range(1, users + 1)
                ]
            )
            await s.flush()
            s.add(MemberRole(guild_id=1, user_id=1, role_id=500))
            s.add(
                Message(
                    id=1000,
                    guild_id=1,
                    channel_id=10,
                    author_id=1,
                    content="héllo ✅",
                    created_at=T0,
                    thread_id=30,
                )
            )
            s.add(
                Message(
                    id=1001,
                    guild_id=1,
                    channel_id=10,
                    author_id=2,
                    content="x",
                    created_at=T0,
                    deleted=True,
                    deleted_at=T0,
                )
            )
            await s.flush()
            s.add(Attachment(message_id=1000, guild_id=1, position=0, filename="a.png", size=10))
            s.add(Mention(message_id=1000, guild_id=1, target_type="user", target_id=2))
            s.add(
                Reaction(
                    message_id=1000,
                    guild_id=1,
                    channel_id=10,
                    user_id=2,
                    emoji_name="✅",
                    created_at=T0,
                )
            )
            s.add(
                Reaction(
                    message_id=1000,
                    guild_id=1,
                    channel_id=10,
                    user_id=3,
                    emoji_id=77,
                    emoji_name="custom",
                    animated=True,
                    created_at=T0,
                )
            )
            s.add(
                ReactionCount(
                    message_id=1000,
                    guild_id=1,
                    channel_id=10,
                    emoji_key="🎉",
                    emoji_name="🎉",
                    count=12,
                )
            )
            s.add(GuildConfig(guild_id=1, prefix="?", settings={"b": [1, 2], "a": {"z": None}}))
            s.add(KeyValue(namespace="ns", scope="global", key="k", value=[1, "two", 3.5]))
            s.add(KeyValue(namespace="ns", scope="guild:1", key="Zeta", value={"x": True}))
            s.add(
                PersistenceEntry(
                    namespace="bot", kind="user", scope="5", key='"n"', value="2", version=1
                )
            )
            s.add(
                PersistenceEntry(
                    namespace="bot",
                    kind="bot",
                    scope="",
                    key='"p"',
                    pickled=b"\x80\x05K\x01.",
                    version=7,
                )
            )
            fsm_key = {"bot_id": 9, "guild_id": -1, "user_id": 5, "destiny": "default"}
            s.add(
                FSMState(
                    **fsm_key,
                    has_thread=False,
                    thread_id=0,
                    has_business_connection=False,
                    business_connection_id="",
                    state="Form:name",
                    data={"name": "Ann"},
                )
            )
            s.add(
                FSMState(
                    **fsm_key,
                    has_thread=True,
                    thread_id=0,
                    has_business_connection=True,
                    business_connection_id="",
                    state_expires_at=T0,
                )
            )
            s.add(FSMLock(lock_key='[9,-1,5,null,null,"default"]', holder="h:1:x", expires_at=T0))
            s.add(
                ScheduledJob(
                    kind="reminder",
                    key="r:1",
                    payload={"text": "hi", "n": [1, 2]},
                    guild_id=1,
                    user_id=5,
                    run_at=T0,
                    every_seconds=3600.0,
                    created_at=T0,
                    updated_at=T0,
                )
            )
            s.add(GuildCaseCounter(guild_id=1, last_case_number=1))
            s.add(
                ModerationCase(
                    guild_id=1,
                    case_number=1,
                    user_id=5,
                    moderator_id=1,
                    action="ban",
                    expires_at=T0,
                )
            )
            s.add(Snippet(guild_id=1, name="hi", content="hello", author_id=1))
            s.add(Level(guild_id=1, user_id=1, xp=12.5, level=2, last_xp_at=T0))
            s.add(
                CommandHistory(
                    guild_id=1,
                    user_id=1,
                    command="ping",
                    args={"args": [1]},
                    success=True,
                    duration_ms=3,
                )
            )
            s.add(JoinLeaveLog(guild_id=1, user_id=1, event="join"))
            event = TrackedEvent(
                message_id=1000,
                guild_id=1,
                channel_id=10,
                title="match",
                required_reactions=["✅", "❌"],
                last_reminder_at=T0,
            )
            s.add(event)
            await s.flush()
            s.add(EventReaction(event_id=event.id, guild_id=1, user_id=2, emoji="✅"))
            s.add(
                ReminderLog(
                    event_id=event.id,
                    guild_id=1,
                    scheduled_at=T0,
                    sent_at=T0,
                    status="sent",
                    users_notified=3,
                )
            )
            s.add(
                UserReminder(
                    guild_id=1,
                    channel_id=10,
                    user_id=1,
                    content="drink",
                    due_at=T0,
                    recurrence_seconds=60,
                )
            )
            s.add_all(
                [
                    TransferTestWallet(user_id=i, coins=i * 10, extra={"k": [i]}, updated=T0)
                    for i in range(1, users + 1)
                ]
            )
        await db.execute_script(
            "CREATE TABLE legacy_notes (id INTEGER PRIMARY KEY, body TEXT, score REAL);"
            "CREATE TABLE legacy_log (line TEXT, n INTEGER);"
        )
        await db.execute_many(
            "INSERT INTO legacy_notes (id, body, score) VALUES ($1, $2, $3)",
            [(i, f"note {i}", i / 4) for i in range(1, 8)],
        )
        await db.execute_many(
            "INSERT INTO legacy_log (line, n) VALUES ($1, $2)", [("a", 1), ("a", 1), ("b", 2)]
        )


async def copy(source_url: str, target_url: str, **options: Any) -> TransferReport:
    """Open both databases as ``botdb transfer`` does, copy, and close them."""
    async with (
        botdb.connect(source_url, sqlite_create=False) as source,
        botdb.connect(target_url) as target,
    ):
        return await transfer(source, target, **options)


async def counts(url: str, names: list[str]) -> dict[str, int]:
    async with botdb.connect(url) as db:
        return {n: await db.fetchval(f'SELECT count(*) FROM "{n}"') for n in names}


def test_every_builtin_table_is_populated_by_the_fixture_data() -> None:
    """Guards the fixture: a new built-in model must be added to ``populate``."""
    names = {t.name for t in builtin_tables()}
    covered = {
        m.__tablename__
        for m in (
            Attachment,
            Channel,
            CommandHistory,
            EventReaction,
            FSMLock,
            FSMState,
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
            PersistenceEntry,
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
        )
    }
    assert names == covered


async def test_sqlite_to_postgres_and_back_verifies_every_table(
    sqlite_url: str, pg_url: str, tmp_path: Any
) -> None:
    await populate(sqlite_url)
    seen: list[tuple[str, int, int]] = []
    report = await copy(sqlite_url, pg_url, batch_size=7, progress=lambda *a: seen.append(a))
    assert report.verified
    names = {t.name for t in report.tables}
    assert {t.name for t in builtin_tables()} <= names
    assert {"transfer_test_wallets", "legacy_notes", "legacy_log"} <= names
    assert all(t.ok and t.source_rows == t.target_rows for t in report.tables)
    assert next(t for t in report.tables if t.name == "reactions").skipped_columns == ["emoji_key"]
    assert ("users", 30, 30) in seen
    async with botdb.connect(pg_url) as pg:
        assert await pg.fetchval("SELECT to_regclass($1)", STATE_TABLE) is None
        assert await pg.fetchval("SELECT emoji_key FROM reactions WHERE emoji_id = 77") == "77"
        row = await pg.fetchrow("SELECT settings, created_at FROM guild_configs")
        settings = row["settings"]
        settings = json.loads(settings) if isinstance(settings, str) else settings
        assert settings == {"b": [1, 2], "a": {"z": None}}
        assert isinstance(row["created_at"], dt.datetime)
        async with pg.session() as s:
            level = await s.get(Level, (1, 1))
            assert level is not None
            assert level.last_xp_at == T0
            assert level.xp == 12.5
        # Sequences moved past the copied ids: a new row gets a fresh id.
        new_id = await pg.fetchval("INSERT INTO legacy_notes (body) VALUES ('new') RETURNING id")
        assert new_id == 8
        async with pg.session() as s:
            s.add(JoinLeaveLog(guild_id=1, user_id=2, event="leave"))
        await pg.execute("DELETE FROM legacy_notes WHERE id = 8")
        await pg.execute("DELETE FROM join_leave_logs WHERE user_id = 2")

    back = f"sqlite:///{tmp_path / 'back.db'}"
    report2 = await copy(pg_url, back, batch_size=1000)
    assert report2.verified
    assert {t.name: t.source_checksum for t in report.tables} == {
        t.name: t.source_checksum for t in report2.tables
    }
    async with botdb.connect(back) as db:
        async with db.session() as s:
            member = await s.get(Member, (1, 7))
            assert member is not None
            assert member.preferences == {"lang": "ja", "n": 7}
            assert member.joined_at == T0
            wallet = await s.get(TransferTestWallet, 3)
            assert wallet is not None
            assert wallet.extra == {"k": [3]}
            assert wallet.updated == T0
        assert await db.fetchval("SELECT count(*) FROM legacy_log") == 3


class Interrupt(Exception):
    pass


async def test_an_interrupted_transfer_resumes_without_duplicates(
    sqlite_url: str, pg_url: str
) -> None:
    await populate(sqlite_url, users=50)

    def stop_midway(table: str, done: int, total: int) -> None:
        if table == "users" and done >= 12:
            raise Interrupt  # raised after the third batch of users was committed

    with pytest.raises(Interrupt):
        await copy(sqlite_url, pg_url, batch_size=4, progress=stop_midway)
    async with botdb.connect(pg_url) as pg:
        assert await pg.fetchval(f"SELECT count(*) FROM {STATE_TABLE}") >= 1
        partial = await pg.fetchval("SELECT count(*) FROM users")
        assert partial == 12
    # A plain re-run continues (no yes=True needed) and ends verified.
    report = await copy(sqlite_url, pg_url, batch_size=4)
    assert report.verified
    assert report.resumed
    assert next(t for t in report.tables if t.name == "users").resumed_at == partial
    assert (await counts(pg_url, ["users", "members", "transfer_test_wallets"])) == {
        "users": 50,
        "members": 50,
        "transfer_test_wallets": 50,
    }


async def test_a_cancelled_transfer_resumes_and_verifies(sqlite_url: str, pg_url: str) -> None:
    await populate(sqlite_url, users=60)
    started = asyncio.Event()

    def note(table: str, done: int, total: int) -> None:
        if table == "members" and done >= 6:
            started.set()

    task = asyncio.create_task(copy(sqlite_url, pg_url, batch_size=3, progress=note))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = await copy(sqlite_url, pg_url, batch_size=3)
    assert report.verified
    assert (await counts(pg_url, ["members"])) == {"members": 60}


async def test_a_different_source_into_a_half_filled_target_is_refused(
    sqlite_url: str, pg_url: str, tmp_path: Any
) -> None:
    await populate(sqlite_url)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    await populate(other, users=3)

    def boom(table: str, done: int, total: int) -> None:
        if table == "users":
            raise Interrupt

    with pytest.raises(Interrupt):
        await copy(sqlite_url, pg_url, batch_size=5, progress=boom)
    before = await counts(pg_url, ["guilds", "users", STATE_TABLE])
    with pytest.raises(TargetNotEmptyError, match="different source"):
        await copy(other, pg_url)
    assert await counts(pg_url, ["guilds", "users", STATE_TABLE]) == before
    # yes=True discards the unfinished copy and starts over from the new source.
    report = await copy(other, pg_url, yes=True)
    assert report.verified
    assert await counts(pg_url, ["users"]) == {"users": 3}


async def test_a_non_empty_target_is_refused_unless_yes(sqlite_url: str, pg_url: str) -> None:
    await populate(sqlite_url, users=4)
    async with botdb.connect(pg_url) as pg:
        await pg.create_tables()
        await pg.execute("INSERT INTO guilds (id, name) VALUES (99, 'existing')")
    with pytest.raises(TargetNotEmptyError, match="not empty"):
        await copy(sqlite_url, pg_url)
    async with botdb.connect(pg_url) as pg:
        assert await pg.fetchval("SELECT count(*) FROM guilds") == 1
        assert await pg.fetchval("SELECT count(*) FROM users") == 0
    report = await copy(sqlite_url, pg_url, yes=True)
    assert report.verified
    assert await counts(pg_url, ["guilds", "users"]) == {"guilds": 2, "users": 4}


async def test_the_same_database_twice_or_a_url_is_refused(tmp_path: Any) -> None:
    same = f"sqlite:///{tmp_path / 'same.db'}"
    async with botdb.connect(same) as a, botdb.connect(same) as b:
        with pytest.raises(errors.ConfigurationError, match="same database"):
            await transfer(a, a)
        with pytest.raises(errors.ConfigurationError, match="same database"):
            await transfer(a, b)
        with pytest.raises(errors.ArgumentError, match=r"botdb\.connect"):
            await transfer(same, b)  # a URL, as transfer() once took
        with pytest.raises(errors.ConfigurationError, match="batch_size"):
            await transfer(a, b, batch_size=0)


async def test_transfer_leaves_the_callers_databases_open_and_clears_the_targets_cache(
    sqlite_url: str, tmp_path: Any
) -> None:
    await populate(sqlite_url, users=3)
    async with (
        botdb.connect(sqlite_url) as source,
        botdb.connect(f"sqlite:///{tmp_path / 'open.db'}") as target,
    ):
        await target.cache.set("user:1", {"stale": True})
        report = await transfer(source, target)
        assert report.verified
        assert target.cache.peek("user:1") is None
        assert await source.fetchval("SELECT count(*) FROM users") == 3
        assert await target.fetchval("SELECT count(*) FROM users") == 3


def test_cli_bad_urls_missing_sources_and_down_servers_are_typed_errors(tmp_path: Any) -> None:
    """``botdb transfer`` opens the URLs: each failure is a typed error and its exit code."""
    runner = CliRunner()
    bad = runner.invoke(app, ["transfer", "nosuchdb://x", f"sqlite:///{tmp_path / 'a.db'}"])
    assert bad.exit_code == 1
    assert "ConfigurationError" in bad.output
    missing = runner.invoke(
        app,
        ["transfer", f"sqlite:///{tmp_path / 'missing.db'}", f"sqlite:///{tmp_path / 'b.db'}"],
    )
    assert missing.exit_code == 1
    assert "ConfigurationError" in missing.output
    assert "does not exist" in missing.output
    assert not (tmp_path / "missing.db").exists()
    empty = runner.invoke(app, ["transfer", " ", f"sqlite:///{tmp_path / 'b.db'}"])
    assert empty.exit_code == 1
    assert "a database URL is required" in empty.output
    same = f"sqlite:///{tmp_path / 'same.db'}"
    asyncio.run(populate(same, users=3))
    twice = runner.invoke(app, ["transfer", same, same])
    assert twice.exit_code == 1
    assert "same database" in twice.output
    down = runner.invoke(
        app, ["transfer", "postgresql://root@127.0.0.1:1/nothing", f"sqlite:///{tmp_path / 'c.db'}"]
    )
    assert down.exit_code == 3
    assert "ConnectionFailedError" in down.output


async def test_a_checksum_mismatch_raises_verification_error(
    sqlite_url: str, tmp_path: Any
) -> None:
    await populate(sqlite_url, users=3)
    target = f"sqlite:///{tmp_path / 't.db'}"

    def tamper(table: str, done: int, total: int) -> None:
        if table == "users":
            import sqlite3

            with sqlite3.connect(tmp_path / "t.db") as raw:
                raw.execute("UPDATE users SET username = 'changed' WHERE id = 1")

    with pytest.raises(VerificationError) as caught:
        await copy(sqlite_url, target, progress=tamper)
    bad = [t.name for t in caught.value.report.tables if not t.ok]
    assert bad == ["users"]


def test_row_digest_normalises_values_the_same_way_on_both_backends() -> None:
    # Both drivers return aware datetimes in UTC; a naive one is read as UTC. JSON objects
    # compare whatever their key order (PostgreSQL's jsonb reorders keys), at any depth.
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    naive_utc = dt.datetime(2024, 1, 1, 12)
    assert row_digest([1, aware, True, {"b": 1, "a": {"d": 2, "c": 3}}]) == row_digest(
        (1, naive_utc, True, {"a": {"c": 3, "d": 2}, "b": 1})
    )
    assert row_digest([decimal.Decimal("1.50"), b"\x00"]) == row_digest(
        [decimal.Decimal("1.5"), memoryview(b"\x00")]
    )
    assert row_digest([1, "x"]) != row_digest([1, "y"])
    assert row_digest([None]) != row_digest(["null"])


def test_cli_transfer_json_and_refusal_exit_codes(sqlite_url: str, tmp_path: Any) -> None:
    asyncio.run(populate(sqlite_url, users=3))
    target = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["transfer", sqlite_url, target, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verified"] is True
    refused = runner.invoke(app, ["transfer", sqlite_url, target])
    assert refused.exit_code == 5
    bad = runner.invoke(app, ["transfer", sqlite_url, "postgresql://root@127.0.0.1:1/x"])
    assert bad.exit_code == 3


def test_cli_transfer_in_a_real_subprocess(sqlite_url: str, tmp_path: Any) -> None:
    asyncio.run(populate(sqlite_url, users=3))
    target = f"sqlite:///{tmp_path / 'sub.db'}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "botdb",
            "transfer",
            sqlite_url,
            target,
            "--json",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verified"] is True
    assert {t["name"]: t["target_rows"] for t in data["tables"]}["users"] == 3


def test_report_is_json_ready() -> None:
    report = TransferReport(source="a", target="b")
    assert json.loads(json.dumps(report.to_dict()))["source"] == "a"


async def test_orm_reads_after_copy_match(sqlite_url: str, pg_url: str) -> None:
    """Rows read through the ORM on the target equal the source's, column for column."""
    await populate(sqlite_url, users=5)
    await copy(sqlite_url, pg_url)
    for model in (Message, Reaction, UserReminder, KeyValue):
        async with (
            botdb.connect(sqlite_url) as a,
            botdb.connect(pg_url) as b,
            a.session() as sa,
            b.session() as sb,
        ):
            cols = list(model.__table__.columns)
            left = (await sa.execute(select(*cols).order_by(*cols[:1]))).all()
            right = (await sb.execute(select(*cols).order_by(*cols[:1]))).all()
            assert left == right, model
            assert (await sb.execute(select(func.count()).select_from(model))).scalar() == len(left)
