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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from botdb.errors import ArgumentError, SQLSyntaxError, UnsupportedSQLError

__all__ = [
    "SQLiteQuery",
    "is_read_only",
    "statement_kind",
    "status_tag",
    "translate_for_sqlite",
    "translate_script_for_sqlite",
]

_TS_FORMAT = "'%Y-%m-%d %H:%M:%f'"
NOW_SQL = f"(strftime({_TS_FORMAT}, 'now'))"


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
# Lexer
# ---------------------------------------------------------------------------------------------


class _Tok:
    """A significant token; ``ws`` holds the whitespace and comments in front of it."""

    __slots__ = ("k", "t", "u", "ws")

    def __init__(self, k: str, t: str, ws: str = "", u: str | None = None) -> None:
        self.k = k  # w word, q "ident", s 'string', n number, p param, o operator,
        self.t = t  # c punctuation, :: cast, x synthetic expression, $ end of input
        self.u = (t.upper() if k == "w" else t) if u is None else u
        self.ws = ws


_LEX = re.compile(
    r"""(?P<ws>(?:\s+|--[^\n]*)*)
    (?:(?P<eof>\Z)|(?P<bc>/\*)
    |(?P<es>[eE]'(?:[^'\\]|\\.|'')*')
    |(?P<bad>[uU]&['"]|[bB]')
    |(?P<s>[xX]?'(?:[^']|'')*')
    |(?P<dq>\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$)
    |(?P<p>\$\d+)
    |(?P<q>"(?:[^"]|"")*")
    |(?P<w>[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9$\x80-\U0010ffff]*)
    |(?P<n>(?:0[xX][0-9A-Fa-f]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
    |(?P<cast>::)
    |(?P<o>[-+*/<>=~!@\#%^&|`?]+)
    |(?P<c>[(),;\[\].:])
    |(?P<other>.))""",
    re.VERBOSE | re.DOTALL,
)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))|''",
    re.DOTALL,
)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_escape(m: re.Match[str]) -> str:
    if m.group(0) == "''":
        return "'"
    octal, hex2, hex4, hex8, char = m.groups()
    if char is not None:
        return _SIMPLE_ESCAPES.get(char, char)
    digits = octal or hex2 or hex4 or hex8
    code = int(digits, 8 if octal else 16)
    if code == 0 or code > 0x10FFFF:
        raise SQLSyntaxError(f"invalid escape \\{m.group(0)[1:]} in an E'' string")
    return chr(code)


def _block_comment_end(sql: str, pos: int, strict: bool) -> tuple[int, bool]:
    """End of the (possibly nested) block comment opening at ``pos``, and whether it nests."""
    depth, nested, at = 1, False, pos + 2
    while depth:
        m = _COMMENT_MARK.search(sql, at)
        if m is None:
            if not strict:
                return len(sql), nested
            raise SQLSyntaxError("unterminated /* comment")
        depth += 1 if m.group() == "/*" else -1
        nested = nested or depth > 1
        at = m.end()
    return at, nested


def _operator_rejection(op: str) -> str | None:
    if "~" in op:
        return f"regular expression operator {op}"
    if op in ("@>", "<@"):
        return f"containment operator {op}"
    if "?" in op:
        return f"jsonb operator {op}"
    if "#" in op or "@" in op or "`" in op:
        return f"operator {op}"
    return None


