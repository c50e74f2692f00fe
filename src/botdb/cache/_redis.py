"""The Redis side of :class:`botdb.cache.Cache`: key layout, Lua scripts, pub/sub.

Nothing here decides what to do when Redis fails: every method raises the driver's error
(one of :attr:`RedisLink.errors`) and the cache turns it into "degraded, L1 only".

Key layout under the prefix ``P``::

    P + "val:" + key     the L2 value (orjson bytes), with a PX expiry
    P + "ver:" + key     the key's version: the value of P + "clock" at its last invalidation
    P + "clock"          one counter, INCR'd by every invalidation (never expires; when it is
                         lost anyway, the message of its value 1 tells every process)
    P + "invalidate"     the pub/sub channel invalidation messages travel on
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from botdb.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.commands.core import AsyncScript

__all__ = ["Invalidation", "RedisLink", "redact_url"]

# Store a value only if the key's version is still the one read before loading, so L2 never
# holds a value older than an invalidation. KEYS: value key, version key.
# ARGV: expected version, value, ttl in ms.
_STORE_IF_VERSION = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# Store a value unconditionally and return the version it is current for (explicit set()).
# KEYS: value key, version key. ARGV: value, ttl in ms.
_STORE_RETURN_VERSION = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('GET', KEYS[2]) or '0'
"""

# One invalidation, atomically: a new clock value, every value deleted, every version set to
# the clock, one message published. KEYS: clock, then (value key, version key) pairs.
# ARGV: channel, version ttl in ms, origin id, then the plain keys.
_INVALIDATE = """
local clock = redis.call('INCR', KEYS[1])
local version = string.format('%d', clock)
for i = 2, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], version, 'PX', ARGV[2])
end
local plain = {}
for i = 4, #ARGV do plain[#plain + 1] = ARGV[i] end
local message = {o = ARGV[3], v = version, k = plain}
if clock == 1 then message.r = 1 end  -- the clock (re)started: older versions mean nothing
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], cjson.encode(message)) end
return clock
"""

# A version key only has to outlive the loads racing with its invalidation; one that expired
# reads as 0, which is older than every clock value, so expiry is always safe.
_VERSION_TTL_MS = 24 * 3600 * 1000


def redact_url(url: str) -> str:
    """Return ``scheme://host:port/db`` without user name or password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class Invalidation:
    """A decoded invalidation message."""

    origin: str
    version: int
    keys: list[str]
    #: The clock had just (re)started (new prefix, FLUSHDB, eviction, restart without
    #: persistence): versions read before it are not comparable with the new ones.
    restarted: bool = False


class RedisLink:
    """A Redis client for one cache: short timeouts, no driver-level retries."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        socket_timeout: float,
        origin: str,
    ) -> None:
        self.check_url(url)
        try:  # imported here so that ``import botdb`` never imports redis
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        self.errors: tuple[type[BaseException], ...] = (
            RedisError,
            OSError,
            TimeoutError,
        )
        self._url = url
        self._prefix = prefix
        self._origin = origin
        self.channel = f"{prefix}invalidate"
        self._clock_key = f"{prefix}clock"
        # The cache is the retry policy (degrade to L1, reconnect in the background), so the
        # driver must fail fast: no retries, short connect and read timeouts.
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=5,
        )
        self._store_if_version: AsyncScript = self.client.register_script(_STORE_IF_VERSION)
        self._store_return_version: AsyncScript = self.client.register_script(_STORE_RETURN_VERSION)
        self._invalidate: AsyncScript = self.client.register_script(_INVALIDATE)

    @staticmethod
    def check_url(url: str) -> None:
        """Raise :class:`ConfigurationError` unless ``url`` is a Redis URL."""
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"redis_url must start with redis://, rediss:// or unix://, got {scheme!r}"
            )

    def _val(self, key: str) -> str:
        return f"{self._prefix}val:{key}"

    def _ver(self, key: str) -> str:
        return f"{self._prefix}ver:{key}"

    async def ping(self) -> None:
        """Raise unless the server answers."""
        await self.client.ping()

    async def fetch(self, key: str) -> tuple[bytes | None, int]:
        """Return ``(value or None, version)``, read atomically in one round trip."""
        blob, version = await self.client.mget(self._val(key), self._ver(key))
        if isinstance(blob, str):  # only with decode_responses=True, which this client never sets
            blob = blob.encode()
        return blob, int(version or 0)

    async def store_if_version(self, key: str, blob: bytes, version: int, ttl: float) -> bool:
        """Store ``blob`` in L2 only if the key's version is still ``version``."""
        done = await self._store_if_version(
            keys=[self._val(key), self._ver(key)],
            args=[str(version), blob, max(1, int(ttl * 1000))],
        )
        return bool(done)

    async def store_return_version(self, key: str, blob: bytes, ttl: float) -> int:
        """Store ``blob`` in L2 and return the version it is current for."""
        version = await self._store_return_version(
            keys=[self._val(key), self._ver(key)], args=[blob, max(1, int(ttl * 1000))]
        )
        return int(version)

    async def invalidate(self, keys: list[str], *, publish: bool = True) -> int:
        """Delete, re-version and announce ``keys`` atomically; return the new version.

        Version 1 means the clock (re)started (see :attr:`Invalidation.restarted`).
        ``publish=False``: no message (the database channel already carried it).
        """
        redis_keys: list[str] = [self._clock_key]
        for key in keys:
            redis_keys += (self._val(key), self._ver(key))
        clock = await self._invalidate(
            keys=redis_keys,
            args=[self.channel if publish else "", _VERSION_TTL_MS, self._origin, *keys],
        )
        return int(clock)

    async def drop_idle_connections(self) -> None:
        """Disconnect the pool's idle connections (stale after a server restart)."""
        await self.client.connection_pool.disconnect(inuse_connections=False)

    def pubsub(self) -> PubSub:
        """A new pub/sub object (its own connection); the caller subscribes and closes it."""
        return self.client.pubsub()

    @staticmethod
    async def close_pubsub(pubsub: PubSub) -> None:
        """Close a pub/sub object and give its connection back."""
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    @staticmethod
    def decode(data: Any) -> Invalidation:
        """Decode a message published by :meth:`invalidate`; raise ValueError if malformed."""
        try:
            payload = orjson.loads(data)
            keys = payload["k"]
            if not isinstance(keys, list):  # cjson encodes an empty table as {}
                keys = []
            return Invalidation(
                str(payload["o"]),
                int(payload["v"]),
                [str(k) for k in keys],
                restarted=payload.get("r") == 1,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed invalidation message: {data!r:.200}") from exc

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()
