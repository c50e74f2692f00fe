"""A two-level cache that stays correct across shard processes.

L1 is an in-process LRU with TTLs; L2 is Redis (optional). Invalidations delete L1 and L2 and
are published to every process on one Redis channel. Every key carries a version (see
:mod:`botdb.cache._core`) so that a value loaded before an invalidation is never stored after
it, in L1 or in L2. When Redis is down the cache keeps working from L1 with a short TTL and
reconnects by itself; it never raises to the bot because of Redis.

Keys are str that UTF-8 can encode: a key of another type is an ``ArgumentError`` and a key
with a lone surrogate (``"\\ud800"``, e.g. from user input) a ``DataError`` - with or without
Redis, so a bot behaves the same in tests as in production. An L1 hit does not check its key
again (it was checked when it was stored).

Example::

    async with Cache(redis_url="redis://localhost:6379/0", prefix="mybot:") as cache:
        config = await cache.get_or_load(f"guild:{gid}", lambda: load_config(gid))
        batch = cache.batch()
        ...  # in a transaction: UPDATE guild_config ...; batch.invalidate(f"guild:{gid}")
        await batch.commit()  # after COMMIT (batch.discard() after ROLLBACK)

Values must be JSON types (dict with str keys, list, str, int, float, bool, None): they are
serialised with orjson (never pickle), also without Redis, so that a bot behaves the same with
and without L2. Tuples come back from L2 as lists. NaN, Infinity, ints beyond 64 bits, lone
surrogates and nesting beyond 64 levels (``botdb._json_values.MAX_DEPTH``) are refused with
``DataError``: they would not read back as the same value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from time import monotonic
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import orjson

from botdb.cache._channel import DatabaseChannel
from botdb.cache._core import CacheCore, check_key, dumps
from botdb.cache._redis import RedisLink
from botdb.engine.replicas import force_primary
from botdb.errors import ConfigurationError

__all__ = ["Cache", "InvalidationBatch", "cached"]

T = TypeVar("T")
P = ParamSpec("P")


class Cache(CacheCore):
    """In-process L1 + optional Redis L2 with cross-process invalidation.

    Args:
        redis_url: ``redis://…`` for L2 and invalidation across processes; None = L1 only.
        prefix: namespace of every Redis key and of the invalidation channel.
        max_size: L1 holds at most this many entries; the least recently used goes first.
        ttl: default lifetime of an entry, in seconds.
        negative_ttl: lifetime of a cached None.
        degraded_ttl: lifetime cap while invalidations cannot arrive (Redis unreachable).
        socket_timeout: connect and read timeout for Redis, so a dead server costs little.

    A Cache belongs to one event loop and is not thread-safe. Without ``redis_url`` it is a
    plain in-process cache (invalidation then only concerns this process).

    Raises:
        ConfigurationError: a size, TTL or URL is invalid.
    """

    async def start(self) -> None:
        """Connect to Redis (if configured) and start the invalidation listener.

        Never raises because Redis is down: the cache then runs on L1 with ``degraded_ttl``
        and keeps reconnecting in the background.
        """
        if self._redis_url is None or self._link is not None:
            return
        link = RedisLink(
            self._redis_url,
            self._prefix,
            socket_timeout=self._socket_timeout,
            origin=self._origin,
        )
        self._link = link
        self._first_attempt.clear()
        try:
            await link.ping()
        except link.errors as exc:
            self._mark_down(exc)
        else:
            self._mark_up()
        self._listener = asyncio.create_task(self._listen(link), name="botdb.cache.listener")
        # Wait (briefly) for the subscription, so invalidations published from now on arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self._socket_timeout * 4)

    async def listen_to_database(
        self,
        backend: str,
        open_connection: Callable[[], Awaitable[Any]],
        *,
        execute: Callable[..., Awaitable[Any]] | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        """Carry invalidations through the database too, so that every process hears every
        committed write even when the writer cannot reach Redis (see ``docs/cache.md``).

        Transactions with keys to invalidate then add a message to the database inside the
        transaction (``NOTIFY`` on PostgreSQL, a row in the ``botdb_invalidations`` log on
        SQLite) when this process cannot publish them on Redis; this process hears the
        others' on a dedicated connection that ``open_connection()`` opens (an asyncpg
        connection, or a ``sqlite3.Connection`` in autocommit mode), reconnecting with
        backoff. :class:`botdb.Database` calls it.

        Args:
            backend: ``"postgresql"`` or ``"sqlite"`` (a file several processes share).
            open_connection: opens the dedicated connection; never a pooled one.
            execute: ``execute(query, *args)`` in autocommit (``db.execute``): sends what
                could not go in a transaction (Redis failed after the commit, or
                :meth:`invalidate` called without one).
            poll_interval: SQLite: seconds between two polls of the log.
        """
        if self._channel is not None:
            return
        channel: DatabaseChannel
        if backend == "postgresql":
            from botdb.cache._notify import PostgresChannel

            channel = PostgresChannel(
                self,
                open_connection,
                origin=self._origin,
                prefix=self._prefix,
                timeout=max(self._socket_timeout, 2.0),
            )
        elif backend == "sqlite":
            from botdb.cache._sqlite_log import SqliteLogChannel

            if not poll_interval > 0:
                raise ConfigurationError(f"poll_interval must be > 0, got {poll_interval}")
            channel = SqliteLogChannel(
                self, open_connection, origin=self._origin, poll_interval=poll_interval
            )
        else:
            raise ConfigurationError(f"no database channel for backend {backend!r}")
        self._channel = channel
        self._execute = execute
        self._db_hearing = False
        await channel.start(wait=max(self._socket_timeout * 4, 2.0))

    async def close(self) -> None:
        """Finish pending publications, stop the listeners and loads, close the client."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
            self._db_hearing = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        stopping = [*self._flights.values()]
        if self._listener is not None:
            stopping.append(self._listener)
            self._listener = None
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        link, self._link = self._link, None
        self._listening = False
        if link is not None:
            with contextlib.suppress(*link.errors):
                await link.aclose()

    async def __aenter__(self) -> Cache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------- reads

    def peek(self, key: str, default: Any = None) -> Any:
        """Return the L1 value for ``key`` (synchronous, never touches Redis), or ``default``.

        A cached None is returned as None; use :meth:`get_or_load` to tell the two apart.
        """
        data = self._data
        try:
            entry = data.get(key)
        except TypeError:  # an unhashable key: free when nothing is raised (zero-cost try)
            check_key(key)
            raise
        if entry is not None and entry[1] > monotonic():
            data.move_to_end(key)
            self._hits += 1
            return entry[0]
        self._misses += 1
        return default

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key`` from L1, else from L2 (filling L1), else ``default``.

        An L1 hit does no I/O, takes no lock and allocates nothing but its coroutine.
        """
        data = self._data
        try:
            entry = data.get(key)
        except TypeError:  # an unhashable key: free when nothing is raised (zero-cost try)
            check_key(key)
            raise
        if entry is not None and entry[1] > monotonic():
            data.move_to_end(key)
            self._hits += 1
            return entry[0]
        return await self._get_slow(key, default)

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        cache_none: bool = True,
    ) -> T:
        """Return the cached value for ``key``, or load it once and cache it.

        Concurrent misses for one key in one process share one call of ``loader``; if it
        raises, every waiter gets the exception and nothing is cached. A None result is cached
        for ``negative_ttl`` unless ``cache_none`` is False.

        Raises:
            DataError: the loader returned a value that is not JSON-serialisable.
        """
        data = self._data
        try:
            entry = data.get(key)
        except TypeError:  # an unhashable key: free when nothing is raised (zero-cost try)
            check_key(key)
            raise
        if entry is not None and entry[1] > monotonic():
            data.move_to_end(key)
            self._hits += 1
            value: T = entry[0]
            return value
        check_key(key)
        self._misses += 1
        task = self._flights.get(key)
        if task is None:
            task = asyncio.create_task(self._fill(key, loader, ttl, cache_none))
            self._flights[key] = task
            task.add_done_callback(functools.partial(self._flight_done, key))
        # shield: one waiter being cancelled must not cancel the load the others wait for.
        loaded: T = await asyncio.shield(task)
        return loaded

    async def _get_slow(self, key: str, default: Any) -> Any:
        check_key(key)
        self._misses += 1
        link = self._link
        if link is None or not self._available:
            return default
        epoch = self._epoch
        self._begin(key)
        try:
            try:
                blob, version = await link.fetch(key)
            except link.errors as exc:
                self._mark_down(exc)
                return default
            if blob is None:
                return default
            try:
                value = orjson.loads(blob)
            except orjson.JSONDecodeError:
                return default
            self._l2_hits += 1
            self._store(key, value, version, epoch, self._life(value, None))
            return value
        finally:
            self._end(key)

    async def _fill(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        ttl: float | None,
        cache_none: bool,
    ) -> Any:
        # A value kept for the cache's TTL is read from the primary, never from a read
        # replica that may not have replayed the write whose invalidation caused this load.
        # (This runs in a task of its own: the setting ends with it.)
        force_primary()
        epoch = self._epoch
        self._begin(key)
        try:
            link = self._link if self._available else None
            version = 0  # read BEFORE loading: a newer invalidation makes this fill stale
            if link is not None:
                try:
                    blob, version = await link.fetch(key)
                except link.errors as exc:
                    self._mark_down(exc)
                    link = None
                else:
                    if blob is not None:
                        with contextlib.suppress(orjson.JSONDecodeError):
                            value = orjson.loads(blob)
                            self._l2_hits += 1
                            self._store(key, value, version, epoch, self._life(value, ttl))
                            return value
            self._loads += 1
            value = await loader()
            if value is None and not cache_none:
                return None
            blob = dumps(value)
            life = self._life(value, ttl)
            self._store(key, value, version, epoch, life)
            if link is not None and self._available:
                try:
                    await link.store_if_version(key, blob, version, life)
                except link.errors as exc:
                    self._mark_down(exc)
            return value
        finally:
            self._end(key)

    def _flight_done(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters re-raise it; no "never retrieved" log

    # ----------------------------------------------------------------- writes

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` in L1 and L2 (a None is stored for ``negative_ttl``).

        Raises:
            DataError: ``value`` is not a JSON value (see the module's docstring), or the key
                holds a lone surrogate.
            ArgumentError: the key is not a str.
        """
        check_key(key)
        blob = dumps(value)
        life = self._life(value, ttl)
        epoch = self._epoch
        self._begin(key)
        try:
            version = 0
            link = self._link if self._available else None
            if link is not None:
                try:
                    version = await link.store_return_version(key, blob, life)
                except link.errors as exc:
                    self._mark_down(exc)
            self._store(key, value, version, epoch, life)
        finally:
            self._end(key)

    async def invalidate(self, *keys: str) -> None:
        """Drop ``keys`` here, in L2 and in every other process. Call it after COMMIT.

        One Redis round trip. If Redis is down the keys are dropped here and published when it
        is back; nothing is raised because of Redis.

        Raises:
            ArgumentError, DataError: a key is not a str, or holds a lone surrogate (checked
                before anything is dropped).
        """
        for key in keys:
            check_key(key)
        await self._invalidate(list(dict.fromkeys(keys)), notified=False)

    async def _invalidate(self, unique: list[str], *, notified: bool) -> None:
        if not unique:
            return
        self._drop_local(unique)
        if self._redis_url is None and (notified or self._channel is None):
            return
        # Run as a kept task and shield it: a cancelled caller must not lose an invalidation
        # for data that is already committed.
        task = asyncio.create_task(self._publish_or_notify(unique, notified=notified))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    def batch(self) -> InvalidationBatch:
        """Return a batch that collects invalidations until :meth:`InvalidationBatch.commit`."""
        return InvalidationBatch(self)

    def clear(self) -> None:
        """Drop every L1 entry of this process (L2 and other processes are untouched)."""
        self._data.clear()
        self._epoch += 1

    def stats(self) -> dict[str, int | bool]:
        """Counters since construction, and the state of the Redis connection."""
        return {
            "hits": self._hits,
            "misses": self._misses,
            "loads": self._loads,
            "l2_hits": self._l2_hits,
            "invalidations_sent": self._sent,
            "invalidations_received": self._received,
            "redis_available": self._available is True,
            "listening": self._listening,
            "size": len(self._data),
            "pending_invalidations": len(self._pending),
            "database_channel_listening": self._db_hearing is True,
        }

    # ----------------------------------------------------------------- L1 bookkeeping