def _lex(sql: str, *, strict: bool, params: bool = True) -> tuple[list[_Tok], int]:
    """Tokens of ``sql`` (ending with a ``$`` end token) and the highest ``$n`` used.

    With ``strict`` (translation for SQLite) what SQLite cannot run raises; without it (pure
    classification) everything PostgreSQL accepts lexes, dollar-quoted bodies included.
    """
    toks: list[_Tok] = []
    ws: list[str] = []
    max_param = 0
    pos, match = 0, _LEX.match
    while True:
        m = match(sql, pos)
        assert m is not None  # the `other` branch matches any character, `eof` the end
        kind = m.lastgroup or "other"
        if m.group("ws"):
            ws.append(m.group("ws"))
        start, end = m.end("ws"), m.end()
        text = sql[start:end]
        if kind == "eof":
            break
        if kind == "bc":
            end, nested = _block_comment_end(sql, start, strict)
            text = sql[start:end]
            if nested:  # SQLite's comments do not nest: defuse the inner markers
                text = "/*" + text[2:-2].replace("/*", "/ *").replace("*/", "* /") + "*/"
            ws.append(text)
            pos = end
            continue
        if kind == "es":
            kind = "s"
            if strict:
                body = _ESCAPE.sub(_decode_escape, text[2:-1])
                text = "'" + body.replace("'", "''") + "'"
        elif kind == "dq":
            if strict:
                raise UnsupportedSQLError("dollar-quoted string", "use a '...' literal")
            close = sql.find(text, end)
            end = len(sql) if close < 0 else close + len(text)
            kind, text = "s", sql[start:end]
        elif kind == "p":
            if not params:
                raise UnsupportedSQLError(f"{text} placeholder in a script")
            number = int(text[1:])
            if number == 0 and strict:
                raise ArgumentError("there is no parameter $0; placeholders start at $1")
            max_param = max(max_param, number)
            text = "?" + text[1:]
        elif kind == "o":
            cut = min((i for i in (text.find("--"), text.find("/*")) if i > 0), default=0)
            text = text[:cut] if cut else text
            while len(text) > 1 and text[-1] in "+-" and not set(text) & set("~!@#%^&|`?"):
                text = text[:-1]
            end = start + len(text)
            binary = text != "~" or bool(toks and _ends_operand(toks[-1]))  # unary ~: bit not
            if strict and binary and (reason := _operator_rejection(text)):
                raise UnsupportedSQLError(reason)
        elif kind in ("bad", "other") and strict:
            if text[0] in "'\"":
                raise SQLSyntaxError("unterminated quoted string or identifier")
            if kind == "bad":
                raise UnsupportedSQLError(f"{text.rstrip(chr(39) + chr(34))}'' literal")
        toks.append(_Tok("::" if kind == "cast" else kind, text, "".join(ws)))
        ws = []
        pos = end
    toks.append(_Tok("$", "", "".join(ws), u=""))
    toks += [_Tok("$", "", u="") for _ in range(4)]  # lookahead never runs off the end
    return toks, max_param


def _ends_operand(tok: _Tok) -> bool:
    if tok.k in ("q", "s", "n", "p", "x"):
        return True
    return tok.u == ")" or (tok.k == "w" and tok.u not in _NOT_OPERAND)


