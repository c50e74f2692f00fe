"""The worker behind ``db.scheduler.start()``: claim due jobs, run them, settle them, sleep.

The loop, per round: ask for the next due time of the handled kinds (one indexed query); if it
has come, claim a batch (one UPDATE) and start a task per job; otherwise sleep until then or
until woken. While nothing is due, the loop makes no query at all. What wakes it early:

* PostgreSQL: ``LISTEN botdb_jobs`` on a dedicated connection (outside the pool). Scheduling
  statements ``pg_notify`` the job's due time, delivered when their transaction commits; a
  notification later than the planned wake-up is ignored without a query. The connection is
  pinged every :data:`PING_INTERVAL` seconds on itself (not a pool query, not in
  ``db.stats()``) to notice a silently dead link; after a reconnect the worker looks again.
* PostgreSQL behind pgbouncer (``pgbouncer=True``, transaction pooling, where LISTEN is not
  reliable): the worker looks every ``scheduler_poll_interval`` seconds, one query each.
* SQLite: jobs scheduled in this process poke the loop directly. For other processes, a
  dedicated connection reads ``PRAGMA data_version`` every ``scheduler_poll_interval``
  seconds (a counter in SQLite's shared memory, ~7 us, not a query on the pool): only when
  another connection committed does the worker look again. That interval bounds the wake
  latency of a job scheduled *sooner than the planned wake-up* by another process.

Handlers run as tasks (at most ``concurrency`` at once). Their outcomes are written by one
settling task, all those that finished meanwhile in one transaction. The leases of every
running job of this worker are renewed by one UPDATE every third of ``scheduler_lease``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
from typing import Any, Final

from botdb.scheduler._jobs import Job
from botdb.scheduler._runner import Runner, Settle, new_worker_id, utcnow
from botdb.scheduler._sql import CHANNEL

__all__ = ["Worker"]

log = logging.getLogger("botdb.scheduler")

#: Seconds between two pings of the PostgreSQL LISTEN connection.
PING_INTERVAL: Final = 30.0
#: Seconds to wait when due jobs were all taken by other workers (their claims commit soon).
_CONTENDED: Final = 0.05
_RECONNECT_MAX: Final = 30.0


class Worker:
    """One worker loop in this process (see the module docstring)."""

    def __init__(self, runner: Runner, *, concurrency: int) -> None:
        self._runner = runner
        self.id = new_worker_id()
        self.concurrency = concurrency
        # The running handlers' tasks (a job claimed again by this same worker after its
        # lease ran out is a second task, counted apart).
        self._active: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._settle_wanted = asyncio.Event()
        self._listening = asyncio.Event()
        # Epoch seconds of the planned wake-up while sleeping; +inf while working (any poke
        # then makes the loop look again before it sleeps).
        self._planned = math.inf
        #: True while the loop waits for a due time or a wake-up (making no query).
        self.sleeping = False
        self._outcomes: list[Settle] = []
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._settle_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listener = asyncio.create_task(self._listen(), name="botdb-scheduler-listen")
        self._tasks.add(listener)
        # Listen before the first look, so nothing scheduled meanwhile goes unheard.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=10.0)
        self._settle_task = asyncio.create_task(self._settler(), name="botdb-scheduler-settle")
        self._tasks.add(asyncio.create_task(self._renewer(), name="botdb-scheduler-lease"))
        self._loop_task = asyncio.create_task(self._loop(), name="botdb-scheduler")

    def poke(self, run_at: float | None) -> None:
        """Look again now if ``run_at`` (epoch seconds, None: unknown) is before the planned
        wake-up."""
        if run_at is None or run_at < self._planned:
            self._wake.set()

    async def stop(self, *, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        self._slot_free.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        active = list(self._active)
        if active:
            pending = set(active)
            if timeout > 0:
                _done, pending = await asyncio.wait(active, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*active, return_exceptions=True)
        self._settle_wanted.set()
        if self._settle_task is not None:
            self._settle_task.cancel()
            await asyncio.gather(self._settle_task, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            await self._settle_now()
        except Exception as exc:  # the leases run out and other workers take the jobs
            log.warning("writing the last job results failed: %s", exc)

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        runner = self._runner
        failures = 0
        # After sleeping until a due time: claim at once (skipping the look that would only
        # confirm it): True for a lease end, False for a waiting job's due time.
        reached: bool | None = None
        while not self._stopping:
            self._wake.clear()  # a poke from here on makes the sleep below return at once
            free = self.concurrency - len(self._active)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            kinds = runner.handled_kinds()
            try:
                if reached is not None and kinds:
                    jobs = await runner.claim(
                        self.id, min(free, runner.batch), kinds, expired=reached
                    )
                    reached = None
                    if jobs:
                        self._start_all(jobs)
                        continue
                waiting, lease = await runner.next_due(kinds) if kinds else (None, None)
                now = utcnow()
                expired = lease is not None and lease < now
                ready = waiting is not None and waiting <= now
                if expired or ready:
                    mode = None if expired and ready else expired
                    jobs = await runner.claim(self.id, min(free, runner.batch), kinds, expired=mode)
                    self._start_all(jobs)
                    failures = 0
                    if not jobs:  # others claimed them; their transactions end in a moment
                        await self._sleep(_CONTENDED)
                    continue
            except Exception as exc:
                reached = None
                failures += 1
                wait = min(_RECONNECT_MAX, 0.5 * 2 ** min(failures, 6))
                log.warning("scheduler worker: %s; looking again in %.1fs", exc, wait)
                await self._sleep(wait)
                continue
            failures = 0
            if waiting is None and lease is None:
                await self._sleep(None)
                continue
            on_lease = waiting is None or (lease is not None and lease < waiting)
            due = lease if on_lease else waiting
            assert due is not None
            if await self._sleep((due - now).total_seconds(), planned=due.timestamp()):
                reached = on_lease

    async def _sleep(self, seconds: float | None, *, planned: float = math.inf) -> bool:
        """Wait ``seconds`` (None: until woken), or less when poked with a due time before
        ``planned`` (epoch seconds; +inf: any poke). True when the time ran out."""
        self._planned = planned
        self.sleeping = True
        try:
            if seconds is None:
                await self._wake.wait()
            else:
                await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            return True
        finally:
            self.sleeping = False
            self._planned = math.inf
        return False

    def _start_all(self, jobs: list[Job]) -> None:
        for job in jobs:
            task = asyncio.create_task(self._handle(job), name=f"botdb-job-{job.id}")
            self._active.add(task)

    async def _handle(self, job: Job) -> None:
        try:
            outcome = await self._runner.execute(job)
        except asyncio.CancelledError:
            # Stopping: hand the job back unfinished, it runs again (here or elsewhere).
            outcome = Settle(job.id, None, release=True)
        except BaseException:  # a handler's SystemExit etc.: hand the job back, re-raise
            self._finish(Settle(job.id, None, release=True))
            raise
        self._finish(outcome)

    def _finish(self, outcome: Settle) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._active.discard(task)
        self._outcomes.append(outcome)
        self._settle_wanted.set()
        self._slot_free.set()

    # -- settling and leases ------------------------------------------------------------------

    async def _settler(self) -> None:
        failures = 0
        while True:
            await self._settle_wanted.wait()
            self._settle_wanted.clear()
            try:
                await self._settle_now()
                failures = 0
            except Exception as exc:
                failures += 1
                wait = min(_RECONNECT_MAX, 0.5 * 2 ** min(failures, 6))
                log.warning("writing job results failed: %s; again in %.1fs", exc, wait)
                await asyncio.sleep(wait)
                self._settle_wanted.set()

    async def _settle_now(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        try:
            await self._runner.settle(self.id, outcomes)
        except BaseException:
            self._outcomes[:0] = outcomes  # kept for the next try
            raise

    async def _renewer(self) -> None:
        while True:
            await asyncio.sleep(self._runner.lease / 3.0)
            if not self._active and not self._outcomes:
                continue  # nothing held: no query
            try:
                await self._runner.renew(self.id)
            except Exception as exc:
                log.warning("renewing job leases failed: %s", exc)

    # -- wake-ups from elsewhere --------------------------------------------------------------

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await self._runner.open_listener()
            except Exception as exc:
                log.warning("scheduler wake-up connection failed: %s; retry in %.1fs", exc, delay)
                self._listening.set()  # do not hold start() up; the loop still runs
                await asyncio.sleep(delay)
                delay = min(_RECONNECT_MAX, delay * 2)
                continue
            if conn is None:
                self._listening.set()
                if self._runner.polls:  # pgbouncer: look every poll interval instead
                    while True:
                        await asyncio.sleep(self._runner.poll_interval)
                        self.poke(None)
                return  # in-memory SQLite: in-process pokes only
            try:
                if isinstance(conn, sqlite3.Connection):
                    await self._watch_sqlite(conn)
                else:
                    await self._listen_postgres(conn)
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("scheduler wake-up connection lost: %s", exc)
            finally:
                await _close(conn)
            self._listening.set()
            await asyncio.sleep(delay)
            delay = min(_RECONNECT_MAX, delay * 2)

    async def _listen_postgres(self, conn: Any) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await asyncio.wait_for(conn.add_listener(CHANNEL, self._on_notify), 10.0)
        self._listening.set()
        self.poke(None)  # anything scheduled while not listening is found now
        while True:
            try:
                await asyncio.wait_for(lost.wait(), PING_INTERVAL)
            except TimeoutError:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 10.0)
            else:
                return

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            run_at: float | None = float(payload)
        except ValueError:
            run_at = None
        self.poke(run_at)

    async def _watch_sqlite(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 0")
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._listening.set()
        interval = self._runner.poll_interval
        while True:
            await asyncio.sleep(interval)
            now = conn.execute("PRAGMA data_version").fetchone()[0]
            if now != version:
                version = now
                self.poke(None)


async def _close(conn: Any) -> None:
    try:
        if isinstance(conn, sqlite3.Connection):
            conn.close()
        else:
            await asyncio.wait_for(conn.close(), 5.0)
    except Exception:  # already broken: nothing more to release
        with contextlib.suppress(Exception):
            conn.terminate()
