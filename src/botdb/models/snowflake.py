"""Discord snowflake ids <-> time.

A Discord id's top 42 bits are milliseconds since the Discord epoch (2015-01-01T00:00:00Z), so
ids sort by creation time: ``WHERE id BETWEEN time_snowflake(a) AND time_snowflake(b,
high=True)`` selects the messages created between ``a`` and ``b`` through the primary key,
and time-partitioning the messages table by id range is possible. Telegram ids carry no time.

Example::

    >>> snowflake_time(175928847299117063).isoformat()
    '2016-04-30T11:18:25.796000+00:00'
    >>> time_snowflake(snowflake_time(175928847299117063)) >> 22 == 175928847299117063 >> 22
    True
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["DISCORD_EPOCH_MS", "snowflake_time", "time_snowflake"]

#: The Discord epoch, in Unix milliseconds.
DISCORD_EPOCH_MS = 1_420_070_400_000

_MAX_SNOWFLAKE = (1 << 63) - 1  # largest id a signed BIGINT column holds
_LOW_BITS = (1 << 22) - 1  # worker, process and increment
_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)


def snowflake_time(snowflake_id: int) -> datetime:
    """The creation time encoded in a Discord id.

    Args:
        snowflake_id: a Discord id (user, guild, channel, message...).

    Returns:
        An aware UTC datetime with millisecond precision.

    Raises:
        ValueError: the id is negative or does not fit a signed 64-bit integer.
    """
    if not 0 <= snowflake_id <= _MAX_SNOWFLAKE:
        raise ValueError(f"not a Discord snowflake: {snowflake_id}")
    return _EPOCH + timedelta(milliseconds=snowflake_id >> 22)


def time_snowflake(dt: datetime, *, high: bool = False) -> int:
    """The lowest (or highest) Discord id that can exist for the millisecond of ``dt``.

    Args:
        dt: an aware datetime, at or after the Discord epoch (naive values are rejected, since
            they are ambiguous).
        high: return the highest id of that millisecond instead of the lowest; use it for the
            upper bound of an inclusive range.

    Returns:
        A snowflake usable as a bound in ``WHERE id >= ...`` / ``WHERE id <= ...``.

    Raises:
        ValueError: ``dt`` is naive, before the Discord epoch, or too far in the future.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
    offset_ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    if offset_ms < 0:
        raise ValueError(f"{dt.isoformat()} is before the Discord epoch")
    value = (offset_ms << 22) + (_LOW_BITS if high else 0)
    if value > _MAX_SNOWFLAKE:
        raise ValueError(f"{dt.isoformat()} is beyond the last representable snowflake")
    return value
