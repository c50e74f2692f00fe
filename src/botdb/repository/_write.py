"""Write statements of the repository: upserts, get-or-create inserts, bulk updates.

Every statement here is ONE SQL statement per batch, so its row count is the database's own:

* upserts are ``INSERT ... ON CONFLICT (...) DO UPDATE`` (PostgreSQL's or SQLite's dialect
  construct, chosen by the backend);
* ``get_or_create`` is ``INSERT ... ON CONFLICT (...) DO NOTHING RETURNING``;
* a bulk update is ``UPDATE t SET col = CASE WHEN <key 1> THEN v1 WHEN <key 2> THEN v2 ...
  ELSE col END WHERE <key 1> OR <key 2> ...`` per group of rows updating the same columns,
  so rows whose key does not exist are simply not counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, bindparam, case, or_, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from botdb.errors import ArgumentError
from botdb.repository._model import ModelInfo

__all__ = [
    "bulk_update_statements",
    "conflict_key",
    "dedupe",
    "insert_for",
    "onupdate_values",
    "upsert_set",
]

#: Bound parameters per statement, below both PostgreSQL's (32767) and SQLite's (32766) caps.
MAX_PARAMS = 30_000
#: Rows per bulk-update statement (CASE chains grow with the rows).
UPDATE_CHUNK = 500


def insert_for(backend: str, target: Any) -> Insert:
    """The dialect ``insert()`` that has ``on_conflict_do_update`` / ``_do_nothing``."""
    if backend == "postgresql":
        return postgresql.insert(target)
    return sqlite.insert(target)


def conflict_key(info: ModelInfo, columns: Sequence[str] | None, *, what: str) -> list[str]:
    """The conflict columns (default: the primary key); ArgumentError unless they are unique."""
    keys = list(info.pk_keys) if columns is None else list(columns)
    for key in keys:
        info.column(key)
    if not keys or info.unique_key_for(keys) is None:
        uniques = [sorted(u) for u in info.unique_keys]
        raise ArgumentError(
            f"{what} needs a primary key or unique constraint over exactly "
            f"({', '.join(keys)}) on {info.name}; its unique keys are {uniques}. "
            "Add a UniqueConstraint (and a migration) or pass other conflict columns."
        )
    return keys


def onupdate_values(info: ModelInfo, skip: set[str]) -> dict[str, Any]:
    """SQL-expression or scalar ``onupdate`` values (e.g. ``updated_at``), which ON CONFLICT
    DO UPDATE does not apply by itself."""
    values: dict[str, Any] = {}
    for key, column in info.columns.items():
        default = column.onupdate
        if key in skip or default is None:
            continue
        if getattr(default, "is_clause_element", False) or getattr(default, "is_scalar", False):
            values[key] = default.arg  # type: ignore[attr-defined]
    return values


def _same_as_insert_default(column: Any, value: Any) -> bool:
    """Whether ``column``'s insert default is the same SQL function as its ``onupdate``
    (``updated_at``: ``utcnow()`` both): then the proposed row (``excluded``) carries the
    value already, evaluated in the same statement."""
    server = getattr(column.server_default, "arg", None)
    return getattr(value, "is_clause_element", False) and type(server) is type(value)


def upsert_set(
    info: ModelInfo,
    statement: Insert,
    given: set[str],
    conflict: list[str],
    update_columns: Sequence[str] | None,
) -> dict[str, Any]:
    """The ``SET`` of ``ON CONFLICT DO UPDATE``: the given non-key columns (or
    ``update_columns``) from ``excluded``, ``onupdate`` columns, and un-deleting."""
    if update_columns is None:
        targets = [key for key in info.columns if key in given and key not in conflict]
    else:
        targets = list(update_columns)
        for key in targets:
            info.column(key)
        missing = [key for key in targets if key not in given]
        if missing:
            raise ArgumentError(f"update_columns {missing} are not among the values given")
    excluded: Any = statement.excluded  # type: ignore[attr-defined]
    set_: dict[str, Any] = {
        info.columns[key].name: excluded[info.columns[key].key] for key in targets
    }
    for key, value in onupdate_values(info, set(targets)).items():
        column = info.columns[key]
        # Citus refuses a non-IMMUTABLE function (utcnow()) in DO UPDATE SET on a distributed
        # table; excluded.<column> holds the same value.
        set_[column.name] = excluded[key] if _same_as_insert_default(column, value) else value
    if info.soft_delete:
        for key, value in info.restore_values().items():
            set_.setdefault(info.columns[key].name, value)
    if not set_:
        # Nothing to change: a no-op assignment still makes RETURNING yield the row.
        key = conflict[0]
        set_[info.columns[key].name] = excluded[info.columns[key].key]
    return set_


def dedupe(
    info: ModelInfo, rows: Sequence[Mapping[str, Any]], key: Sequence[str], *, what: str
) -> dict[tuple[str, ...], dict[tuple[Any, ...], dict[str, Any]]]:
    """Rows grouped by the set of columns they carry, one row per ``key`` (the last wins).

    PostgreSQL refuses an ON CONFLICT DO UPDATE touching one row twice, and a CASE would use
    only the first: the last value given for a key is what both backends apply.
    """
    groups: dict[tuple[str, ...], dict[tuple[Any, ...], dict[str, Any]]] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise ArgumentError(f"{what} takes a list of dicts, got {type(row).__name__}")
        info.check_values(row)
        try:
            ident = tuple(row[k] for k in key)
        except KeyError as exc:
            raise ArgumentError(
                f"every row of {what} needs {', '.join(key)}; one lacks {exc.args[0]!r}"
            ) from None
        columns = tuple(sorted(row))
        groups.setdefault(columns, {})[ident] = dict(row)
    return groups


def chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bulk_update_statements(
    info: ModelInfo, rows: Sequence[Mapping[str, Any]], *, include_deleted: bool
) -> Iterator[Update]:
    """One UPDATE per group of rows setting the same columns (and per chunk of rows)."""
    groups = dedupe(info, rows, info.pk_keys, what="bulk_update")
    live = info.live(include_deleted)
    for columns, by_key in groups.items():
        targets = [key for key in columns if key not in info.pk_keys]
        if not targets:
            raise ArgumentError("bulk_update rows must set at least one non-key column")
        for chunk in chunks(list(by_key.values()), UPDATE_CHUNK):
            matches = [_match(info, row) for row in chunk]
            set_: dict[Any, Any] = {}
            for key in targets:
                column = info.columns[key]
                set_[column] = case(
                    *(
                        (match, bindparam(None, row[key], type_=column.type))
                        for match, row in zip(matches, chunk, strict=True)
                    ),
                    else_=column,
                )
            if len(info.pk_keys) == 1:
                attr = info.pk_attrs[0]
                where: ColumnElement[bool] = attr.in_([row[info.pk_keys[0]] for row in chunk])
            elif len(chunk) > 1:
                where = tuple_(*info.pk_attrs).in_(
                    [tuple(row[k] for k in info.pk_keys) for row in chunk]
                )
            else:
                where = or_(*matches)
            yield update(info.table).where(where, *live).values(set_)


def _match(info: ModelInfo, row: Mapping[str, Any]) -> ColumnElement[bool]:
    return and_(*(attr == row[key] for attr, key in zip(info.pk_attrs, info.pk_keys, strict=True)))
