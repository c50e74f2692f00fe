"""botdb.services.reminders (``db.reminders``): tracked events and personal reminders on the
scheduler; the handlers only send.

Every test runs on SQLite and on the real PostgreSQL server. Jobs are made due by moving their
run time into the past and run with ``db.scheduler.run_until_idle()``: no sleeping, no clock
asserts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import botdb
from botdb import errors
from botdb.models import TrackedEvent, UserReminder
from botdb.services._reminder_sql import next_cron_time
from botdb.services.reminders import (
    EVENT_KIND,
    REMINDER_KIND,
    DueReminder,
    EventReminder,
    ReminderService,
)
from tests.helpers import MakeDB, statements, wait_until

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

G = 1_150_000_000_000_000_001
CH = 1_150_000_000_000_000_002
MSG = 1_150_000_000_000_000_003
ALICE, BOB, CAROL, DAVE, BOTTY = 101, 102, 103, 104, 105
PARIS = ZoneInfo("Europe/Paris")
EMPTY = dict.fromkeys(
    ("tracked_events", "event_reactions", "reminder_logs", "user_reminders", "jobs"), 0
)


class Boom(RuntimeError):
    """The error a failing handler raises."""


async def add_member(
    db: botdb.Database, user: int, *, left: bool = False, bot: bool = False
) -> None:
    await db.execute(
        "INSERT INTO guilds (id, platform) VALUES ($1, 'discord') ON CONFLICT (id) DO NOTHING", G
    )
    await db.execute("INSERT INTO users (id, is_bot) VALUES ($1, $2)", user, bot)
    await db.execute(
        "INSERT INTO members (guild_id, user_id, is_active, left_at) VALUES ($1, $2, $3, $4)",
        G,
        user,
        not left,
        dt.datetime.now(dt.UTC) if left else None,
    )


async def track(db: botdb.Database, **options: Any) -> TrackedEvent:
    options.setdefault("required_reactions", ["✅", "❌"])
    options.setdefault("interval", dt.timedelta(hours=1))
    return await db.reminders.track(MSG, G, CH, "Saturday match", **options)


async def fire(db: botdb.Database, job_id: int | None) -> None:
    """Make the job due now and run every due job."""
    assert job_id is not None
    await db.scheduler.reschedule(job_id, at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    await db.scheduler.run_until_idle()


async def retry_until(db: botdb.Database, done: Any) -> None:
    """Run due jobs until ``done()``: the retry is due after the scheduler's own backoff
    (10 ms here), so this is the scheduler's policy at work, not a rescheduled job."""

    async def ran() -> bool:
        await db.scheduler.run_until_idle()
        return bool(done())

    await wait_until(ran, what="the retry")


