"""Read replicas: which reads may leave the primary, and which replica takes them.

A :class:`ReplicaSet` holds one :class:`~botdb.engine.core.EngineCore` (pool, retries) per
replica URL and a background task that checks every replica each ``replica_check_interval``
seconds with one cheap query each: is it reachable, and how far has it replayed the WAL
(``pg_last_wal_replay_lsn()``). The primary's WAL position (``pg_current_wal_lsn()``) is
sampled at each check too; a replica's lag is the age of the oldest sample it has not replayed
yet, so it is bounded by the check interval and is zero for a replica that has caught up,
however long the primary was idle. A replica that is down or lags beyond ``replica_max_lag``
is skipped until a later check finds it healthy again.

What goes to a replica, when the task has not written in the last
``replica_read_your_writes`` seconds and is not inside ``db.primary``:

* ``fetch``/``fetchrow``/``fetchval`` of the raw API outside a transaction, of a statement that
  only reads and takes no lock (no ``FOR UPDATE``/``FOR SHARE``, no advisory lock, no
  ``nextval``);
* read-only ORM sessions (``db.session(readonly=True)``, ``db.run_in_session(work,
  readonly=True)``), which the repositories' and services' reads use: a session on the
  replica's own engine, whose statements are checked before they are sent (a write or a
  locking read raises :class:`~botdb.errors.ReadOnlyError`, see ``botdb.engine.events``).

Everything else, transactions and read-write sessions included, runs on the primary. A replica
read that fails with a botdb error is run on the primary instead (a read-only session: before
its block starts, or, in ``run_in_session``, the whole unit of work again): the bot never sees
a replica's failure.

Read-your-writes is per asyncio task: a write records its time in a context variable, which a
task's children inherit when they are created, but which never flows back to the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from contextvars import ContextVar, Token
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal

from botdb import errors
from botdb.engine.sql import is_read_only

if TYPE_CHECKING:
    from botdb.config import Settings
    from botdb.engine.core import EngineCore

__all__ = ["Replica", "ReplicaSet", "force_primary", "note_write", "reset_primary"]

log = logging.getLogger("botdb.replicas")

ReplicaStatus = Literal["ok", "lagging", "down"]

#: ``time.monotonic()`` of this task's latest write (``-inf``: none yet).
_LAST_WRITE: ContextVar[float] = ContextVar("botdb_last_write", default=-math.inf)
#: True inside ``db.primary``: every read of this task goes to the primary.
_FORCE_PRIMARY: ContextVar[bool] = ContextVar("botdb_force_primary", default=False)

# Positions in the WAL as byte counts. The primary's is sampled at every check; a replica is
# as late as the oldest sample it has not replayed yet. (Its own last replayed commit time is
# no measure: after an idle minute, the first new commit would make it look a minute late.)
_PRIMARY_LSN_SQL: Final = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"
_REPLAY_LSN_SQL: Final = (
    "SELECT CASE WHEN pg_is_in_recovery() "
    "THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END"
)
# Reads that take a lock or change state although they are SELECTs: the primary's.
_PRIMARY_ONLY = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b|ADVISORY|\bpg_notify\b|\bsetval\b"
    r"|\bnextval\b|\btxid_current\b|\bpg_current_xact_id\b",
    re.IGNORECASE,
)

_REPLICA_DOWN: Final = (errors.TransientError, errors.AuthenticationError, errors.InterfaceError)


def note_write() -> None:
    """Record that this task wrote now (its reads go to the primary for a while)."""
    _LAST_WRITE.set(time.monotonic())


def force_primary() -> Token[bool]:
    """Send this task's reads to the primary until :func:`reset_primary` with the token."""
    return _FORCE_PRIMARY.set(True)


def reset_primary(token: Token[bool]) -> None:
    _FORCE_PRIMARY.reset(token)


@lru_cache(maxsize=4096)
def replica_safe(query: str) -> bool:
    """Whether a statement may run on a replica (it only reads and takes no lock)."""
    return is_read_only(query) and _PRIMARY_ONLY.search(query) is None


class Replica:
    """One replica: its engine, its last known state and its read count."""

    def __init__(self, core: EngineCore, name: str) -> None:
        self.core = core
        self.name = name
        self.status: ReplicaStatus = "down"
        self.lag: float | None = None
        self.error: str | None = "not checked yet"
        self.reads = 0
        self.fallbacks = 0
        #: The WAL position it had replayed at the last check (None: unknown or primary).
        self.replayed: int | None = None

    def report(self) -> dict[str, Any]:
        return {
            "url": self.name,
            "status": self.status,
            "lag_s": None if self.lag is None else round(self.lag, 3),
            "error": self.error,
        }


