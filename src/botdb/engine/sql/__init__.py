"""asyncpg-style SQL (PostgreSQL dialect, ``$1`` placeholders) made runnable on SQLite.

A real lexer over SQL feeds token-level rewrites, so nothing inside string literals, quoted
identifiers or comments is ever touched. ``$n`` becomes SQLite's numbered parameter ``?n`` (a
repeated ``$1`` binds once; ``$10`` is never ``$1`` then ``0``). What SQLite cannot express
with PostgreSQL's meaning raises :class:`~botdb.errors.UnsupportedSQLError` naming the
construct: a query runs with PostgreSQL's meaning or does not run at all.

Example:
    >>> translate_for_sqlite("SELECT * FROM t WHERE id = ANY($1)").sql
    'SELECT * FROM t WHERE id IN (SELECT value FROM json_each(?1))'

:func:`statement_kind`, :func:`is_read_only` and :func:`status_tag` classify statements for
both backends and never raise (dollar quotes and PostgreSQL operators are fine there).

The lexer, statement classification and operand helpers live in the private
:mod:`botdb.engine.sql._lex`; the token rewrites (casts, intervals, ``ANY``, DDL) in
:mod:`botdb.engine.sql._rewrite`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from botdb.engine.sql._lex import _kind_of, _lex, _returns_rows
from botdb.engine.sql._rewrite import NOW_SQL as NOW_SQL
from botdb.engine.sql._rewrite import _Rewriter

__all__ = [
    "SQLiteQuery",
    "is_read_only",
    "needs_reset",
    "statement_kind",
    "statement_traits",
    "status_tag",
    "translate_for_sqlite",
    "translate_script_for_sqlite",
]


@dataclass(frozen=True, slots=True)
class SQLiteQuery:
    """One statement translated for SQLite.

    Attributes:
        sql: the SQLite SQL; ``$n`` became ``?n``.
        param_count: the highest ``n`` used as ``$n``; 0 when there is none.
        json_params: 0-based indexes of parameters to bind as a JSON array (``= ANY($n)``).
        kind: the statement kind, as :func:`statement_kind` returns it.
        returns_rows: True for SELECT/VALUES/EXPLAIN/PRAGMA reads and any top-level RETURNING.
    """

    sql: str
    param_count: int
    json_params: frozenset[int]
    kind: str
    returns_rows: bool


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=2048)
def translate_for_sqlite(query: str) -> SQLiteQuery:
    """Translate one asyncpg-style statement for SQLite.

    Args:
        query: PostgreSQL SQL with ``$1``..``$n`` placeholders.

    Returns:
        The SQLite SQL (``?n`` placeholders) with what the engine needs to bind and run it.

    Raises:
        UnsupportedSQLError: the statement uses a construct SQLite cannot run faithfully.
        SQLSyntaxError: an unterminated literal or comment.
        ArgumentError: a ``$0`` placeholder.

    Example:
        >>> translate_for_sqlite("SELECT $1::int + 1").sql
        'SELECT CAST(?1 AS INTEGER) + 1'
    """
    toks, count = _lex(query, strict=True)
    kind = _kind_of(toks)
    returns_rows = _returns_rows(toks, kind)
    rewriter = _Rewriter(toks)
    sql = rewriter.run()
    return SQLiteQuery(sql, count, frozenset(rewriter.json_params), kind, returns_rows)


def translate_script_for_sqlite(script: str) -> str:
    """Translate a multi-statement script without parameters (for ``executescript``).

    Raises:
        UnsupportedSQLError: a ``$n`` placeholder, or a construct SQLite cannot run.
    """
    toks, _ = _lex(script, strict=True, params=False)
    return _Rewriter(toks).run()


@lru_cache(maxsize=2048)
def statement_kind(query: str) -> str:
    """The statement's kind: its first keyword, upper-case.

    Leading whitespace, comments and ``(`` are skipped; for ``WITH`` it is the keyword of the
    main statement after the CTE list; CREATE/DROP/ALTER give two words without modifiers
    (``CREATE UNIQUE INDEX`` -> ``"CREATE INDEX"``). An empty query gives ``""``.

    Example:
        >>> statement_kind("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x")
        'INSERT'
    """
    return _kind_of(_lex(query, strict=False)[0])


_READ_KINDS = frozenset(("SELECT", "VALUES", "SHOW", "EXPLAIN", "TABLE"))
_WRITE_WORDS = frozenset(("INSERT", "DELETE", "MERGE", "TRUNCATE", "INTO"))


@lru_cache(maxsize=2048)
def is_read_only(query: str) -> bool:
    """Whether the statement only reads, so running it twice cannot change data.

    True for SELECT/VALUES/SHOW/EXPLAIN without a data-modifying CTE, ``SELECT ... INTO``,
    ``nextval``/``setval``, or ``EXPLAIN ANALYZE`` of a write. Functions a query calls are
    assumed not to write.
    """
    toks = _lex(query, strict=False)[0]
    kind = _kind_of(toks)
    if kind not in _READ_KINDS:
        return False
    if kind == "EXPLAIN" and not {"ANALYZE", "ANALYSE"} & {t.u for t in toks if t.k == "w"}:
        return True
    for j, tok in enumerate(toks):
        if tok.k != "w":
            continue
        if tok.u in _WRITE_WORDS or (tok.u == "UPDATE" and toks[j - 1].u not in ("FOR", "KEY")):
            return False
        if tok.u in ("NEXTVAL", "SETVAL") and toks[j + 1].u == "(":
            return False
    return True


# Statements that can leave nothing behind on the connection once they have run (outside a
# transaction, or inside one that ends with COMMIT/ROLLBACK).
_STATELESS_KINDS = frozenset(
    (
        "SELECT", "VALUES", "TABLE", "SHOW", "EXPLAIN", "INSERT", "UPDATE", "DELETE", "MERGE",
        "COPY", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
        "LOCK", "TRUNCATE", "ANALYZE",
    )
)  # fmt: skip
# Functions that change the session rather than the data: session-level advisory locks and
# set_config(..., false). Transaction-level ones (pg_advisory_xact_lock) end with the transaction.
_SESSION_FUNCTIONS = re.compile(
    r"\b(?:pg_(?:try_)?advisory_lock(?:_shared)?|set_config|dblink_connect(?:_u)?)\s*\("
    r"|\binto\s+temp(?:orary)?\b",
    re.IGNORECASE,
)


RESETS, WRITES = 1, 2


@lru_cache(maxsize=4096)
def statement_traits(query: str) -> int:
    """What the engine needs to know of a statement, as flags (one cached lookup per call):
    ``RESETS`` when :func:`needs_reset`, ``WRITES`` when not :func:`is_read_only`."""
    return (RESETS if needs_reset(query) else 0) | (0 if is_read_only(query) else WRITES)


@lru_cache(maxsize=4096)
def needs_reset(query: str) -> bool:
    """Whether running ``query`` may leave session state on its connection.

    True for SET/RESET, LISTEN, temporary tables (every CREATE), cursors (DECLARE), PREPARE,
    PRAGMA, ATTACH and anything else that is not plain data access, and for queries that call
    a session-level advisory lock or ``set_config``. The pool resets a connection after such a
    statement before anyone else gets it; plain statements (the hot path) need no reset.

    Example:
        >>> needs_reset("SET statement_timeout = '1ms'"), needs_reset("SELECT 1")
        (True, False)
    """
    if _SESSION_FUNCTIONS.search(query):
        return True
    return statement_kind(query) not in _STATELESS_KINDS


_COUNTED = frozenset(("UPDATE", "DELETE", "SELECT", "MERGE", "FETCH", "MOVE", "COPY"))
_TAGS = {
    "VALUES": "SELECT",
    "TABLE": "SELECT",
    "START": "START TRANSACTION",
    "END": "COMMIT",
    "ABORT": "ROLLBACK",
    "TRUNCATE": "TRUNCATE TABLE",
    "LOCK": "LOCK TABLE",
}


def status_tag(query: str, rowcount: int) -> str:
    """The command status PostgreSQL would return, as asyncpg's ``execute`` gives it.

    Args:
        query: the statement that ran.
        rowcount: rows affected or returned; -1 (unknown) counts as 0.

    Example:
        >>> status_tag("INSERT INTO t VALUES (1), (2)", 2)
        'INSERT 0 2'
    """
    kind = statement_kind(query)
    count = max(rowcount, 0)
    if kind == "INSERT":
        return f"INSERT 0 {count}"
    tag = _TAGS.get(kind, kind)
    return f"{tag} {count}" if tag in _COUNTED else tag
