"""What every benchmark case module shares. A module ``cases_*.py`` exports ``CASES``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: (baseline, botdb): two callables doing the same work; each returns how many ops it did.
Pair = tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[int]]]


@dataclass(frozen=True)
class Case:
    """One comparison. ``setup(env)`` is an async context manager yielding a :data:`Pair`.

    ``env`` holds ``pg_url`` (None without a server), ``redis_url``, ``tmp`` (a directory).
    ``target`` is the ratio botdb/baseline that DESIGN.md asks for (None: shown only).
    """

    name: str
    baseline: str
    target: float | None
    setup: Callable[[dict[str, Any]], Any]


def require(env: dict[str, Any], key: str) -> Any:
    """The env entry, or an error that marks the case skipped (no server)."""
    if not env.get(key):
        raise RuntimeError(f"no {key} (server not reachable)")
    return env[key]


@dataclass(frozen=True)
class LatencyCase:
    """A latency measurement: ``setup(env)`` yields an async callable returning a list of
    latencies in seconds; the table shows p50 and p99 beside ``target_p99_ms``."""

    name: str
    target_p99_ms: float
    setup: Callable[[dict[str, Any]], Any]