async def counts(db: botdb.Database) -> dict[str, int]:
    tables = ("tracked_events", "event_reactions", "reminder_logs", "user_reminders")
    found = {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
    found["jobs"] = len(await db.scheduler.jobs(limit=1000))
    return found


# -- tracked events ---------------------------------------------------------------------------


async def test_track_writes_the_event_and_its_recurring_job(db: botdb.Database) -> None:
    assert isinstance(db.reminders, ReminderService)
    event = await track(db, description="bring water")
    assert isinstance(event, TrackedEvent)
    assert (event.message_id, event.guild_id, event.channel_id) == (MSG, G, CH)
    assert (event.interval_minutes, event.required_reactions) == (60, ["✅", "❌"])
    assert (event.is_paused, event.description) == (False, "bring water")
    assert event.job_id is not None
    assert event.created_at.tzinfo is not None
    job = await db.scheduler.get(event.job_id)
    assert job is not None
    assert (job.kind, job.state, job.guild_id) == (EVENT_KIND, "scheduled", G)
    assert job.payload["event_id"] == event.id
    assert job.every == dt.timedelta(hours=1)
    again = await db.reminders.get_event(event.id)
    assert (again.id, again.job_id, again.required_reactions) == (
        event.id,
        event.job_id,
        ["✅", "❌"],
    )
    assert (await db.reminders.get_event_by_message(G, MSG)).id == event.id  # type: ignore[union-attr]
    assert [e.id for e in await db.reminders.events_of(G)] == [event.id]
    # The repositories are still reachable.
    assert (await db.tracked_events.get_by_id(event.id)) is not None
    assert await db.reminders.events.count() == 1
    assert await db.reminders.repo.count() == 0


async def test_tracking_the_same_message_twice_is_refused_and_writes_nothing(
    db: botdb.Database,
) -> None:
    await track(db)
    before = await counts(db)
    with pytest.raises(errors.UniqueViolationError, match="already tracked"):
        await track(db)
    assert await counts(db) == before


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"required_reactions": []}, errors.DataError),
        ({"required_reactions": "✅"}, errors.ArgumentError),
        ({"required_reactions": [""]}, errors.DataError),
        ({"interval": dt.timedelta(minutes=-5)}, errors.DataError),
        ({"interval": dt.timedelta(0)}, errors.DataError),
        ({"interval": dt.timedelta(seconds=90)}, errors.DataError),
        ({"interval": 1.5}, errors.ArgumentError),
        ({"description": 5}, errors.ArgumentError),
    ],
)
async def test_bad_tracking_input_is_typed_and_writes_nothing(
    db: botdb.Database, options: dict[str, Any], error: type[Exception]
) -> None:
    before = await counts(db)
    with pytest.raises(error):
        await track(db, **options)
    with pytest.raises(errors.ArgumentError):
        await db.reminders.track("x", G, CH, "t", required_reactions=["✅"], interval=60)  # type: ignore[arg-type]
    assert await counts(db) == before


async def test_unknown_event_is_not_found_everywhere(db: botdb.Database) -> None:
    for call in (
        db.reminders.pause(999),
        db.reminders.resume(999),
        db.reminders.set_interval(999, 30),
        db.reminders.untrack(999),
        db.reminders.record_reaction(999, ALICE, "✅"),
        db.reminders.pending_users(999),
        db.reminders.pending_users(999, [ALICE]),
        db.reminders.get_event(999),
        db.reminders.remind_now(999),
    ):
        with pytest.raises(errors.NotFoundError):
            await call
    assert await counts(db) == EMPTY


async def test_pending_users_from_the_members_table(db: botdb.Database) -> None:
    """Members who reacted with none of the required emoji; wrong emoji, members who left
    and bots are handled; one query."""
    for user in (ALICE, BOB, CAROL, DAVE):
        await add_member(db, user)
    await add_member(db, 106, left=True)
    await add_member(db, BOTTY, bot=True)
    event = await track(db)
    with statements(db) as sent:
        assert await db.reminders.pending_users(event) == [ALICE, BOB, CAROL, DAVE]
    assert len(sent) == 1  # one query
    assert await db.reminders.record_reaction(event, ALICE, "✅") is True
    assert await db.reminders.record_reaction(event, ALICE, "✅") is False  # already recorded
    await db.reminders.record_reaction(event, BOB, "❌")  # any required emoji counts
    await db.reminders.record_reaction(event, CAROL, "🎉")  # not a required one
    assert await db.reminders.pending_users(event.id) == [CAROL, DAVE]
    assert await db.reminders.reactions(event) == {ALICE: ["✅"], BOB: ["❌"], CAROL: ["🎉"]}
    # DAVE leaves the guild: no longer reminded.
    await db.execute(
        "UPDATE members SET is_active = $1, left_at = $2 WHERE user_id = $3",
        False,
        dt.datetime.now(dt.UTC),
        DAVE,
    )
    assert await db.reminders.pending_users(event) == [CAROL]
    # Taking a reaction back makes the user pending again.
    assert await db.reminders.remove_reaction(event, ALICE, "✅") is True
    assert await db.reminders.remove_reaction(event, ALICE, "✅") is False
    assert await db.reminders.pending_users(event) == [ALICE, CAROL]
    # Everyone reacted: nobody pending (and the event still exists).
    await db.reminders.record_reaction(event, ALICE, "❌")
    await db.reminders.record_reaction(event, CAROL, "✅")
    assert await db.reminders.pending_users(event) == []


