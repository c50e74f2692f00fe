"""Alembic's autogenerate diffs as one readable line each (for ``check()`` and the CLI)."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_diff"]


def describe_diff(diff: Any) -> list[str]:
    """Readable lines for one entry of :func:`alembic.autogenerate.compare_metadata`.

    Column modifications come as a list of tuples; every other entry is one tuple whose first
    item names the operation (``add_table``, ``remove_column``, ``modify_type``...).
    """
    if isinstance(diff, list):
        return [line for item in diff for line in describe_diff(item)]
    if not isinstance(diff, tuple) or not diff:
        return [repr(diff)]
    op = str(diff[0])
    words = op.replace("_", " ")
    if op in ("add_table", "remove_table"):
        return [f"{words} {diff[1].name}"]
    if op in ("add_column", "remove_column"):
        column = diff[3]
        return [f"{words} {diff[2]}.{column.name} ({column.type})"]
    if op in ("add_index", "remove_index"):
        index = diff[1]
        columns = ", ".join(str(getattr(c, "name", c)) for c in index.expressions)
        return [f"{words} {index.name} on {index.table.name} ({columns})"]
    if op in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        table = getattr(constraint, "table", None)
        where = f" on {table.name}" if table is not None else ""
        return [f"{words} {constraint.name}{where}"]
    if op.startswith("modify_") and len(diff) >= 7:
        _, _schema, table, column, _existing, old, new = diff[:7]
        return [f"{words} {table}.{column}: {old!r} -> {new!r}"]
    return [f"{words} {diff[1:]!r}"]
