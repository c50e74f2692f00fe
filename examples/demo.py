"""``make demo``: botdb's main job on the embedded SQLite default, step by step.

Creates ``demo-data/bot.db`` (anew each run) and shows: the packaged migrations, the raw SQL
API with asyncpg-style ``$1`` placeholders and PostgreSQL-isms, transactions with retries,
repositories over the chat models, the cached services a bot calls on every event, a chat
export imported, live events recorded, search, activity statistics and the HTML report
(``demo-data/report.html``), the durable scheduler and reminders firing, typed errors, then
the operations (info, backup with retention,
optimize), the health check and the statistics. The same code runs on PostgreSQL: pass a URL
as the first argument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sys
from pathlib import Path

from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

import botdb
from botdb.recorder import (
    CommandInvoked,
    Event,
    MemberJoined,
    MessageCreated,
    MessageEdited,
    ReactionAdded,
)
from botdb.scheduler import Job
from botdb.services import DueReminder, EventReminder, parse_duration

console = Console()
GUILD = 1_150_000_000_000_000_001  # a Discord snowflake: 64-bit ids everywhere
#: The bundled export (see examples/data/README.md): a generated guild's channel history.
SAMPLE = Path(__file__).parent / "data" / "sample-discord.json"
SAMPLE_GUILD, SAMPLE_CHANNEL = 811000000000000001, 811000000000000010
SAMPLE_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SAMPLE_END = dt.datetime(2024, 1, 22, tzinfo=dt.UTC)

SCHEMA = """
CREATE TABLE IF NOT EXISTS wallets (
    guild_id BIGINT NOT NULL REFERENCES guilds (id),
    user_id BIGINT NOT NULL,
    coins INTEGER NOT NULL DEFAULT 0 CHECK (coins >= 0),
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS message_log (
    id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
"""


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


async def transfer(conn: botdb.Connection, guild: int, src: int, dst: int, amount: int) -> None:
    """Move coins between two wallets: both updates or neither (seed 002's example)."""
    await conn.execute(
        "UPDATE wallets SET coins = coins - $1 WHERE guild_id = $2 AND user_id = $3",
        amount,
        guild,
        src,
    )
    await conn.execute(
        "UPDATE wallets SET coins = coins + $1 WHERE guild_id = $2 AND user_id = $3",
        amount,
        guild,
        dst,
    )


async def chat_history(db: botdb.Database) -> None:
    """Imported history, live events, search, statistics and the report, on the same rows."""
    step("Chat history: a DiscordChatExporter export imported in one transaction")
    imported = await db.import_discord(SAMPLE)
    console.print(
        f"{SAMPLE.name}: {imported.messages:,} messages, {imported.users} members,"
        f" {imported.reaction_counts} reaction counts, {imported.attachments} attachments"
    )
    await db.import_discord(SAMPLE)
    total = await db.fetchval("SELECT count(*) FROM messages WHERE guild_id = $1", SAMPLE_GUILD)
    console.print(f"imported again: still {total:,} messages (idempotent)")

    step("Live events through the recorder: batched, any order, durable at flush()")
    at = SAMPLE_END + dt.timedelta(minutes=5)
    new_id = 1_196_000_000_000_000_001
    events: list[Event] = [
        # The edit and a reaction arrive before the message they are about.
        MessageEdited(new_id, SAMPLE_GUILD, SAMPLE_CHANNEL, edited_at=at, content="fixed typo"),
        ReactionAdded(new_id, SAMPLE_GUILD, SAMPLE_CHANNEL, 7, "\N{FIRE}", at=at),
        MessageCreated(
            new_id, SAMPLE_GUILD, SAMPLE_CHANNEL, 7, created_at=at, content="fixed tpyo"
        ),
        MemberJoined(SAMPLE_GUILD, 8, at=at),
        CommandInvoked(7, "rank", at, guild_id=SAMPLE_GUILD, duration_ms=12, success=True),
    ]
    await db.recorder.record_many(events)
    await db.recorder.flush()
    row = await db.fetchrow(
        "SELECT content, partial FROM messages WHERE id = $1 AND guild_id = $2",
        new_id,
        SAMPLE_GUILD,
    )
    console.print(
        f"the message reads {row['content']!r} (the later edit wins, partial={row['partial'] == 1})"
    )
    stats = db.recorder.stats()
    console.print({k: stats[k] for k in ("written", "batches", "retries", "spilled")})

    step("Full-text search (FTS5 here, tsvector + GIN on PostgreSQL), ranked and paged")
    page = await db.messages.search("screenshot", guild_id=SAMPLE_GUILD, limit=3)
    for hit in page.items:
        console.print(f"  {hit.rank:6.2f}  {hit.message.content[:60]!r}")

    step("Activity statistics (trigger-kept summaries here, materialized views on PostgreSQL)")
    await db.stats.refresh()
    since, until = SAMPLE_START, SAMPLE_END + dt.timedelta(days=1)
    table = Table("member", "messages", title="top members")
    for member in await db.stats.top_members(SAMPLE_GUILD, since=since, until=until, limit=5):
        table.add_row(member.name or str(member.user_id), str(member.messages))
    console.print(table)
    busiest = max(
        await db.stats.daily(SAMPLE_GUILD, since=since, until=until), key=lambda d: d.messages
    )
    console.print(f"busiest day: {busiest.day} with {busiest.messages} messages")

    step("The report: one self-contained HTML page")
    report = await db.write_report(
        Path("demo-data/report.html"), SAMPLE_GUILD, since=since, until=until
    )
    console.print(
        f"written to [bold]{report.path}[/] ({report.size / 2**20:.1f} MB, works offline)"
    )


async def reminders(db: botdb.Database) -> None:
    """The durable scheduler and ``db.reminders``: what the bot sends, a second later."""
    step("Scheduler: durable jobs, idempotent keys, woken early instead of polling")
    loop = asyncio.get_running_loop()
    started = loop.time()
    fired: asyncio.Queue[str] = asyncio.Queue()

    def late(due: dt.datetime) -> str:
        return f"{(dt.datetime.now(dt.UTC) - due).total_seconds() * 1000:.0f} ms late"

    @db.scheduler.handler("demo.digest")
    async def digest(job: Job) -> None:
        await fired.put(f"job {job.kind} {job.payload} ({late(job.run_at)})")

    # The same key schedules once: a retried command or a second shard adds nothing.
    jobs = [
        await db.scheduler.schedule(
            "demo.digest", delay=0.3, payload={"guild": "Python Hub"}, key="digest:1"
        )
        for _ in range(2)
    ]
    console.print(f"schedule(key='digest:1') twice -> job ids {[job.id for job in jobs]}")
    try:
        await db.scheduler.schedule("demo.digest", at=dt.datetime(2030, 1, 1))
    except botdb.BotDBError as exc:
        console.print(f"a naive datetime -> [red]{type(exc).__name__}[/]: {exc}")

    step("Reminders: personal and tracked events; the bot's code only sends")
    channel = {100: "#chat-0"}

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        where = channel.get(due.reminder.channel_id, due.reminder.channel_id)
        text = f"<@{due.reminder.user_id}> {due.reminder.content}"
        await fired.put(f"{where}: {text} ({late(due.scheduled_at)})")

    async def who_can_see(event: object) -> list[int]:
        return [7, 8, 9]  # a bot asks its framework's member cache

    @db.reminders.on_event_reminder(candidates=who_can_see)
    async def nag(due: EventReminder) -> None:
        mentions = " ".join(f"<@{user}>" for user in due.users)
        where = channel.get(due.event.channel_id, due.event.channel_id)
        await fired.put(f"{where}: {due.event.title}, please react: {mentions}")

    delay = parse_duration("1s")  # what a user types after !remind
    reminder = await db.reminders.remind(
        7, "stand up and stretch", delay=delay, channel_id=100, guild_id=GUILD
    )
    weekly = await db.reminders.remind(
        7, "weekly sync", cron="0 9 * * MON", tz="Europe/Paris", channel_id=100, guild_id=GUILD
    )
    console.print(
        f"!remind 1s -> reminder #{reminder.id}; the weekly one next at"
        f" {weekly.due_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC (9:00 in Paris)"
    )
    event = await db.reminders.track(
        1_196_000_000_000_000_100,
        GUILD,
        100,
        "Saturday match",
        required_reactions=["✅", "❌"],
        interval=dt.timedelta(hours=6),
    )
    await db.reminders.record_reaction(event, 7, "✅")  # from the reaction listener
    await db.reminders.remind_now(event)  # a moderator's !nag; the 6-hour schedule stays
    console.print(f"tracking 'Saturday match': every {event.interval_minutes} min, 7 reacted")

    await db.scheduler.start()  # in setup_hook / post_init / the Dispatcher's startup
    for _ in range(3):
        console.print(f"  [green]->[/] {await asyncio.wait_for(fired.get(), timeout=30)}")
    await db.scheduler.stop()
    log = (await db.reminders.logs(event))[0]
    console.print(f"reminder_logs: {log['status']} to {log['users_notified']} users")
    upcoming = [r.content for r in await db.reminders.list_for(7)]
    console.print(f"list_for(7) -> {upcoming} (the one-shot was sent)")
    await db.reminders.cancel(weekly.id, user_id=7)
    stats = db.scheduler.stats()
    console.print(
        f"worker: {stats['succeeded']} jobs run, lateness p50 {stats['lateness_ms']['p50']} ms;"
        f" {loop.time() - started:.1f} s for this step"
    )


def fresh_sqlite_file(url: str) -> None:
    """The demo starts from an empty database file each run."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def main(url: str) -> None:
    async with botdb.connect(url) as db:
        step(f"Connected: {db!r}")
        applied = await db.migrate()
        console.print(f"built-in schema migrated: [bold]{', '.join(applied)}[/]")
        await db.execute_script(SCHEMA)
        console.print("the bot's own tables created with [bold]execute_script[/] (atomic)")

        step("Raw SQL, asyncpg style")
        status = await db.execute(
            "INSERT INTO guilds (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            GUILD,
            "Python Hub",
        )
        console.print(f"execute -> {status!r}")
        await db.execute_many(
            "INSERT INTO wallets (guild_id, user_id, coins) VALUES ($1, $2, $3)",
            [(GUILD, uid, 100) for uid in range(1, 6)],
        )
        get_guild = await db.prepare_statement(
            "get_guild", "SELECT id, name, platform FROM guilds WHERE id = $1"
        )
        console.print("prepared get_guild.fetchrow ->", dict(await get_guild.fetchrow(GUILD)))

        step("Connections come back clean")
        await db.execute("PRAGMA case_sensitive_like = OFF")  # one caller changes its session
        like = await db.fetchval("SELECT 'Python' LIKE 'python'")
        console.print(
            f"the next caller still has case-sensitive LIKE: 'Python' LIKE 'python' -> {like}"
        )

        step("Bulk insert of 50,000 messages with copy_records_to_table")
        now = dt.datetime.now(dt.UTC)
        rows = [
            (
                i,
                GUILD,
                random.randrange(10),
                random.randrange(1, 6),
                f"hello #{i}",
                now - dt.timedelta(minutes=i),
            )
            for i in range(50_000)
        ]
        started = asyncio.get_running_loop().time()
        status = await db.copy_records_to_table(
            "message_log",
            records=rows,
            columns=["id", "guild_id", "channel_id", "author_id", "content", "created_at"],
        )
        elapsed = asyncio.get_running_loop().time() - started
        console.print(f"{status} in {elapsed * 1000:.0f} ms ({len(rows) / elapsed:,.0f} rows/s)")

        step("PostgreSQL-isms that run on SQLite too")
        table = Table("query", "result")
        queries = [
            (
                "messages in the last day",
                "SELECT count(*) FROM message_log WHERE created_at > NOW() - INTERVAL '1 day'",
                (),
            ),
            (
                "guild names ILIKE 'python%'",
                "SELECT count(*) FROM guilds WHERE name ILIKE $1",
                ("python%",),
            ),
            (
                "messages by authors = ANY([1, 2])",
                "SELECT count(*) FROM message_log WHERE author_id = ANY($1)",
                ([1, 2],),
            ),
        ]
        for label, query, args in queries:
            table.add_row(label, str(await db.fetchval(query, *args)))
        console.print(table)

        step("Transactions: all or nothing, re-run on transient failures")
        await db.run_in_transaction(transfer, GUILD, 1, 2, 30)
        try:
            await db.run_in_transaction(transfer, GUILD, 3, 4, 1000)
        except botdb.CheckViolationError as exc:
            console.print(f"overdraft refused: [red]{type(exc).__name__}[/], nothing changed")
        coins = await db.fetch(
            "SELECT user_id, coins FROM wallets WHERE guild_id = $1 ORDER BY user_id",
            GUILD,
        )
        console.print({r["user_id"]: r["coins"] for r in coins})

        step("Repositories over the chat models (seed 002's controller API)")
        helpers = {"guild_id": GUILD, "name": "helpers"}
        for attempt in ("first", "again"):
            _, created = await db.roles.get_or_create(id=42, defaults=helpers)
            console.print(f"get_or_create(role 42), {attempt} -> created={created}")
        channels = [
            {"id": 100 + i, "guild_id": GUILD, "name": f"chat-{i}", "type": "text"}
            for i in range(25)
        ]
        await db.channels.create_many(channels)
        page = await db.channels.find_page(filters={"guild_id": GUILD}, limit=10)
        names = [c.name for c in page.items][:4]
        console.print(f"keyset page: {names}…, with a signed cursor for the next one")
        renamed = await db.channels.update_where({"guild_id": GUILD}, topic="general chat")
        console.print(f"update_where -> {renamed} rows (the database's own count)")

        step("Services: cached users and guild configuration, scoped settings, cases")
        user, created = await db.users.get_or_create(id=7, username="ada", display_name="Ada")
        console.print(f"users.get_or_create -> ({user.username!r}, created={created})")
        user = await db.users.ensure(id=7, username="ada", display_name="Ada")
        console.print(f"users.ensure -> {user.username!r} (cached: a repeat costs no I/O)")
        await db.config.set(GUILD, prefix="?", locale="de")
        config = await db.config.get(GUILD)
        console.print(f"config.get -> prefix={config.prefix!r} locale={config.locale!r}")
        economy = db.scoped("economy")
        economy.register_member(balance=0)
        for _ in range(3):
            balance = await economy.member(GUILD, 7).increment("balance", 5)
        console.print(f"scoped increment x3 -> balance {balance} (one atomic statement each)")
        first = await db.cases.create(GUILD, 7, 1, "warn", reason="spam")
        second = await db.cases.create(GUILD, 7, 1, "timeout", reason="more spam")
        console.print(f"moderation cases numbered {first.case_number}, {second.case_number}")

        await chat_history(db)
        await reminders(db)

        step("Typed errors")
        for query in ("SELECT * FROM no_such_table", "SELEC 1"):
            try:
                await db.fetch(query)
            except botdb.QueryError as exc:
                console.print(f"{query!r} -> [red]{type(exc).__name__}[/]: {exc}")

        step("Operations: info, backup (online, checksummed, retention), optimize")
        info = await db.info()
        table = Table("table", "rows", "size")
        for entry in info["tables"]:
            if entry["rows"]:
                table.add_row(entry["name"], str(entry["rows"]), f"{entry['size_bytes'] or 0:,}")
        console.print(table)
        backup = await db.backup(Path("demo-data/backups"), keep=3)
        console.print(
            f"backup -> {backup.path} ({backup.size:,} bytes, sha256 {backup.sha256[:12]}…)"
        )
        report = await db.optimize()
        console.print(Pretty({k: v for k, v in report.items() if k != "integrity"}, max_length=6))
        console.print(f"integrity: {report.get('integrity', {}).get('ok')}")

        step("Health check (seed 001 shape)")
        console.print(Pretty(await db.health_check()))

        step("Statistics")
        console.print(Pretty(db.stats()))


if __name__ == "__main__":
    database_url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///demo-data/bot.db"
    fresh_sqlite_file(database_url)
    asyncio.run(main(database_url))
