"""The statements behind :mod:`botdb.services.scoped`: each write is ONE atomic upsert.

Storage: one ``kv_store`` row per setting, keyed ``(namespace, scope, key)``, the value a JSON
document. ``increment``/``toggle``/``append`` are ``INSERT ... ON CONFLICT DO UPDATE SET value
= <expression of the stored value> RETURNING value``: the database computes the new value from
the row it has locked (PostgreSQL re-evaluates the expression on the newest row version;
SQLite runs writers one at a time), so two processes adding at once never lose an update, and
no read-modify-write happens in Python.

==========  =====================================================  ===========================
operation   SQLite                                                 PostgreSQL (jsonb)
==========  =====================================================  ===========================
increment   ``json_extract(value, '$') + :by``                     ``to_jsonb(value::numeric
                                                                   + :by)``
toggle      ``CASE WHEN json_extract(value, '$') THEN json('false')``  ``to_jsonb(NOT
            ``ELSE json('true') END``                               value::boolean)``
append      ``json_insert(value, '$[#]', json(:item))``            ``value ||
                                                                   jsonb_build_array(:item)``
==========  =====================================================  ===========================
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import Boolean, ColumnElement, Numeric, String, case, cast, func, literal, not_
from sqlalchemy.dialects.postgresql import JSONB

from botdb import _json_values, errors
from botdb.models import KeyValue
from botdb.services._common import BIGINT_MAX, upsert

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PGInsert
    from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert

    from botdb._protocols import ServiceDatabase

__all__ = ["check_value", "copy_json", "json_of", "merged", "normalize", "write_statement"]

_TABLE: Final = KeyValue.__table__
_PK: Final = ["namespace", "scope", "key"]


def json_of(what: str, value: object) -> bytes:
    """``value`` serialised, or DataError (naming the bad part) when it is not a JSON value
    that reads back equal: NaN/Infinity, ints beyond 64 bits, lone surrogates, too deep."""
    return _json_values.dumps(value, what)


def copy_json(value: Any) -> Any:
    """A private copy of a mutable JSON value (scalars are returned as they are)."""
    if isinstance(value, list | dict):
        return orjson.loads(orjson.dumps(value))
    return value


def check_value(key: str, default: Any, value: Any) -> Any:
    """``value`` checked against the registered ``default``'s type; returns what to store.

    Raises:
        ArgumentError: the value's type differs from the default's (an int setting given a
            str, a bool given 1...). A None default accepts any JSON value.
        DataError: the value is not JSON (or an int beyond 64 bits).
    """
    if default is not None:
        expected: tuple[type, ...]
        if isinstance(default, bool):
            expected = (bool,)
        elif isinstance(default, int):
            expected = (int,)
        elif isinstance(default, float):
            expected = (float, int)
        else:
            expected = (type(default),)
        if type(value) not in expected:
            raise errors.ArgumentError(
                f"setting {key!r} holds {type(default).__name__} values, got "
                f"{type(value).__name__} {_json_values.short(value)}"
            )
        if isinstance(default, float):
            value = float(value)
    if type(value) is int and not -BIGINT_MAX <= value <= BIGINT_MAX:
        raise errors.DataError(f"setting {key!r}: {value} does not fit in 64 bits")
    return orjson.loads(json_of(f"setting {key!r}", value))


def normalize(default: Any, value: Any) -> Any:
    """A stored value read back with its registered type (SQLite stores 2.0 as the int 2)."""
    if isinstance(default, float) and type(value) is int:
        return float(value)
    return value


def merged(defaults: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the stored values, as a private copy."""
    result = {key: copy_json(value) for key, value in defaults.items()}
    for key, value in stored.items():
        if key in defaults:
            result[key] = copy_json(value)
    return result


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_statement(
    db: ServiceDatabase,
    namespace: str,
    scope: str,
    key: str,
    *,
    op: str,
    initial: Any,
    operand: Any = None,
) -> PGInsert | SQLiteInsert:
    """The one upsert of ``op`` ("set", "increment", "toggle", "append") for one setting.

    ``initial`` is the value a missing row starts with (the default with the operation
    applied); ``operand`` is the increment or the appended item.
    """
    insert = upsert(db, _TABLE)  # type: ignore[arg-type]  # a Table, typed as FromClause
    stored = _TABLE.c.value
    postgres = db.backend == "postgresql"
    new: Any
    if op == "set":
        new = insert.excluded.value
    elif op == "increment":
        new = _increment(stored, operand, postgres)
    elif op == "toggle":
        new = _toggle(stored, postgres)
    elif op == "append":
        new = _append(stored, operand, postgres)
    else:  # pragma: no cover - callers pass one of the above
        raise errors.ArgumentError(f"unknown operation {op!r}")
    now = _now()
    return insert.values(
        namespace=namespace, scope=scope, key=key, value=initial, updated_at=now
    ).on_conflict_do_update(
        index_elements=_PK, set_={"value": new, "updated_at": now}
    )  # RETURNING is added by the caller


def _increment(stored: ColumnElement[Any], by: int | float, postgres: bool) -> ColumnElement[Any]:
    if postgres:
        return func.to_jsonb(cast(stored, Numeric) + cast(literal(by), Numeric))
    return func.json_extract(stored, "$") + literal(by)


def _toggle(stored: ColumnElement[Any], postgres: bool) -> ColumnElement[Any]:
    if postgres:
        return func.to_jsonb(not_(cast(stored, Boolean)))
    return case(
        (func.json_extract(stored, "$") != 0, func.json("false")),
        else_=func.json("true"),
    )


def _append(stored: ColumnElement[Any], item: Any, postgres: bool) -> ColumnElement[Any]:
    text = literal(json_of("an appended item", item).decode(), String())
    if postgres:
        return stored.op("||")(func.jsonb_build_array(cast(text, JSONB)))
    return func.json_insert(stored, "$[#]", func.json(text))
