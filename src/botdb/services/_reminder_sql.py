"""The reminders service's SQL, input checks and row conversions (see ``reminders.py``).

The statements are raw SQL (``$n`` parameters) because every write that schedules a job runs
in one transaction with the scheduler's own insert (``schedule(..., within=conn)``), which
takes the raw API's :class:`~botdb.engine.connection.Connection`. Rows come back as model
instances (:class:`~botdb.models.TrackedEvent`, :class:`~botdb.models.UserReminder`) that are
not attached to any session: plain values, the same types the repositories return.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botdb import errors
from botdb._json_values import dumps
from botdb.models import TrackedEvent, UserReminder
from botdb.scheduler._jobs import first_after, next_fire
from botdb.services._common import (
    check_datetime,
    check_id,
    check_str,
    json_column,
    utc_column,
)

if TYPE_CHECKING:
    from botdb._protocols import ConfiguredDatabase, RemindersDatabase
    from botdb.engine.connection import Connection
    from botdb.scheduler import Job

__all__ = [
    "ANY_REACTION",
    "EVENT_COLUMNS",
    "EVENT_KIND",
    "MAX_CANDIDATES",
    "MAX_DESCRIPTION",
    "MAX_EMOJI",
    "MAX_ERROR",
    "MAX_REACTIONS",
    "MAX_TEXT",
    "MAX_TITLE",
    "REMINDER_COLUMNS",
    "REMINDER_KIND",
    "check_at",
    "check_candidates",
    "check_cron",
    "check_description",
    "check_interval",
    "check_reactions",
    "check_text",
    "check_title",
    "check_tz",
    "check_user",
    "ensure_guild",
    "ensure_user",
    "error_text",
    "event_from_row",
    "event_id_of",
    "json_text",
    "lock_event",
    "next_cron_time",
    "next_run",
    "pending_users_sql",
    "positive_delta",
    "reminder_from_row",
    "schedule_event",
    "utcnow",
]

#: The scheduler kind of a user's reminder.
REMINDER_KIND: Final = "reminder"
#: The scheduler kind of a tracked event's reminder.
EVENT_KIND: Final = "event_reminder"

#: The emoji of a reaction whose emoji is not known (:data:`botdb.importers.ANY_REACTION`: a
#: reminder bot's JSON kept only who reacted): it counts as any required one.
ANY_REACTION: Final = "*"

#: Longest text of a reminder (Discord's message limit is 2000; Telegram's 4096).
MAX_TEXT: Final = 4000
MAX_TITLE: Final = 255
MAX_DESCRIPTION: Final = 4000
MAX_EMOJI: Final = 255
MAX_REACTIONS: Final = 50
#: Longest error message kept in reminder_logs.error_message / user_reminders.last_error.
MAX_ERROR: Final = 2000
#: Most candidates passed to one pending-users query.
MAX_CANDIDATES: Final = 100_000

EVENT_COLUMNS: Final = (
    "id, message_id, guild_id, channel_id, title, description, interval_minutes, is_paused, "
    "last_reminder_at, required_reactions, job_id, created_at, updated_at"
)
REMINDER_COLUMNS: Final = (
    "id, guild_id, channel_id, user_id, content, due_at, recurrence_seconds, sent_at, "
    "claimed_by, claimed_until, attempts, last_error, job_id, cron, tz, created_at, updated_at"
)


# -- input checks (all run before any SQL) ----------------------------------------------------


def event_id_of(event: object) -> int:
    """The id of a :class:`TrackedEvent` or of an id given as an int."""
    if isinstance(event, TrackedEvent):
        return check_id("event.id", event.id)
    return check_id("event", event)


def check_text(value: object) -> str:
    """A reminder's text: 1 to 4000 characters."""
    text = check_str("text", value, MAX_TEXT, nullable=False, min_len=1)
    assert text is not None  # nullable=False
    return text


