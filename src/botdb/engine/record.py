"""``Record``: a result row that behaves like asyncpg's on every backend.

On PostgreSQL botdb returns asyncpg's own ``Record`` (no copy, driver speed); on SQLite it
returns this class, which offers the same reading API: ``r["col"]``, ``r[0]``, ``r.get("col")``,
``dict(r)``, ``r.keys()``, ``r.values()``, ``r.items()``, iteration over values and ``len(r)``.
``isinstance(row, botdb.Record)`` holds for both once the PostgreSQL backend is loaded.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

__all__ = ["Record", "SQLiteRecord"]


class Record(abc.ABC):
    """The row type botdb returns; asyncpg's ``Record`` is registered as a virtual subclass."""

    __slots__ = ()

    @abc.abstractmethod
    def __getitem__(self, key: int | str) -> Any: ...

    @abc.abstractmethod
    def get(self, key: str, default: Any = None) -> Any: ...

    @abc.abstractmethod
    def keys(self) -> Iterator[str]: ...


class SQLiteRecord(Record):
    """A row from SQLite. Built once per row from a shared column-name index."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                raise KeyError(key) from None
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        position = self._index.get(key)
        return default if position is None else self._values[position]

    def keys(self) -> Iterator[str]:
        return iter(self._index)

    def values(self) -> Iterator[Any]:
        return iter(self._values)

    def items(self) -> Iterator[tuple[str, Any]]:
        return zip(self._index, self._values, strict=True)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SQLiteRecord):
            return self._values == other._values and list(self._index) == list(other._index)
        if isinstance(other, tuple):
            return self._values == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in self.items())
        return f"<Record {fields}>"


def column_index(description: Any) -> dict[str, int]:
    """Map column names to positions from a DB-API ``cursor.description``.

    A name that appears twice (``SELECT a.id, b.id``) maps to its first position, as in asyncpg.
    """
    index: dict[str, int] = {}
    for position, column in enumerate(description):
        index.setdefault(column[0], position)
    return index
