"""What the report page shows: :class:`ReportData` and its rows, checked on construction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botdb import errors

__all__ = [
    "WEEKDAYS",
    "ChannelRow",
    "DailyRow",
    "EmojiRow",
    "MemberRow",
    "ReportData",
    "check_aware",
    "check_int",
    "check_period",
    "time_zone",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One day's counts (``day`` is a UTC calendar day)."""

    day: dt.date
    messages: int = 0
    active_members: int = 0
    joins: int = 0
    leaves: int = 0
    reactions: int = 0


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A member among the most active: ``name`` is None when the member's name is unknown."""

    user_id: int
    name: str | None
    messages: int
    last_active: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """A channel among the busiest: ``name`` is None when the channel's name is unknown."""

    channel_id: int
    name: str | None
    messages: int


@dataclass(frozen=True, slots=True)
class EmojiRow:
    """An emoji among the most used; ``emoji_id`` is set for a custom emoji."""

    emoji_key: str
    emoji_name: str
    emoji_id: int | None
    count: int


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report page shows, and nothing else.

    ``since`` (included) and ``until`` (excluded) are aware datetimes; ``tz`` is the IANA time
    zone the heatmap's hours and the period are shown in; ``heatmap[weekday][hour]`` counts
    messages (Monday is 0). Built by :func:`collect_report`, or by hand for a page of your own.

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
    daily: tuple[DailyRow, ...] = ()
    heatmap: tuple[tuple[int, ...], ...] = field(
        default_factory=lambda: tuple((0,) * 24 for _ in range(7))
    )
    top_members: tuple[MemberRow, ...] = ()
    top_channels: tuple[ChannelRow, ...] = ()
    top_emoji: tuple[EmojiRow, ...] = ()

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
