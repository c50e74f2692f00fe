"""Per-Database query statistics: counts, errors, retries and latency percentiles."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

__all__ = ["QueryStats"]

log = logging.getLogger("botdb.query")


class QueryStats:
    """Counts every statement and keeps the latest durations for percentiles.

    Recording a query costs a deque append and an add; percentiles are computed only when
    :meth:`snapshot` is called. The slow-query warning carries the statement text and its
    duration, never the parameter values.
    """

    __slots__ = ("_durations", "errors", "queries", "retries", "slow_queries", "slow_threshold")

    def __init__(self, *, slow_query_ms: float, window: int = 10_000) -> None:
        self.slow_threshold = slow_query_ms / 1000.0
        self.queries = 0
        self.errors = 0
        self.retries = 0
        self.slow_queries = 0
        self._durations: deque[float] = deque(maxlen=window)

    def record(self, query: str, seconds: float) -> None:
        self.queries += 1
        self._durations.append(seconds)
        if seconds >= self.slow_threshold:
            self.slow_queries += 1
            log.warning("slow query (%.1f ms): %s", seconds * 1000.0, _shorten(query))

    def record_error(self) -> None:
        self.errors += 1

    def record_retry(self, _exc: BaseException | None = None) -> None:
        self.retries += 1

    def snapshot(self) -> dict[str, Any]:
        durations = sorted(self._durations)
        return {
            "queries": self.queries,
            "errors": self.errors,
            "retries": self.retries,
            "slow_queries": self.slow_queries,
            "latency_ms": {
                "p50": _percentile(durations, 0.50),
                "p95": _percentile(durations, 0.95),
                "p99": _percentile(durations, 0.99),
                "max": round(durations[-1] * 1000.0, 3) if durations else None,
            },
        }


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    position = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return round(sorted_values[position] * 1000.0, 3)


def _shorten(query: str, limit: int = 500) -> str:
    text = " ".join(query.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
