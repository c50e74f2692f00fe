"""Jobs as values: :class:`Job`, :class:`ScheduleRequest`, their validation and their clocks.

Everything here is pure (no database): checking a request and turning it into a row, reading a
row back into a :class:`Job`, the next firing of a recurring job (interval or cron in a time
zone), the missed-firing policies and the retry backoff.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterError, croniter

from botdb import _json_values
from botdb.errors import SchedulingError

__all__ = [
    "Job",
    "JobState",
    "Misfire",
    "ScheduleRequest",
    "backoff",
    "first_after",
    "next_fire",
]

JobState = Literal["scheduled", "running", "done", "failed", "dead", "cancelled"]
Misfire = Literal["once", "all", "skip"]

#: States in which a job still waits to run (``failed``: a retry is due at ``run_at``).
WAITING: Final = ("scheduled", "failed")
#: States of a job that will never run again (until ``reschedule``).
FINISHED: Final = ("done", "dead", "cancelled")

_KIND_MAX: Final = 64
_KEY_MAX: Final = 255
_CRON_MAX: Final = 255
_ERROR_MAX: Final = 4000


@dataclass(frozen=True, slots=True)
class Job:
    """A scheduled job as stored (a snapshot; :meth:`Scheduler.get` reads it again).

    Attributes:
        id: the job's id (stable; a handler can use it as an idempotency key).
        kind: which handler runs it.
        key: the idempotency key given to ``schedule`` (None when none was given).
        payload: the JSON object given to ``schedule``.
        guild_id: the guild it belongs to, for listing (None when none).
        user_id: the user it belongs to, for listing (None when none).
        run_at: when it is (or was) due, aware UTC. While a handler runs, the firing's due
            time.
        state: ``scheduled`` (waiting), ``running`` (claimed by a worker), ``failed`` (the
            last attempt raised; retried at ``run_at``), ``done``, ``dead`` (attempts
            exhausted, ``last_error`` kept) or ``cancelled``.
        attempts: tries of the current firing so far, this one included while it runs (1 on
            the first run; more after a failure or a worker that died).
        max_attempts: tries before the job is ``dead`` (a recurring job skips to its next
            firing instead).
        last_error: the error of the latest failed attempt (type and message), or None.
        every: the interval of a recurring job, or None.
        cron: the cron expression of a recurring job, or None.
        tz: the time zone ``cron`` is read in (None: UTC).
        misfire: what happens to the firings of a recurring job missed while no worker ran:
            ``once``, ``all`` or ``skip``.
        created_at: when it was scheduled.
        updated_at: when the row last changed.
        finished_at: when it became ``done``, ``dead`` or ``cancelled``.
        locked_by: the worker holding a running job (host:pid:random), else None.
        locked_until: when that worker's lease ends, else None.
    """

    id: int
    kind: str
    key: str | None
    payload: dict[str, Any] = field(hash=False)
    guild_id: int | None
    user_id: int | None
    run_at: datetime
    state: JobState
    attempts: int
    max_attempts: int
    last_error: str | None
    every: timedelta | None
    cron: str | None
    tz: str | None
    misfire: Misfire
    created_at: datetime
    updated_at: datetime = field(compare=False)
    finished_at: datetime | None = None
    locked_by: str | None = field(default=None, compare=False)
    locked_until: datetime | None = field(default=None, compare=False)

    @property
    def recurring(self) -> bool:
        """True for a job with ``every`` or ``cron``."""
        return self.every is not None or self.cron is not None

    @property
    def attempt(self) -> int:
        """The number of the attempt running now (1 on the first run of a firing)."""
        return self.attempts


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRequest:
    """One job for :meth:`Scheduler.schedule_many`; the fields are ``schedule``'s arguments.

    Example:
        >>> await db.scheduler.schedule_many(
        ...     [ScheduleRequest(kind="reminder", delay=60, payload={"n": i}) for i in range(100)]
        ... )
    """

    kind: str
    at: datetime | None = None
    delay: timedelta | float | None = None
    every: timedelta | float | None = None
    cron: str | None = None
    tz: str | ZoneInfo | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    guild_id: int | None = None
    user_id: int | None = None
    misfire: Misfire = "once"
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class Row:
    """A checked request, ready to insert (``payload`` is JSON text)."""

    kind: str
    key: str | None
    payload: str
    guild_id: int | None
    user_id: int | None
    run_at: datetime
    max_attempts: int
    every_seconds: float | None
    cron: str | None
    tz: str | None
    misfire: str


def check_request(request: ScheduleRequest, now: datetime) -> Row:
    """The row of ``request`` scheduled at ``now``; SchedulingError/DataError when invalid."""
    kind = _check_kind(request.kind)
    if request.at is not None and request.delay is not None:
        raise SchedulingError("give at= or delay=, not both")
    if request.every is not None and request.cron is not None:
        raise SchedulingError("give every= or cron=, not both")
    if request.at is None and request.delay is None and request.every is None and not request.cron:
        if request.cron is not None:
            raise SchedulingError("cron= is an empty expression")
        raise SchedulingError("give one of at=, delay=, every= or cron= to say when the job runs")
    start: datetime | None = None
    if request.at is not None:
        start = check_aware(request.at, "at")
    elif request.delay is not None:
        start = now + _seconds(request.delay, "delay", allow_zero=True)
    every: float | None = None
    if request.every is not None:
        every = _seconds(request.every, "every", allow_zero=False).total_seconds()
    tz: str | None = None
    if request.tz is not None:
        if request.cron is None:
            raise SchedulingError("tz= applies to cron= schedules only")
        tz = _check_tz(request.tz)
    cron: str | None = None
    if request.cron is not None:
        cron = _check_cron(request.cron)
    if request.misfire not in get_args(Misfire):
        raise SchedulingError(
            f"misfire={request.misfire!r} is not one of {', '.join(get_args(Misfire))}"
        )
    max_attempts = request.max_attempts
    if type(max_attempts) is not int or max_attempts < 1:
        raise SchedulingError(f"max_attempts={max_attempts!r} must be an int of at least 1")
    key = request.key
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > _KEY_MAX:
            raise SchedulingError(f"key must be a non-empty str of at most {_KEY_MAX} characters")
        _json_values.check_text("key", key)
    guild_id = _check_id(request.guild_id, "guild_id")
    user_id = _check_id(request.user_id, "user_id")
    if not isinstance(request.payload, Mapping):
        raise SchedulingError(
            f"payload must be a mapping (a JSON object), not {type(request.payload).__name__}"
        )
    payload = _json_values.dumps(dict(request.payload), "payload").decode()
    if start is None:  # recurring, first firing computed from now
        run_at = next_fire(every, cron, tz, now)
    elif cron is not None:  # the first cron firing at or after ``start``
        run_at = next_fire(None, cron, tz, start - timedelta(microseconds=1))
    else:
        run_at = start
    return Row(
        kind,
        key,
        payload,
        guild_id,
        user_id,
        run_at,
        max_attempts,
        every,
        cron,
        tz,
        request.misfire,
    )


def check_aware(value: Any, name: str) -> datetime:
    """``value`` as an aware UTC datetime; SchedulingError for a naive one or a non-datetime."""
    if not isinstance(value, datetime):
        raise SchedulingError(f"{name}= must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise SchedulingError(
            f"{name}={value.isoformat()} is a naive datetime: pass an aware one, "
            "e.g. datetime.now(UTC) + timedelta(hours=2)"
        )
    return value.astimezone(UTC)


def check_kind(kind: Any) -> str:
    """``kind`` when it is a valid kind name (a non-empty str of at most 64 characters)."""
    return _check_kind(kind)


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not kind or len(kind) > _KIND_MAX or not kind.isprintable():
        raise SchedulingError(
            f"kind {_json_values.short(kind)} must be a non-empty printable str of at most "
            f"{_KIND_MAX} characters"
        )
    _json_values.check_text("kind", kind)
    return kind


def check_delay(value: Any, name: str) -> timedelta:
    """``value`` (a timedelta or seconds, zero or more) as a timedelta; SchedulingError else."""
    return _seconds(value, name, allow_zero=True)


def _seconds(value: Any, name: str, *, allow_zero: bool) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SchedulingError(f"{name}={value!r} is not a finite number of seconds")
        try:
            delta = timedelta(seconds=value)
        except OverflowError:
            raise SchedulingError(f"{name}={value!r} seconds is out of range") from None
    else:
        raise SchedulingError(
            f"{name}= must be a timedelta or a number of seconds, not {type(value).__name__}"
        )
    if delta < timedelta(0) or (not allow_zero and delta == timedelta(0)):
        bound = "zero or more" if allow_zero else "more than zero"
        raise SchedulingError(f"{name}={value!r} must be {bound}")
    return delta


def _check_tz(tz: Any) -> str:
    if isinstance(tz, ZoneInfo):
        return tz.key
    if not isinstance(tz, str) or not tz or len(tz) > 64:
        raise SchedulingError(f"tz={_json_values.short(tz)} must be a time zone name or ZoneInfo")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SchedulingError(f"tz={tz!r} is not a known time zone (e.g. 'Europe/Paris')") from None
    return tz


def _check_cron(given: Any) -> str:
    if not isinstance(given, str):
        raise SchedulingError(f"cron= must be a str, not {type(given).__name__}")
    expression = " ".join(given.split())
    if not expression or len(expression) > _CRON_MAX:
        raise SchedulingError("cron= must be a non-empty expression of at most 255 characters")
    fields = expression.split(" ")
    # Five fields (minute hour day month weekday) or six with seconds last, as croniter reads.
    if len(fields) not in (5, 6) or not bool(croniter.is_valid(expression)):
        raise SchedulingError(
            f"cron={expression!r} is not a valid cron expression "
            "(five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * mon')"
        )
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)  # fires at all?
    except (CroniterError, ValueError, KeyError) as exc:
        # Valid syntax that never fires (February 30th): croniter gives up looking.
        raise SchedulingError(f"cron={expression!r} never fires: {exc}") from None
    return expression


def _check_id(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not _json_values.INT64_MIN <= value <= _json_values.INT64_MAX:
        raise SchedulingError(f"{name}={_json_values.short(value)} must be a 64-bit int or None")
    return value


def next_fire(every: float | None, cron: str | None, tz: str | None, after: datetime) -> datetime:
    """The first firing strictly after ``after`` (aware) of an interval or a cron schedule.

    Cron is read in wall-clock time of ``tz`` (UTC when None): ``0 9 * * mon`` fires at 9:00
    local time on both sides of a DST change. A wall-clock time that does not exist (skipped
    by a spring-forward change) fires at the same offset past the change (02:30 becomes
    03:30); one that exists twice (fall-back) fires once, at its first occurrence.
    """
    if every is not None:
        return after + timedelta(seconds=every)
    if cron is None:
        raise SchedulingError("a recurring job needs every= or cron=")
    zone = ZoneInfo(tz) if tz else UTC
    local = after.astimezone(zone).replace(tzinfo=None)
    iterator = croniter(cron, local)
    while True:
        wall: datetime = iterator.get_next(datetime)
        candidate = wall.replace(tzinfo=zone).astimezone(UTC)
        if candidate > after:
            return candidate


def first_after(
    every: float | None, cron: str | None, tz: str | None, due: datetime, now: datetime
) -> datetime:
    """The first firing of the schedule whose firing ``due`` is strictly after ``now``."""
    if every is not None:
        if due > now:
            return due
        step = timedelta(seconds=every)
        missed = math.floor((now - due) / step) + 1
        return due + missed * step
    return next_fire(every, cron, tz, max(due, now))


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """The wait before retry number ``attempts`` (1 = after the first failure): ``base``
    doubling each time, at most ``cap``. No jitter: retries spread by their own due times."""
    return timedelta(seconds=min(cap, base * 2.0 ** min(attempts - 1, 60)))


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of a handler's exception, cut to a few kilobytes."""
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3] + "..."


def parse_time(value: Any) -> datetime:
    """A stored time (aware from PostgreSQL, UTC text from SQLite) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def job_from_row(row: Any) -> Job:
    """A :class:`Job` from a ``scheduled_jobs`` row of either backend."""
    payload = row["payload"]
    if isinstance(payload, str | bytes):
        payload = orjson.loads(payload)
    every = row["every_seconds"]
    finished = row["finished_at"]
    return Job(
        id=int(row["id"]),
        kind=row["kind"],
        key=row["key"],
        payload=payload,
        guild_id=row["guild_id"],
        user_id=row["user_id"],
        run_at=parse_time(row["run_at"]),
        state=row["state"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        last_error=row["last_error"],
        every=None if every is None else timedelta(seconds=float(every)),
        cron=row["cron"],
        tz=row["tz"],
        misfire=row["misfire"],
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
        finished_at=None if finished is None else parse_time(finished),
        locked_by=row["locked_by"],
        locked_until=None if row["locked_until"] is None else parse_time(row["locked_until"]),
    )
