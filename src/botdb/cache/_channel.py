"""What the two database channels share: the message format and the reconnect loop.

A database channel carries a committed transaction's invalidations through the database
itself, so a process hears another's writes even when the writer cannot reach Redis:
PostgreSQL ``NOTIFY`` (:mod:`botdb.cache._notify`) and SQLite's invalidation log
(:mod:`botdb.cache._sqlite_log`). The writer adds its message inside the transaction (the
commit hook's ``before_commit``), so it exists exactly when the transaction commits.

A message is a compact JSON array: ``[origin, flags, key, key, ...]``. ``origin`` names the
writing process (its own messages are skipped); flag 1 says the writer also publishes it on
Redis (with versions and the L2 delete), flag 2 means "everything under this prefix" (no
keys follow: a batch too big to send key by key).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import orjson

__all__ = ["DatabaseChannel", "Hearer", "Message", "RunStatement", "decode", "encode"]

#: Runs one ``$n`` statement inside the transaction being committed.
RunStatement = Callable[[str, Sequence[Any]], Awaitable[Any]]

VIA_REDIS: Final = 1
EVERYTHING: Final = 2
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 2.0


class Hearer(Protocol):
    """The cache, as a database channel sees it."""

    def _db_up(self) -> None: ...

    def _db_down(self) -> None: ...

    def _heard(self, keys: list[str] | None, *, via_redis: bool) -> None: ...


Message = tuple[str, int, list[str] | None]


def encode(
    origin: str, via_redis: bool, keys: Sequence[str], *, limit: int | None, max_parts: int
) -> list[str]:
    """The messages for ``keys``: one, or several each under ``limit`` bytes of UTF-8.

    More than ``max_parts`` messages (or one key alone beyond ``limit``) become one
    "everything" message: cheaper for every listener than thousands of keys.
    """
    flags = VIA_REDIS if via_redis else 0
    head = orjson.dumps([origin, flags])[:-1]  # '["origin",1' : keys follow
    if limit is None:
        return [(head + b"".join(b"," + orjson.dumps(k) for k in keys) + b"]").decode()]
    parts: list[bytes] = []
    current = [head]
    size = len(head) + 1
    for key in keys:
        item = orjson.dumps(key)
        if size + 1 + len(item) > limit:
            if len(current) == 1 or len(parts) + 1 >= max_parts:
                return [orjson.dumps([origin, flags | EVERYTHING]).decode()]
            parts.append(b",".join(current) + b"]")
            current = [head]
            size = len(head) + 1
        current.append(item)
        size += 1 + len(item)
    parts.append(b",".join(current) + b"]")
    return [part.decode() for part in parts]


def decode(payload: str | bytes) -> Message:
    """``(origin, flags, keys or None for everything)``; ValueError if malformed."""
    try:
        message = orjson.loads(payload)
        origin, flags, *keys = message
        if not isinstance(origin, str) or not isinstance(flags, int):
            raise TypeError(origin, flags)
        if any(not isinstance(key, str) for key in keys):
            raise TypeError(keys)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed invalidation message: {payload!r:.200}") from exc
    return origin, flags, None if flags & EVERYTHING else keys


class DatabaseChannel(abc.ABC):
    """One background task that keeps a dedicated connection hearing other processes' writes.

    The connection is opened by ``open_connection`` (given by the Database), never taken
    from the pool: it is held for as long as the Database is open, and a pooled connection is
    reset (``UNLISTEN *``) before its next caller gets it.
    """

    #: How this channel is named in logs.
    kind: str = "database channel"

    def __init__(
        self,
        hearer: Hearer,
        open_connection: Callable[[], Awaitable[Any]],
        *,
        origin: str,
    ) -> None:
        self._hearer = hearer
        self._open = open_connection
        self._origin = origin
        self._log = logging.getLogger("botdb.cache")
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._outage = False
        self.sent = 0
        self.received = 0
        self.hearing = False

    @abc.abstractmethod
    async def send(self, run: RunStatement, keys: list[str], *, via_redis: bool) -> None:
        """Add the invalidation of ``keys`` to the transaction ``run`` runs in."""

    @abc.abstractmethod
    async def _hear(self, conn: Any) -> None:
        """Set up ``conn``, call ``self._up()``, then hear until the link fails (raise)."""

    @abc.abstractmethod
    async def _close_connection(self, conn: Any) -> None: ...

    async def start(self, wait: float) -> None:
        """Start the task; wait up to ``wait`` seconds for the first attempt to listen."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"botdb.cache.{self.kind}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait)

    async def close(self) -> None:
        """Stop the task and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.hearing = False

    def _up(self) -> None:
        self.hearing = True
        self._hearer._db_up()
        self._first_attempt.set()
        if self._outage:
            self._outage = False
            self._log.info("the cache's %s listens again", self.kind)

    def _deliver(self, payload: str | bytes) -> None:
        try:
            origin, flags, keys = decode(payload)
        except ValueError:
            self._log.debug("ignored a malformed message on the %s", self.kind)
            return
        if origin == self._origin:
            return  # this process invalidated these keys itself after its commit
        self.received += 1
        self._hearer._heard(keys, via_redis=bool(flags & VIA_REDIS))

    async def _run(self) -> None:
        delay = _BACKOFF_MIN
        while True:
            conn = None
            try:
                conn = await self._open()
                await self._hear(conn)
            # A reconnect loop outlives any failure of its link (driver errors, timeouts,
            # OSError, the Database's typed errors): each means "not hearing", logged once.
            except Exception as exc:
                if self.hearing:
                    delay = _BACKOFF_MIN
                self.hearing = False
                self._hearer._db_down()
                self._first_attempt.set()
                if not self._outage:
                    self._outage = True
                    self._log.warning(
                        "the cache's %s is down (%s: %s); cached entries live at most the "
                        "degraded TTL until it is back",
                        self.kind,
                        type(exc).__name__,
                        exc,
                    )
            except BaseException:
                self.hearing = False
                raise
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self._close_connection(conn)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