# Words that never end an operand and, before '(', are not a function name.
_NOT_OPERAND = frozenset(
    (
        *("ALL", "AND", "ANY", "AS", "ASC", "BETWEEN", "BY", "CASE", "DESC", "DISTINCT", "DO"),
        *("ELSE", "END", "ESCAPE", "EXCEPT", "FILTER", "FROM", "GROUP", "HAVING", "ILIKE", "IN"),
        *("INSERT", "INTERSECT", "INTO", "IS", "JOIN", "LIKE", "LIMIT", "NOT", "OFFSET", "ON"),
        *("OR", "ORDER", "OVER", "PARTITION", "RECURSIVE", "RETURNING", "SELECT", "SET"),
        *("SIMILAR", "SOME", "THEN", "UNION", "UPDATE", "USING", "VALUES", "WHEN", "WHERE"),
        *("WITH", "WITHIN"),
    )
)
_MAIN_WORDS = frozenset(("SELECT", "INSERT", "UPDATE", "DELETE", "VALUES", "MERGE", "TABLE"))
_DDL_MODIFIERS = frozenset(
    ("OR", "REPLACE", "UNIQUE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "RECURSIVE")
)


def _kind_of(toks: list[_Tok], start: int = 0) -> str:
    """The statement kind of the statement starting at ``toks[start]``."""
    j = start
    while toks[j].u == "(":
        j += 1
    first = toks[j]
    if first.k != "w":
        return ""
    if first.u == "WITH":
        depth = 0
        for k in range(j + 1, len(toks)):
            tok = toks[k]
            if tok.u == "(":
                depth += 1
            elif tok.u == ")":
                depth -= 1
            elif depth == 0 and tok.k == "w" and tok.u in _MAIN_WORDS and toks[k - 1].u == ")":
                return tok.u
            elif tok.u == ";":
                break
        return "WITH"
    if first.u in ("CREATE", "DROP", "ALTER"):
        k = j + 1
        while toks[k].u in _DDL_MODIFIERS:
            k += 1
        second = toks[k].u if toks[k].k == "w" else ""
        if second == "MATERIALIZED" and toks[k + 1].u == "VIEW":
            second = "MATERIALIZED VIEW"
        return f"{first.u} {second}".rstrip()
    return first.u


def _has_top_level(toks: list[_Tok], word: str) -> bool:
    depth = 0
    for tok in toks:
        if tok.u == "(":
            depth += 1
        elif tok.u == ")":
            depth -= 1
        elif depth == 0 and tok.u == word and tok.k == "w":
            return True
    return False


def _returns_rows(toks: list[_Tok], kind: str) -> bool:
    if kind in ("SELECT", "VALUES", "EXPLAIN", "SHOW", "TABLE"):
        return True
    if kind == "PRAGMA":
        words = {t.u for t in toks}
        return "=" not in words or "JOURNAL_MODE" in words
    return _has_top_level(toks, "RETURNING")


# ---------------------------------------------------------------------------------------------
# Operands: the primary expression left or right of an operator
# ---------------------------------------------------------------------------------------------

_ATOMS = frozenset(("x", "p", "s", "n"))
_NAMES = frozenset(("w", "q"))


def _is_name(tok: _Tok) -> bool:
    return tok.k == "q" or (tok.k == "w" and tok.u not in _NOT_OPERAND)


def _match(toks: list[_Tok], at: int, step: int) -> int:
    """Index of the parenthesis matching ``toks[at]`` (step -1 from ')', +1 from '('), or -1."""
    depth, j = 0, at
    opener, closer = ("(", ")") if step > 0 else (")", "(")
    while 0 <= j < len(toks):
        u = toks[j].u
        if u == opener:
            depth += 1
        elif u == closer:
            depth -= 1
            if depth == 0:
                return j
        j += step
    return -1


def _case_bound(toks: list[_Tok], at: int, step: int) -> int:
    """Index of the CASE matching END at ``at`` (step -1), or the END of CASE (step +1)."""
    opener, closer = ("END", "CASE") if step < 0 else ("CASE", "END")
    depth = paren = 0
    j = at
    while 0 <= j < len(toks):
        tok = toks[j]
        if tok.u in ("(", ")"):
            paren += 1 if (tok.u == "(") == (step > 0) else -1
        elif paren == 0 and tok.k == "w":
            if tok.u == opener:
                depth += 1
            elif tok.u == closer:
                depth -= 1
                if depth == 0:
                    return j
        j += step
    return -1


def _operand_start(toks: list[_Tok], end: int) -> int:
    """Start of the primary expression ending at ``toks[end]``, or -1 if there is none."""
    if end < 0:
        return -1
    tok = toks[end]
    if tok.k in _ATOMS:
        return end
    if tok.k == "w" and tok.u == "END":
        return _case_bound(toks, end, -1)
    if _is_name(tok):
        while end >= 2 and toks[end - 1].u == "." and toks[end - 2].k in _NAMES:
            end -= 2
        return end
    if tok.u == ")":
        start = _match(toks, end, -1)
        if start <= 0:
            return start
        before = toks[start - 1]
        if before.k == "w" and before.u in ("OVER", "FILTER"):
            return _operand_start(toks, start - 2)
        return _operand_start(toks, start - 1) if _is_name(before) else start
    return -1


def _operand_end(toks: list[_Tok], start: int) -> int:
    """End of the primary expression starting at ``toks[start]``, or -1 if there is none."""
    tok = toks[start]
    if tok.k in _ATOMS:
        return start
    if tok.k == "o" and tok.u in ("-", "+"):
        return _operand_end(toks, start + 1)
    if tok.u == "(":
        return _match(toks, start, 1)
    if tok.k == "w" and tok.u == "CASE":
        return _case_bound(toks, start, 1)
    if not _is_name(tok):
        return -1
    while toks[start + 1].u == "." and toks[start + 2].k in _NAMES:
        start += 2
    if toks[start + 1].u == "(":
        start = _match(toks, start + 1, 1)
        while start > 0 and toks[start + 1].u in ("FILTER", "OVER") and toks[start + 2].u == "(":
            start = _match(toks, start + 2, 1)
    return start


def _concat_start(toks: list[_Tok], end: int) -> int:
    start = _operand_start(toks, end)
    while start >= 2 and toks[start - 1].u == "||":
        start = _operand_start(toks, start - 2)
    return start


def _concat_end(toks: list[_Tok], start: int) -> int:
    end = _operand_end(toks, start)
    while end >= 0 and toks[end + 1].u == "||":
        end = _operand_end(toks, end + 2)
    return end


def _wordy(char: str) -> bool:
    return char.isalnum() or char in "_$?"


def _join(toks: list[_Tok], start: int, end: int, *, lead: bool = False) -> str:
    """SQL text of ``toks[start:end + 1]``, spacing synthetic text away from neighbours."""
    parts: list[str] = []
    prev: _Tok | None = None
    for j in range(start, end + 1):
        tok = toks[j]
        ws = tok.ws if lead or j > start else ""
        if (
            not ws
            and prev is not None
            and "x" in (tok.k, prev.k)
            and prev.t
            and tok.t
            and _wordy(prev.t[-1])
            and _wordy(tok.t[0])
        ):
            ws = " "
        parts += (ws, tok.t)
        prev = tok
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Types, casts and intervals
# ---------------------------------------------------------------------------------------------

_INT_TYPES = ("INT", "INTEGER", "BIGINT", "SMALLINT", "INT2", "INT4", "INT8")
_TYPE_CATEGORY: dict[str, str] = {
    **dict.fromkeys(_INT_TYPES, "int"),
    **dict.fromkeys(("TEXT", "VARCHAR", "CHAR", "CHARACTER", "BPCHAR"), "text"),
    **dict.fromkeys(("FLOAT", "FLOAT4", "FLOAT8", "REAL", "DOUBLE PRECISION"), "real"),
    **dict.fromkeys(("NUMERIC", "DECIMAL"), "numeric"),
    **dict.fromkeys(("BOOLEAN", "BOOL"), "bool"),
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMPTZ", "JSON", "JSONB"), "keep"),
    "DATE": "date",
}
_INT_FUNCTIONS = frozenset(
    ("COUNT", "EXISTS", "LENGTH", "CHAR_LENGTH", "ROW_NUMBER", "RANK", "DENSE_RANK", "NTILE")
)
_TRUE = frozenset(("t", "true", "y", "yes", "on", "1"))
_FALSE = frozenset(("f", "false", "n", "no", "off", "0"))


def _parse_type(
    toks: list[_Tok], at: int, construct: str
) -> tuple[str, tuple[str, ...], bool, int]:
    """Parse a type name at ``toks[at]``: (upper name, modifiers, is array, index of last token)."""
    tok = toks[at]
    if tok.k not in _NAMES:
        raise UnsupportedSQLError(f"{construct} without a type name")
    name, last = tok.u, at
    if name == "DOUBLE" and toks[at + 1].u == "PRECISION":
        name, last = "DOUBLE PRECISION", at + 1
    elif name in ("CHARACTER", "CHAR") and toks[at + 1].u == "VARYING":
        name, last = "VARCHAR", at + 1
    args: list[str] = []
    if toks[last + 1].u == "(":
        k = last + 2
        while toks[k].k == "n" or toks[k].u == ",":
            args += [toks[k].t] if toks[k].k == "n" else []
            k += 1
        if toks[k].u != ")":
            raise UnsupportedSQLError(f"{construct} with type modifier {toks[k].t!r}")
        last = k
    zone = toks[last + 1].u in ("WITH", "WITHOUT") and toks[last + 2].u == "TIME"
    if name in ("TIMESTAMP", "TIME") and zone and toks[last + 3].u == "ZONE":
        name = name + ("TZ" if toks[last + 1].u == "WITH" else "")
        last += 3
    is_array = False
    while toks[last + 1].u == "[":
        k = last + 2 + (toks[last + 2].k == "n")
        if toks[k].u != "]":
            raise UnsupportedSQLError(f"{construct} with array bounds")
        is_array, last = True, k
    return name, tuple(args), is_array, last


def _cast_sql(
    operand: str, atom: str, name: str, args: tuple[str, ...], is_array: bool, label: str
) -> str:
    """SQLite for casting ``operand`` (``atom``: its token kind when it is one token)."""
    category = _TYPE_CATEGORY.get(name)
    if is_array or category is None:
        hint = "array casts only work as = ANY($n::type[])" if is_array else "drop the cast"
        raise UnsupportedSQLError(f"{label} cast", hint)
    if category == "keep":  # timestamps are text in botdb's format, JSON is text
        return operand
    if category == "date":
        return f"date({operand})"
    if category == "text":
        core = f"CAST({operand} AS TEXT)"
        return f"substr({core}, 1, {args[0]})" if args and name != "TEXT" else core
    if category == "real":
        return f"CAST({operand} AS REAL)"
    if category == "bool":
        if atom == "s":
            word = operand[1:-1].replace("''", "'").strip().lower()
            if word in _TRUE or word in _FALSE:
                return "1" if word in _TRUE else "0"
            raise UnsupportedSQLError(f"{label} cast of {operand}", "not a boolean literal")
        return f"(CAST({operand} AS INTEGER) <> 0)"
    if category == "numeric" and len(args) == 2 and args[1] != "0":
        return f"round(CAST({operand} AS NUMERIC), {args[1]})"
    if category == "numeric" and not args:
        return f"CAST({operand} AS NUMERIC)"
    if atom in ("p", "s") or (atom == "n" and operand.isdigit()):
        return f"CAST({operand} AS INTEGER)"
    # PostgreSQL rounds a fractional value cast to an integer; SQLite's CAST truncates.
    return (
        f"(CASE WHEN typeof({operand}) = 'real' THEN CAST(round({operand}) AS INTEGER)"
        f" ELSE CAST({operand} AS INTEGER) END)"
    )


_UNITS: dict[str, tuple[str, Decimal]] = {
    name: (bucket, Decimal(factor))
    for names, bucket, factor in (
        ("microsecond microseconds us usec usecs", "s", "0.000001"),
        ("millisecond milliseconds ms msec msecs", "s", "0.001"),
        ("second seconds s sec secs", "s", "1"),
        ("minute minutes m min mins", "s", "60"),
        ("hour hours h hr hrs", "s", "3600"),
        ("day days d", "d", "1"),
        ("week weeks w", "d", "7"),
        ("month months mon mons", "m", "1"),
        ("year years y yr yrs", "m", "12"),
        ("decade decades", "m", "120"),
    )
    for name in names.split()
}
_INTERVAL_PART = re.compile(
    r"\s*(?:(?P<time>[+-]?\d+:\d+(?::\d+(?:\.\d*)?)?)"
    r"|(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[a-z]+)?|(?P<ago>ago))\s*"
)


def _signed(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text.startswith("-") else "+" + text


def _interval_modifiers(text: str, unit: str, negate: bool, base: str) -> list[str]:
    """SQLite date modifiers adding the PostgreSQL interval ``text`` (negated) to ``base``."""
    totals = {"m": Decimal(0), "d": Decimal(0), "s": Decimal(0)}
    source, pos = text.strip().lower(), 0
    while pos < len(source):
        m = _INTERVAL_PART.match(source, pos)
        if m is None or m.end() == pos:
            raise UnsupportedSQLError(f"INTERVAL '{text}'", "use units such as '2 hours 30 min'")
        if m["ago"]:
            negate = not negate
        elif m["time"]:
            sign = Decimal(-1) if m["time"].startswith("-") else Decimal(1)
            fields = [Decimal(f) for f in m["time"].lstrip("+-").split(":")] + [Decimal(0)]
            totals["s"] += sign * (fields[0] * 3600 + fields[1] * 60 + fields[2])
        else:
            name = m["unit"] or unit or "second"
            if name not in _UNITS:
                raise UnsupportedSQLError(f"INTERVAL unit {name!r}")
            bucket, factor = _UNITS[name]
            try:
                totals[bucket] += Decimal(m["num"]) * factor
            except InvalidOperation as exc:  # pragma: no cover - the pattern admits numbers only
                raise UnsupportedSQLError(f"INTERVAL '{text}'") from exc
        pos = m.end()
    months, days, seconds = (-v if negate else v for v in totals.values())
    if months != months.to_integral_value():
        raise UnsupportedSQLError("fractional months or years in INTERVAL", "use days")
    modifiers: list[str] = []
    if months:
        add = f"'{_signed(months)} months'"
        # PostgreSQL clamps Jan 31 + 1 month to Feb 29; SQLite overflows into March: step back.
        moved = f"strftime('%d', {base}, {add})"
        modifiers += [
            add,
            f"CASE WHEN {moved} <> strftime('%d', {base}) THEN '-' || {moved} || ' days'"
            " ELSE '+0 days' END",
        ]
    if days:
        modifiers.append(f"'{_signed(days)} days'")
    if seconds:
        modifiers.append(f"'{_signed(seconds)} seconds'")
    return modifiers


# ---------------------------------------------------------------------------------------------
# Rewriter
# ---------------------------------------------------------------------------------------------


def _x(text: str, ws: str) -> _Tok:
    return _Tok("x", text, ws, u="")


class _Rewriter:
    """Token-level rewrites, left to right, so every operand to the left is already final."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.json_params: set[int] = set()
        self.stmt = 0  # index where the current statement starts
        self.parens: list[int] = []

    # -- editing helpers ------------------------------------------------------------------
    def replace(self, start: int, end: int, text: str, ws: str = "") -> None:
        self.toks[start : end + 1] = [_x(text, self.toks[start].ws or ws)]

    def delete(self, start: int, stop: int) -> None:
        after = self.toks[stop]
        if not after.ws and after.k != "$" and after.u not in (")", ",", ";"):
            after.ws = self.toks[start].ws
        del self.toks[start:stop]

    def text(self, start: int, end: int) -> str:
        return _join(self.toks, start, end)

    # -- passes ---------------------------------------------------------------------------
    def run(self) -> str:
        toks = self.toks
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.k == "w":
                handler = _HANDLERS.get(tok.u)
                if handler is not None:
                    i = handler(self, i)
            elif tok.k == "::":
                i = self.cast(i)
            elif tok.u == "(":
                self.parens.append(i)
            elif tok.u == ")" and self.parens:
                start = self.parens.pop()
                if start > 0 and toks[start - 1].u == "CAST" and toks[start - 1].k == "w":
                    i = self.cast_call(start - 1, i)
            elif tok.u == ";":
                self.stmt, self.parens = i + 1, []
            i += 1
        i = 0
        while i < len(toks):
            if toks[i].k == "w" and toks[i].u in ("LIKE", "ILIKE"):
                i = self.like(i)
            i += 1
        for tok in toks:
            if tok.k == "c" and tok.u in "[]:":
                what = "':' array slice" if tok.u == ":" else "array type or subscript [...]"
                raise UnsupportedSQLError(what, "SQLite has no arrays; use = ANY($n) with a list")
        return _join(toks, 0, len(toks) - 1, lead=True)

    # -- word handlers (each returns the index of the last token it consumed) ---------------
    def now(self, i: int) -> int:
        toks = self.toks
        if (i == 0 or toks[i - 1].u != ".") and toks[i + 1].u == "(" and toks[i + 2].u == ")":
            self.replace(i, i + 2, NOW_SQL)
        return i

    def current_timestamp(self, i: int) -> int:
        toks = self.toks
        if i and toks[i - 1].u == ".":
            return i
        precision = toks[i + 1].u == "(" and toks[i + 2].k == "n" and toks[i + 3].u == ")"
        self.replace(i, i + 3 if precision else i, NOW_SQL)
        return i

    def typed_literal(self, i: int) -> int:
        toks = self.toks
        if toks[i + 1].k == "s" and (i == 0 or toks[i - 1].u != "."):
            if toks[i].u == "DATE":
                self.replace(i, i + 1, f"date({toks[i + 1].t})")
            else:
                self.delete(i, i + 1)
        return i

    def is_distinct(self, i: int) -> int:
        toks = self.toks
        if toks[i + 1].u == "DISTINCT" and toks[i + 2].u == "FROM":
            self.replace(i, i + 2, "IS NOT")
        elif toks[i + 1].u == "NOT" and toks[i + 2].u == "DISTINCT" and toks[i + 3].u == "FROM":
            self.replace(i, i + 3, "IS")
        return i

    def locking(self, i: int) -> int:
        # botdb begins SQLite transactions IMMEDIATE: the writer holds the database-wide lock
        # until commit, which is stronger than PostgreSQL's row locks; dropping them is safe.
        toks = self.toks
        words = [toks[i + k].u for k in range(1, 4) if i + k < len(toks)]
        if words[:1] in (["UPDATE"], ["SHARE"]):
            j = i + 2
        elif words[:3] == ["NO", "KEY", "UPDATE"]:
            j = i + 4
        elif words[:2] == ["KEY", "SHARE"]:
            j = i + 3
        else:
            return i
        if toks[j].u == "OF":
            j += 1
            while toks[j].k in _NAMES:  # OF t, s.u
                j += 1 + 2 * (toks[j + 1].u == ".")
                if toks[j].u != ",":
                    break
                j += 1
        if toks[j].u == "NOWAIT":
            j += 1
        elif toks[j].u == "SKIP" and toks[j + 1].u == "LOCKED":
            j += 2
        self.delete(i, j)
        return i - 1

    def concurrently(self, i: int) -> int:
        if i and self.toks[i - 1].u == "INDEX":
            self.delete(i, i + 1)
            return i - 1
        return i

    def any_all(self, i: int) -> int:
        toks = self.toks
        if i == 0 or toks[i + 1].u != "(":
            return i
        name, prev = toks[i].u, toks[i - 1]
        if prev.k == "w" and prev.u in ("LIKE", "ILIKE"):
            raise UnsupportedSQLError(f"{prev.u} {name}", "combine several LIKEs with OR")
        if prev.k != "o":
            return i  # UNION ALL (...), SELECT ALL ...
        if name in ("ANY", "SOME") and prev.u == "=":
            word = "IN"
        elif name == "ALL" and prev.u in ("<>", "!="):
            word = "NOT IN"
        else:
            raise UnsupportedSQLError(f"{prev.u} {name}(...)", "only = ANY and <> ALL translate")
        arg = toks[i + 2]
        if arg.k == "p":
            end = i + 3
            if toks[end].k == "::":
                end = _parse_type(toks, end + 1, f"{name}($n::...)")[3] + 1
            if toks[end].u == ")":
                self.json_params.add(int(arg.t[1:]) - 1)
                self.replace(i - 1, i - 1, word)
                self.replace(i, end, f"(SELECT value FROM json_each({arg.t}))", " ")
                return i
        elif arg.k == "w" and arg.u in ("SELECT", "WITH", "VALUES"):
            self.replace(i - 1, i - 1, word)
            self.delete(i, i + 1)
            return i - 1
        raise UnsupportedSQLError(
            f"{name}() over an expression", "pass a Python list as a parameter: = ANY($1)"
        )

    def interval(self, i: int) -> int:
        toks = self.toks
        literal, end, unit = toks[i + 1], i + 1, ""
        if literal.k == "p":
            raise UnsupportedSQLError("INTERVAL $n", "pass the computed timestamp instead")
        if literal.k != "s" or not literal.t.startswith("'"):
            return i  # a column named interval
        if toks[end + 1].u in ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND"):
            end, unit = end + 1, toks[end + 1].t.lower()
        follow = toks[end + 1]
        if follow.k == "::" or follow.u in ("*", "/", "%", "^", "["):
            raise UnsupportedSQLError(f"INTERVAL {follow.t}", "write the whole interval literal")
        op = toks[i - 1] if i else _Tok("$", "")
        start = _operand_start(toks, i - 2) if op.k == "o" and op.u in ("+", "-") else -1
        if start < 0 or (toks[start - 1].k == "o" and toks[start - 1].u in ("*", "/", "%", "^")):
            raise UnsupportedSQLError(
                "INTERVAL outside <timestamp> ± INTERVAL '...'",
                "compute the timestamp in Python and pass it as a parameter",
            )
        now = start == i - 2 and toks[start].k == "x" and toks[start].t == NOW_SQL
        base = "'now'" if now else self.text(start, i - 2)
        value = literal.t[1:-1].replace("''", "'")
        modifiers = _interval_modifiers(value, unit, op.u == "-", base)
        self.replace(
            start, end, f"(strftime({_TS_FORMAT}, {base}{''.join(', ' + m for m in modifiers)}))"
        )
        return start

    # -- DDL --------------------------------------------------------------------------------
    def in_table_ddl(self) -> bool:
        return _kind_of(self.toks, self.stmt) in ("CREATE TABLE", "ALTER TABLE")

    def column_span(self, i: int) -> tuple[int, int]:
        toks, start, end, depth = self.toks, i, i, 0
        while start > self.stmt and not (depth == 0 and toks[start - 1].u in ("(", ",")):
            depth += (toks[start - 1].u == ")") - (toks[start - 1].u == "(")
            start -= 1
        depth = 0
        while toks[end + 1].k != "$" and not (depth == 0 and toks[end + 1].u in (")", ",", ";")):
            depth += (toks[end + 1].u == "(") - (toks[end + 1].u == ")")
            end += 1
        return start, end

    def add_autoincrement(self, start: int, end: int, construct: str) -> None:
        toks = self.toks
        for j in range(start, end):
            if toks[j].u == "PRIMARY" and toks[j + 1].u == "KEY":
                at = j + 2 + (toks[j + 2].u in ("ASC", "DESC"))
                toks.insert(at, _x("AUTOINCREMENT", " "))
                return
        raise UnsupportedSQLError(
            f"{construct} without PRIMARY KEY",
            "SQLite numbers rows only for INTEGER PRIMARY KEY; declare the column PRIMARY KEY",
        )

    def serial(self, i: int) -> int:
        toks = self.toks
        if i < 2 or toks[i - 1].k not in _NAMES or not self.in_table_ddl():
            return i
        if toks[i - 2].u not in ("(", ",", "ADD", "COLUMN", "EXISTS"):
            return i
        end = self.column_span(i)[1]
        self.add_autoincrement(i, end, toks[i].u)
        self.replace(i, i, "INTEGER")
        return i

    def generated(self, i: int) -> int:
        toks = self.toks
        j = i + 2 if toks[i + 1].u == "ALWAYS" else i + 3
        if (
            toks[i + 1].u not in ("ALWAYS", "BY")
            or toks[j].u != "AS"
            or toks[j + 1].u != "IDENTITY"
        ):
            return i  # a generated column: SQLite has those
        if not self.in_table_ddl():
            return i
        last = max(_match(toks, j + 2, 1), j + 1) if toks[j + 2].u == "(" else j + 1
        start, end = self.column_span(i)
        types = [k for k in range(start, i) if toks[k].u in _INT_TYPES]
        if not types:
            raise UnsupportedSQLError("identity column of a non-integer type")
        self.delete(i, last + 1)
        self.add_autoincrement(start, end - (last + 1 - i), "GENERATED AS IDENTITY")
        self.replace(types[-1], types[-1], "INTEGER")
        return i - 1

    # -- casts ------------------------------------------------------------------------------
    def cast(self, i: int) -> int:
        toks = self.toks
        start = _operand_start(toks, i - 1)
        if start < 0:
            raise UnsupportedSQLError("::cast of this expression", "use CAST(expr AS type)")
        name, args, is_array, last = _parse_type(toks, i + 1, "::cast")
        atom = toks[start].k if start == i - 1 else ""
        if toks[start].u in _INT_FUNCTIONS and _match(toks, start + 1, 1) == i - 1:
            atom = "p"  # never a fractional value: a plain CAST is exact
        label = "::" + self.text(i + 1, last)
        self.replace(
            start, last, _cast_sql(self.text(start, i - 1), atom, name, args, is_array, label)
        )
        return start

    def cast_call(self, at: int, close: int) -> int:
        toks = self.toks
        depth, as_at = 0, -1
        for k in range(at + 2, close):
            depth += (toks[k].u == "(") - (toks[k].u == ")")
            if depth == 0 and toks[k].k == "w" and toks[k].u == "AS":
                as_at = k
        if as_at < 0:
            return close
        name, args, is_array, last = _parse_type(toks, as_at + 1, "CAST")
        label = f"CAST(... AS {self.text(as_at + 1, close - 1)})"
        if last != close - 1:
            raise UnsupportedSQLError(label)
        single = as_at == at + 3
        operand = self.text(at + 2, as_at - 1)
        atom = toks[at + 2].k if single else ""
        operand = operand if single else f"({operand})"
        self.replace(at, close, _cast_sql(operand, atom, name, args, is_array, label))
        return at

    # -- LIKE / ILIKE (second pass, when both operands are final) ----------------------------
    def like(self, i: int) -> int:
        toks = self.toks
        right = _concat_end(toks, i + 1)
        if right < 0:
            raise UnsupportedSQLError(f"{toks[i].u} with this pattern expression", "use a $n")
        # PostgreSQL's LIKE escapes with a backslash by default; SQLite's has no escape.
        escape = "" if toks[right + 1].u == "ESCAPE" else " ESCAPE '\\'"
        if toks[i].u == "LIKE":
            if escape:
                toks.insert(right + 1, _x(escape.strip(), " "))
            return right + 1
        negated = toks[i - 1].k == "w" and toks[i - 1].u == "NOT"
        left_end = i - 2 if negated else i - 1
        left = _concat_start(toks, left_end)
        if left < 0:
            raise UnsupportedSQLError("ILIKE with this left operand", "wrap it in parentheses")
        text = (
            f"lower({self.text(left, left_end)}) {'NOT ' if negated else ''}LIKE"
            f" lower({self.text(i + 1, right)}){escape}"
        )
        self.replace(left, right, text)
        return left

    def reject(self, i: int) -> int:
        toks, word = self.toks, self.toks[i].u
        nxt = toks[i + 1].u
        if word == "DISTINCT" and nxt == "ON":
            raise UnsupportedSQLError("DISTINCT ON", "use GROUP BY or a window function")
        if word == "ARRAY" and nxt in ("[", "("):
            raise UnsupportedSQLError("ARRAY constructor", "pass a Python list: = ANY($1)")
        if word == "LATERAL":
            raise UnsupportedSQLError("LATERAL", "use a correlated subquery")
        if word == "CONFLICT" and i and toks[i - 1].u == "ON" and nxt == "ON":
            raise UnsupportedSQLError("ON CONFLICT ON CONSTRAINT", "name the columns instead")
        if word == "SIMILAR" and nxt == "TO":
            raise UnsupportedSQLError("SIMILAR TO", "use LIKE")
        if word in ("LISTEN", "UNLISTEN", "NOTIFY", "COPY", "SHOW") and i == self.stmt:
            raise UnsupportedSQLError(f"{word} statement", "PostgreSQL only")
        return i


_HANDLERS: dict[str, Callable[[_Rewriter, int], int]] = {
    **dict.fromkeys(
        ("NOW", "TRANSACTION_TIMESTAMP", "STATEMENT_TIMESTAMP", "CLOCK_TIMESTAMP"), _Rewriter.now
    ),
    **dict.fromkeys(("CURRENT_TIMESTAMP", "LOCALTIMESTAMP"), _Rewriter.current_timestamp),
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMPTZ", "DATE"), _Rewriter.typed_literal),
    **dict.fromkeys(("ANY", "SOME", "ALL"), _Rewriter.any_all),
    **dict.fromkeys(("SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL4", "SERIAL8"), _Rewriter.serial),
    **dict.fromkeys(
        ("DISTINCT", "ARRAY", "LATERAL", "CONFLICT", "SIMILAR", "LISTEN", "UNLISTEN", "NOTIFY"),
        _Rewriter.reject,
    ),
    **dict.fromkeys(
        ("COPY", "SHOW"),
        _Rewriter.reject,
    ),
    "IS": _Rewriter.is_distinct,
    "FOR": _Rewriter.locking,
    "CONCURRENTLY": _Rewriter.concurrently,
    "INTERVAL": _Rewriter.interval,
    "GENERATED": _Rewriter.generated,
}


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
