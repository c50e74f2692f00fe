"""SQL translation: what one uncached PostgreSQL-to-SQLite translation of a bot query costs.

Translations are cached per query text (``translate_for_sqlite`` is an ``lru_cache``); this is
the cost of a first sight, paid once per distinct query. It was a wall-clock assertion in the
test suite (average under 2 ms); speed lives here, where a noisy machine cannot fail a test.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import LatencyCase

from botdb.engine.sql import translate_for_sqlite

QUERY = (
    "SELECT m.id, m.content FROM messages m WHERE m.guild_id = $1 AND m.author_id = ANY($2)"
    " AND m.created_at >= NOW() - INTERVAL '7 days' AND m.content ILIKE $3"
    " ORDER BY m.created_at DESC LIMIT $4"
)
SAMPLES = 2000


@asynccontextmanager
async def uncached_translation(
    env: dict[str, Any],
) -> AsyncIterator[Callable[[], Awaitable[list[float]]]]:
    uncached = translate_for_sqlite.__wrapped__

    async def sample() -> list[float]:
        uncached(QUERY)  # warm-up: imports, regex compilation
        latencies = []
        for _ in range(SAMPLES):
            start = time.perf_counter()
            uncached(QUERY)
            latencies.append(time.perf_counter() - start)
        return latencies

    yield sample


LATENCIES: list[LatencyCase] = [
    LatencyCase("translate_for_sqlite, uncached, typical bot query", 2.0, uncached_translation),
]
