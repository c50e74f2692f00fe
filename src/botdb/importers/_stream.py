"""An incremental reader for the members of a (huge) top-level JSON object.

Hand-written because the dependency set has no streaming JSON parser (ijson is not a botdb
dependency) and ``json.load`` would hold the whole file, and every record of it, in memory.
The reader keeps a text buffer of about one chunk, decodes one member at a time with the
standard library's C decoder (``json.JSONDecoder.raw_decode``) and drops what it has consumed,
so memory stays bounded by the chunk size plus the largest single record.

A member that does not fit in the buffer yet makes ``raw_decode`` fail at the end of the
buffer (or, for an unterminated string, at its opening quote): the reader then reads more, in
growing steps, and decodes again. A value that ends within a few characters of the buffer's
end (a number may continue) is decoded again after reading more, too. Any other failure is a
real syntax error and is reported with its line and column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

__all__ = ["JSONStreamError", "ObjectReader"]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_LOOKAHEAD = 64


class JSONStreamError(ValueError):
    """The text is not valid JSON (or not the expected shape); ``line``/``column`` say where."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


class ObjectReader:
    """Yields ``(key, value)`` for each member of the JSON object in ``fp``, one at a time.

    Args:
        fp: a text file opened for reading (UTF-8).
        chunk_size: characters read at a time.
    """

    def __init__(self, fp: TextIO, *, chunk_size: int = 1 << 16) -> None:
        self._fp = fp
        self._chunk = chunk_size
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._line = 1
        self._line_start = 0  # offset in _buf of the current line's start (may be negative)
        self._decoder = json.JSONDecoder()

    # -- buffer -----------------------------------------------------------------------------

    def _fill(self, size: int) -> bool:
        if self._eof:
            return False
        data = self._fp.read(size)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _trim(self) -> None:
        if self._pos < self._chunk:
            return
        cut = self._pos
        newlines = self._buf.count("\n", 0, cut)
        if newlines:
            self._line += newlines
            self._line_start = self._buf.rfind("\n", 0, cut) + 1
        self._line_start -= cut
        self._buf = self._buf[cut:]
        self._pos = 0

    def _error(self, message: str, pos: int) -> JSONStreamError:
        line = self._line + self._buf.count("\n", 0, pos)
        start = self._buf.rfind("\n", 0, pos) + 1 if line != self._line else self._line_start
        return JSONStreamError(message, line, pos - start + 1)

    def _peek(self) -> str:
        while True:
            match = _WHITESPACE.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill(self._chunk):
                return ""

    def _expect(self, char: str, what: str) -> None:
        if self._peek() != char:
            raise self._error(f"expecting {what}", self._pos)
        self._pos += 1

    def _value(self) -> Any:
        self._peek()
        step = self._chunk
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                truncated = exc.pos >= len(self._buf) - _LOOKAHEAD or self._buf[exc.pos] == '"'
                if truncated and self._fill(step):
                    step *= 2
                    continue
                raise self._error(exc.msg, exc.pos) from None
            if len(self._buf) - end < _LOOKAHEAD and self._fill(step):
                step *= 2
                continue
            self._pos = end
            return value

    # -- members ----------------------------------------------------------------------------

    def items(self, path: Sequence[str] = ()) -> Iterator[tuple[str, Any]]:
        """The members of the top-level object, or of the container at ``path`` inside it.

        ``path`` names object keys (or array indexes) to descend through; the container there
        may be an object (yields its members) or an array (yields ``(str(index), item)``).

        Raises:
            JSONStreamError: the text is empty, not JSON, its top level is not an object, or
                ``path`` leads nowhere.
        """
        first = self._peek()
        if first == "":
            raise JSONStreamError("the file is empty")
        if first != "{":
            raise JSONStreamError("the top level is not a JSON object")
        found = False
        for key, value in self._members(path):
            found = True
            yield key, value
        if path and not found and self._missing:
            raise JSONStreamError(f"the path {'.'.join(path)!r} is not in the file")
        if not path and self._peek() != "":
            raise self._error("extra data after the top-level object", self._pos)

    _missing = False

    def _members(self, path: Sequence[str]) -> Iterator[tuple[str, Any]]:
        opening = self._peek()
        if opening not in "{[" or opening == "":
            raise self._error("expecting an object or an array", self._pos)
        closing = "}" if opening == "{" else "]"
        self._pos += 1
        index = 0
        while True:
            char = self._peek()
            if char == closing:
                self._pos += 1
                if path:
                    self._missing = True
                return
            if index:
                self._expect(",", f"',' or '{closing}'")
            if opening == "{":
                if self._peek() != '"':
                    raise self._error("expecting a property name in double quotes", self._pos)
                key = self._value()
                self._expect(":", "':'")
            else:
                key = str(index)
            index += 1
            if path and key == path[0]:
                yield from self._members(path[1:])
                return
            try:
                value = self._value()
            except RecursionError:
                # The C decoder recurses once per level: a hostile file nests 10,000 deep.
                raise self._error(
                    f"the value of {key[:40]!r} is nested too deeply to read", self._pos
                ) from None
            if not path:
                yield key, value
            self._trim()
