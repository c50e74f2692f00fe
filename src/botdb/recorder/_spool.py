"""The recorder's spool: an append-only file of events not yet in the database.

One event per line, ``orjson`` of ``{"t": <event class>, "e": <event>, "at": <unix time it was
recorded>}``. Lines are appended in recording order, read back from an offset, and the file
is truncated once everything in it is in the database. The spool is locked (``flock``) by the
one process that uses it, so two processes never interleave their lines.

A line that does not parse (the process was killed in the middle of writing it, or the file
was damaged) is skipped with a warning and counted; it never stops the replay. A torn last
line is cut off before anything new is appended.

The file calls here are blocking: the recorder runs them in a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from botdb.errors import ConfigurationError
from botdb.recorder import _events as ev
from botdb.recorder._validate import EVENT_TYPES

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one process per spool
    fcntl = None  # type: ignore[assignment]

__all__ = ["Spool", "decode_event", "encode_event"]

log = logging.getLogger("botdb.recorder")

_BY_NAME: dict[str, type[Any]] = {cls.__name__: cls for cls in EVENT_TYPES}


def encode_event(event: ev.Event, recorded_at: float, **extra: Any) -> bytes:
    """One spool line (newline included)."""
    return orjson.dumps(
        {"t": type(event).__name__, "e": event, "at": recorded_at, **extra},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def decode_event(line: bytes) -> tuple[ev.Event, float]:
    """The event and its recording time from one spool line.

    Raises:
        ValueError: the line is not a spool record (damaged or torn).
    """
    data = orjson.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a spool record")
    cls = _BY_NAME.get(data.get("t"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {data.get('t')!r}")
    event = _DECODERS[cls](data["e"])
    return event, float(data.get("at") or 0.0)


# -- decoding by annotation -------------------------------------------------------------------

Decoder = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _datetime(value: Any) -> datetime:
    return datetime.fromisoformat(value)


def _decoder_for(hint: Any) -> Decoder:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        inner = _decoder_for(rest[0])
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        item = _decoder_for(args[0])
        return lambda value: tuple(item(v) for v in value)
    if hint is datetime:
        return _datetime
    if dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)  # type: ignore[arg-type]  # a dataclass type here
    return _same


def _dataclass_decoder(cls: type[Any]) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _decoder_for(hints[f.name])) for f in dataclasses.fields(cls)]

    def decode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"{cls.__name__} is not an object")
        return cls(**{name: d(value[name]) for name, d in fields if name in value})

    return decode


_DECODERS: dict[type[Any], Decoder] = {cls: _dataclass_decoder(cls) for cls in EVENT_TYPES}


# -- the file ---------------------------------------------------------------------------------


class Spool:
    """The spool file, opened and locked by this process.

    ``read_offset`` is where the next replay read starts; everything before it is in the
    database. Synchronous: call from a worker thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_offset = 0
        self.size = 0
        self.dirty = False
        self.corrupt = 0
        #: Records after ``read_offset`` (counted on open, then kept up to date).
        self.pending = 0
        #: Incremented each time the file is emptied (offsets start again from 0).
        self.generation = 0
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        """Open (creating it owner-only) and lock the file; cut a torn last line off.

        Raises:
            ConfigurationError: another process holds this spool.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        file = os.fdopen(fd, "r+b", buffering=0)
        if fcntl is not None:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()
                raise ConfigurationError(
                    f"the recorder spool {self.path} is in use by another process: give each "
                    "process its own recorder_spool_path"
                ) from None
        self._file = file
        data_end = file.seek(0, os.SEEK_END)
        if data_end:
            file.seek(max(0, data_end - 1))
            if file.read(1) != b"\n":
                keep = self._last_newline(data_end)
                log.warning(
                    "recorder spool %s: skipping a torn last record (%d bytes; the process was "
                    "stopped while writing it)",
                    self.path,
                    data_end - keep,
                )
                self.corrupt += 1
                file.truncate(keep)
                data_end = keep
        self.size = data_end
        self.read_offset = 0
        self.pending = self._count_lines(data_end)

    def _count_lines(self, end: int) -> int:
        assert self._file is not None  # opened by open()
        self._file.seek(0)
        count = 0
        while self._file.tell() < end:
            chunk = self._file.read(min(1 << 20, end - self._file.tell()))
            if not chunk:
                break
            count += chunk.count(b"\n")
        return count

    def _last_newline(self, end: int) -> int:
        assert self._file is not None  # opened by open()
        position = end
        chunk = 1 << 16
        while position > 0:
            start = max(0, position - chunk)
            self._file.seek(start)
            data = self._file.read(position - start)
            index = data.rfind(b"\n")
            if index >= 0:
                return start + index + 1
            position = start
        return 0

    @property
    def backlog(self) -> bool:
        """Whether lines remain that are not in the database yet."""
        return self.read_offset < self.size

    def append(self, lines: list[bytes]) -> None:
        assert self._file is not None  # opened by open()
        data = b"".join(lines)
        self._file.seek(self.size)
        self._file.write(data)
        self.size += len(data)
        self.dirty = True

    def sync(self) -> None:
        if self._file is not None and self.dirty:
            os.fsync(self._file.fileno())
            self.dirty = False

    def read(self, limit: int) -> tuple[list[tuple[ev.Event, float]], int]:
        """Up to ``limit`` events from ``read_offset``, and the offset after them."""
        assert self._file is not None  # opened by open()
        events: list[tuple[ev.Event, float]] = []
        offset = self.read_offset
        self._file.seek(offset)
        while len(events) < limit and offset < self.size:
            line = self._file.readline()
            if not line:
                break
            offset += len(line)
            try:
                events.append(decode_event(line))
            except (ValueError, TypeError, KeyError) as exc:
                self.corrupt += 1
                log.warning(
                    "recorder spool %s: skipping a damaged record at byte %d (%s)",
                    self.path,
                    offset - len(line),
                    exc,
                )
        return events, offset

    def truncate_if_done(self) -> bool:
        """Empty the file when everything in it is in the database."""
        assert self._file is not None  # opened by open()
        if self.read_offset < self.size:
            return False
        if self.size:
            self._file.truncate(0)
            os.fsync(self._file.fileno())
        self.size = self.read_offset = self.pending = 0
        self.dirty = False
        self.generation += 1
        return True

    def close(self) -> None:
        if self._file is None:
            return
        self.sync()
        self._file.close()  # releases the lock
        self._file = None


def peek_backlog(path: Path) -> bool:
    """Whether a spool file with records exists (no lock taken)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