class InvalidationBatch:
    """Invalidations collected during a transaction: published on commit, dropped on rollback.

    Example::

        batch = cache.batch()
        batch.invalidate(f"guild:{gid}")     # nothing happens yet
        await batch.commit()                 # after COMMIT: one Redis round trip
        # or batch.discard() after ROLLBACK
    """

    __slots__ = ("_cache", "_keys", "_notified")

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._keys: dict[str, None] = {}
        self._notified = False

    @property
    def keys(self) -> list[str]:
        """The keys collected so far, in first-seen order."""
        return list(self._keys)

    def invalidate(self, *keys: str) -> None:
        """Collect ``keys``; nothing is dropped or published until :meth:`commit`.

        Raises:
            ArgumentError, DataError: a key is not a str or holds a lone surrogate (checked
                now, not after the commit, when the change could no longer be refused).
        """
        for key in keys:
            check_key(key)
        self._keys.update(dict.fromkeys(keys))

    async def commit(self) -> None:
        """Invalidate every collected key (here at once, elsewhere via Redis); then empty."""
        keys, self._keys = list(self._keys), {}
        notified, self._notified = self._notified, False
        await self._cache._invalidate(keys, notified=notified)

    def discard(self) -> None:
        """Forget every collected key without invalidating anything."""
        self._keys.clear()
        self._notified = False

    # The engine's commit hook (``botdb.engine.connection.CommitHook``).

    async def before_commit(self, run: Callable[[str, Sequence[Any]], Awaitable[Any]]) -> None:
        """Inside the transaction, just before its COMMIT: when this process cannot publish
        on Redis, add the invalidation to the database channel (``NOTIFY`` / the SQLite
        log), so that it is delivered exactly when the transaction commits.

        With Redis up it is left to Redis (after the commit): a NOTIFY serializes the
        commits of concurrent writers, measured at -24% throughput for 8 writers
        (``bench/cases_notify.py``); if Redis then fails, it goes through the channel after
        the commit instead."""
        cache = self._cache
        channel = cache._channel
        if channel is not None and self._keys and not cache._redis_sends():
            await channel.send(run, list(self._keys), via_redis=False)
            self._notified = True

    async def after_commit(self) -> None:
        """The transaction committed: invalidate (see :meth:`commit`)."""
        await self.commit()


def cached(
    cache: Cache | Callable[P, Cache],
    *,
    key: Callable[P, str],
    ttl: float | None = None,
    cache_none: bool = True,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Cache an async function's results under an explicit key (the async-correct lru_cache).

    Results are cached, never coroutine objects; arguments (``self`` included) are held only
    while a load runs. ``cache`` is a Cache, or a function of the call's arguments returning
    one (for methods: ``lambda self, *_: self.cache``).

    Example::

        @cached(lambda self, gid: self.cache, key=lambda self, gid: f"guild:{gid}")
        async def get_config(self, gid: int) -> dict[str, object] | None: ...
    """

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"cached() needs an async function, got {fn!r}")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            target = cache if isinstance(cache, Cache) else cache(*args, **kwargs)
            return await target.get_or_load(
                key(*args, **kwargs),
                functools.partial(fn, *args, **kwargs),
                ttl=ttl,
                cache_none=cache_none,
            )

        return wrapper

    return decorate
