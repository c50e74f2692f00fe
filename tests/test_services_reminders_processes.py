"""``db.reminders`` across real OS processes: two shard processes, one database (a SQLite file,
or PostgreSQL), each running the scheduler with the same handlers. Every reminder is sent once,
not once per process, and every tracked-event run is logged once as sent.

Each child's handlers record what they "send" in ``sends`` (every call) and in ``delivered``,
whose primary key is the reminder and its due time: a second send of the same firing would show
up as a ``sends`` row more than ``delivered`` rows, and as a duplicate counted by the child.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.helpers import MakeDB, child_env, wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

REMINDERS = 300
EVENTS = 20
G = 1_150_000_000_000_000_001

CHILD = r"""
import asyncio, os, sys
import botdb

async def main(url):
    async with botdb.connect(url, scheduler_poll_interval=0.05, scheduler_concurrency=20,
                             retry_attempts=10) as db:
        pid = os.getpid()
        duplicates = 0

        async def record(kind, ref, scheduled_at):
            nonlocal duplicates
            await db.execute("INSERT INTO sends (kind, ref, pid) VALUES ($1, $2, $3)",
                             kind, ref, pid)
            status = await db.execute(
                "INSERT INTO delivered (kind, ref, scheduled_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (kind, ref, scheduled_at) DO NOTHING",
                kind, ref, scheduled_at.isoformat(),
            )
            if status.endswith(" 0"):
                duplicates += 1

        @db.reminders.on_reminder
        async def send(due):
            await record("reminder", due.reminder.id, due.scheduled_at)

        @db.reminders.on_event_reminder
        async def nag(due):
            await record("event", due.event.id, due.scheduled_at)

        await db.scheduler.start()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await db.scheduler.stop()
        print("DONE", db.scheduler.stats()["run"], duplicates, flush=True)

asyncio.run(main(sys.argv[1]))
"""

SCHEMA = (
    "CREATE TABLE sends (kind VARCHAR(16) NOT NULL, ref BIGINT NOT NULL, pid INTEGER NOT NULL)",
    "CREATE TABLE delivered (kind VARCHAR(16) NOT NULL, ref BIGINT NOT NULL,"
    " scheduled_at VARCHAR(40) NOT NULL, PRIMARY KEY (kind, ref, scheduled_at))",
)


async def test_two_processes_send_each_reminder_once(make_db: MakeDB, db_url: str) -> None:
    db = await make_db(create_tables=True)
    for statement in SCHEMA:
        await db.execute(statement)
    for user in range(1, 4):
        await db.execute("INSERT INTO users (id) VALUES ($1)", user)
    await db.execute("INSERT INTO guilds (id) VALUES ($1)", G)
    for user in range(1, 4):
        await db.execute("INSERT INTO members (guild_id, user_id) VALUES ($1, $2)", G, user)
    events = [
        await db.reminders.track(
            1000 + i, G, 55, f"match {i}", required_reactions=["✅"], interval=60
        )
        for i in range(EVENTS)
    ]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            db_url,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line.decode().strip() == "READY", line
        # Scheduled while both workers wait: each one is woken and both claim.
        for i in range(REMINDERS):
            await db.reminders.remind(1 + i % 3, f"r{i}", delay=0.2, channel_id=55)
        for event in events:
            await db.reminders.remind_now(event)

        async def all_sent() -> bool:
            unsent = await db.fetchval("SELECT count(*) FROM user_reminders WHERE sent_at IS NULL")
            logged = await db.fetchval("SELECT count(*) FROM reminder_logs WHERE status = 'sent'")
            return bool(unsent == 0 and logged == EVENTS)

        await wait_until(all_sent, timeout=120, what="every reminder sent")
        outputs = []
        for child in children:
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(b"\n")
            await child.stdin.drain()
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            outputs.append(line.decode().split())
            await asyncio.wait_for(child.wait(), 60)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [out[0] for out in outputs] == ["DONE", "DONE"]
    assert sum(int(out[2]) for out in outputs) == 0  # no duplicate send
    assert await db.fetchval("SELECT count(*) FROM sends") == REMINDERS + EVENTS
    assert await db.fetchval("SELECT count(*) FROM delivered") == REMINDERS + EVENTS
    assert await db.fetchval("SELECT count(*) FROM reminder_logs") == EVENTS
    logs = await db.fetch("SELECT users_notified FROM reminder_logs")
    assert {row[0] for row in logs} == {3}