def check_reactions(value: object) -> list[str]:
    """The required reactions: a non-empty list of emoji (duplicates dropped, order kept)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise errors.ArgumentError(
            f"required_reactions must be a list of emoji, got {type(value).__name__}"
        )
    emoji: list[str] = []
    for item in value:
        checked = check_str("required_reactions[]", item, MAX_EMOJI, nullable=False, min_len=1)
        if checked not in emoji:
            emoji.append(str(checked))
    if not emoji:
        raise errors.DataError("required_reactions must name at least one emoji")
    if len(emoji) > MAX_REACTIONS:
        raise errors.DataError(f"required_reactions holds more than {MAX_REACTIONS} emoji")
    return emoji


def positive_delta(name: str, value: object, *, seconds_ok: bool = False) -> dt.timedelta:
    """A strictly positive timedelta (or a number of seconds when ``seconds_ok``)."""
    if seconds_ok and type(value) in (int, float):
        number = float(value)  # type: ignore[arg-type]  # int or float, checked above
        if not math.isfinite(number):
            raise errors.DataError(f"{name} must be a finite number of seconds")
        value = dt.timedelta(seconds=number)
    if not isinstance(value, dt.timedelta):
        kinds = "a timedelta or a number of seconds" if seconds_ok else "a timedelta"
        raise errors.ArgumentError(f"{name} must be {kinds}, got {type(value).__name__}")
    if value <= dt.timedelta(0):
        raise errors.DataError(f"{name} must be positive, got {value}")
    return value


def check_interval(value: object) -> int:
    """A tracked event's interval as whole minutes (the ``interval_minutes`` column)."""
    if type(value) is int:
        value = dt.timedelta(minutes=value)
    delta = positive_delta("interval", value)
    minutes, rest = divmod(delta, dt.timedelta(minutes=1))
    if rest or minutes < 1:
        raise errors.DataError(f"interval must be a whole number of minutes, got {delta}")
    if minutes > 366 * 24 * 60:
        raise errors.DataError(f"interval must be at most a year, got {delta}")
    return int(minutes)


def check_tz(value: object) -> ZoneInfo:
    """An IANA time zone, by name or as a ZoneInfo."""
    if isinstance(value, ZoneInfo):
        return value
    name = check_str("tz", value, 64, nullable=False, min_len=1)
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.DataError(f"tz={name!r} is not a known IANA time zone") from exc


def check_cron(value: object) -> str:
    """A cron expression croniter accepts (5 fields, or 6 with seconds)."""
    from croniter import croniter

    expression = check_str("cron", value, 128, nullable=False, min_len=1)
    assert expression is not None  # nullable=False
    if not croniter.is_valid(expression):
        raise errors.DataError(f"cron={expression!r} is not a valid cron expression")
    return expression