class ReplicaSet:
    """The replicas of one Database (see the module docstring)."""

    def __init__(self, settings: Settings, primary: EngineCore) -> None:
        from botdb.config import Settings as _Settings
        from botdb.engine.core import EngineCore

        self._primary = primary
        #: (monotonic time, primary WAL position) at each check, oldest first.
        self._samples: deque[tuple[float, int]] = deque(maxlen=100_000)
        self._window = settings.replica_read_your_writes
        self._max_lag = settings.replica_max_lag
        self._interval = settings.replica_check_interval
        self.replicas: list[Replica] = []
        base = settings.model_dump()
        for url in settings.replica_urls:
            own = _Settings(
                **(
                    base
                    | {
                        "database_url": url,
                        "replica_urls": (),
                        # A replica that does not answer is skipped at once: the primary is
                        # there; the checker brings it back.
                        "retry_attempts": 1,
                        "pool_min_size": min(1, settings.pool_min_size),
                        "application_name": f"{settings.application_name[:54]} replica",
                    }
                )
            )
            self.replicas.append(Replica(EngineCore(own), own.url.masked()))
        self.primary_reads = 0
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every replica once (none is used before), then keep checking them."""
        await self.check()
        self._task = asyncio.create_task(self._run(), name="botdb-replica-check")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas:
            await replica.core.close()
            replica.status, replica.error = "down", "closed"

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # never let the checker die; the next round tries again
                log.exception("checking the read replicas failed")

    async def check(self) -> None:
        """Check every replica now: reachable, and its replay lag."""
        try:
            position = await self._primary._call_once(
                "fetchval", _PRIMARY_LSN_SQL, (), 5.0, (), True
            )
        except errors.BotDBError as exc:  # the primary's own trouble shows everywhere else
            log.debug("could not sample the primary's WAL position: %s", exc)
        else:
            self._samples.append((time.monotonic(), int(position)))
        await asyncio.gather(*(self._check_one(replica) for replica in self.replicas))
        # Samples every replica has replayed are not needed any more (keep the latest). A
        # replica that is down keeps its last position: its samples stay until it is back.
        replayed = min((r.replayed for r in self.replicas if r.replayed is not None), default=None)
        samples = self._samples
        while replayed is not None and len(samples) > 1 and samples[0][1] <= replayed:
            samples.popleft()

    def _lag(self, replayed: int) -> float:
        """Seconds since the primary first had WAL beyond ``replayed`` (0: caught up)."""
        for taken, position in self._samples:
            if position > replayed:
                return max(0.0, time.monotonic() - taken)
        return 0.0

    async def _check_one(self, replica: Replica) -> None:
        before = replica.status
        try:
            if not replica.core.is_open:
                await replica.core.connect()
            replayed = await replica.core.call(
                "fetchval", _REPLAY_LSN_SQL, (), 5.0, retryable=False
            )
            # Not in recovery (a promoted replica, or a primary): nothing to wait for.
            replica.replayed = None if replayed is None else int(replayed)
            lag = 0.0 if replayed is None else self._lag(int(replayed))
        except errors.BotDBError as exc:
            replica.status, replica.lag = "down", None
            replica.error = f"{type(exc).__name__}: {exc}"
        else:
            replica.lag = lag
            if lag > self._max_lag:
                replica.status = "lagging"
                replica.error = f"replay lag {lag:.1f} s exceeds replica_max_lag={self._max_lag}"
            else:
                replica.status, replica.error = "ok", None
        if replica.status != before:
            level = logging.INFO if replica.status == "ok" else logging.WARNING
            log.log(
                level,
                "replica %s is %s%s",
                replica.name,
                replica.status,
                f" ({replica.error})" if replica.error else "",
            )

    # -- routing ------------------------------------------------------------------------------

    def pick(self, query: str | None) -> Replica | None:
        """The replica a read of ``query`` (None: a read-only session) goes to now, or None
        for the primary."""
        if (
            _FORCE_PRIMARY.get()
            or time.monotonic() - _LAST_WRITE.get() < self._window
            or (query is not None and not replica_safe(query))
        ):
            self.primary_reads += 1
            return None
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._next + step) % count]
            if replica.status == "ok":
                self._next = (self._next + step + 1) % count
                replica.reads += 1
                return replica
        self.primary_reads += 1
        return None

    def failed(self, replica: Replica, exc: errors.BotDBError) -> None:
        """A read on ``replica`` failed: it runs on the primary; a lost or refused connection
        takes the replica out until the checker finds it back."""
        replica.reads -= 1
        replica.fallbacks += 1
        self.primary_reads += 1
        if isinstance(exc, _REPLICA_DOWN):
            replica.status, replica.error = "down", f"{type(exc).__name__}: {exc}"
            log.warning("replica %s is down (%s): reading from the primary", replica.name, exc)

    def stats(self) -> dict[str, Any]:
        """Reads per target: ``{"primary": n, "<replica url>": n, ...}``."""
        reads = {"primary": self.primary_reads}
        for replica in self.replicas:
            reads[replica.name] = reads.get(replica.name, 0) + replica.reads
        return reads

    async def health(self) -> list[dict[str, Any]]:
        """Every replica's state after a fresh check."""
        await self.check()
        return [replica.report() for replica in self.replicas]
