"""What the report page shows: :class:`ReportData`, checked on construction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botdb import errors
from botdb.analytics.stats import DailyStats, TopChannel, TopEmoji, TopMember

__all__ = [
    "WEEKDAYS",
    "ReportData",
    "check_aware",
    "check_int",
    "check_period",
    "time_zone",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report page shows, and nothing else.

    ``since`` (included) and ``until`` (excluded) are aware datetimes; ``tz`` is the IANA time
    zone the heatmap's hours and the period are shown in; ``heatmap[weekday][hour]`` counts
    messages (Monday is 0). The rows are the ``db.stats`` results (:mod:`botdb.analytics`).
    Built by :func:`collect_report`, or by hand for a page of your own.

    Raises:
        DataError: a naive datetime, ``since`` after ``until``, an unknown time zone, or a
            heatmap that is not 7 rows of 24 counts.
        ArgumentError: a value of the wrong type.
    """

    guild_id: int
    guild_name: str | None
    since: dt.datetime
    until: dt.datetime
    generated_at: dt.datetime
    tz: str = "UTC"
    daily: tuple[DailyStats, ...] = ()
    heatmap: tuple[tuple[int, ...], ...] = field(
        default_factory=lambda: tuple((0,) * 24 for _ in range(7))
    )
    top_members: tuple[TopMember, ...] = ()
    top_channels: tuple[TopChannel, ...] = ()
    top_emoji: tuple[TopEmoji, ...] = ()

    def __post_init__(self) -> None:
        check_int("guild_id", self.guild_id)
        check_period(self.since, self.until)
        check_aware("generated_at", self.generated_at)
        time_zone(self.tz)
        if len(self.heatmap) != 7 or any(len(row) != 24 for row in self.heatmap):
            raise errors.DataError("heatmap must be 7 rows (Monday first) of 24 hourly counts")

    @property
    def has_data(self) -> bool:
        """Whether anything happened in the period (else the page says there is no data)."""
        return bool(
            any(d.messages or d.reactions or d.joins or d.leaves for d in self.daily)
            or any(any(row) for row in self.heatmap)
            or self.top_members
            or self.top_channels
            or self.top_emoji
        )


# -- checks shared by the data and the calls that build it -------------------------------


def time_zone(tz: object) -> ZoneInfo:
    """The IANA time zone named ``tz`` (``"UTC"``, ``"Europe/Berlin"``)."""
    if not isinstance(tz, str):
        raise errors.ArgumentError(f"tz must be a time zone name, got {type(tz).__name__}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.DataError(f"unknown time zone: {tz!r}") from exc


def check_int(name: str, value: object) -> None:
    """Refuse anything but an int (a bool is not one here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ArgumentError(f"{name} must be an int, got {type(value).__name__}")


def check_aware(name: str, value: object) -> dt.datetime:
    """An aware datetime; a naive one is ambiguous (local time or UTC?) and refused."""
    if not isinstance(value, dt.datetime):
        raise errors.ArgumentError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise errors.DataError(f"{name} is a naive datetime: pass an aware one (datetime.now(UTC))")
    return value


def check_period(since_value: object, until_value: object) -> None:
    """Both ends aware, and ``since`` not after ``until``."""
    since = check_aware("since", since_value)
    until = check_aware("until", until_value)
    if since > until:
        raise errors.DataError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
