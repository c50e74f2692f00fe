"""``Scheduler``: the public face of ``db.scheduler`` (scheduling, listing, handlers, running)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from botdb import _json_values
from botdb.engine.connection import Connection
from botdb.errors import NotFoundError, SchedulingError, UnknownJobKindError
from botdb.scheduler._jobs import (
    Job,
    JobState,
    Misfire,
    Row,
    ScheduleRequest,
    backoff,
    check_aware,
    check_delay,
    check_kind,
    check_request,
    describe_error,
    first_after,
    job_from_row,
    next_fire,
    parse_time,
)
from botdb.scheduler._sql import CHANNEL, Statements, statements

if TYPE_CHECKING:
    from botdb._protocols import SchedulerDatabase
    from botdb.scheduler._worker import Worker

__all__ = ["Handler", "Scheduler"]

log = logging.getLogger("botdb.scheduler")

#: A job's handler: ``async def handler(job: Job) -> None``.
Handler = Callable[[Job], Awaitable[None]]
H = TypeVar("H", bound=Handler)

#: Rows per statement of ``schedule_many`` (PostgreSQL arrays / one SQLite JSON document).
_BULK: Final = 5000
#: Firing lateness samples kept for :meth:`Scheduler.stats`.
_SAMPLES: Final = 10_000
_STATES: Final = ("scheduled", "running", "done", "failed", "dead", "cancelled")


def utcnow() -> datetime:
    """Now, aware UTC (the clock every due time is compared with)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Settle:
    """How a claimed job ends: its new state, due time, attempts and error."""

    job_id: int
    state: JobState | None  # None: one-shot done (batched); "release": handed back unstarted
    run_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    finished_at: datetime | None = None
    release: bool = False