async def test_pending_users_among_given_candidates(db: botdb.Database) -> None:
    event = await track(db)
    assert await db.reminders.pending_users(event, []) == []
    await db.reminders.record_reaction(event, BOB, "✅")  # a user unknown until now is created
    await db.reminders.record_reaction(event, CAROL, "👍")
    with statements(db) as sent:
        assert await db.reminders.pending_users(event, [CAROL, BOB, ALICE, ALICE]) == [
            ALICE,
            CAROL,
        ]
    assert len(sent) == 1
    with pytest.raises(errors.ArgumentError):
        await db.reminders.pending_users(event, "101")  # type: ignore[arg-type]
    with pytest.raises(errors.DataError):
        await db.reminders.pending_users(event, [0])


async def test_concurrent_reactions_of_one_user_are_recorded_once(db: botdb.Database) -> None:
    event = await track(db)
    results = await asyncio.gather(
        *(db.reminders.record_reaction(event, ALICE, "✅") for _ in range(8)),
        db.reminders.record_reaction(event.id, BOB, "❌"),
    )
    assert sorted(results[:8]) == [False] * 7 + [True]
    assert results[8] is True
    assert await db.reminders.reactions(event) == {ALICE: ["✅"], BOB: ["❌"]}


async def test_pause_cancels_the_job_and_resume_schedules_a_new_one(
    db: botdb.Database,
) -> None:
    event = await track(db)
    old_job = event.job_id
    paused = await db.reminders.pause(event)
    assert (paused.is_paused, paused.job_id) == (True, None)
    assert (await db.scheduler.get(old_job)).state == "cancelled"  # type: ignore[arg-type, union-attr]
    assert (await db.reminders.pause(event)).is_paused  # idempotent
    assert [e.id for e in await db.reminders.events_of(G, paused=True)] == [event.id]
    assert await db.reminders.events_of(G, paused=False) == []
    resumed = await db.reminders.resume(event)
    assert resumed.is_paused is False
    assert resumed.job_id not in (None, old_job)
    job = await db.scheduler.get(resumed.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.state == "scheduled"
    assert (await db.reminders.resume(event)).job_id == resumed.job_id  # idempotent


async def test_set_interval_replaces_the_job(db: botdb.Database) -> None:
    event = await track(db)
    changed = await db.reminders.set_interval(event, dt.timedelta(minutes=30))
    assert changed.interval_minutes == 30
    assert changed.job_id != event.job_id
    new_job = await db.scheduler.get(changed.job_id)  # type: ignore[arg-type]
    assert new_job is not None
    assert new_job.every == dt.timedelta(minutes=30)
    assert (await db.scheduler.get(event.job_id)).state == "cancelled"  # type: ignore[arg-type, union-attr]
    with pytest.raises(errors.DataError):
        await db.reminders.set_interval(event, dt.timedelta(minutes=-1))
    assert (await db.reminders.get_event(event)).interval_minutes == 30
    paused = await db.reminders.pause(event)
    again = await db.reminders.set_interval(paused, 45)
    assert (again.interval_minutes, again.job_id, again.is_paused) == (45, None, True)


async def test_untrack_deletes_the_event_its_reactions_and_job(db: botdb.Database) -> None:
    event = await track(db)
    await db.reminders.record_reaction(event, ALICE, "✅")
    gone = await db.reminders.untrack(event)
    assert gone.id == event.id
    assert (await db.scheduler.get(event.job_id)).state == "cancelled"  # type: ignore[arg-type, union-attr]
    assert await db.reminders.get_event_or_none(event) is None
    assert await db.fetchval("SELECT count(*) FROM event_reactions") == 0
    with pytest.raises(errors.NotFoundError):
        await db.reminders.untrack(event)


async def test_a_run_reminds_the_pending_users_and_is_logged_sent(db: botdb.Database) -> None:
    for user in (ALICE, BOB, CAROL):
        await add_member(db, user)
    received: list[EventReminder] = []

    @db.reminders.on_event_reminder
    async def nag(due: EventReminder) -> None:
        received.append(due)

    event = await track(db)
    await db.reminders.record_reaction(event, BOB, "✅")
    job = await db.scheduler.get(event.job_id)  # type: ignore[arg-type]
    assert job is not None
    await fire(db, event.job_id)
    assert len(received) == 1
    due = received[0]
    assert (due.event.id, due.users, due.manual) == (event.id, [ALICE, CAROL], False)
    [log] = await db.reminders.logs(event)
    assert log["id"] == due.log_id
    assert (log["status"], log["users_notified"], log["error_message"]) == ("sent", 2, None)
    assert log["scheduled_at"] == due.scheduled_at
    assert log["sent_at"] is not None
    assert (await db.reminders.get_event(event)).last_reminder_at == log["sent_at"]
    # The recurring job is scheduled again for the next interval.
    again = await db.scheduler.get(event.job_id)  # type: ignore[arg-type]
    assert again is not None
    assert again.state == "scheduled"


@pytest.fixture
async def quick_retry_db(make_db: MakeDB) -> botdb.Database:
    """Failed jobs are retried after 10 ms (the first backoff step), then 20 ms..."""
    return await make_db(create_tables=True, scheduler_retry_delay=0.01)


async def test_a_failed_run_is_logged_with_its_error_and_retried(
    quick_retry_db: botdb.Database,
) -> None:
    db = quick_retry_db
    await add_member(db, ALICE)
    calls: list[int] = []
    seen_by_retry: list[Any] = []

    @db.reminders.on_event_reminder
    async def nag(due: EventReminder) -> None:
        calls.append(due.attempt)
        if len(calls) == 1:
            raise Boom("Discord said 503")
        # The retry sees its own log row pending, the first run's failed with its error, and
        # the job's error.
        seen_by_retry.extend([await db.reminders.logs(due.event), due.job.last_error])

    event = await track(db)
    await fire(db, event.job_id)
    await retry_until(db, lambda: len(calls) == 2)  # the scheduler's backoff, not a reschedule
    assert calls == [1, 2]
    (running, failed), job_error = seen_by_retry
    assert (running["status"], running["sent_at"]) == ("pending", None)  # this very run
    assert (failed["status"], failed["sent_at"], failed["users_notified"]) == ("failed", None, 0)
    assert failed["error_message"] == "Boom: Discord said 503"
    assert "Discord said 503" in (job_error or "")
    logs = await db.reminders.logs(event)
    assert [log["status"] for log in logs] == ["sent", "failed"]
    assert logs[0]["users_notified"] == 1
    assert logs[1]["error_message"] == "Boom: Discord said 503"
    job = await db.scheduler.get(event.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert (job.state, job.attempts) == ("scheduled", 0)  # the next firing, one interval on


async def test_paused_events_and_events_with_nobody_pending_send_nothing(
    db: botdb.Database,
) -> None:
    await add_member(db, ALICE)
    received: list[EventReminder] = []

    @db.reminders.on_event_reminder(candidates=None)
    async def nag(due: EventReminder) -> None:
        received.append(due)

    event = await track(db)
    await db.reminders.record_reaction(event, ALICE, "❌")
    await fire(db, event.job_id)
    assert received == []
    assert await db.reminders.logs(event) == []
    # A job left behind by a pause (its cancellation lost) finds itself unlinked: nothing sent.
    await db.reminders.remove_reaction(event, ALICE, "❌")
    stale = event.job_id
    await db.execute("UPDATE tracked_events SET is_paused = $1, job_id = NULL", True)
    await fire(db, stale)
    assert received == []
    # remind_now sends even for a paused event, once.
    job = await db.reminders.remind_now(event)
    assert job.kind == EVENT_KIND
    await db.scheduler.run_until_idle()
    assert [(d.users, d.manual) for d in received] == [([ALICE], True)]


async def test_candidates_provider_chooses_who_should_react(db: botdb.Database) -> None:
    received: list[list[int]] = []
    asked: list[int] = []

    async def channel_members(event: TrackedEvent) -> list[int]:
        asked.append(event.id)
        return [CAROL, DAVE]

    @db.reminders.on_event_reminder(candidates=channel_members)
    async def nag(due: EventReminder) -> None:
        received.append(due.users)

    event = await track(db)
    await db.reminders.record_reaction(event, DAVE, "✅")
    await fire(db, event.job_id)
    assert (asked, received) == ([event.id], [[CAROL]])


# -- personal reminders -------------------------------------------------------------------------


async def test_remind_once_fires_and_is_marked_sent(db: botdb.Database) -> None:
    received: list[DueReminder] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due)

    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    reminder = await db.reminders.remind(ALICE, "take the cake out", at=at, channel_id=CH)
    assert isinstance(reminder, UserReminder)
    assert (reminder.user_id, reminder.content, reminder.guild_id) == (
        ALICE,
        "take the cake out",
        None,
    )
    assert reminder.due_at == at
    assert reminder.sent_at is None
    job = await db.scheduler.get(reminder.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert (job.kind, job.user_id, job.run_at) == (REMINDER_KIND, ALICE, at)
    assert [r.id for r in await db.reminders.list_for(ALICE)] == [reminder.id]
    await fire(db, reminder.job_id)
    assert [(d.reminder.id, d.reminder.content) for d in received] == [
        (reminder.id, "take the cake out")
    ]
    sent = await db.reminders.get(reminder.id)
    assert sent is not None
    assert sent.sent_at is not None
    assert sent.attempts == 1
    assert await db.reminders.list_for(ALICE) == []  # no longer upcoming


async def test_remind_after_a_delay_in_a_guild(db: botdb.Database) -> None:
    before = dt.datetime.now(dt.UTC)
    reminder = await db.reminders.remind(
        BOB, "vote", delay=dt.timedelta(minutes=5), channel_id=CH, guild_id=G
    )
    assert reminder.guild_id == G
    assert before + dt.timedelta(minutes=5) <= reminder.due_at
    by_seconds = await db.reminders.remind(BOB, "vote", delay=600, channel_id=CH, guild_id=G)
    assert by_seconds.due_at > reminder.due_at
    assert [r.id for r in await db.reminders.list_for(BOB, guild_id=G)] == [
        reminder.id,
        by_seconds.id,
    ]
    assert await db.reminders.list_for(BOB, guild_id=-5) == []


async def test_list_and_cancel_are_per_user(db: botdb.Database) -> None:
    now = dt.datetime.now(dt.UTC)
    await db.reminders.remind(ALICE, "late", at=now + dt.timedelta(days=2), channel_id=CH)
    soon = await db.reminders.remind(ALICE, "soon", at=now + dt.timedelta(hours=1), channel_id=CH)
    bobs = await db.reminders.remind(BOB, "bob's", delay=60, channel_id=CH)
    assert [r.content for r in await db.reminders.list_for(ALICE)] == ["soon", "late"]
    assert [r.content for r in await db.reminders.list_for(ALICE, limit=1)] == ["soon"]
    # Alice cannot cancel (nor see) Bob's reminder: typed error, nothing changed.
    with pytest.raises(errors.NotFoundError, match="of user 101"):
        await db.reminders.cancel(bobs.id, user_id=ALICE)
    assert [r.id for r in await db.reminders.list_for(BOB)] == [bobs.id]
    assert (await db.scheduler.get(bobs.job_id)).state == "scheduled"  # type: ignore[arg-type, union-attr]
    cancelled = await db.reminders.cancel(soon.id, user_id=ALICE)
    assert cancelled.id == soon.id
    assert (await db.scheduler.get(soon.job_id)).state == "cancelled"  # type: ignore[arg-type, union-attr]
    assert [r.content for r in await db.reminders.list_for(ALICE)] == ["late"]
    with pytest.raises(errors.NotFoundError):
        await db.reminders.cancel(soon.id, user_id=ALICE)
    await db.reminders.cancel(bobs.id, user_id=None)  # a moderator
    assert await db.reminders.list_for(BOB) == []


async def test_a_cancelled_reminder_whose_job_still_fires_sends_nothing(
    db: botdb.Database,
) -> None:
    received: list[DueReminder] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due)

    reminder = await db.reminders.remind(ALICE, "x", delay=60, channel_id=CH)
    await db.execute("DELETE FROM user_reminders WHERE id = $1", reminder.id)
    await fire(db, reminder.job_id)
    assert received == []


async def test_a_failing_reminder_keeps_its_error_and_is_retried(
    quick_retry_db: botdb.Database,
) -> None:
    db = quick_retry_db
    attempts: list[int] = []
    seen_by_retry: list[UserReminder | None] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        attempts.append(due.attempt)
        if len(attempts) == 1:
            raise Boom("chat not found")
        seen_by_retry.append(await db.reminders.get(due.reminder.id))

    reminder = await db.reminders.remind(ALICE, "x", delay=60, channel_id=CH)
    await fire(db, reminder.job_id)
    await retry_until(db, lambda: len(attempts) == 2)
    assert attempts == [1, 2]
    [failed] = seen_by_retry
    assert failed is not None
    assert (failed.attempts, failed.last_error, failed.sent_at) == (1, "Boom: chat not found", None)
    sent = await db.reminders.get(reminder.id)
    assert sent is not None
    assert sent.sent_at is not None
    assert (sent.attempts, sent.last_error) == (2, None)


async def test_a_reminder_that_always_fails_ends_dead_with_its_error(
    quick_retry_db: botdb.Database,
) -> None:
    db = quick_retry_db
    attempts: list[int] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        attempts.append(due.attempt)
        raise Boom(f"try {due.attempt}")

    reminder = await db.reminders.remind(ALICE, "x", delay=60, channel_id=CH)
    await fire(db, reminder.job_id)

    async def dead() -> bool:
        await db.scheduler.run_until_idle()
        job = await db.scheduler.get(reminder.job_id)  # type: ignore[arg-type]
        return job is not None and job.state == "dead"

    await wait_until(dead, what="the job to be dead")
    assert attempts == [1, 2, 3, 4, 5]  # max_attempts
    job = await db.scheduler.get(reminder.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.last_error == "Boom: try 5"
    row = await db.reminders.get(reminder.id)
    assert row is not None
    assert (row.attempts, row.last_error, row.sent_at) == (5, "Boom: try 5", None)


async def test_recurring_every_interval_moves_due_at_forward(db: botdb.Database) -> None:
    received: list[DueReminder] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due)

    reminder = await db.reminders.remind(ALICE, "drink", every=dt.timedelta(hours=1), channel_id=CH)
    assert reminder.recurrence_seconds == 3600
    assert reminder.cron is None
    job = await db.scheduler.get(reminder.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.every == dt.timedelta(hours=1)
    fired_at = dt.datetime.now(dt.UTC)
    await fire(db, reminder.job_id)
    assert len(received) == 1
    after = await db.reminders.get(reminder.id)
    assert after is not None
    assert after.sent_at is None
    assert after.due_at > fired_at
    assert [r.id for r in await db.reminders.list_for(ALICE)] == [reminder.id]
    assert (await db.scheduler.get(reminder.job_id)).state == "scheduled"  # type: ignore[arg-type, union-attr]


def test_every_monday_nine_paris_across_the_dst_changes() -> None:
    """9:00 Paris time every Monday: 08:00 UTC in winter, 07:00 UTC in summer."""
    cron = "0 9 * * MON"
    sunday_before_spring = dt.datetime(2027, 3, 22, 10, tzinfo=PARIS)  # Monday after 9:00
    spring = next_cron_time(cron, PARIS, sunday_before_spring)
    assert spring == dt.datetime(2027, 3, 29, 7, tzinfo=dt.UTC)  # DST began on the 28th
    winter = next_cron_time(cron, PARIS, dt.datetime(2027, 10, 26, tzinfo=dt.UTC))
    assert winter == dt.datetime(2027, 11, 1, 8, tzinfo=dt.UTC)  # DST ended on the 31st
    times = [spring]
    for _ in range(3):
        times.append(next_cron_time(cron, PARIS, times[-1]))
    assert all(t.astimezone(PARIS).hour == 9 for t in times)
    assert all(t.astimezone(PARIS).weekday() == 0 for t in times)


async def test_cron_reminder_in_a_time_zone(db: botdb.Database) -> None:
    reminder = await db.reminders.remind(
        ALICE, "weekly sync", cron="0 9 * * MON", tz="Europe/Paris", channel_id=CH
    )
    assert (reminder.cron, reminder.tz, reminder.recurrence_seconds) == (
        "0 9 * * MON",
        "Europe/Paris",
        None,
    )
    local = reminder.due_at.astimezone(PARIS)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    job = await db.scheduler.get(reminder.job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.cron == "0 9 * * MON"
    assert job.run_at == reminder.due_at
    received: list[DueReminder] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due)

    await fire(db, reminder.job_id)
    after = await db.reminders.get(reminder.id)
    assert after is not None
    assert len(received) == 1
    local = after.due_at.astimezone(PARIS)
    assert (local.weekday(), local.hour) == (0, 9)
    assert after.sent_at is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"at": dt.datetime(2030, 1, 1, 9)}, errors.DataError),  # naive
        ({"at": dt.datetime(2001, 1, 1, tzinfo=dt.UTC)}, errors.DataError),  # past
        ({"delay": dt.timedelta(seconds=-1)}, errors.DataError),
        ({"delay": 0}, errors.DataError),
        ({"delay": float("nan")}, errors.DataError),
        ({"delay": "1h"}, errors.ArgumentError),
        ({"every": dt.timedelta(minutes=-10)}, errors.DataError),
        ({"every": dt.timedelta(seconds=1.5)}, errors.DataError),
        ({"cron": "61 9 * * MON"}, errors.DataError),
        ({"cron": "0 9 * * MON", "tz": "Mars/Olympus"}, errors.DataError),
        ({"delay": 60, "tz": "Europe/Paris"}, errors.ArgumentError),
        ({}, errors.ArgumentError),
        ({"delay": 60, "every": dt.timedelta(hours=1)}, errors.ArgumentError),
        ({"delay": 60, "text": ""}, errors.DataError),
        ({"delay": 60, "text": None}, errors.ArgumentError),
        ({"delay": 60, "user_id": -1}, errors.DataError),
        ({"delay": 60, "channel_id": "here"}, errors.ArgumentError),
    ],
)
async def test_bad_reminder_input_is_typed_and_writes_nothing(
    db: botdb.Database, options: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"user_id": ALICE, "text": "x", "channel_id": CH}
    args.update(options)
    with pytest.raises(error):
        await db.reminders.remind(**args)
    assert await counts(db) == EMPTY
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_a_scheduler_error_rolls_the_rows_back(
    db: botdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row and the job are one transaction: when scheduling fails (here: made to fail
    after the rows were inserted), neither the reminder, the event nor the user is left."""
    scheduler = db.scheduler

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise errors.DataError("the scheduler refused the job")

    monkeypatch.setattr(scheduler, "schedule", failing)
    with pytest.raises(errors.DataError, match="refused"):
        await db.reminders.remind(ALICE, "x", delay=60, channel_id=CH, guild_id=G)
    with pytest.raises(errors.DataError, match="refused"):
        await track(db)
    assert await counts(db) == EMPTY
    assert await db.fetchval("SELECT count(*) FROM users") == 0
    assert await db.fetchval("SELECT count(*) FROM guilds") == 0


async def test_reminders_survive_a_restart(make_db: MakeDB) -> None:
    """Scheduled by one process, which exits; sent by the next one on the same database."""
    first = await make_db(create_tables=True)
    await add_member(first, ALICE)
    reminder = await first.reminders.remind(ALICE, "after the restart", delay=60, channel_id=CH)
    event = await first.reminders.track(
        MSG, G, CH, "match", required_reactions=["✅"], interval=dt.timedelta(hours=1)
    )
    await first.close()
    second = await make_db()
    received: list[str] = []

    @second.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due.reminder.content)

    @second.reminders.on_event_reminder
    async def nag(due: EventReminder) -> None:
        received.append(f"{due.event.title}: {due.users}")

    await fire(second, reminder.job_id)
    await fire(second, event.job_id)
    assert received == ["after the restart", "match: [101]"]
    sent = await second.reminders.get(reminder.id)
    assert sent is not None
    assert sent.sent_at is not None


async def test_ensure_jobs_schedules_rows_written_around_the_service(db: botdb.Database) -> None:
    """Rows imported (e.g. by db.import_json from a reminder bot's JSON) have no job: once
    ensure_jobs gave them one, they fire; a second call changes nothing."""
    await add_member(db, ALICE)
    await db.execute(
        "INSERT INTO tracked_events (message_id, guild_id, channel_id, title, interval_minutes,"
        " required_reactions) VALUES ($1, $2, $3, 'imported', 30, $4)",
        MSG + 10,
        G,
        CH,
        '["✅"]',
    )
    await db.execute(
        "INSERT INTO tracked_events (message_id, guild_id, channel_id, title, is_paused,"
        " required_reactions) VALUES ($1, $2, $3, 'paused', $4, $5)",
        MSG + 11,
        G,
        CH,
        True,
        '["✅"]',
    )
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    await db.execute(
        "INSERT INTO user_reminders (channel_id, user_id, content, due_at) VALUES ($1, $2, $3, $4)",
        CH,
        ALICE,
        "imported",
        past,
    )
    cancelled = await track(db)  # a live event whose job someone cancelled by hand
    await db.scheduler.cancel(cancelled.job_id)
    assert await db.reminders.ensure_jobs() == {"events": 2, "reminders": 1}
    assert await db.reminders.ensure_jobs() == {"events": 0, "reminders": 0}
    events = {e.title: e for e in await db.reminders.events_of(G)}
    assert events["paused"].job_id is None
    job = await db.scheduler.get(events["imported"].job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.every == dt.timedelta(minutes=30)
    assert events["Saturday match"].job_id not in (None, cancelled.job_id)
    received: list[str] = []

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        received.append(due.reminder.content)

    assert await db.scheduler.run_until_idle() == 1  # the imported reminder was overdue
    assert received == ["imported"]


async def test_an_imported_reminder_bot_runs_after_ensure_jobs(
    db: botdb.Database, tmp_path: Path
) -> None:
    """A reminder bot's watched_matches.json, imported: its members become candidates, the
    users it recorded as having reacted (emoji unknown: ANY_REACTION) are not reminded."""
    from botdb.importers import ANY_REACTION
    from botdb.services._reminder_sql import ANY_REACTION as counted

    assert counted == ANY_REACTION
    record = {
        "message_id": 1001,
        "channel_id": 555,
        "guild_id": 42,
        "title": "Match 1001",
        "required_reactions": ["✅", "❌", "❓"],
        "users_who_reacted": [1, 2],
        "all_users": [1, 2, 3],
        "interval_minutes": 120,
        "is_paused": False,
    }
    path = tmp_path / "watched_matches.json"
    path.write_text(json.dumps({"1001": record}), encoding="utf-8")
    await db.import_json(path, backup_dir=tmp_path / "backups")
    event = await db.reminders.get_event_by_message(42, 1001)
    assert event is not None
    assert event.job_id is None
    assert await db.reminders.pending_users(event) == [3]
    assert await db.reminders.ensure_jobs() == {"events": 1, "reminders": 0}
    received: list[list[int]] = []

    @db.reminders.on_event_reminder
    async def nag(due: EventReminder) -> None:
        received.append(due.users)

    await fire(db, (await db.reminders.get_event(event)).job_id)
    assert received == [[3]]


# -- the example ---------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reminders.py"


async def test_the_example_runs_a_tracked_event_and_a_reminder(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/reminders.py end to end with a running worker (its delay is 1.5 s)."""
    spec = importlib.util.spec_from_file_location("botdb_example_reminders", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    await module.main(db_url)
    out = capsys.readouterr().out
    assert "not reacted yet: [101, 103]" in out
    assert "Saturday match: please react, <@101> <@103>" in out
    assert "<@101> the match starts in an hour" in out
    assert "log: sent to 2 users" in out
    assert "after cancel: []" in out
