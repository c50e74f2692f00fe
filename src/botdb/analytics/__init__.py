"""Activity statistics of a community (``db.stats``), on SQLite and PostgreSQL.

See :mod:`botdb.analytics.stats` for what is counted and ``docs/analytics.md`` for the
summary objects and how fresh they are.
"""

from __future__ import annotations

from botdb.analytics.stats import (
    DailyStats,
    Stats,
    TopChannel,
    TopEmoji,
    TopMember,
    UserActivity,
)

__all__ = ["DailyStats", "Stats", "TopChannel", "TopEmoji", "TopMember", "UserActivity"]
