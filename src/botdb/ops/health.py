"""The health check a bot's status command or a container probe calls (``db.health_check()``,
``botdb health``)."""

from __future__ import annotations

from typing import Any, Protocol

from botdb.errors import BotDBError

__all__ = ["health_check"]


class Pingable(Protocol):
    """What the health check needs of the engine."""

    @property
    def backend(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    @property
    def settings(self) -> Any: ...

    async def ping(self, timeout: float) -> float: ...

    def pool_stats(self) -> dict[str, Any]: ...


async def health_check(engine: Pingable, *, degraded_after_ms: float = 500.0) -> dict[str, Any]:
    """Ask the database for ``SELECT 1`` once (no retry) and report.

    Returns a dict with ``status`` (``"healthy"``, ``"degraded"`` when the answer took longer
    than ``degraded_after_ms``, or ``"unhealthy"``), ``database_available``, ``backend``,
    ``url`` (password masked), ``latency_ms``, ``pool`` and ``errors`` (messages; empty when
    healthy).
    """
    report: dict[str, Any] = {
        "status": "unhealthy",
        "database_available": False,
        "backend": engine.backend,
        "url": engine.settings.url.masked(),
        "latency_ms": None,
        "pool": engine.pool_stats(),
        "errors": [],
    }
    if not engine.is_open:
        report["errors"].append("the database is not connected")
        return report
    try:
        latency = await engine.ping(5.0)
    except BotDBError as exc:
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        return report
    report.update(database_available=True, latency_ms=round(latency, 3), status="healthy")
    if latency > degraded_after_ms:
        report["status"] = "degraded"
        report["errors"].append(f"slow response: {latency:.0f} ms")
    return report
