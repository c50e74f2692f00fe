"""State and machinery behind :class:`botdb.cache.Cache`: L1 bookkeeping, versions, Redis state.

How versions keep fills honest (see :mod:`botdb.cache._redis` for the Redis side):

- every invalidation takes a new value of one Redis counter (the clock) and stamps it as the
  version of each key it invalidates, atomically with the L2 delete and the publish;
- a fill reads the key's version (with the L2 value, one MGET) BEFORE it loads;
- while a fill is in flight for a key, invalidations of that key remember their version
  (``_tomb``); the fill is stored only if no newer version arrived (and L1 was not cleared);
- an entry keeps its version; a message drops only entries older than its version, so a
  late or duplicate message never drops a fresher value nor lets a stale one back in;
- L2 is written by a Lua script only if the key's version is still the one read;
- when the clock restarts at 1 (FLUSHDB, eviction, Redis restarted without persistence), its
  first invalidation tells every process to drop all of L1 (older versions are meaningless).

The database channel (PostgreSQL ``NOTIFY``, or SQLite's invalidation log, see
:mod:`botdb.cache._notify` and :mod:`botdb.cache._sqlite_log`) carries no Redis version: what
it hears is applied as a local invalidation (:meth:`CacheCore._heard`), which refuses every
fill in flight for the key, so it never lets an older value back in either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, Final

from botdb import _json_values
from botdb.cache._channel import DatabaseChannel
from botdb.cache._redis import RedisLink, redact_url
from botdb.errors import ArgumentError, ConfigurationError

__all__ = ["CacheCore", "check_key", "dumps"]

# Tombstone for an invalidation whose Redis version is unknown (local or Redis down): it is
# newer than any version a fill can have read, so every fill in flight for the key is refused.
_UNKNOWN_VERSION: Final = 1 << 62
# The first value of the Redis clock: every entry's version may be from an older clock.
_CLOCK_RESTARTED: Final = 1
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 2.0


# Levels a cached record may add around a stored JSON value (a guild's config holds its
# settings, a scope's dict holds each setting): a value at MAX_DEPTH can still be cached.
_WRAPPING: Final = 4


def dumps(value: object) -> bytes:
    """Serialise a cache value; DataError (naming the bad part) if it is not a JSON value.

    NaN and Infinity are refused rather than cached: orjson would write them as ``null``, so
    another process would read a different value than this one keeps in L1.
    """
    return _json_values.dumps(value, "cache value", slack=_WRAPPING)


def check_key(key: object) -> str:
    """A cache key must be a str that UTF-8 can encode (Redis keys are bytes).

    Checked on every path that may reach Redis or store an entry, never on an L1 hit (a key
    in L1 was checked when it was stored).

    Raises:
        ArgumentError: the key is not a str.
        DataError: the key holds a lone surrogate (``"\\ud800"``).
    """
    if type(key) is not str:
        raise ArgumentError(f"cache keys are str, got {type(key).__name__}")
    _json_values.check_text("cache key", key)
    return key


class CacheCore:
    """Everything of the cache but its public methods (kept apart to keep modules small)."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        prefix: str = "botdb:",
        max_size: int = 10_000,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        degraded_ttl: float = 5.0,
        socket_timeout: float = 0.5,
    ) -> None:
        if max_size < 1:
            raise ConfigurationError(f"max_size must be >= 1, got {max_size}")
        for name, seconds in (
            ("ttl", ttl),
            ("negative_ttl", negative_ttl),
            ("degraded_ttl", degraded_ttl),
            ("socket_timeout", socket_timeout),
        ):
            if not seconds > 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, got {seconds}")
        if redis_url is not None:
            RedisLink.check_url(redis_url)
        self._redis_url = redis_url
        self._prefix = prefix
        self._max_size = max_size
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._degraded_ttl = degraded_ttl
        self._socket_timeout = socket_timeout
        self._log = logging.getLogger("botdb.cache")
        self._origin = secrets.token_hex(8)
        # L1: key -> (value, expires_at on the monotonic clock, version). Written by hand on an
        # OrderedDict (not cachetools) because the hit path must reach >= 1M awaited hits/s in
        # one process: one dict lookup, one clock read, one move_to_end, no lock, no I/O.
        self._data: OrderedDict[str, tuple[Any, float, int]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._loads = 0
        self._l2_hits = 0
        self._sent = 0
        self._received = 0
        self._flights: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Keys with a fill in flight -> how many; and the newest invalidation version seen for
        # them while in flight (a fill that read an older version is refused).
        self._active: dict[str, int] = {}
        self._tomb: dict[str, int] = {}
        self._epoch = 0  # bumped when L1 is cleared: fills begun before are refused
        self._pending: dict[str, None] = {}  # invalidations not yet published (Redis down)
        self._link: RedisLink | None = None
        self._listener: asyncio.Task[None] | None = None
        self._available: bool | None = None  # None until the first answer (or failure)
        self._listening = False
        self._first_attempt = asyncio.Event()
        # The database channel (NOTIFY / SQLite log): None when there is none, else whether
        # it is hearing every committed write now.
        self._db_hearing: bool | None = None
        self._channel: DatabaseChannel | None = None
        self._execute: Callable[..., Awaitable[Any]] | None = None

    # ----------------------------------------------------------------- lifecycle

    def _life(self, value: object, ttl: float | None) -> float:
        life = self._ttl if ttl is None else ttl
        return min(life, self._negative_ttl) if value is None else life

    def _store(self, key: str, value: Any, version: int, epoch: int, life: float) -> None:
        if epoch != self._epoch or self._tomb.get(key, -1) > version:
            return  # L1 was cleared, or the key was invalidated after the version was read
        now = monotonic()
        data = self._data
        old = data.get(key)
        if old is not None and old[2] > version and old[1] > now:
            return  # a fresher read is already there
        if self._may_miss():
            life = min(life, self._degraded_ttl)  # invalidations may be missed: bound staleness
        data[key] = (value, now + life, version)
        data.move_to_end(key)
        if len(data) > self._max_size:
            data.popitem(last=False)

    def _may_miss(self) -> bool:
        """Whether another process's invalidation could fail to reach this one now."""
        # A writer that reaches Redis publishes there only; one that does not (or has no
        # Redis) goes through the database channel: both must be heard.
        if self._db_hearing is False:
            return True
        return self._redis_url is not None and not (self._listening and self._available)

    def _redis_up(self) -> bool:
        """Whether Redis both delivers and accepts invalidations now."""
        return self._listening and self._available is True

    def _redis_sends(self) -> bool:
        """Whether an invalidation made now will (most likely) be published on Redis."""
        return self._link is not None and self._available is True

    def _begin(self, key: str) -> None:
        self._active[key] = self._active.get(key, 0) + 1

    def _end(self, key: str) -> None:
        left = self._active[key] - 1
        if left:
            self._active[key] = left
        else:
            del self._active[key]
            self._tomb.pop(key, None)

    def _drop_local(self, keys: list[str]) -> None:
        """This process invalidated ``keys``: drop them and refuse every fill in flight."""
        for key in keys:
            self._data.pop(key, None)
            if key in self._active:
                self._tomb[key] = _UNKNOWN_VERSION

    def _apply(self, keys: list[str], version: int, *, restarted: bool = False) -> None:
        """Invalidation ``version`` of ``keys``: drop older entries, remember it for fills.

        ``restarted``: the Redis clock started again (FLUSHDB, eviction, a restart without
        persistence), so versions read before are not comparable: drop everything.
        """
        data = self._data
        if restarted:
            data.clear()
            self._epoch += 1
        for key in keys:
            entry = data.get(key)
            if entry is not None and entry[2] < version:
                del data[key]
            if key in self._active and self._tomb.get(key, -1) < version:
                self._tomb[key] = version

    # ----------------------------------------------------------------- Redis state

    async def _publish(self, keys: list[str]) -> bool:
        """Publish on Redis; False when it could not (the keys wait for Redis to be back)."""
        link = self._link
        if link is None or not self._available:
            self._defer(keys)
            return False
        try:
            version = await link.invalidate(keys)
        except link.errors as exc:
            self._mark_down(exc)
            self._defer(keys)
            return False
        self._sent += len(keys)
        # Anything filled here during the round trip from the old L2 value goes too.
        self._apply(keys, version, restarted=version == _CLOCK_RESTARTED)
        return True

    async def _publish_or_notify(self, keys: list[str], *, notified: bool) -> None:
        """After a commit: Redis if it takes it; else, unless the transaction already carried
        them (``notified``), the database channel in a statement of its own."""
        if self._redis_url is not None and await self._publish(keys):
            return
        channel, execute = self._channel, self._execute
        if notified or channel is None or execute is None:
            return
        try:
            await channel.send(lambda query, args: execute(query, *args), keys, via_redis=False)
        # The cache never raises to the bot for a channel: the change is committed already,
        # and staleness stays bounded by the TTLs.
        except Exception as exc:
            self._log.warning(
                "could not send an invalidation through the %s (%s: %s)",
                channel.kind,
                type(exc).__name__,
                exc,
            )

    def _defer(self, keys: list[str]) -> None:
        pending = self._pending
        pending.update(dict.fromkeys(keys))
        while len(pending) > 10 * self._max_size:  # bounded; the oldest are beyond any TTL
            del pending[next(iter(pending))]

    async def _flush_pending(self) -> None:
        if self._pending:
            keys = list(self._pending)
            self._pending.clear()
            await self._publish(keys)

    def _mark_down(self, exc: BaseException) -> None:
        if self._available is not False:
            self._available = False
            self._log.warning(
                "Redis at %s is unavailable (%s: %s); the cache continues in memory only, "
                "entries live at most %.1fs until it is back",
                redact_url(self._redis_url or ""),
                type(exc).__name__,
                exc,
                self._degraded_ttl,
            )

    def _mark_up(self) -> None:
        if self._available is False:
            self._log.info(
                "Redis at %s is available again; the cache resumed using it",
                redact_url(self._redis_url or ""),
            )
        self._available = True

    def _lost(self, exc: BaseException) -> None:
        """The listener lost its subscription: invalidations may be missed from now on."""
        self._listening = False
        self._cap_lifetimes()
        self._mark_down(exc)
        self._first_attempt.set()

    def _cap_lifetimes(self) -> None:
        """Invalidations may be missed from now on: no entry outlives ``degraded_ttl``."""
        limit = monotonic() + self._degraded_ttl
        data = self._data
        for key, (value, expires, version) in list(data.items()):
            if expires > limit:
                data[key] = (value, limit, version)

    # ----------------------------------------------------------------- the database channel

    def _db_up(self) -> None:
        """The database channel hears every commit from now on; what it may have missed
        before is unknown, so L1 starts again empty."""
        self._data.clear()
        self._epoch += 1
        self._db_hearing = True

    def _db_down(self) -> None:
        """The database channel stopped hearing: bound staleness as when Redis is down."""
        if self._db_hearing:
            self._cap_lifetimes()
        self._db_hearing = False

    def _heard(self, keys: list[str] | None, *, via_redis: bool) -> None:
        """Another process committed a write that invalidates ``keys`` (None: everything).

        ``via_redis``: the writer publishes it on Redis too, with versions and the L2 delete;
        a process listening on Redis then leaves it to that message. Otherwise the keys are
        dropped here (fills in flight refused) and, since the writer could not reach Redis,
        removed from L2 (version bumped) by this process.
        """
        if via_redis and self._redis_up():
            return
        if keys is None:
            self._received += 1
            self._data.clear()
            self._epoch += 1
            return
        self._received += len(keys)
        self._drop_local(keys)
        link = self._link
        if not via_redis and link is not None and self._available:
            task = asyncio.create_task(self._purge_l2(link, keys))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _purge_l2(self, link: RedisLink, keys: list[str]) -> None:
        """Delete ``keys`` from L2 and bump their versions, without a Redis message (the
        database channel already told every process)."""
        try:
            version = await link.invalidate(keys, publish=False)
        except link.errors as exc:
            self._mark_down(exc)
            return
        # A fill that read the old L2 value during the round trip is dropped or refused.
        self._apply(keys, version, restarted=version == _CLOCK_RESTARTED)

    async def _subscribed(self, link: RedisLink) -> None:
        # Connections from before an outage may be dead although they look open.
        await link.drop_idle_connections()
        # Messages may have been lost while unsubscribed: nothing in L1 can be trusted.
        self._data.clear()
        self._epoch += 1
        self._listening = True
        self._mark_up()
        self._first_attempt.set()
        await self._flush_pending()

    async def _listen(self, link: RedisLink) -> None:
        delay = _BACKOFF_MIN
        while True:
            pubsub = link.pubsub()
            try:
                await pubsub.subscribe(link.channel)
                deadline = monotonic() + self._socket_timeout * 4
                while True:
                    msg = await pubsub.get_message(timeout=self._socket_timeout)
                    if msg is not None and msg["type"] == "subscribe":
                        break
                    if monotonic() > deadline:
                        raise TimeoutError("no confirmation of SUBSCRIBE from Redis")
                await self._subscribed(link)
                delay = _BACKOFF_MIN
                next_probe = 0.0
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg["type"] == "message":
                        self._on_message(link, msg["data"])
                    if self._available is False and monotonic() >= next_probe:
                        next_probe = monotonic() + 1.0  # a command failed, pub/sub stayed up
                        await self._probe(link)
            except link.errors as exc:
                self._lost(exc)
            finally:
                with contextlib.suppress(*link.errors):
                    await link.close_pubsub(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _probe(self, link: RedisLink) -> None:
        try:
            await link.ping()
        except link.errors:
            return
        self._mark_up()
        await self._flush_pending()

    def _on_message(self, link: RedisLink, data: Any) -> None:
        try:
            message = link.decode(data)
        except ValueError:
            self._log.debug("ignored a malformed message on %s", link.channel)
            return
        if message.origin != self._origin:
            self._received += len(message.keys)
        self._apply(message.keys, message.version, restarted=message.restarted)