class Scheduler:
    """Durable jobs: schedule, list, cancel and run them; one per Database (``db.scheduler``).

    Jobs live in the ``scheduled_jobs`` table, so they survive restarts and are shared by
    every process on the database. Any process can schedule; processes that called
    :meth:`start` run the jobs of the kinds they have handlers for. Execution is
    at-least-once: a handler may run again for the same firing if its worker died or lost its
    lease, so make it idempotent (``job.id``, ``job.key``, ``job.run_at`` and ``job.attempt``
    identify the firing).

    Example:
        >>> @db.scheduler.handler("reminder")
        ... async def remind(job: Job) -> None:
        ...     await bot.send(job.payload["channel"], job.payload["text"])
        >>> await db.scheduler.start()
        >>> await db.scheduler.schedule("reminder", delay=3600, payload={...}, key="r:42")
    """

    def __init__(
        self,
        db: SchedulerDatabase,
        open_connection: Callable[[], Awaitable[Any]] | None = None,
        *,
        in_memory: bool = False,
    ) -> None:
        self._db = db
        self._open_connection = open_connection
        self._in_memory = in_memory
        settings = db.settings
        self.lease = settings.scheduler_lease
        self.poll_interval = settings.scheduler_poll_interval
        self.batch = settings.scheduler_batch
        self.concurrency = settings.scheduler_concurrency
        self.retry_delay = settings.scheduler_retry_delay
        self.retry_max_delay = settings.scheduler_retry_max_delay
        self._sql: Statements = statements(db.backend)
        self._postgres = db.backend == "postgresql"
        # Behind pgbouncer in transaction mode LISTEN is not reliable: workers poll instead.
        self.polls = self._postgres and settings.pgbouncer
        self._handlers: dict[str, Handler] = {}
        self._kinds: set[str] = set()
        self._worker: Worker | None = None
        self._lateness: deque[float] = deque(maxlen=_SAMPLES)
        self._counts = {"run": 0, "succeeded": 0, "failed": 0, "dead": 0, "skipped": 0}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Scheduler {state} kinds={sorted(self._kinds)}>"

    # -- kinds and handlers -------------------------------------------------------------------

    def register_kind(self, *kinds: str) -> None:
        """Declare kinds this process schedules without handling them here (another process
        runs them). Scheduling a kind neither registered nor handled raises
        :class:`~botdb.errors.UnknownJobKindError`."""
        for kind in kinds:
            self._kinds.add(check_kind(kind))

    def add_handler(self, kind: str, handler: Handler) -> None:
        """Run ``handler(job)`` for the jobs of ``kind`` (replacing an earlier handler).

        The handler is an ``async def``; it succeeds by returning and fails by raising (the
        job is then retried with backoff, and is ``dead`` after ``max_attempts`` tries).
        """
        kind = check_kind(kind)
        if not callable(handler):
            raise SchedulingError(f"the handler of {kind!r} is not callable")
        self._handlers[kind] = handler
        self._kinds.add(kind)
        if self._worker is not None:
            self._worker.poke(None)

    def handler(self, kind: str) -> Callable[[H], H]:
        """Decorator form of :meth:`add_handler`.

        Example:
            >>> @db.scheduler.handler("reminder")
            ... async def remind(job: botdb.scheduler.Job) -> None: ...
        """

        def register(handler: H) -> H:
            self.add_handler(kind, handler)
            return handler

        return register

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this process may schedule (registered or handled)."""
        return frozenset(self._kinds)

    # -- scheduling ---------------------------------------------------------------------------

    async def schedule(
        self,
        kind: str,
        *,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        every: timedelta | float | None = None,
        cron: str | None = None,
        tz: str | ZoneInfo | None = None,
        payload: Mapping[str, Any] | None = None,
        key: str | None = None,
        guild_id: int | None = None,
        user_id: int | None = None,
        misfire: Misfire = "once",
        max_attempts: int = 5,
        within: Connection | None = None,
    ) -> Job:
        """Schedule a job and return it (or, when ``key`` is taken, the job holding it).

        Args:
            kind: which handler runs it; must have a handler or be declared with
                :meth:`register_kind`.
            at: when it runs (an aware datetime).
            delay: or in how long it runs (a timedelta or seconds).
            every: a recurring job: the interval (a timedelta or seconds). The first firing is
                ``at``/``delay`` if given, else one interval from now.
            cron: a recurring job: a cron expression (``"0 9 * * mon"``), read in ``tz``. With
                ``at``/``delay``, the first firing at or after that time.
            tz: the time zone of ``cron`` (a name or ``ZoneInfo``; default UTC).
            payload: a JSON object (a mapping) handed to the handler as ``job.payload``.
            key: an idempotency key: scheduling the same key again returns the existing job
                and writes nothing, whatever that job's state, until :meth:`purge` removes
                it. Use :meth:`reschedule` to move a job by its key.
            guild_id: the guild it belongs to (for :meth:`jobs`).
            user_id: the user it belongs to (for :meth:`jobs`).
            misfire: for a recurring job, what happens to firings missed while no worker ran:
                ``"once"`` runs one of them now, ``"all"`` runs each one, ``"skip"`` runs none
                and waits for the next firing.
            max_attempts: tries of a firing before the job is ``dead`` (recurring jobs skip
                to their next firing instead).
            within: a transaction connection (``async with db.transaction() as conn``): the
                job exists exactly when that transaction commits.

        Raises:
            UnknownJobKindError: ``kind`` has no handler and was not registered.
            SchedulingError: a naive datetime, an invalid cron expression or time zone,
                conflicting or missing times, a bad key, id or max_attempts.
            DataError: ``payload`` is not storable JSON.

        Nothing is written when it raises.
        """
        request = ScheduleRequest(
            kind=kind,
            at=at,
            delay=delay,
            every=every,
            cron=cron,
            tz=tz,
            payload={} if payload is None else payload,
            key=key,
            guild_id=guild_id,
            user_id=user_id,
            misfire=misfire,
            max_attempts=max_attempts,
        )
        now = utcnow()
        row = self._check(request, now)
        args: tuple[Any, ...] = (*_values(row), now)
        if self._postgres:
            args = (*args, _wake_text(row.run_at))
        runner = within if within is not None else self._db
        record = await runner.fetchrow(self._sql.insert, *args)
        if record is None:  # the key is taken: that job is the answer
            record = await runner.fetchrow(self._sql.by_key, row.key)
            if record is None:  # deleted between the two statements (purge): try once more
                record = await runner.fetchrow(self._sql.insert, *args)
        if record is None:
            raise SchedulingError(f"job key {row.key!r} is taken and its job vanished; retry")
        job = job_from_row(record)
        self._poke(job.run_at)
        return job

    async def schedule_many(
        self, requests: Iterable[ScheduleRequest], *, within: Connection | None = None
    ) -> list[Job]:
        """Schedule many jobs in one statement per 5,000, in one transaction; all or none.

        Every request is checked before anything is written. Returns the jobs in the order
        of ``requests``; a request whose key is taken (already stored, or earlier in the same
        call) gets the job holding the key.
        """
        wanted = list(requests)
        for request in wanted:
            if not isinstance(request, ScheduleRequest):
                raise SchedulingError(
                    f"schedule_many takes ScheduleRequest objects, not {type(request).__name__}"
                )
        now = utcnow()
        rows = [self._check(request, now) for request in wanted]
        if not rows:
            return []
        if within is not None:
            inserted = await self._insert_many(within, rows, now)
        else:
            async with self._db.transaction() as conn:
                inserted = await self._insert_many(conn, rows, now)
        self._poke(min(row.run_at for row in rows))
        return inserted

    async def _insert_many(self, conn: Connection, rows: list[Row], now: datetime) -> list[Job]:
        created: list[Job] = []
        for start in range(0, len(rows), _BULK):
            chunk = rows[start : start + _BULK]
            if self._postgres:
                columns = list(zip(*_row_values(chunk), strict=True))
                records = await conn.fetch(
                    self._sql.insert_many,
                    *[list(column) for column in columns],
                    now,
                    _wake_text(min(row.run_at for row in chunk)),
                )
            else:
                # One JSON document of rows (the payload as JSON text, parsed by json()).
                document = [
                    [*values[:5], _sqlite_time(values[5]), *values[6:]]
                    for values in _row_values(chunk)
                ]
                records = await conn.fetch(self._sql.insert_many, document, now)
            created.extend(job_from_row(record) for record in records)
        by_key = {job.key: job for job in created if job.key is not None}
        missing = sorted({row.key for row in rows if row.key is not None} - set(by_key))
        if missing:
            for record in await conn.fetch(self._sql.by_keys, missing):
                job = job_from_row(record)
                by_key[job.key] = job  # type: ignore[index]  # by_keys rows have a key
        unkeyed = iter(job for job in created if job.key is None)
        return [by_key[row.key] if row.key is not None else next(unkeyed) for row in rows]

    def _check(self, request: ScheduleRequest, now: datetime) -> Row:
        kind = check_kind(request.kind)
        if kind not in self._kinds:
            raise UnknownJobKindError(
                f"no handler for job kind {kind!r} in this process: add one with "
                f"@db.scheduler.handler({kind!r}), or declare it with "
                f"db.scheduler.register_kind({kind!r}) where another process runs it"
            )
        return check_request(request, now)

    # -- changing and reading jobs ------------------------------------------------------------

    async def cancel(self, job_id: int | None = None, *, key: str | None = None) -> bool:
        """Cancel a job by id or key; True when a waiting or running job was cancelled.

        A running handler is not interrupted: it finishes, but its result is dropped (a
        recurring job does not fire again). False when no such job exists or it already
        finished.
        """
        if (job_id is None) == (key is None):
            raise SchedulingError("cancel takes a job id or key=, one of them")
        now = utcnow()
        if job_id is not None:
            value = await self._db.fetchval(self._sql.cancel_id, _check_job_id(job_id), now)
        else:
            value = await self._db.fetchval(self._sql.cancel_key, _check_key(key), now)
        return value is not None

    async def reschedule(
        self, job: int | str, *, at: datetime | None = None, delay: timedelta | float | None = None
    ) -> Job:
        """Move a job (by id, or by key when a str) to ``at`` (or ``delay`` from now).

        A finished job (done, dead, cancelled) is scheduled again, with its attempts reset.
        A recurring job's next firing moves; its schedule then goes on from there.

        Raises:
            NotFoundError: no job with that id or key.
            SchedulingError: a naive ``at``, both or neither of ``at``/``delay``, or the job
                is running now (reschedule it once its handler returned).
        """
        if (at is None) == (delay is None):
            raise SchedulingError("reschedule takes at= or delay=, one of them")
        now = utcnow()
        when = check_aware(at, "at") if at is not None else now + check_delay(delay, "delay")
        by_key = isinstance(job, str)
        target: int | str = _check_key(job) if by_key else _check_job_id(job)
        query = self._sql.reschedule_key if by_key else self._sql.reschedule_id
        record = await self._db.fetchrow(query, target, when, now, _wake_text(when))
        if record is None:
            current = await self.get(job)
            if current is None:
                raise NotFoundError(f"no scheduled job with {'key' if by_key else 'id'} {job!r}")
            raise SchedulingError(
                f"job {current.id} is running; reschedule it after its handler returned"
            )
        moved = job_from_row(record)
        self._poke(moved.run_at)
        return moved

    async def get(self, job: int | str) -> Job | None:
        """The job with this id (an int) or key (a str), or None."""
        if isinstance(job, str):
            record = await self._db.fetchrow(self._sql.by_key, _check_key(job))
        else:
            record = await self._db.fetchrow(self._sql.by_id, _check_job_id(job))
        return None if record is None else job_from_row(record)

    async def jobs(
        self,
        *,
        kind: str | None = None,
        guild_id: int | None = None,
        user_id: int | None = None,
        state: JobState | Sequence[JobState] | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs matching every filter given, soonest ``run_at`` first, at most ``limit``.

        ``state`` is one state or a list of them (default: every state).
        """
        where: list[str] = []
        args: list[Any] = []
        if kind is not None:
            args.append(check_kind(kind))
            where.append(f"kind = ${len(args)}")
        for name, value in (("guild_id", guild_id), ("user_id", user_id)):
            if value is not None:
                if type(value) is not int:
                    raise SchedulingError(f"{name} must be an int, not {type(value).__name__}")
                args.append(value)
                where.append(f"{name} = ${len(args)}")
        if state is not None:
            states = [state] if isinstance(state, str) else list(state)
            for one in states:
                if one not in _STATES:
                    raise SchedulingError(f"state={one!r} is not one of {', '.join(_STATES)}")
            where.append(f"state IN ({', '.join(repr(s) for s in states)})")
        if type(limit) is not int or limit < 1:
            raise SchedulingError(f"limit={limit!r} must be a positive int")
        args.append(limit)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        records = await self._db.fetch(
            f"SELECT * FROM scheduled_jobs {clause}ORDER BY run_at, id LIMIT ${len(args)}", *args
        )
        return [job_from_row(record) for record in records]

    async def purge(self, *, older_than: timedelta | float | datetime = timedelta(days=7)) -> int:
        """Delete finished jobs (done, dead, cancelled) that finished before ``older_than``
        ago (or before a datetime); returns how many. Their keys become free again."""
        now = utcnow()
        if isinstance(older_than, datetime):
            cutoff = check_aware(older_than, "older_than")
        else:
            cutoff = now - check_delay(older_than, "older_than")
        status = await self._db.execute(self._sql.purge, cutoff)
        return int(status.rsplit(" ", 1)[-1]) if status else 0

    def stats(self) -> dict[str, Any]:
        """What this process ran: counts (``run``, ``succeeded``, ``failed`` attempts,
        ``dead``, ``skipped`` missed firings) and firing lateness in ms (``p50``, ``p99``,
        ``max``: from a job's ``run_at`` to its handler's start)."""
        samples = sorted(self._lateness)

        def pick(q: float) -> float | None:
            if not samples:
                return None
            return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000.0, 3)

        return {
            **self._counts,
            "lateness_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)},
            "running": self.running,
        }

    # -- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._worker is not None

    async def start(self, *, concurrency: int | None = None) -> None:
        """Run due jobs of the handled kinds in this process, in the background, until
        :meth:`stop` or ``db.close()``. Idempotent.

        While nothing is due the worker makes no query: it sleeps until the next due time and
        is woken early by a sooner job (PostgreSQL ``LISTEN``; on SQLite at once for jobs
        scheduled in this process, within ``scheduler_poll_interval`` for other processes).

        Raises:
            UndefinedTableError: the ``scheduled_jobs`` table is missing: run ``db.migrate()``.
            SchedulingError: ``concurrency`` is not a positive int.
        """
        if self._worker is not None:
            return
        from botdb.scheduler._worker import Worker

        slots = self.concurrency if concurrency is None else concurrency
        if type(slots) is not int or slots < 1:
            raise SchedulingError(f"concurrency={slots!r} must be a positive int")
        # Fails now, not in the background, when the table is missing (no db.migrate() yet)
        # or the database is not reachable.
        await self._next_due(self._handled_kinds())
        worker = Worker(self, concurrency=slots)
        self._worker = worker
        try:
            await worker.start()
        except BaseException:
            self._worker = None
            await worker.stop(timeout=0)
            raise

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the worker: wait up to ``timeout`` seconds for running handlers, hand the
        unfinished ones back (they run again at once elsewhere or at the next start), and
        write what finished. Safe to call when not started."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop(timeout=timeout)

    async def run_until_idle(self, *, concurrency: int | None = None) -> int:
        """Run due jobs of the handled kinds here and now, batch after batch, until none is
        due; returns how many ran. For tests and scripts; needs no :meth:`start`.

        A job retried later, or a recurring job's next firing, is not waited for.
        """
        slots = self.concurrency if concurrency is None else concurrency
        worker_id = new_worker_id()
        gate = asyncio.Semaphore(slots)
        total = 0

        async def bounded(job: Job) -> Settle:
            async with gate:
                return await self._execute(job)

        while True:
            kinds = self._handled_kinds()
            if not kinds:
                return total
            jobs = await self._claim(worker_id, self.batch, kinds)
            if not jobs:
                return total
            renew = asyncio.create_task(self._renew_forever(worker_id))
            try:
                results = await asyncio.gather(*(bounded(job) for job in jobs))
            finally:
                renew.cancel()
                await asyncio.gather(renew, return_exceptions=True)
            await self._settle(worker_id, results)
            total += len(jobs)

    # -- the pieces the worker runs -----------------------------------------------------------

    def _handled_kinds(self) -> list[str]:
        return sorted(self._handlers)

    def _poke(self, run_at: datetime | None) -> None:
        if self._worker is not None:
            self._worker.poke(None if run_at is None else run_at.timestamp())

    async def _claim(
        self, worker_id: str, limit: int, kinds: list[str], *, expired: bool | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs for ``worker_id``: jobs whose lease ran out
        (``expired=True``), waiting jobs now due (``False``), or both, expired first
        (``None``)."""
        now = utcnow()
        jobs: list[Job] = []
        queries = {None: (True, False), True: (True,), False: (False,)}[expired]
        for lease_ended in queries:
            if len(jobs) >= limit:
                break
            records = await self._db.fetch(
                self._sql.claim_expired if lease_ended else self._sql.claim,
                worker_id, now + timedelta(seconds=self.lease), now, limit - len(jobs), kinds,
            )  # fmt: skip
            jobs.extend(job_from_row(record) for record in records)
        jobs.sort(key=lambda job: (job.run_at, job.id))
        return jobs

    async def _next_due(self, kinds: list[str]) -> tuple[datetime | None, datetime | None]:
        """For jobs of ``kinds``: the earliest due time of a waiting job and the earliest
        lease end of a running one (each None when there is none)."""
        row = await self._db.fetchrow(self._sql.next_due, kinds)
        waiting, lease = row["waiting"], row["lease"]
        return (
            None if waiting is None else parse_time(waiting),
            None if lease is None else parse_time(lease),
        )

    async def _renew(self, worker_id: str) -> None:
        now = utcnow()
        await self._db.execute(self._sql.renew, now + timedelta(seconds=self.lease), worker_id, now)

    async def _renew_forever(self, worker_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3.0)
            try:
                await self._renew(worker_id)
            except Exception as exc:  # the next renewal tries again; the lease may run out
                log.warning("renewing job leases of %s failed: %s", worker_id, exc)

    async def _execute(self, job: Job) -> Settle:
        """Run ``job``'s handler (or skip a missed firing) and say how the job ends."""
        now = utcnow()
        every = None if job.every is None else job.every.total_seconds()
        following: datetime | None = None
        if job.attempts > job.max_attempts:
            # Every try so far ended with its worker gone (lease expired): a job that kills
            # or freezes its process is not run again and again.
            return self._failed(job, LeaseExpiredError(job), every)
        if job.recurring:
            upcoming = next_fire(every, job.cron, job.tz, job.run_at)
            missed = upcoming <= now
            if missed and job.misfire == "skip":
                self._counts["skipped"] += 1
                later = first_after(every, job.cron, job.tz, job.run_at, now)
                return Settle(job.id, "scheduled", later, 0, job.last_error)
            if missed and job.misfire == "once":
                following = first_after(every, job.cron, job.tz, job.run_at, now)
            else:
                following = upcoming
        handler = self._handlers.get(job.kind)
        self._lateness.append(max(0.0, (now - job.run_at).total_seconds()))
        self._counts["run"] += 1
        try:
            if handler is None:
                raise SchedulingError(f"no handler for job kind {job.kind!r}")
            result = handler(job)
            if not inspect.isawaitable(result):
                raise SchedulingError(
                    f"the handler of {job.kind!r} returned {type(result).__name__}, not an "
                    "awaitable: make it an async def"
                )
            await result
        except Exception as exc:
            return self._failed(job, exc, every)
        self._counts["succeeded"] += 1
        if following is not None:
            return Settle(job.id, "scheduled", following, 0, job.last_error)
        return Settle(job.id, None)

    def _failed(self, job: Job, exc: Exception, every: float | None) -> Settle:
        now = utcnow()
        error = describe_error(exc)
        self._counts["failed"] += 1
        if job.attempts < job.max_attempts:
            wait = backoff(job.attempts, self.retry_delay, self.retry_max_delay)
            log.warning(
                "job %s (%s) attempt %d/%d failed, retry in %.1fs: %s",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                wait.total_seconds(),
                error,
                exc_info=exc,
            )
            return Settle(job.id, "failed", now + wait, job.attempts, error)
        if job.recurring:
            later = first_after(every, job.cron, job.tz, job.run_at, now)
            log.error(
                "recurring job %s (%s) failed %d times; skipping to its next firing at %s: %s",
                job.id,
                job.kind,
                job.attempts,
                later.isoformat(),
                error,
                exc_info=exc,
            )
            return Settle(job.id, "scheduled", later, 0, error)
        self._counts["dead"] += 1
        log.error(
            "job %s (%s) is dead after %d attempts: %s",
            job.id,
            job.kind,
            job.attempts,
            error,
            exc_info=exc,
        )
        return Settle(job.id, "dead", job.run_at, job.attempts, error, finished_at=now)

    async def _settle(self, worker_id: str, results: Sequence[Settle]) -> None:
        """Write how claimed jobs ended, in one transaction: one statement for the one-shot
        jobs done, one row each for the rest. Jobs whose lease another worker took over
        (``locked_by`` changed) or that were cancelled meanwhile are left alone."""
        if not results:
            return
        now = utcnow()
        done = [result.job_id for result in results if result.state is None and not result.release]
        released = [(r.job_id, worker_id, now) for r in results if r.release]
        rows = [
            (r.job_id, worker_id, r.state, r.run_at, r.attempts, r.last_error, r.finished_at, now)
            for r in results
            if r.state is not None and not r.release
        ]
        # The soonest time a settled job is due again (a retry, a recurring job's next
        # firing, a job handed back): workers sleeping past it must look again.
        again = [r.run_at for r in results if r.state in ("scheduled", "failed") and r.run_at]
        wake = min(again, default=now if released else None)
        async with self._db.transaction() as conn:
            if done:
                await conn.execute(self._sql.done, done, worker_id, now)
            if rows:
                await conn.execute_many(self._sql.settle, rows)
            if released:
                await conn.execute_many(self._sql.release, released)
            if wake is not None and self._postgres:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _wake_text(wake))
        if wake is not None:
            self._poke(wake)

    async def _open_listener(self) -> Any:
        """A dedicated driver connection for the worker's wake-ups, or None (in-memory
        SQLite, or polling behind pgbouncer)."""
        if self._open_connection is None or self._in_memory or self.polls:
            return None
        return await self._open_connection()


class LeaseExpiredError(Exception):
    """The error kept for a job whose last tries all lost their worker."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"attempt {job.attempts} of {job.max_attempts}: the previous tries ended without a "
            "result (the worker died, stalled past its lease, or lost the database)"
        )


def new_worker_id() -> str:
    """A worker's name in ``locked_by``: host, pid and a random part (unique per start)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


def _wake_text(run_at: datetime) -> str:
    return repr(run_at.timestamp())


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _row_values(rows: list[Row]) -> list[tuple[Any, ...]]:
    return [_values(row) for row in rows]


def _values(row: Row) -> tuple[Any, ...]:
    return (
        row.kind,
        row.key,
        row.payload,
        row.guild_id,
        row.user_id,
        row.run_at,
        row.max_attempts,
        row.every_seconds,
        row.cron,
        row.tz,
        row.misfire,
    )


def _check_job_id(job_id: Any) -> int:
    if type(job_id) is not int or not _json_values.INT64_MIN <= job_id <= _json_values.INT64_MAX:
        raise SchedulingError(f"a job id is an int, not {_json_values.short(job_id)}")
    return job_id


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise SchedulingError(f"a job key is a non-empty str, not {_json_values.short(key)}")
    return key
