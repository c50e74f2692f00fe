"""``parse_duration``: what a user types after ``/remind`` ("10m", "2h", "1d12h") as a
``timedelta``."""

from __future__ import annotations

import datetime as dt
import re

from botdb import errors

__all__ = ["DURATION_UNITS", "parse_duration"]

#: The units :func:`parse_duration` reads, with their length.
DURATION_UNITS: dict[str, dt.timedelta] = {
    "s": dt.timedelta(seconds=1),
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}
_PART = re.compile(r"(\d{1,9})\s*([smhdw])")
_WHOLE = re.compile(r"\s*(?:\d{1,9}\s*[smhdw]\s*)+")
_MAX_TEXT = 64
_LONGEST = int(dt.timedelta.max.total_seconds())


def parse_duration(
    text: str, *, maximum: dt.timedelta | None = dt.timedelta(days=366)
) -> dt.timedelta:
    """Read a duration as users type it: a number and a unit, ``s``, ``m``, ``h``, ``d`` or
    ``w`` (seconds to weeks), or several of them ("1h30m", "1d 12h"). Case and spaces
    between the parts do not matter.

    ``parse_duration("10m")`` is ``timedelta(minutes=10)``; ``parse_duration("1w2d")`` nine
    days. The result is positive and at most ``maximum`` (a year by default; None: no limit).

    Raises:
        ArgumentError: ``text`` is not a str, or ``maximum`` not a positive timedelta/None.
        DataError: anything else than number-unit pairs ("10", "ten minutes", "5x", "-1h"),
            a total of zero, or more than ``maximum``; the message shows what is accepted.
    """
    if not isinstance(text, str):
        raise errors.ArgumentError(f"a duration is a str such as '10m', not {type(text).__name__}")
    if maximum is not None and (
        not isinstance(maximum, dt.timedelta) or maximum <= dt.timedelta(0)
    ):
        raise errors.ArgumentError(f"maximum={maximum!r} must be a positive timedelta or None")
    lowered = text.lower()
    if len(text) > _MAX_TEXT or not _WHOLE.fullmatch(lowered):
        shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
        raise errors.DataError(
            f"not a duration: {shown!r}; write a number and a unit, s m h d or w"
            " (e.g. 90s, 10m, 2h, 1d, 1h30m)"
        )
    # Whole seconds first: "999999999w" is more than a timedelta holds.
    seconds = sum(
        int(number) * int(DURATION_UNITS[unit].total_seconds())
        for number, unit in _PART.findall(lowered)
    )
    if seconds <= 0:
        raise errors.DataError(f"a duration must be more than zero: {text!r}")
    if maximum is not None and seconds > maximum.total_seconds():
        raise errors.DataError(f"{text!r} is longer than the maximum, {_spelled(maximum)}")
    if seconds > _LONGEST:
        raise errors.DataError(f"{text!r} is too long for a timedelta")
    return dt.timedelta(seconds=seconds)


def _spelled(delta: dt.timedelta) -> str:
    """``timedelta(days=366)`` as "366d", ``timedelta(hours=1, minutes=30)`` as "1h30m"."""
    left = int(delta.total_seconds())
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(DURATION_UNITS[unit].total_seconds())
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"
