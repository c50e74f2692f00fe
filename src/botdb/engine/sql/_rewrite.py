"""Token-level rewrites of PostgreSQL-dialect SQL into SQLite, behind :mod:`botdb.engine.sql`.

Types and casts, intervals, and the :class:`_Rewriter` that walks the tokens of
:mod:`botdb.engine.sql._lex` left to right. Private: the public API is :mod:`botdb.engine.sql`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from botdb.engine.sql._lex import (
    _NAMES,
    _concat_end,
    _concat_start,
    _join,
    _kind_of,
    _match,
    _operand_start,
    _Tok,
)
from botdb.errors import UnsupportedSQLError

# How botdb stores timestamps on SQLite; NOW_SQL is re-exported by botdb.engine.sql.
_TS_FORMAT = "'%Y-%m-%d %H:%M:%f'"
NOW_SQL = f"(strftime({_TS_FORMAT}, 'now'))"

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
