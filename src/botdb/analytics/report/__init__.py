"""The activity report: one self-contained HTML page of charts and tables for a guild.

Three steps, each usable on its own:

* :func:`collect_report` asks ``db.stats`` for a guild's activity in a period and returns a
  :class:`ReportData`, which holds exactly what the page shows;
* :func:`render_report` turns a :class:`ReportData` into the page (pure: no I/O, no clock);
* :func:`write_report` does both and writes the file atomically (a temporary file renamed over
  the old one, so a reader never sees half a page).

The charts are drawn by plotly (the ``report`` extra: ``pip install 'botdb[report]'``);
plotly.js is inlined once, so the page works offline and loads nothing from the network.
Every name on the page (guild, members, channels, emoji) comes from chat users and is escaped,
in the HTML and in the charts' labels alike.

Example:
    >>> path = await write_report(db, "activity.html", guild_id, tz="Europe/Berlin")
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botdb import errors
from botdb.analytics.report._data import (
    ReportData,
    check_aware,
    check_int,
    check_period,
    time_zone,
)
from botdb.analytics.report._page import load_plotly, render_report
from botdb.analytics.stats import DailyStats, TopChannel, TopEmoji, TopMember
from botdb.ops._common import write_replacing

__all__ = [
    "ReportData",
    "ReportDatabase",
    "ReportFile",
    "StatsSource",
    "collect_report",
    "default_period",
    "render_report",
    "time_zone",
    "write_report",
]

#: Rows in each "top" list, unless told otherwise.
DEFAULT_LIMIT = 10
#: Days a report covers when no start is given.
DEFAULT_DAYS = 30


# -- what the report needs of the database -----------------------------------------------


class StatsSource(Protocol):
    """The analytics calls the report is made of (``db.stats``, :class:`botdb.analytics.Stats`)."""

    async def refresh(self) -> list[str]: ...

    async def daily(
        self, guild_id: int, *, since: dt.datetime | None = ..., until: dt.datetime | None = ...
    ) -> Sequence[DailyStats]: ...

    async def heatmap(
        self,
        guild_id: int,
        *,
        since: dt.datetime | None = ...,
        until: dt.datetime | None = ...,
        tz: str = ...,
    ) -> Sequence[Sequence[int]]: ...

    async def top_members(
        self,
        guild_id: int,
        *,
        since: dt.datetime | None = ...,
        until: dt.datetime | None = ...,
        limit: int = ...,
    ) -> Sequence[TopMember]: ...

    async def top_channels(
        self,
        guild_id: int,
        *,
        since: dt.datetime | None = ...,
        until: dt.datetime | None = ...,
        limit: int = ...,
    ) -> Sequence[TopChannel]: ...

    async def top_emoji(
        self,
        guild_id: int,
        *,
        since: dt.datetime | None = ...,
        until: dt.datetime | None = ...,
        limit: int = ...,
    ) -> Sequence[TopEmoji]: ...


class ReportDatabase(Protocol):
    """What :func:`collect_report` uses: the stats API and ``fetchval`` (the guild's name)."""

    @property
    def stats(self) -> StatsSource: ...

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...


# -- collect and write ---------------------------------------------------------------------


def default_period(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    days: int = DEFAULT_DAYS,
    tz: str = "UTC",
    now: dt.datetime | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """The period of a report: ``until`` defaults to the end of today in ``tz`` (midnight),
    ``since`` to ``days`` days before ``until``.

    Raises:
        DataError: a naive datetime, ``since`` after ``until``, an unknown time zone, or
            ``days`` below 1.
        ArgumentError: a value of the wrong type.
    """
    zone = time_zone(tz)
    if isinstance(days, bool) or not isinstance(days, int):
        raise errors.ArgumentError(f"days must be an int, got {type(days).__name__}")
    if days < 1:
        raise errors.DataError(f"days must be at least 1, got {days}")
    if since is not None:
        check_aware("since", since)
    if until is None:
        current = (now or dt.datetime.now(dt.UTC)).astimezone(zone)
        tomorrow = current.date() + dt.timedelta(days=1)
        until = dt.datetime.combine(tomorrow, dt.time(), zone)
    else:
        check_aware("until", until)
    if since is None:
        since = until - dt.timedelta(days=days)
    check_period(since, until)
    return since, until


async def collect_report(
    db: ReportDatabase,
    guild_id: int,
    *,
    since: dt.datetime,
    until: dt.datetime,
    tz: str = "UTC",
    limit: int = DEFAULT_LIMIT,
    refresh: bool = True,
) -> ReportData:
    """Ask ``db.stats`` for a guild's activity from ``since`` (included) to ``until``
    (excluded) and gather it into a :class:`ReportData`.

    ``refresh`` first brings the stats up to date (:meth:`botdb.analytics.Stats.refresh`:
    on PostgreSQL they are otherwise as old as the last refresh; on SQLite it costs nothing).
    An unknown guild, or one with no activity in the period, gives a report whose ``has_data``
    is False (the page says so); it is not an error.

    Raises:
        DataError: a naive datetime, ``since`` after ``until``, an unknown time zone, a
            ``limit`` below 1.
        ArgumentError: a value of the wrong type.
    """
    check_int("guild_id", guild_id)
    check_int("limit", limit)
    if limit < 1:
        raise errors.DataError(f"limit must be at least 1, got {limit}")
    check_period(since, until)
    time_zone(tz)
    if not isinstance(refresh, bool):
        raise errors.ArgumentError(f"refresh must be a bool, got {type(refresh).__name__}")
    since, until = since.astimezone(dt.UTC), until.astimezone(dt.UTC)
    stats = db.stats
    if refresh:
        await stats.refresh()
    guild = await db.fetchval("SELECT name FROM guilds WHERE id = $1", guild_id)
    return ReportData(
        guild_id=guild_id,
        guild_name=None if guild is None else str(guild),
        since=since,
        until=until,
        tz=tz,
        generated_at=dt.datetime.now(dt.UTC),
        daily=tuple(await stats.daily(guild_id, since=since, until=until)),
        heatmap=tuple(
            tuple(hours) for hours in await stats.heatmap(guild_id, since=since, until=until, tz=tz)
        ),
        top_members=tuple(await stats.top_members(guild_id, since=since, until=until, limit=limit)),
        top_channels=tuple(
            await stats.top_channels(guild_id, since=since, until=until, limit=limit)
        ),
        top_emoji=tuple(await stats.top_emoji(guild_id, since=since, until=until, limit=limit)),
    )


# -- write ---------------------------------------------------------------------------------


async def write_report(
    db: ReportDatabase,
    path: str | os.PathLike[str],
    guild_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    days: int = DEFAULT_DAYS,
    tz: str = "UTC",
    limit: int = DEFAULT_LIMIT,
    refresh: bool = True,
) -> ReportFile:
    """Collect a guild's report and write the page to ``path``.

    The period defaults as in :func:`default_period` (the last ``days`` days, up to the end
    of today in ``tz``); ``refresh`` as in :func:`collect_report`. An existing file is
    replaced atomically: readers see the old page or
    the new one, never a part. Nothing is written when an argument is wrong.

    Raises:
        ConfigurationError: ``path`` cannot be written (no such directory, a directory).
        DataError: a naive datetime, ``since`` after ``until``, an unknown time zone.
        MissingDependencyError: plotly is not installed (the ``report`` extra).
        ArgumentError: a value of the wrong type.
    """
    check_int("guild_id", guild_id)
    since, until = default_period(since=since, until=until, days=days, tz=tz)
    target = Path(path)
    await asyncio.to_thread(_check_writable, target)
    await asyncio.to_thread(load_plotly)  # before any query: a missing extra is said at once
    data = await collect_report(
        db, guild_id, since=since, until=until, tz=tz, limit=limit, refresh=refresh
    )
    page = (await asyncio.to_thread(render_report, data)).encode("utf-8")
    await asyncio.to_thread(_write_atomically, target, page)
    return ReportFile(path=target, size=len(page), data=data)


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A report written by :func:`write_report`: where, how many bytes, and what it shows."""

    path: Path
    size: int
    data: ReportData


def _check_writable(path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise errors.ConfigurationError(f"cannot write the report to {path}: it is a directory")
    if not parent.is_dir():
        reason = "is not a directory" if parent.exists() else "does not exist"
        raise errors.ConfigurationError(f"cannot write the report to {path}: {parent} {reason}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise errors.ConfigurationError(f"cannot write the report to {path}: permission denied")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a new temporary file beside ``path``, then rename it over ``path``."""
    try:
        write_replacing(path, data, mode=0o644)
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot write the report to {path}: {exc.strerror or exc}"
        ) from exc
