"""Alembic's autogenerate diffs as one readable line each (for ``check()`` and the CLI)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import DefaultClause, Table, inspect
from sqlalchemy.engine import Connection

__all__ = ["describe_diff", "index_where_diffs", "server_default_diffs"]

_NOISE = re.compile(r"[\s()]+")
# PostgreSQL reflects a default with its cast: 'x'::character varying, '[]'::jsonb.
_CAST = re.compile(r"::[a-z_ ]+(\[\])?")
# ... and a quoted number on a numeric column as the bare number: '0' -> 0.
_QUOTED_NUMBER = re.compile(r"'(-?[0-9]+(\.[0-9]+)?)'")


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


def _normalized(where: Any, conn: Connection) -> str:
    if where is None:
        return ""
    if not isinstance(where, str):
        where = str(where.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    return _NOISE.sub("", where).lower()


def index_where_diffs(conn: Connection, tables: Iterable[Table]) -> list[str]:
    """Partial indexes whose WHERE differs between the models and the database.

    Alembic's autogenerate compares an index's columns and uniqueness but not its WHERE
    clause (``postgresql_where`` / ``sqlite_where``); this compares them as text, ignoring
    spaces, parentheses and case. Indexes missing on either side are Alembic's to report.
    """
    key = f"{conn.dialect.name}_where"
    inspector = inspect(conn)
    lines: list[str] = []
    for table in tables:
        if not inspector.has_table(table.name):
            continue
        reflected = {
            str(ix["name"]): ix.get("dialect_options", {}).get(key)
            for ix in inspector.get_indexes(table.name)
        }
        for index in table.indexes:
            if index.name is None or str(index.name) not in reflected:
                continue
            model = index.kwargs.get(key)
            old_text = _normalized(reflected[str(index.name)], conn)
            new_text = _normalized(model, conn)
            if old_text != new_text:
                lines.append(
                    f"modify index where {index.name} on {table.name}: "
                    f"{old_text or None!r} -> {new_text or None!r}"
                )
    return lines


def _default_text(default: Any, conn: Connection) -> str | None:
    """A DefaultClause (from a model or reflected) as normalized SQL text; None if absent."""
    if default is None:
        return None
    if isinstance(default, str):  # reflected: the SQL text of the default
        sql = default
    elif isinstance(default.arg, str):  # a model's plain string: a SQL string literal
        sql = "'" + default.arg.replace("'", "''") + "'"
    else:
        sql = str(default.arg.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    text = _CAST.sub("", _NOISE.sub(" ", sql).strip().lower()).replace(" ", "")
    return _QUOTED_NUMBER.sub(r"\1", text)


def server_default_diffs(conn: Connection, tables: Iterable[Table]) -> list[str]:
    """Columns whose server default differs between the models and the database.

    Alembic only compares server defaults with ``compare_server_default``, and then misreads
    ``''`` on SQLite and fails on a default with a quote on PostgreSQL; this compares them as
    text (ignoring spaces, parentheses, case and PostgreSQL casts). Computed and identity
    columns are left out (they are not plain defaults).
    """
    inspector = inspect(conn)
    lines: list[str] = []
    for table in tables:
        if not inspector.has_table(table.name):
            continue
        reflected = {
            str(col["name"]): col
            for col in inspector.get_columns(table.name)
            if "computed" not in col and "identity" not in col
        }
        for column in table.columns:
            found = reflected.get(str(column.name))
            model = column.server_default
            if found is None or (model is not None and not isinstance(model, DefaultClause)):
                continue
            if column.primary_key and column.autoincrement is True and model is None:
                continue  # SERIAL / rowid: the reflected nextval() is not a model default
            old = _default_text(found.get("default"), conn)
            new = _default_text(model, conn)
            if old != new and not (old is not None and old.startswith("nextval") and new is None):
                lines.append(f"modify server default {table.name}.{column.name}: {old} -> {new}")
    return lines
