"""Idempotent writes for importers: classify rows as new / changed / unchanged, then upsert.

Existing rows are read by natural key in the import's own transaction and compared with the
file's values in Python, so the counts are exact on both backends; new and changed rows are
then written with ``INSERT ... ON CONFLICT`` (in one statement per batch), unchanged rows are
not touched at all (a second import of the same file writes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from botdb.models.types import utcnow

__all__ = ["count_present", "fill_event_ids", "upsert"]

#: Keys per ``IN (...)`` list (SQLite allows 32766 parameters per statement).
_CHUNK = 500


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _existing(
    conn: AsyncConnection, table: Table, key: Sequence[str], columns: Sequence[str], keys: list[Any]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    key_cols = [table.c[name] for name in key]
    value_cols = [table.c[name] for name in columns]
    for chunk in _chunks(keys):
        query = select(*key_cols, *value_cols).where(tuple_(*key_cols).in_(list(chunk)))
        for row in await conn.execute(query):
            found[tuple(row[: len(key)])] = tuple(row[len(key) :])
    return found


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    key: Sequence[str],
    update_columns: Sequence[str],
) -> tuple[int, int, int]:
    """Write ``rows`` keyed on ``key``; returns ``(inserted, updated, unchanged)``.

    A row whose key exists is updated with ``update_columns`` when one of them differs, and
    left alone otherwise (with no ``update_columns``, an existing row is never changed).
    Rows repeating a key within ``rows`` count once (the last wins).
    """
    if not rows:
        return 0, 0, 0
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        unique[tuple(row[c] for c in key)] = row
    existing = await _existing(conn, table, key, update_columns, list(unique))
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for natural, row in unique.items():
        current = existing.get(natural)
        if current is None:
            new.append(row)
        elif any(_differs(row[c], v) for c, v in zip(update_columns, current, strict=True)):
            changed.append(row)
    if new:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).on_conflict_do_nothing(index_elements=list(key))
        # One statement per set of columns: a row without a column (a record without its
        # own created_at) gets the column's default, never NULL.
        shapes: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in new:
            shapes.setdefault(frozenset(row), []).append(row)
        for group in shapes.values():
            await conn.execute(statement, group)
    if changed:
        values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in update_columns}
        if "updated_at" in table.c and "updated_at" not in values:
            values["updated_at"] = utcnow()
        statement = (
            update(table).where(*[table.c[c] == bindparam(f"k_{c}") for c in key]).values(values)
        )
        params = [
            {**{f"k_{c}": row[c] for c in key}, **{f"v_{c}": row[c] for c in update_columns}}
            for row in changed
        ]
        await conn.execute(statement, params)
    return len(new), len(changed), len(unique) - len(new) - len(changed)


def _differs(new: Any, current: Any) -> bool:
    if isinstance(new, bool) or isinstance(current, bool):
        return bool(new) != bool(current) or (new is None) != (current is None)
    return bool(new != current)


async def count_present(
    conn: AsyncConnection, table: Table, key: Sequence[str], keys: set[tuple[Any, ...]]
) -> int:
    """How many of ``keys`` (natural-key tuples) exist in ``table``."""
    key_cols = [table.c[name] for name in key]
    total = 0
    for chunk in _chunks(list(keys)):
        query = select(func.count()).select_from(table).where(tuple_(*key_cols).in_(list(chunk)))
        total += int((await conn.execute(query)).scalar_one())
    return total


async def fill_event_ids(conn: AsyncConnection, events: Table, rows: list[dict[str, Any]]) -> None:
    """Replace each row's ``event_id`` placeholder ``(message_id, guild_id)`` by the event's id."""
    wanted = list({row["event_id"] for row in rows if isinstance(row["event_id"], tuple)})
    ids: dict[tuple[Any, ...], int] = {}
    for chunk in _chunks(wanted):
        query = select(events.c.message_id, events.c.guild_id, events.c.id).where(
            tuple_(events.c.message_id, events.c.guild_id).in_(list(chunk))
        )
        for message_id, guild_id, event_id in await conn.execute(query):
            ids[(message_id, guild_id)] = event_id
    for row in rows:
        if isinstance(row["event_id"], tuple):
            row["event_id"] = ids[row["event_id"]]
