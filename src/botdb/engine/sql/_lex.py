"""Lexer, statement classification and operand helpers behind :mod:`botdb.engine.sql`.

The lexer turns PostgreSQL-dialect SQL into significant tokens, each carrying the whitespace and
comments in front of it, so the rewrites in :mod:`botdb.engine.sql._rewrite` never touch string
literals, quoted identifiers or comments. The operand helpers find the primary expression left
or right of an operator; :func:`_kind_of` and :func:`_returns_rows` classify a statement.
Private: the public API is :mod:`botdb.engine.sql`.
"""

from __future__ import annotations

import re

from botdb.errors import ArgumentError, SQLSyntaxError, UnsupportedSQLError

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
