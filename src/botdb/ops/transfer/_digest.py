"""A row's digest: the canonical form both sides of a transfer are checksummed by."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    pass


def _canonical(value: Any) -> Any:
    """orjson's ``default``: what it does not write itself (or is told to pass through)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value.normalize())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


_ARRAYS = (list, tuple)
_DIGEST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def row_digest(row: Sequence[Any]) -> int:
    """The digest of one row: sha256 of its canonical JSON form, as an integer.

    The form is orjson's, with JSON objects' keys sorted (at any depth), datetimes in
    ISO 8601 with their offset (naive ones read as UTC; both drivers return UTC), Decimal
    normalised, bytes as hex; columns are in name order. Both sides decode a column to the
    same Python type (booleans are booleans, JSON is decoded). A table's checksum is the sum of its
    rows' digests modulo 2**256 (order-independent: SQLite and PostgreSQL collate text keys
    differently), shown as 64 hex digits, next to its row count.
    """
    canon = orjson.dumps(
        row if type(row) in _ARRAYS else list(row), default=_canonical, option=_DIGEST_OPTIONS
    )
    return int.from_bytes(hashlib.sha256(canon).digest(), "big")


def _digest_rows(rows: Iterable[Sequence[Any]]) -> int:
    """The sum of :func:`row_digest` over ``rows`` (the same digest, without a call per row)."""
    dumps, sha256, from_bytes = orjson.dumps, hashlib.sha256, int.from_bytes
    default, option = _canonical, _DIGEST_OPTIONS
    total = 0
    for row in rows:
        if type(row) not in _ARRAYS:
            row = list(row)
        total += from_bytes(sha256(dumps(row, default=default, option=option)).digest(), "big")
    return total
