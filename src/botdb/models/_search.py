"""The full-text index over ``messages.content``, made beside the table on each backend.

SQLite: an FTS5 *external-content* table ``messages_fts`` over ``messages`` (it stores only
the index, the text stays in ``messages``), kept in step by three triggers, ranked with
``bm25``. PostgreSQL: a GIN expression index on ``to_tsvector('simple', content)`` (ASCII
punctuation turned into spaces first, see :data:`PG_VECTOR`), ranked with ``ts_rank``.

Why an expression index and not a stored generated ``tsvector`` column: both compute the
vector once per written row, and the ingest cost measured the same. On the reference machine
(2 cores, PostgreSQL 15, COPY of 200k chat-sized messages beside six btree indexes, runs
alternated): ~1.5 s without full-text search, 2.5-2.8 s with the expression index, 2.5-3.2 s
with the generated column and its GIN index, whose table was 72% larger (43 MB against 25 MB).
What the column would save is re-parsing the text of each *match* for ``ts_rank``, a cost
bounded by the matches, not by the table; and a column on one backend only would have to be
hidden from the model and from every copy path.

The ``simple`` configuration (no stemming, no stop words) and ``unicode61`` with
``remove_diacritics 0`` split and fold text alike: words are runs of letters and digits,
case-folded (Cyrillic included), accents kept; anything else (punctuation, ``_``, emoji)
separates words. The same objects are made by ``create_all`` (the listeners below) and by the
migration ``botdb_0005``, from the statements here.

A migration that rebuilds ``messages`` on SQLite (a batch "move and copy") drops its triggers:
call :func:`drop_sqlite` before and :func:`create_sqlite` after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import DDL, Table, event

__all__ = [
    "FTS_TABLE",
    "PG_INDEX",
    "PG_VECTOR",
    "SEARCH_TABLES",
    "attach",
    "pg_statements",
    "sqlite_drop_statements",
    "sqlite_statements",
]

#: The FTS5 table (SQLite).
FTS_TABLE = "messages_fts"
#: Every table FTS5 makes for it: the virtual table and its shadow tables. They belong to the
#: index, not to the data: copies, row counts and emptiness checks leave them out.
SEARCH_TABLES = frozenset(
    {FTS_TABLE, *(f"{FTS_TABLE}_{part}" for part in ("data", "idx", "docsize", "config"))}
)
#: The GIN expression index (PostgreSQL) and the expression it indexes, as queries must
#: spell it for the planner to use the index.
PG_INDEX = "ix_messages_content_search"
# ASCII punctuation becomes spaces before PostgreSQL's parser sees the text: the parser keeps
# ``ana_b@example.com``, ``example.com`` or ``1.5`` whole (email, host, number tokens) where
# FTS5 finds the words ``ana``, ``b``, ``example``, ``com``; without punctuation both backends
# cut the same words. ``translate`` is immutable and locale-free (a regular expression's
# classes would depend on the database's locale).
_PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"
_SPACES = " " * 32
PG_VECTOR = (
    f"to_tsvector('simple'::regconfig, translate(content, '{_PUNCTUATION}'::text, "
    f"'{_SPACES}'::text))"
)

_TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")


def sqlite_statements(*, backfill: bool) -> list[str]:
    """The FTS5 table and its triggers; ``backfill`` also indexes the rows already there."""
    statements = [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(content, "
        "content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
        f"CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN "
        f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.rowid, new.content); END",
        f"CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) "
        "VALUES ('delete', old.rowid, old.content); END",
        # An upsert that sets the same text again (a replayed event) costs the index nothing.
        f"CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages "
        f"WHEN old.content IS NOT new.content BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) "
        "VALUES ('delete', old.rowid, old.content); "
        f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.rowid, new.content); END",
    ]
    if backfill:
        statements.append(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    return statements


def sqlite_drop_statements() -> list[str]:
    """Drop the triggers and the FTS5 table (its shadow tables go with it)."""
    return [f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS] + [
        f"DROP TABLE IF EXISTS {FTS_TABLE}"
    ]


def pg_statements() -> list[str]:
    """The GIN index (building it indexes the rows already there)."""
    return [f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON messages USING gin ({PG_VECTOR})"]


def attach(table: Table) -> None:
    """Make ``create_all`` / ``drop_all`` create and drop the search objects with ``table``.

    ``Table.to_metadata`` does not copy these listeners: call it again on a copy.
    """
    # DDL() formats its text with ``%`` (the table's name): the punctuation's ``%`` is doubled.
    for statement in sqlite_statements(backfill=False):
        ddl = DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]
        event.listen(table, "after_create", ddl.execute_if(dialect="sqlite"))
    for statement in pg_statements():
        ddl = DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]
        event.listen(table, "after_create", ddl.execute_if(dialect="postgresql"))
    # The triggers go with the table; the FTS5 table would stay behind, pointing at nothing.
    drop_fts = DDL(f"DROP TABLE IF EXISTS {FTS_TABLE}")  # type: ignore[no-untyped-call]
    drop: Callable[..., Any] = drop_fts.execute_if(dialect="sqlite")
    event.listen(table, "before_drop", drop)
