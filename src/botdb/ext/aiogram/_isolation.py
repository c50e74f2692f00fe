"""``SQLEventIsolation``: one key's updates handled one at a time, across processes.

* In the process: an ``asyncio.Lock`` per key, so a process queues its own updates instead
  of polling the database for a lock it holds itself.
* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock`` on a 64-bit hash of the
  key) taken on ONE connection the isolation holds for all keys, so waiting updates occupy no
  pool connection. If the process dies, its session ends and the server drops its locks.
* SQLite (one file shared by several processes): a lease row in ``fsm_locks`` taken by one
  atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE the lease has expired``, renewed by a
  background task while held. A holder that crashed stops renewing, and its lease expires
  after ``lease`` seconds.
* PostgreSQL behind pgbouncer in transaction mode (``pgbouncer=True``): the same lease rows,
  since a session-level advisory lock would be taken on whichever server connection pgbouncer
  lent for that one statement and could be released on another, or never.

Waiters retry with exponential backoff and jitter. Nothing ever waits for a dead holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from aiogram.fsm.storage.base import BaseEventIsolation, StorageKey

from botdb import errors
from botdb.ext.aiogram._keys import advisory_id, key_params, lock_name

if TYPE_CHECKING:
    import botdb
    from botdb.engine.connection import Connection

__all__ = ["SQLEventIsolation"]

_log = logging.getLogger("botdb.ext.aiogram")

_TAKE_LEASE = (
    "INSERT INTO fsm_locks (lock_key, holder, expires_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (lock_key) DO UPDATE SET holder = excluded.holder, "
    "expires_at = excluded.expires_at WHERE fsm_locks.expires_at <= $4 RETURNING holder"
)
_RENEW_LEASES = "UPDATE fsm_locks SET expires_at = $1 WHERE holder = $2"
_DROP_LEASE = "DELETE FROM fsm_locks WHERE lock_key = $1 AND holder = $2"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _LocalLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class SQLEventIsolation(BaseEventIsolation):
    """aiogram event isolation through the database: pass it as ``events_isolation``.

    Made by :meth:`SQLStorage.create_isolation`. aiogram then handles each ``StorageKey``'s
    updates one at a time, in this process and across every process using the database.

    Args:
        db: the connected Database (migrated: SQLite uses the ``fsm_locks`` table).
        lease: SQLite and pgbouncer mode: seconds a lease lasts unless renewed (it is renewed every
            ``lease / 3`` while held); a crashed holder's key is free after at most this.
        retry_initial: first wait (seconds) before trying a busy lock again; doubled after
            each failed try, with jitter.
        retry_max: longest wait between two tries.
        clock: returns the current aware datetime (tests).

    ``close()`` releases the isolation's connection (PostgreSQL) and stops the lease renewal;
    it does not close ``db``.
    """

    def __init__(
        self,
        db: botdb.Database,
        *,
        lease: float = 30.0,
        retry_initial: float = 0.005,
        retry_max: float = 0.2,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        if not lease > 0:
            raise errors.ConfigurationError(f"lease must be positive, got {lease!r}")
        if not 0 < retry_initial <= retry_max:
            raise errors.ConfigurationError("need 0 < retry_initial <= retry_max")
        self.db = db
        self.lease = lease
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.clock = clock
        #: Who holds a lease (SQLite): host, process and a random part for this object.
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(6)}"
        # Advisory locks need a session of their own: not behind pgbouncer (lease rows then).
        self._postgres = db.backend == "postgresql" and not db.settings.pgbouncer
        self._local: dict[str, _LocalLock] = {}
        self._held: set[str] = set()
        # PostgreSQL: the connection holding this process's advisory locks.
        self._conn: Connection | None = None
        self._conn_stack = AsyncExitStack()
        self._conn_lock = asyncio.Lock()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        """Hold the key's lock for the block (aiogram wraps each update's handling in it)."""
        if self._closed:
            raise errors.InterfaceError("the event isolation is closed")
        name = lock_name(key_params(key))
        local = self._local.get(name)
        if local is None:
            local = self._local[name] = _LocalLock()
        local.users += 1
        try:
            async with local.lock:
                await self._acquire(name)
                try:
                    yield None
                finally:
                    await self._release(name)
        finally:
            local.users -= 1
            if local.users == 0:
                del self._local[name]

    async def close(self) -> None:
        """Stop the lease renewal and hand back the isolation's connection. Idempotent."""
        self._closed = True
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        async with self._conn_lock:
            await self._drop_connection()

    # -- acquiring ----------------------------------------------------------------------------

    async def _acquire(self, name: str) -> None:
        delay = self.retry_initial
        while True:
            try:
                taken = await self._try(name)
            except BaseException:
                # Cancelled or failed mid-statement: the lock may have been taken all the
                # same. No other task of this process holds the key (the local lock), so
                # releasing it unconditionally is safe, and leaves no lock behind.
                await self._release(name)
                raise
            if taken:
                break
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter only
            delay = min(delay * 2, self.retry_max)
        self._held.add(name)
        if not self._postgres and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew(), name="botdb-fsm-lease-renewal")

    async def _try(self, name: str) -> bool:
        if self._postgres:
            query = "SELECT pg_try_advisory_lock($1)"
            try:
                return bool(await self._on_connection(query, name))
            except errors.ConnectionLostError:
                return bool(await self._on_connection(query, name))  # on a new connection
        now = self.clock()
        expires = now + dt.timedelta(seconds=self.lease)
        holder = await self.db.fetchval(_TAKE_LEASE, name, self.holder, expires, now)
        return bool(holder == self.holder)

    async def _release(self, name: str) -> None:
        self._held.discard(name)
        if self._postgres:
            await self._unlock(name)
            return
        try:
            await self.db.execute(_DROP_LEASE, name, self.holder)
        except errors.BotDBError as exc:
            # The lease expires by itself; the handler's own outcome stands.
            _log.warning("could not release the FSM lease %s: %s", name, exc)

    async def _unlock(self, name: str) -> None:
        """Release an advisory lock; if that fails, end the session, which frees it."""
        for _ in range(2):  # a cancelled statement's late cancel request may hit the first try
            try:
                await self._on_connection("SELECT pg_advisory_unlock($1)", name)
                return
            except errors.BotDBError as exc:
                failure = exc
        _log.warning(
            "could not release the FSM lock %s (%s): closing its connection, which frees it "
            "and the %d other lock(s) it held",
            name,
            failure,
            len(self._held),
        )
        async with self._conn_lock:
            await self._drop_connection(terminate=True)

    async def _on_connection(self, query: str, name: str) -> object:
        """Run an advisory-lock function on the isolation's own connection (PostgreSQL)."""
        async with self._conn_lock:
            if self._conn is None:
                self._conn = await self._conn_stack.enter_async_context(self.db.acquire())
            try:
                return await self._conn.fetchval(query, advisory_id(name))
            except (errors.ConnectionLostError, errors.InterfaceError):
                # The session is gone and with it every advisory lock it held.
                if self._held:
                    _log.warning(
                        "the FSM lock connection dropped; %d held lock(s) were released",
                        len(self._held),
                    )
                await self._drop_connection(terminate=True)
                raise

    async def _drop_connection(self, *, terminate: bool = False) -> None:
        """Hand the lock connection back (its locks are reset before anyone reuses it), or
        with ``terminate`` close it, ending the session and every lock it holds at once."""
        conn, self._conn = self._conn, None
        if terminate and conn is not None:
            with contextlib.suppress(Exception):  # already closed or broken: the same result
                conn.driver_connection.terminate()
        stack, self._conn_stack = self._conn_stack, AsyncExitStack()
        try:
            await stack.aclose()
        except errors.BotDBError as exc:
            _log.debug("closing the FSM lock connection: %s", exc)

    # -- SQLite leases ------------------------------------------------------------------------

    async def _renew(self) -> None:
        """Extend every lease this isolation holds, every ``lease / 3`` seconds."""
        interval = self.lease / 3
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            expires = self.clock() + dt.timedelta(seconds=self.lease)
            try:
                await self.db.execute(_RENEW_LEASES, expires, self.holder)
            except errors.BotDBError as exc:
                _log.warning("could not renew the FSM leases: %s", exc)
