"""The reminders service's runs: what happens around the bot's handler when a job fires
(:func:`run_reminder`, :func:`run_event`), what the handler gets (:class:`DueReminder`,
:class:`EventReminder`), and :func:`ensure_jobs` for rows written around the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botdb import errors
from botdb.models import TrackedEvent, UserReminder
from botdb.services import _reminder_sql as sql

if TYPE_CHECKING:
    from botdb.engine.connection import Connection
    from botdb.scheduler import Job
    from botdb.services.reminders import ReminderService

__all__ = [
    "CandidatesFn",
    "DueReminder",
    "EventHandler",
    "EventReminder",
    "ReminderHandler",
    "ensure_jobs",
    "run_event",
    "run_reminder",
]


@dataclass(frozen=True, slots=True)
class DueReminder:
    """What a personal reminder's handler gets: the reminder and the job that fired it.

    ``scheduled_at`` is when this run was due; ``attempt`` counts from 1 (a retry after a
    failure, or after a worker died, has a higher one): handlers that must not send twice
    can key on ``(reminder.id, scheduled_at)``.
    """

    reminder: UserReminder
    job: Job
    scheduled_at: dt.datetime
    attempt: int


@dataclass(frozen=True, slots=True)
class EventReminder:
    """What a tracked event's handler gets: the event and the users to remind (those who
    have reacted with none of its required emoji, by :meth:`ReminderService.pending_users`).

    ``log_id`` is the ``reminder_logs`` row of this run (``pending`` while the handler
    runs); ``manual`` is True for a run asked by :meth:`ReminderService.remind_now`.
    """

    event: TrackedEvent
    users: list[int]
    job: Job
    scheduled_at: dt.datetime
    attempt: int
    log_id: int
    manual: bool


#: Gives the users who should react to an event (None: the guild's members, the default).
CandidatesFn = Callable[[TrackedEvent], Awaitable[Iterable[int] | None]]
ReminderHandler = Callable[[DueReminder], Awaitable[None]]
EventHandler = Callable[[EventReminder], Awaitable[None]]

#: Active tracked events without a live job (none, purged, or finished).
_ORPHAN_EVENTS: Final = (
    "SELECT e.id FROM tracked_events e LEFT JOIN scheduled_jobs j ON j.id = e.job_id"
    " WHERE NOT e.is_paused AND (j.id IS NULL OR j.state IN ('done', 'dead', 'cancelled'))"
    "{where}"
)


async def run_reminder(service: ReminderService, func: ReminderHandler, job: Job) -> None:
    """Run ``func`` for a user's reminder due in ``job``, with the reads and bookkeeping
    around it (see ``ReminderService.on_reminder``)."""
    db = service.db
    rid = job.payload.get("reminder_id")
    if type(rid) is not int:
        raise errors.DataError(f"job {job.id} of kind {sql.REMINDER_KIND!r} has no reminder_id")
    reminder = await service.get(rid)
    if reminder is None or reminder.job_id != job.id or reminder.sent_at is not None:
        return  # cancelled (or replaced) since the job was claimed: nothing to send
    try:
        await func(DueReminder(reminder, job, job.run_at, job.attempts))
    except Exception as exc:
        await db.execute(
            "UPDATE user_reminders SET attempts = attempts + 1, last_error = $2,"
            " updated_at = $3 WHERE id = $1",
            rid,
            sql.error_text(exc),
            sql.utcnow(),
        )
        raise
    now = sql.utcnow()
    if reminder.recurrence_seconds is None and reminder.cron is None:
        await db.execute(
            "UPDATE user_reminders SET sent_at = $2, attempts = attempts + 1,"
            " last_error = NULL, updated_at = $2 WHERE id = $1",
            rid,
            now,
        )
        return
    await db.execute(
        "UPDATE user_reminders SET due_at = $2, attempts = 0, last_error = NULL,"
        " updated_at = $3 WHERE id = $1",
        rid,
        sql.next_run(job, now),
        now,
    )


async def run_event(
    service: ReminderService, func: EventHandler, candidates: CandidatesFn | None, job: Job
) -> None:
    """Run ``func`` for a tracked event's reminder due in ``job``, with the reads, the
    pending-users query and the log row around it (see ``ReminderService.on_event_reminder``)."""
    db = service.db
    eid = job.payload.get("event_id")
    if type(eid) is not int:
        raise errors.DataError(f"job {job.id} of kind {sql.EVENT_KIND!r} has no event_id")
    manual = job.payload.get("manual") is True
    event = await service.get_event_or_none(eid)
    if event is None or (not manual and (event.is_paused or event.job_id != job.id)):
        return  # untracked or paused since, or a job that was replaced: skip
    listed = None if candidates is None else await candidates(event)
    users = await service.pending_users(event, listed)
    if not users:
        return
    log_id = await db.fetchval(
        "INSERT INTO reminder_logs (event_id, guild_id, scheduled_at, status)"
        " VALUES ($1, $2, $3, 'pending') RETURNING id",
        event.id,
        event.guild_id,
        job.run_at,
    )
    try:
        await func(EventReminder(event, users, job, job.run_at, job.attempts, log_id, manual))
    except Exception as exc:
        await db.execute(
            "UPDATE reminder_logs SET status = 'failed', error_message = $2,"
            " updated_at = $3 WHERE id = $1",
            log_id,
            sql.error_text(exc),
            sql.utcnow(),
        )
        raise
    now = sql.utcnow()

    async def done(conn: Connection) -> None:
        await conn.execute(
            "UPDATE reminder_logs SET status = 'sent', sent_at = $2, users_notified = $3,"
            " error_message = NULL, updated_at = $2 WHERE id = $1",
            log_id,
            now,
            len(users),
        )
        await conn.execute(
            "UPDATE tracked_events SET last_reminder_at = $2 WHERE id = $1", event.id, now
        )

    await db.run_in_transaction(done)


async def ensure_jobs(service: ReminderService) -> dict[str, int]:
    """Give the jobs they lack to rows written around the service: every active tracked
    event whose job is missing or finished (imported with ``db.import_json`` from a
    reminder bot's JSON, or a job cancelled by hand), and every unsent reminder that never
    had one. Idempotent; safe beside running workers. Returns how many of each got a job:
    ``{"events": n, "reminders": n}``.

    A reminder due in the past fires at once; a recurring one goes on from its ``due_at``.
    """
    db = service.db
    events = await db.fetch(_ORPHAN_EVENTS.format(where=""))
    scheduled = {"events": 0, "reminders": 0}
    for row in events:
        eid = row["id"]

        async def adopt_event(conn: Connection, eid: int = eid) -> bool:
            lock = " FOR UPDATE OF e" if conn.backend == "postgresql" else ""
            still = await conn.fetchrow(_ORPHAN_EVENTS.format(where=" AND e.id = $1") + lock, eid)
            if still is None:  # resumed, paused or adopted meanwhile
                return False
            event = await sql.lock_event(db, conn, eid)
            await sql.schedule_event(db, conn, event, event.interval_minutes)
            return True

        scheduled["events"] += await db.run_in_transaction(adopt_event)
    reminders = await db.fetch(
        "SELECT id FROM user_reminders WHERE job_id IS NULL AND sent_at IS NULL ORDER BY id"
    )
    for row in reminders:
        rid = row["id"]

        async def adopt_reminder(conn: Connection, rid: int = rid) -> bool:
            lock = " FOR UPDATE" if conn.backend == "postgresql" else ""
            found = await conn.fetchrow(
                f"SELECT {sql.REMINDER_COLUMNS} FROM user_reminders"
                f" WHERE id = $1 AND job_id IS NULL AND sent_at IS NULL{lock}",
                rid,
            )
            if found is None:
                return False
            reminder = sql.reminder_from_row(db, found)
            when: dict[str, Any] = {"at": reminder.due_at}
            if reminder.cron is not None:
                when.update(cron=reminder.cron, tz=reminder.tz)
            elif reminder.recurrence_seconds is not None:
                when["every"] = reminder.recurrence_seconds
            job = await db.scheduler.schedule(
                sql.REMINDER_KIND,
                **when,
                payload={"reminder_id": rid},
                guild_id=reminder.guild_id,
                user_id=reminder.user_id,
                within=conn,
            )
            await conn.execute(
                "UPDATE user_reminders SET job_id = $2, due_at = $3 WHERE id = $1",
                rid,
                job.id,
                job.run_at,
            )
            return True

        scheduled["reminders"] += await db.run_in_transaction(adopt_reminder)
    return scheduled
