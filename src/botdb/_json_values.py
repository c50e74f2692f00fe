"""The one JSON encoder of botdb: JSON columns, cache values and service settings use it.

A JSON value that chat users can influence (a setting, a cached record, an imported file) is
checked where it is encoded, and refused with :class:`~botdb.errors.DataError` naming the
path of the bad part (``settings['a'][3]``) when it holds:

* NaN or ±Infinity: they are not JSON (orjson would write ``null``, the standard library
  ``NaN``, which SQLite then stores as invalid JSON);
* an int outside the signed 64-bit range (SQLite's JSON functions and every integer column
  stop there; orjson refuses 2**64 and beyond with a raw ``TypeError``);
* a str with a lone surrogate (``"\\ud800"``: not encodable as UTF-8, refused by PostgreSQL);
* a dict key that is not a str, or a value of another type (datetime, set, objects...);
* containers nested deeper than :data:`MAX_DEPTH` levels (a 10,000-deep list otherwise ends
  in ``RecursionError`` inside a driver or an error message).

Nothing is converted: what is accepted is stored and read back exactly (tuples come back as
lists).
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Final

import orjson

from botdb.errors import DataError

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_DEPTH", "check_json", "check_text", "dumps", "short"]

#: Deepest nesting of dicts and lists botdb accepts in a JSON value (the value itself is
#: depth 1). Bot settings and cached records are a few levels deep; 64 leaves ample room and
#: stays far below every recursion limit on the way (orjson: 255, Python: ~1000).
MAX_DEPTH: Final = 64
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def short(value: object, limit: int = 60) -> str:
    """A bounded ``repr`` for error messages: safe for values nested 10,000 deep."""
    shown = _REPR.repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def check_text(what: str, value: str) -> None:
    """DataError if ``value`` cannot be encoded as UTF-8 (a lone surrogate)."""
    if value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{what} is not valid Unicode text: it holds a lone surrogate "
            f"({value[exc.start]!r} at position {exc.start})"
        ) from None


def check_json(value: Any, what: str = "value", *, slack: int = 0) -> None:
    """Raise DataError (naming the path) unless ``value`` is a storable JSON value.

    ``slack`` extra levels are allowed for a container that wraps stored values (a cached
    record holding a setting that is at the limit itself).
    """
    _check(value, what, 1 - slack)


def dumps(value: Any, what: str = "value", *, slack: int = 0) -> bytes:
    """``value`` as compact UTF-8 JSON, after :func:`check_json`."""
    _check(value, what, 1 - slack)
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # unreachable after the check; kept as a typed safety net
        raise DataError(f"{what} is not a JSON value: {exc}") from exc


def _check(value: Any, path: str, depth: int) -> None:
    # Exact types: a subclass (IntEnum, a str subclass) may serialise differently from how it
    # reads back, so it is refused like any other non-JSON type.
    kind = type(value)
    if kind is str:
        check_text(path, value)
    elif kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise DataError(f"{path} = {short(value)} does not fit in a 64-bit integer")
    elif kind is float:
        if not math.isfinite(value):
            raise DataError(f"{path} is {value!r}: NaN and Infinity are not JSON numbers")
    elif value is None or kind is bool:
        return
    elif kind is dict or kind is list or kind is tuple:
        if depth > MAX_DEPTH:
            where = path if len(path) <= 60 else f"{path[:30]}...{path[-20:]}"
            raise DataError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise DataError(f"{path} has a key of type {type(key).__name__}: use str keys")
                check_text(f"{path} key {short(key, 30)}", key)
                _check(item, f"{path}[{short(key, 30)}]", depth + 1)
        else:
            for index, item in enumerate(value):
                _check(item, f"{path}[{index}]", depth + 1)
    else:
        raise DataError(
            f"{path} is a {kind.__name__}: JSON values are dict (str keys), list, str, int, "
            "float, bool or None"
        )
