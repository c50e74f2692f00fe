"""Reminders as a service on the scheduler (``db.reminders``): tracked events and the
reminders users ask for. The bot's code only sends the message.

**Tracked events** (the core of a reminder bot): a message whose members should react
with one of the ``required_reactions``; every ``interval`` the ones who have not reacted yet
are reminded. :meth:`ReminderService.track` writes the ``tracked_events`` row and schedules
its recurring job (kind ``"event_reminder"``) in one transaction; :meth:`~ReminderService.pause`
cancels the job, :meth:`~ReminderService.resume` schedules a new one. Reactions are rows of
``event_reactions``; :meth:`~ReminderService.pending_users` is "who has not reacted yet" as
one query. Each run is a ``reminder_logs`` row: ``pending`` when the handler is called, then
``sent`` (``sent_at``, ``users_notified``) or ``failed`` (``error_message``).

**Personal reminders**: :meth:`~ReminderService.remind` writes a ``user_reminders`` row and
its job (kind ``"reminder"``) in one transaction: once (``at``/``delay``) or recurring
(``every``, or ``cron`` in a time zone). :meth:`~ReminderService.list_for` and
:meth:`~ReminderService.cancel` work per user.

**Handlers**: the bot registers what sends the message, and the service wraps it with the
reads and the bookkeeping::

    @db.reminders.on_reminder
    async def send(due: DueReminder) -> None:
        await bot.get_channel(due.reminder.channel_id).send(due.reminder.content)

    @db.reminders.on_event_reminder
    async def nag(due: EventReminder) -> None:
        mentions = " ".join(f"<@{u}>" for u in due.users)
        await bot.get_channel(due.event.channel_id).send(f"{due.event.title}: {mentions}")

    await db.scheduler.start()

They are the scheduler's handlers of those two kinds (``db.scheduler.handler("reminder")``
with the service's wrapper around the function). A handler that raises marks the run failed
and re-raises, so the scheduler retries it with its backoff and, after ``max_attempts``, keeps
the job dead with the error. Delivery is at least once: a worker that dies after the message
went out but before the bookkeeping sends it again after the job's lease.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload
from zoneinfo import ZoneInfo

from botdb import errors
from botdb.models import TrackedEvent, UserReminder
from botdb.services import _reminder_sql as sql
from botdb.services._common import check_guild_id, check_id, check_int, utc_column
from botdb.services._duration import parse_duration
from botdb.services._reminder_runs import (
    CandidatesFn,
    DueReminder,
    EventHandler,
    EventReminder,
    ReminderHandler,
    ensure_jobs,
    run_event,
    run_reminder,
)
from botdb.services._reminder_sql import EVENT_KIND, REMINDER_KIND

if TYPE_CHECKING:
    from botdb._protocols import RemindersDatabase
    from botdb.engine.connection import Connection
    from botdb.repository import Repository
    from botdb.scheduler import Job

__all__ = [
    "EVENT_KIND",
    "REMINDER_KIND",
    "CandidatesFn",
    "DueReminder",
    "EventReminder",
    "ReminderService",
    "parse_duration",
]


class ReminderService:
    """Tracked events and personal reminders on the scheduler (``db.reminders``).

    Example::

        event = await db.reminders.track(
            message.id, guild.id, channel.id, "Saturday match",
            required_reactions=["✅", "❌"], interval=timedelta(hours=6),
        )
        await db.reminders.record_reaction(event, user.id, "✅")
        await db.reminders.remind(user.id, "stretch", cron="0 9 * * MON",
                                  tz="Europe/Paris", channel_id=dm.id)
    """

    def __init__(self, db: RemindersDatabase) -> None:
        self.db = db
        # A process that only schedules reminders (a worker elsewhere sends them) may.
        db.scheduler.register_kind(sql.REMINDER_KIND, sql.EVENT_KIND)

    @property
    def repo(self) -> Repository[UserReminder]:
        """The ``user_reminders`` repository (what ``db.reminders`` was before the service):
        generic reads and writes that do not touch the scheduler."""
        return self.db.repo(UserReminder)

    @property
    def events(self) -> Repository[TrackedEvent]:
        """The ``tracked_events`` repository (the same as ``db.tracked_events``)."""
        return self.db.repo(TrackedEvent)

    # -- handlers ------------------------------------------------------------------------------

    def on_reminder(self, func: ReminderHandler) -> ReminderHandler:
        """Register the function that sends a user's reminder (a decorator; returns ``func``).

        It becomes the scheduler's handler of kind ``"reminder"``, wrapped: the reminder is
        read first (one cancelled since is skipped), and after the function returns a
        one-shot reminder gets ``sent_at``, a recurring one its next ``due_at``. When the
        function raises, ``attempts`` and ``last_error`` are written and the error re-raised
        for the scheduler to retry.
        """

        async def handle(job: Job) -> None:
            await run_reminder(self, func, job)

        self.db.scheduler.add_handler(sql.REMINDER_KIND, handle)
        return func

    @overload
    def on_event_reminder(self, func: EventHandler) -> EventHandler: ...

    @overload
    def on_event_reminder(
        self, func: None = None, *, candidates: CandidatesFn | None = None
    ) -> Callable[[EventHandler], EventHandler]: ...

    def on_event_reminder(
        self, func: EventHandler | None = None, *, candidates: CandidatesFn | None = None
    ) -> EventHandler | Callable[[EventHandler], EventHandler]:
        """Register the function that reminds a tracked event's users (a decorator).

        It becomes the scheduler's handler of kind ``"event_reminder"``, wrapped: the event is
        read (a paused or untracked one is skipped), the users who have not reacted are found
        in one query (when there are none, nothing is sent and nothing logged), a
        ``reminder_logs`` row is written ``pending``, then marked ``sent`` or ``failed``.

        Args:
            candidates: ``async (event) -> user ids | None``, the users who should react
                (e.g. the members who can see the channel, from the framework's cache);
                None, or returning None, means the guild's members in the ``members`` table
                who have not left and are not bots.
        """

        def register(handler: EventHandler) -> EventHandler:
            async def handle(job: Job) -> None:
                await run_event(self, handler, candidates, job)

            self.db.scheduler.add_handler(sql.EVENT_KIND, handle)
            return handler

        return register if func is None else register(func)

    # -- tracked events ------------------------------------------------------------------------

    async def track(
        self,
        message_id: int,
        guild_id: int,
        channel_id: int,
        title: str,
        *,
        required_reactions: Iterable[str],
        interval: dt.timedelta | int,
        description: str | None = None,
    ) -> TrackedEvent:
        """Track a message's reactions and remind every ``interval`` (a timedelta of whole
        minutes, or an int of minutes); the first reminder is one interval from now.

        The event and its recurring job are written in one transaction.

        Raises:
            ArgumentError: a value of the wrong type.
            DataError: no required reaction, an interval that is not a positive number of
                whole minutes, a title or emoji too long.
            UniqueViolationError: the message is already tracked.
        """
        values = (
            check_id("message_id", message_id),
            check_guild_id(guild_id),
            check_id("channel_id", channel_id),
            sql.check_title(title),
            sql.check_description(description),
            sql.check_interval(interval),
            sql.check_reactions(required_reactions),
        )
        mid, gid, _, _, _, minutes, _ = values

        async def write(conn: Connection) -> TrackedEvent:
            await sql.ensure_guild(conn, gid)
            row = await conn.fetchrow(
                "INSERT INTO tracked_events (message_id, guild_id, channel_id, title,"
                " description, interval_minutes, required_reactions)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {sql.EVENT_COLUMNS}",
                *values[:6],
                sql.json_text(values[6]),
            )
            return await sql.schedule_event(
                self.db, conn, sql.event_from_row(self.db, row), minutes
            )

        try:
            return await self.db.run_in_transaction(write)
        except errors.UniqueViolationError as exc:
            raise errors.UniqueViolationError(
                f"message {mid} of guild {gid} is already tracked"
            ) from exc

    async def get_event(self, event: TrackedEvent | int) -> TrackedEvent:
        """The tracked event, read again.

        Raises:
            NotFoundError: no such event.
        """
        found = await self.get_event_or_none(event)
        if found is None:
            raise errors.NotFoundError(f"no tracked event {sql.event_id_of(event)}")
        return found

    async def get_event_or_none(self, event: TrackedEvent | int) -> TrackedEvent | None:
        """The tracked event, or None."""
        row = await self.db.fetchrow(
            f"SELECT {sql.EVENT_COLUMNS} FROM tracked_events WHERE id = $1",
            sql.event_id_of(event),
        )
        return None if row is None else sql.event_from_row(self.db, row)

    async def get_event_by_message(self, guild_id: int, message_id: int) -> TrackedEvent | None:
        """The event tracking a message of the guild, or None (for a reaction listener)."""
        row = await self.db.fetchrow(
            f"SELECT {sql.EVENT_COLUMNS} FROM tracked_events"
            " WHERE guild_id = $1 AND message_id = $2",
            check_guild_id(guild_id),
            check_id("message_id", message_id),
        )
        return None if row is None else sql.event_from_row(self.db, row)

    async def events_of(self, guild_id: int, *, paused: bool | None = None) -> list[TrackedEvent]:
        """The guild's tracked events (only paused or only active ones with ``paused``),
        oldest first."""
        query = f"SELECT {sql.EVENT_COLUMNS} FROM tracked_events WHERE guild_id = $1"
        args: list[Any] = [check_guild_id(guild_id)]
        if paused is not None:
            if type(paused) is not bool:
                raise errors.ArgumentError(f"paused must be a bool, got {type(paused).__name__}")
            query += " AND is_paused = $2"
            args.append(paused)
        rows = await self.db.fetch(query + " ORDER BY id", *args)
        return [sql.event_from_row(self.db, row) for row in rows]

    async def pause(self, event: TrackedEvent | int) -> TrackedEvent:
        """Stop reminding (the job is cancelled; reactions and logs are kept). Idempotent.

        Raises:
            NotFoundError: no such event.
        """
        eid = sql.event_id_of(event)

        async def write(conn: Connection) -> tuple[TrackedEvent, int | None]:
            old = await sql.lock_event(self.db, conn, eid)
            row = await conn.fetchrow(
                "UPDATE tracked_events SET is_paused = $2, job_id = NULL, updated_at = $3"
                f" WHERE id = $1 RETURNING {sql.EVENT_COLUMNS}",
                eid,
                True,
                sql.utcnow(),
            )
            return sql.event_from_row(self.db, row), old.job_id

        paused, old_job = await self.db.run_in_transaction(write)
        await self._cancel_job(old_job)
        return paused

    async def resume(self, event: TrackedEvent | int) -> TrackedEvent:
        """Remind again, every interval from now (a new job). Idempotent.

        Raises:
            NotFoundError: no such event.
        """
        eid = sql.event_id_of(event)

        async def write(conn: Connection) -> TrackedEvent:
            old = await sql.lock_event(self.db, conn, eid)
            if not old.is_paused and old.job_id is not None:
                return old
            row = await conn.fetchrow(
                "UPDATE tracked_events SET is_paused = $2, updated_at = $3"
                f" WHERE id = $1 RETURNING {sql.EVENT_COLUMNS}",
                eid,
                False,
                sql.utcnow(),
            )
            resumed = sql.event_from_row(self.db, row)
            return await sql.schedule_event(self.db, conn, resumed, resumed.interval_minutes)

        return await self.db.run_in_transaction(write)

    async def set_interval(
        self, event: TrackedEvent | int, interval: dt.timedelta | int
    ) -> TrackedEvent:
        """Change the interval; an active event's next reminder is one new interval from now.

        Raises:
            NotFoundError: no such event.
            DataError: not a positive number of whole minutes.
        """
        eid, minutes = sql.event_id_of(event), sql.check_interval(interval)

        async def write(conn: Connection) -> tuple[TrackedEvent, int | None]:
            old = await sql.lock_event(self.db, conn, eid)
            row = await conn.fetchrow(
                "UPDATE tracked_events SET interval_minutes = $2, updated_at = $3"
                f" WHERE id = $1 RETURNING {sql.EVENT_COLUMNS}",
                eid,
                minutes,
                sql.utcnow(),
            )
            changed = sql.event_from_row(self.db, row)
            if old.is_paused:
                return changed, None
            return await sql.schedule_event(self.db, conn, changed, minutes), old.job_id

        changed, old_job = await self.db.run_in_transaction(write)
        await self._cancel_job(old_job)
        return changed

    async def untrack(self, event: TrackedEvent | int) -> TrackedEvent:
        """Stop tracking: the event, its reactions and its logs are deleted, its job
        cancelled. Returns the event as it was.

        Raises:
            NotFoundError: no such event.
        """
        eid = sql.event_id_of(event)
        row = await self.db.fetchrow(
            f"DELETE FROM tracked_events WHERE id = $1 RETURNING {sql.EVENT_COLUMNS}", eid
        )
        if row is None:
            raise errors.NotFoundError(f"no tracked event {eid}")
        gone = sql.event_from_row(self.db, row)
        await self._cancel_job(gone.job_id)
        return gone

    async def remind_now(self, event: TrackedEvent | int) -> Job:
        """Run a tracked event's reminder now, once (a one-shot job beside the recurring one,
        which keeps its times); also for a paused event. Returns the job.

        Raises:
            NotFoundError: no such event.
        """
        found = await self.get_event(event)
        return await self.db.scheduler.schedule(
            sql.EVENT_KIND,
            at=sql.utcnow(),
            payload={"event_id": found.id, "manual": True},
            guild_id=found.guild_id,
        )

    # -- reactions and the pending-users query ---------------------------------------------------

    async def record_reaction(self, event: TrackedEvent | int, user_id: int, emoji: str) -> bool:
        """Record that ``user_id`` reacted with ``emoji`` (any emoji; only the required ones
        count). Returns False when it was already recorded.

        Raises:
            NotFoundError: no such event.
        """
        eid, uid = sql.event_id_of(event), check_id("user_id", user_id)
        emo = sql.check_reactions([emoji])[0]

        async def write(conn: Connection) -> bool:
            gid = await conn.fetchval("SELECT guild_id FROM tracked_events WHERE id = $1", eid)
            if gid is None:
                raise errors.NotFoundError(f"no tracked event {eid}")
            await sql.ensure_user(conn, uid, gid)
            row = await conn.fetchrow(
                "INSERT INTO event_reactions (event_id, guild_id, user_id, emoji)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING user_id",
                eid,
                gid,
                uid,
                emo,
            )
            return row is not None

        return await self.db.run_in_transaction(write)

    async def remove_reaction(self, event: TrackedEvent | int, user_id: int, emoji: str) -> bool:
        """Forget a reaction (the user took it back). Returns False when none was recorded."""
        eid, uid = sql.event_id_of(event), check_id("user_id", user_id)
        emo = sql.check_reactions([emoji])[0]
        row = await self.db.fetchrow(
            "DELETE FROM event_reactions WHERE event_id = $1 AND user_id = $2 AND emoji = $3"
            " RETURNING user_id",
            eid,
            uid,
            emo,
        )
        return row is not None

    async def reactions(self, event: TrackedEvent | int) -> dict[int, list[str]]:
        """The recorded reactions of an event: user id → emoji (in the order recorded)."""
        rows = await self.db.fetch(
            "SELECT user_id, emoji FROM event_reactions WHERE event_id = $1"
            " ORDER BY user_id, reacted_at, emoji",
            sql.event_id_of(event),
        )
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row["user_id"], []).append(row["emoji"])
        return found

    async def pending_users(
        self, event: TrackedEvent | int, candidates: Iterable[int] | None = None
    ) -> list[int]:
        """Who has not reacted yet, in one query: the ``candidates`` (default: the guild's
        members in the ``members`` table who have not left and are not bots) who have
        reacted with none of the event's required emoji. Sorted by user id.

        Raises:
            NotFoundError: no such event.
        """
        eid = sql.event_id_of(event)
        if candidates is None:
            rows = await self.db.fetch(
                sql.pending_users_sql(self.db.backend, with_candidates=False), eid
            )
        else:
            ids = sql.check_candidates(candidates)
            rows = await self.db.fetch(
                sql.pending_users_sql(self.db.backend, with_candidates=True), eid, ids
            )
        if not rows:
            raise errors.NotFoundError(f"no tracked event {eid}")
        return [row["user_id"] for row in rows if row["user_id"] is not None]

    async def logs(self, event: TrackedEvent | int, *, limit: int = 50) -> list[dict[str, Any]]:
        """The event's reminder runs, newest first: ``id``, ``scheduled_at``, ``sent_at``,
        ``users_notified``, ``status`` (pending, sent, failed) and ``error_message``."""
        rows = await self.db.fetch(
            "SELECT id, scheduled_at, sent_at, users_notified, status, error_message"
            " FROM reminder_logs WHERE event_id = $1 ORDER BY scheduled_at DESC, id DESC"
            " LIMIT $2",
            sql.event_id_of(event),
            check_int("limit", limit, low=1, high=1000),
        )
        return [
            {
                "id": row["id"],
                "scheduled_at": utc_column(self.db, row["scheduled_at"]),
                "sent_at": utc_column(self.db, row["sent_at"]),
                "users_notified": row["users_notified"],
                "status": row["status"],
                "error_message": row["error_message"],
            }
            for row in rows
        ]

    # -- personal reminders ----------------------------------------------------------------------

    async def remind(
        self,
        user_id: int,
        text: str,
        *,
        channel_id: int,
        at: dt.datetime | None = None,
        delay: dt.timedelta | float | None = None,
        every: dt.timedelta | None = None,
        cron: str | None = None,
        tz: str | ZoneInfo | None = None,
        guild_id: int | None = None,
    ) -> UserReminder:
        """Remind ``user_id`` of ``text`` in ``channel_id``: once ``at`` an aware time or
        after ``delay``, or recurring ``every`` interval or on a ``cron`` schedule read in
        ``tz`` (an IANA name, default UTC; "0 9 * * MON" with "Europe/Paris" is every Monday
        at 9:00 Paris time, summer and winter). Exactly one of ``at``/``delay``/``every``/
        ``cron``. ``guild_id`` is None for a DM.

        The row and its job are written in one transaction.

        Raises:
            ArgumentError: a value of the wrong type, none or several of at/delay/every/cron,
                ``tz`` without ``cron``.
            DataError: a naive or past ``at``, a delay or interval that is not positive, an
                invalid cron expression or time zone, an empty or too long text.
        """
        uid, content = check_id("user_id", user_id), sql.check_text(text)
        channel = check_guild_id(channel_id, "channel_id")  # a Telegram chat id may be < 0
        gid = None if guild_id is None else check_guild_id(guild_id)
        given = [
            n
            for n, v in (("at", at), ("delay", delay), ("every", every), ("cron", cron))
            if v is not None
        ]
        if len(given) != 1:
            raise errors.ArgumentError(
                f"give exactly one of at, delay, every, cron (got {', '.join(given) or 'none'})"
            )
        if tz is not None and cron is None:
            raise errors.ArgumentError("tz is only for cron (at must be an aware datetime)")
        now = sql.utcnow()
        recurrence: int | None = None
        zone_name: str | None = None
        when: dict[str, Any]
        if at is not None:
            due = sql.check_at(at, now)
            when = {"at": due}
        elif delay is not None:
            due = now + sql.positive_delta("delay", delay, seconds_ok=True)
            when = {"at": due}
        elif every is not None:
            step = sql.positive_delta("every", every)
            if step % dt.timedelta(seconds=1) or step > dt.timedelta(days=366):
                raise errors.DataError(f"every must be whole seconds, at most a year: {step}")
            recurrence = int(step.total_seconds())
            due, when = now + step, {"every": step}
        else:
            expression = sql.check_cron(cron)
            zone = sql.check_tz("UTC" if tz is None else tz)
            zone_name = zone.key
            due, when = sql.next_cron_time(expression, zone, now), {"cron": expression, "tz": zone}
            cron = expression

        async def write(conn: Connection) -> UserReminder:
            if gid is not None:
                await sql.ensure_guild(conn, gid)
            await sql.ensure_user(conn, uid, gid)
            rid = await conn.fetchval(
                "INSERT INTO user_reminders (guild_id, channel_id, user_id, content, due_at,"
                " recurrence_seconds, cron, tz) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " RETURNING id",
                gid,
                channel,
                uid,
                content,
                due,
                recurrence,
                cron,
                zone_name,
            )
            job = await self.db.scheduler.schedule(
                sql.REMINDER_KIND,
                **when,
                payload={"reminder_id": rid},
                guild_id=gid,
                user_id=uid,
                within=conn,
            )
            row = await conn.fetchrow(
                f"UPDATE user_reminders SET job_id = $2, due_at = $3 WHERE id = $1"
                f" RETURNING {sql.REMINDER_COLUMNS}",
                rid,
                job.id,
                job.run_at,
            )
            return sql.reminder_from_row(self.db, row)

        return await self.db.run_in_transaction(write)

    async def get(self, reminder_id: int) -> UserReminder | None:
        """A reminder by id, or None."""
        row = await self.db.fetchrow(
            f"SELECT {sql.REMINDER_COLUMNS} FROM user_reminders WHERE id = $1",
            check_id("reminder_id", reminder_id),
        )
        return None if row is None else sql.reminder_from_row(self.db, row)

    async def list_for(
        self, user_id: int, *, guild_id: int | None = None, limit: int = 50
    ) -> list[UserReminder]:
        """The user's upcoming reminders (one-shots not sent yet and recurring ones), the
        soonest first; only those set in ``guild_id`` when given."""
        query = (
            f"SELECT {sql.REMINDER_COLUMNS} FROM user_reminders"
            " WHERE user_id = $1 AND sent_at IS NULL"
        )
        args: list[Any] = [
            check_id("user_id", user_id),
            check_int("limit", limit, low=1, high=1000),
        ]
        if guild_id is not None:
            query += " AND guild_id = $3"
            args.append(check_guild_id(guild_id))
        rows = await self.db.fetch(query + " ORDER BY due_at, id LIMIT $2", *args)
        return [sql.reminder_from_row(self.db, row) for row in rows]

    async def cancel(self, reminder_id: int, *, user_id: int | None) -> UserReminder:
        """Cancel a reminder of ``user_id`` (its row is deleted, its job cancelled); returns
        it. ``user_id=None`` cancels whoever's it is (for moderators).

        Raises:
            NotFoundError: no such reminder, or it belongs to another user (a user cannot
                cancel, nor learn of, another user's reminder).
        """
        rid = check_id("reminder_id", reminder_id)
        if user_id is None:
            row = await self.db.fetchrow(
                f"DELETE FROM user_reminders WHERE id = $1 RETURNING {sql.REMINDER_COLUMNS}", rid
            )
        else:
            row = await self.db.fetchrow(
                "DELETE FROM user_reminders WHERE id = $1 AND user_id = $2"
                f" RETURNING {sql.REMINDER_COLUMNS}",
                rid,
                check_id("user_id", user_id),
            )
        if row is None:
            owner = "" if user_id is None else f" of user {user_id}"
            raise errors.NotFoundError(f"no reminder #{rid}{owner}")
        gone = sql.reminder_from_row(self.db, row)
        await self._cancel_job(gone.job_id)
        return gone

    async def _cancel_job(self, job_id: int | None) -> None:
        # After the commit that unlinked it: if this process dies first, the job still fires,
        # finds itself unlinked (event.job_id / reminder.job_id differ) and sends nothing.
        if job_id is not None:
            await self.db.scheduler.cancel(job_id)

    # -- after an import or a restore ---------------------------------------------------------

    async def ensure_jobs(self) -> dict[str, int]:
        """Give the jobs they lack to rows written around the service: every active tracked
        event whose job is missing or finished (imported with ``db.import_json`` from a
        reminder bot's JSON, or a job cancelled by hand), and every unsent reminder that never
        had one. Idempotent; safe beside running workers. Returns how many of each got a job:
        ``{"events": n, "reminders": n}``.

        A reminder due in the past fires at once; a recurring one goes on from its ``due_at``.
        """
        return await ensure_jobs(self)
