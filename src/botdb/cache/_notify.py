"""PostgreSQL's channel: invalidations travel with the transaction as ``NOTIFY``.

The writer runs ``SELECT pg_notify(channel, message)`` inside its transaction, just before
COMMIT: PostgreSQL delivers it to every listening session when (and only if) the transaction
commits, in commit order. Each Database holds one dedicated connection (asyncpg, opened by the
Database, never pooled) that ``LISTEN``\\ s on the channel, pings it every few seconds to notice
a dead link, and reconnects with backoff.

A payload must be shorter than 8000 bytes: a batch is split into several messages (one
statement), and beyond :data:`MAX_PARTS` it becomes one "everything" message.

Cost: PostgreSQL takes a global lock on its notification queue from a notifying transaction's
pre-commit until its commit, so commits that notify are serialized. ``bench/cases_notify.py``
measures what that costs 8 concurrent writers; only transactions with keys to invalidate
notify.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from botdb.cache._channel import DatabaseChannel, Hearer, RunStatement, encode

__all__ = ["PostgresChannel", "channel_name"]

#: PostgreSQL refuses a payload of 8000 bytes or more.
PAYLOAD_LIMIT: Final = 7999
#: A batch needing more messages than this is sent as "everything" (about 2,000 keys).
MAX_PARTS: Final = 8
#: How often the LISTEN connection is pinged: a link that died silently (no FIN, e.g. a
#: network partition) is noticed within this plus the timeout.
PING_INTERVAL: Final = 5.0


def channel_name(prefix: str) -> str:
    """The NOTIFY channel of a cache prefix: a valid identifier whatever the prefix holds."""
    return "botdb_" + hashlib.sha256(prefix.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class PostgresChannel(DatabaseChannel):
    """``NOTIFY`` in the writer's transaction, ``LISTEN`` on a dedicated connection."""

    kind = "PostgreSQL LISTEN connection"

    def __init__(
        self,
        hearer: Hearer,
        open_connection: Callable[[], Awaitable[Any]],
        *,
        origin: str,
        prefix: str,
        timeout: float,
    ) -> None:
        super().__init__(hearer, open_connection, origin=origin)
        self.name = channel_name(prefix)
        self._timeout = timeout

    async def send(self, run: RunStatement, keys: list[str], *, via_redis: bool) -> None:
        parts = encode(self._origin, via_redis, keys, limit=PAYLOAD_LIMIT, max_parts=MAX_PARTS)
        calls = ", ".join(f"pg_notify($1, ${i + 2})" for i in range(len(parts)))
        await run(f"SELECT {calls}", (self.name, *parts))
        self.sent += len(parts)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._deliver(payload)

    async def _hear(self, conn: Any) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await asyncio.wait_for(conn.add_listener(self.name, self._on_notify), self._timeout)
        self._up()
        while True:
            try:
                await asyncio.wait_for(lost.wait(), PING_INTERVAL)
            except TimeoutError:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._timeout)
            else:
                raise ConnectionError("the LISTEN connection was closed")

    async def _close_connection(self, conn: Any) -> None:
        if conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), self._timeout)
        except BaseException:
            conn.terminate()
            raise
