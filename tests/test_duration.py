"""``botdb.services.parse_duration``: what users type after ``/remind`` ("10m", "2h")."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botdb import errors
from botdb.services import parse_duration

MIN = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("10m", 10 * MIN),
        ("2h", 120 * MIN),
        ("1d", dt.timedelta(days=1)),
        ("1w2d", dt.timedelta(days=9)),
        ("1h30m", 90 * MIN),
        (" 1D 12H ", dt.timedelta(days=1, hours=12)),
        ("10 m", 10 * MIN),
        ("0h5m", 5 * MIN),
        ("366d", dt.timedelta(days=366)),
    ],
)
def test_durations_users_type(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "10",
        "m",
        "ten minutes",
        "5x",
        "-1h",
        "+1h",
        "1.5h",
        "1 0m",
        "1h 30",
        "h1",
        "x" * 200,
    ],
)
def test_what_is_not_a_duration_is_a_data_error_saying_what_is(text: str) -> None:
    with pytest.raises(errors.DataError, match=r"not a duration: .*e\.g\. 90s, 10m, 2h"):
        parse_duration(text)


def test_zero_and_too_long_are_data_errors() -> None:
    with pytest.raises(errors.DataError, match="more than zero"):
        parse_duration("0m0s")
    with pytest.raises(errors.DataError, match="longer than the maximum, 366d"):
        parse_duration("367d")
    with pytest.raises(errors.DataError, match="longer than the maximum, 1h30m"):
        parse_duration("2h", maximum=90 * MIN)
    with pytest.raises(errors.DataError, match="too long"):
        parse_duration("999999999w", maximum=None)
    assert parse_duration("520w", maximum=None) == dt.timedelta(weeks=520)


def test_wrong_types_are_argument_errors() -> None:
    with pytest.raises(errors.ArgumentError, match="a duration is a str"):
        parse_duration(600)  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentError, match="maximum"):
        parse_duration("1m", maximum=dt.timedelta(0))
    with pytest.raises(errors.ArgumentError, match="maximum"):
        parse_duration("1m", maximum=3600)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("smhdwSMHDW")), min_size=1))
def test_any_sum_of_parts_reads_as_its_total(parts: list[tuple[int, str]]) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = sum(n * seconds[unit.lower()] for n, unit in parts)
    text = " ".join(f"{n}{unit}" for n, unit in parts)
    if len(text) > 64:
        with pytest.raises(errors.DataError, match="not a duration"):
            parse_duration(text, maximum=None)
    elif total == 0:
        with pytest.raises(errors.DataError, match="more than zero"):
            parse_duration(text, maximum=None)
    else:
        assert parse_duration(text, maximum=None) == dt.timedelta(seconds=total)
