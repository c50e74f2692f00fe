"""``Scheduler``: the public face of ``db.scheduler`` (scheduling, listing, handlers, running)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
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
    check_aware,
    check_delay,
    check_kind,
    check_request,
    job_from_row,
)
from botdb.scheduler._runner import Handler, Runner, Settle, new_worker_id, utcnow, wake_text
from botdb.scheduler._sql import Statements, statements

if TYPE_CHECKING:
    from botdb._protocols import SchedulerDatabase
    from botdb.scheduler._worker import Worker

__all__ = ["Handler", "Scheduler"]

H = TypeVar("H", bound=Handler)

#: Rows per statement of ``schedule_many`` (PostgreSQL arrays / one SQLite JSON document).
_BULK: Final = 5000
_STATES: Final = ("scheduled", "running", "done", "failed", "dead", "cancelled")


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
        self.concurrency = db.settings.scheduler_concurrency
        self._sql: Statements = statements(db.backend)
        self._postgres = db.backend == "postgresql"
        self._handlers: dict[str, Handler] = {}
        self._kinds: set[str] = set()
        self._worker: Worker | None = None
        self._runner = Runner(db, self._handlers, self._poke, open_connection, in_memory=in_memory)

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
            args = (*args, wake_text(row.run_at))
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
                    wake_text(min(row.run_at for row in chunk)),
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
        record = await self._db.fetchrow(query, target, when, now, wake_text(when))
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
        samples = sorted(self._runner.lateness)

        def pick(q: float) -> float | None:
            if not samples:
                return None
            return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000.0, 3)

        return {
            **self._runner.counts,
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
        runner = self._runner
        await runner.next_due(runner.handled_kinds())
        worker = Worker(runner, concurrency=slots)
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
        runner = self._runner
        worker_id = new_worker_id()
        gate = asyncio.Semaphore(slots)
        total = 0

        async def bounded(job: Job) -> Settle:
            async with gate:
                return await runner.execute(job)

        while True:
            kinds = runner.handled_kinds()
            if not kinds:
                return total
            jobs = await runner.claim(worker_id, runner.batch, kinds)
            if not jobs:
                return total
            renew = asyncio.create_task(runner.renew_forever(worker_id))
            try:
                results = await asyncio.gather(*(bounded(job) for job in jobs))
            finally:
                renew.cancel()
                await asyncio.gather(renew, return_exceptions=True)
            await runner.settle(worker_id, results)
            total += len(jobs)

    @property
    def polls(self) -> bool:
        """True when workers poll every ``scheduler_poll_interval`` instead of listening
        (PostgreSQL behind pgbouncer)."""
        return self._runner.polls

    def _poke(self, run_at: datetime | None) -> None:
        if self._worker is not None:
            self._worker.poke(None if run_at is None else run_at.timestamp())


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
