"""Seed 001's reminder bot on ``db.reminders``: ``python examples/reminders.py [DATABASE_URL]``.

Seed 001 keeps its events (a message, the reactions it needs, an interval, paused or not) and
a log of every reminder sent; its loop wakes up, works out who has not reacted and pings them.
Here that is the scheduler's job, and the bot's code only sends the message:

* ``db.reminders.track(...)`` writes the event and its recurring job in one transaction;
* ``@db.reminders.on_event_reminder`` receives the users to ping (who has not reacted yet, one
  query over the guild's members) and every run is logged in ``reminder_logs`` (sent, or failed
  with the error, and retried by the scheduler);
* ``db.reminders.remind(user, text, delay=...)`` is "remind me in 2 hours", and recurring
  ones take ``every=`` or ``cron="0 9 * * MON", tz="Europe/Paris"``.

Framework-free: ``send`` prints instead of calling Discord or Telegram. The delays are short so
it ends in a few seconds. Without an argument it runs on a throwaway SQLite file; pass a
PostgreSQL URL to run there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path

import botdb
from botdb.services import DueReminder, EventReminder

GUILD, CHANNEL, MESSAGE = 1_150_000_000_000_000_001, 1_150_000_000_000_000_002, 42
ALICE, BOB, CAROL = 101, 102, 103


async def send(channel_id: int, text: str) -> None:
    """What a real bot does with discord.py's ``channel.send`` or aiogram's ``bot.send_message``."""
    print(f"  -> #{channel_id}: {text}")


async def main(url: str) -> None:
    async with botdb.connect(url) as db:
        await db.create_tables()
        done = asyncio.Event()

        @db.reminders.on_event_reminder
        async def nag(due: EventReminder) -> None:
            mentions = " ".join(f"<@{user}>" for user in due.users)
            await send(due.event.channel_id, f"{due.event.title}: please react, {mentions}")

        @db.reminders.on_reminder
        async def remind(due: DueReminder) -> None:
            await send(due.reminder.channel_id, f"<@{due.reminder.user_id}> {due.reminder.content}")
            done.set()

        # The guild's members, as the bot's member events would have recorded them.
        await db.execute("INSERT INTO guilds (id) VALUES ($1)", GUILD)
        for user, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
            await db.users.get_or_create(id=user, username=name)
            await db.execute("INSERT INTO members (guild_id, user_id) VALUES ($1, $2)", GUILD, user)

        event = await db.reminders.track(
            MESSAGE,
            GUILD,
            CHANNEL,
            "Saturday match",
            required_reactions=["✅", "❌"],
            interval=dt.timedelta(hours=6),
        )
        print(f"tracking message {MESSAGE}: reminders every {event.interval_minutes} min")
        await db.reminders.record_reaction(event, BOB, "✅")  # from the reaction listener
        print("not reacted yet:", await db.reminders.pending_users(event))

        await db.scheduler.start()
        # A moderator's "!remind now" (the 6-hour schedule keeps its times).
        await db.reminders.remind_now(event)
        reminder = await db.reminders.remind(
            ALICE, "the match starts in an hour", delay=1.5, channel_id=CHANNEL, guild_id=GUILD
        )
        weekly = await db.reminders.remind(
            ALICE, "weekly sync", cron="0 9 * * MON", tz="Europe/Paris", channel_id=CHANNEL
        )
        print(f"Alice's reminders: {[r.content for r in await db.reminders.list_for(ALICE)]}")
        print(f"  the weekly one is next due {weekly.due_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC")
        await asyncio.wait_for(done.wait(), timeout=30)
        await db.scheduler.stop()

        for log in await db.reminders.logs(event):
            print(
                f"log: {log['status']} to {log['users_notified']} users,"
                f" scheduled {log['scheduled_at']:%H:%M:%S}, sent {log['sent_at']:%H:%M:%S}"
            )
        sent = await db.reminders.get(reminder.id)
        assert sent is not None
        assert sent.sent_at is not None
        print(f"reminder #{sent.id} sent at {sent.sent_at:%H:%M:%S}")
        await db.reminders.cancel(weekly.id, user_id=ALICE)
        print(f"after cancel: {[r.content for r in await db.reminders.list_for(ALICE)]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(f"sqlite:///{Path(tmp) / 'reminders.db'}"))