def next_cron_time(expression: str, zone: ZoneInfo, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` that ``expression`` names, read as wall-clock
    time in ``zone`` (so "0 9 * * MON" stays 9:00 local across a DST change), in UTC: the
    scheduler's own computation, so ``due_at`` and the job's ``run_at`` agree."""
    return next_fire(None, expression, zone.key, after)


def next_run(job: Job, now: dt.datetime) -> dt.datetime:
    """When a recurring job fires next after its run at ``job.run_at`` finished at ``now``:
    the next firing, or the first one after ``now`` when that one was missed (the scheduler's
    ``misfire="once"``, which the reminders use)."""
    every = None if job.every is None else job.every.total_seconds()
    upcoming = next_fire(every, job.cron, job.tz, job.run_at)
    return upcoming if upcoming > now else first_after(every, job.cron, job.tz, job.run_at, now)


def check_candidates(value: object) -> list[int]:
    """User ids to check for a reaction (duplicates dropped)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise errors.ArgumentError(
            f"candidates must be an iterable of user ids, got {type(value).__name__}"
        )
    ids = sorted({check_id("candidates[]", item) for item in value})
    if len(ids) > MAX_CANDIDATES:
        raise errors.DataError(f"at most {MAX_CANDIDATES} candidates per query")
    return ids


def json_text(value: Any) -> str:
    """A JSON column's value as text, for the raw API (both drivers take JSON as text)."""
    return dumps(value, "JSON value").decode()


def error_text(exc: BaseException) -> str:
    """What is kept of a handler's exception: its type and message, shortened."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "")
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def check_description(value: object) -> str | None:
    """A tracked event's optional description: at most 4000 characters."""
    return check_str("description", value, MAX_DESCRIPTION)


def check_title(value: object) -> str:
    """A tracked event's title: 1 to 255 characters."""
    title = check_str("title", value, MAX_TITLE, nullable=False, min_len=1)
    assert title is not None  # nullable=False
    return title


def check_at(value: object, now: dt.datetime) -> dt.datetime:
    """An aware time in the future."""
    at = check_datetime("at", value)
    if at is None:
        raise errors.ArgumentError("at must be a datetime, got None")
    if at <= now:
        raise errors.DataError(f"at={at.isoformat()} is in the past")
    return at


def check_user(value: object) -> int:
    """A user id."""
    return check_id("user_id", value)


# -- the one pending-users query ---------------------------------------------------------------


def pending_users_sql(backend: str, *, with_candidates: bool) -> str:
    """The query of "who has not reacted yet", one statement on either backend.

    ``$1`` is the event id and ``$2`` (with candidates) the user ids to check. It returns one
    row per user who has reacted with none of the event's required emoji, plus one row whose
    ``user_id`` is NULL when there is none (so an event with nobody pending still gives a row,
    and an unknown event gives no row at all). A reaction recorded as :data:`ANY_REACTION`
    (imported without its emoji) counts. Without candidates they are the guild's members
    who have not left and are not bots.
    """
    if backend == "postgresql":
        required = "SELECT jsonb_array_elements_text(e.required_reactions)"
        given = "SELECT DISTINCT unnest($2::bigint[]) AS user_id"
    else:
        required = "SELECT value FROM json_each(e.required_reactions)"
        given = "SELECT DISTINCT CAST(value AS INTEGER) AS user_id FROM json_each($2)"
    not_reacted = (
        "NOT EXISTS (SELECT 1 FROM event_reactions r"
        " WHERE r.event_id = e.id AND r.guild_id = e.guild_id AND r.user_id = {who}"
        f" AND (r.emoji = '{ANY_REACTION}' OR r.emoji IN ({required})))"
    )
    if with_candidates:
        return (
            f"SELECT e.id AS event_id, c.user_id FROM tracked_events e"
            f" LEFT JOIN ({given}) c ON {not_reacted.format(who='c.user_id')}"
            " WHERE e.id = $1 ORDER BY c.user_id"
        )
    return (
        "SELECT e.id AS event_id, m.user_id FROM tracked_events e"
        " LEFT JOIN members m ON m.guild_id = e.guild_id AND m.is_active AND m.left_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id AND u.is_bot)"
        f" AND {not_reacted.format(who='m.user_id')}"
        " WHERE e.id = $1 ORDER BY m.user_id"
    )


# -- rows to model instances --------------------------------------------------------------------


def event_from_row(db: ConfiguredDatabase, row: Any) -> TrackedEvent:
    """A TrackedEvent (not attached to a session) from a raw row of EVENT_COLUMNS."""
    reactions = json_column(db, row["required_reactions"])
    return TrackedEvent(
        id=row["id"],
        message_id=row["message_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        title=row["title"],
        description=row["description"],
        interval_minutes=row["interval_minutes"],
        is_paused=bool(row["is_paused"]),
        last_reminder_at=utc_column(db, row["last_reminder_at"]),
        required_reactions=list(reactions or []),
        job_id=row["job_id"],
        created_at=utc_column(db, row["created_at"]),
        updated_at=utc_column(db, row["updated_at"]),
    )


def reminder_from_row(db: ConfiguredDatabase, row: Any) -> UserReminder:
    """A UserReminder (not attached to a session) from a raw row of REMINDER_COLUMNS."""
    return UserReminder(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        content=row["content"],
        due_at=utc_column(db, row["due_at"]),
        recurrence_seconds=row["recurrence_seconds"],
        sent_at=utc_column(db, row["sent_at"]),
        claimed_by=row["claimed_by"],
        claimed_until=utc_column(db, row["claimed_until"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        job_id=row["job_id"],
        cron=row["cron"],
        tz=row["tz"],
        created_at=utc_column(db, row["created_at"]),
        updated_at=utc_column(db, row["updated_at"]),
    )


# -- statements shared by the service and its runs ------------------------------------------------


def utcnow() -> dt.datetime:
    """Now, aware UTC."""
    return dt.datetime.now(dt.UTC)


async def schedule_event(
    db: RemindersDatabase, conn: Connection, event: TrackedEvent, minutes: int
) -> TrackedEvent:
    """Schedule the event's recurring job in ``conn``'s transaction and link it."""
    job = await db.scheduler.schedule(
        EVENT_KIND,
        every=dt.timedelta(minutes=minutes),
        payload={"event_id": event.id},
        guild_id=event.guild_id,
        within=conn,
    )
    row = await conn.fetchrow(
        f"UPDATE tracked_events SET job_id = $2 WHERE id = $1 RETURNING {EVENT_COLUMNS}",
        event.id,
        job.id,
    )
    return event_from_row(db, row)


async def lock_event(db: ConfiguredDatabase, conn: Connection, eid: int) -> TrackedEvent:
    """The event, locked for this transaction on PostgreSQL (SQLite: the single writer)."""
    lock = " FOR UPDATE" if conn.backend == "postgresql" else ""
    row = await conn.fetchrow(
        f"SELECT {EVENT_COLUMNS} FROM tracked_events WHERE id = $1{lock}", eid
    )
    if row is None:
        raise errors.NotFoundError(f"no tracked event {eid}")
    return event_from_row(db, row)


async def ensure_guild(conn: Connection, gid: int) -> None:
    """A placeholder ``guilds`` row (for the foreign keys); an existing one is left alone."""
    await conn.execute(
        "INSERT INTO guilds (id, platform) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        gid,
        "telegram" if gid < 0 else "discord",
    )


async def ensure_user(conn: Connection, uid: int, gid: int | None) -> None:
    """A placeholder ``users`` row (for the foreign keys); an existing one is left alone."""
    await conn.execute(
        "INSERT INTO users (id, platform) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        uid,
        "telegram" if gid is not None and gid < 0 else "discord",
    )
