"""``db.recorder``: write-behind batching of chat events, with a spool for when it cannot keep up.

``await recorder.record(event)`` checks the event and appends it to an in-memory buffer; one
background task writes the buffer in batches (:func:`~botdb.recorder.write_events`, one
transaction each) when ``batch_size`` events are waiting or the oldest has waited
``flush_interval`` seconds. ``await recorder.flush()`` is the durability point.

Where an event can be, oldest first: in the **spool** file (not yet replayed), in the
**buffer** (the head of which may be the batch being written), then in the database. Every
event in the spool was recorded before every event in the buffer, and the task replays the
spool before it writes the buffer, so events reach the database in the order they were
recorded.

* The buffer holds at most ``max_buffer`` events. When it is full, ``when_full="spill"``
  appends the buffer (all but the batch being written) to the spool, ``"wait"`` makes
  ``record()`` wait for room.
* The database away (a transient error, a timeout, a missing table...): the batch is retried
  with capped exponential backoff for as long as it takes; nothing is dropped. ``flush()``
  then moves the buffer to the spool (fsync'd) and returns instead of waiting.
* A batch the database refuses for good (an integrity or data error) is split in halves until
  the event at fault is alone; that event is written with its error to the dead-letter file
  and counted, and the rest is written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from botdb import errors
from botdb.recorder import _events as ev
from botdb.recorder._spool import Spool, encode_event
from botdb.recorder._validate import describe, validate_events
from botdb.recorder._writer import write_events

if TYPE_CHECKING:
    from botdb._protocols import RecorderDatabase

__all__ = ["Recorder", "RecorderOptions", "default_spool_path"]

log = logging.getLogger("botdb.recorder")

#: Errors that mean "this event can never be written": the batch is bisected to find it.
_POISON = (errors.IntegrityError, errors.DataError)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderOptions:
    """The recorder's settings (``Settings.recorder_*``)."""

    batch_size: int = 1000
    flush_interval: float = 1.0
    max_buffer: int = 100_000
    when_full: Literal["spill", "wait"] = "spill"
    spool_path: Path
    platform: Literal["discord", "telegram"] = "discord"
    retry_initial_delay: float = 0.05
    retry_max_delay: float = 2.0
    retry_jitter: float = 0.1

    @property
    def dead_letter_path(self) -> Path:
        """Where events the database refused for good are written, with their error."""
        return self.spool_path.with_name(self.spool_path.name + ".dead-letter")


def default_spool_path(url: str, sqlite_path: str | None) -> Path:
    """The spool of a database: beside a SQLite file (``bot.db.recorder-spool``); else
    ``.botdb/recorder-<hash of the URL>.spool`` in the working directory."""
    if sqlite_path:
        path = Path(sqlite_path)
        return path.with_name(path.name + ".recorder-spool")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path.cwd() / ".botdb" / f"recorder-{digest}.spool"


class Recorder:
    """Records chat events in batches; one per Database (``db.recorder``).

    Example:
        >>> await db.recorder.record(MessageCreated(id=..., guild_id=..., channel_id=...,
        ...     author_id=..., created_at=message.created_at, content=message.content))
        >>> await db.recorder.flush()   # everything recorded so far is durable
    """

    def __init__(self, db: RecorderDatabase, options: RecorderOptions) -> None:
        if options.max_buffer <= options.batch_size:
            raise errors.ConfigurationError(
                f"recorder_max_buffer ({options.max_buffer}) must be larger than "
                f"recorder_batch_size ({options.batch_size})"
            )
        self._db = db
        self.options = options
        # The buffer: events, their sequence numbers and recording times, in parallel deques
        # (ints and floats are not tracked by the garbage collector: an object per event
        # was ~10% of the ingest rate in collections).
        self._buffer: collections.deque[ev.Event] = collections.deque()
        self._seqs: collections.deque[int] = collections.deque()
        self._times: collections.deque[float] = collections.deque()
        self._seq = 0
        #: Entries at the head of the buffer the task is writing now.
        self._inflight = 0
        self._inflight_abandoned = False
        self._spool = Spool(options.spool_path)
        self._spool_open = False
        self._spool_oldest: float | None = None
        self._lock = asyncio.Lock()  # buffer <-> spool moves and spool file access
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._flush_wanted = False
        self._away = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats = {
            "written": 0,
            "batches": 0,
            "retries": 0,
            "spilled": 0,
            "replayed": 0,
            "dead_lettered": 0,
        }
        self._last_error: str | None = None
        self._errors: collections.Counter[str] = collections.Counter()
        #: Write attempts begun, and the number of the last one that failed.
        self._attempts = 0
        self._failed_attempt = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Open the spool (replaying what a previous run left there) and start writing.

        Called by the first ``record()``; the Database calls it on connect when a spool
        holds events. Idempotent.

        Raises:
            ConfigurationError: another process uses the same spool file.
            InterfaceError: the recorder was closed.
        """
        if self._closed:
            raise errors.InterfaceError("the recorder is closed")
        if self.running:
            return
        async with self._lock:
            if not self._spool_open:
                await asyncio.to_thread(self._spool.open)
                self._spool_open = True
                if self._spool.backlog:
                    log.info(
                        "recorder: replaying %d bytes of events from %s",
                        self._spool.size,
                        self._spool.path,
                    )
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="botdb-recorder")
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Flush (see :meth:`flush`), stop the task and close the spool. Safe to call twice."""
        if self._closed:
            return
        try:
            if self.running or self._buffer:
                await self.flush()
        finally:
            self._closed = True
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._spool_open:
                await asyncio.to_thread(self._spool.close)
                self._spool_open = False

    # -- recording ----------------------------------------------------------------------------

    async def record(self, event: ev.Event) -> None:
        """Buffer one event for the next batch.

        Raises:
            DataError: the event is invalid (naive datetime, wrong type...); nothing recorded.
        """
        await self.record_many((event,))

    async def record_many(self, events: Iterable[ev.Event]) -> None:
        """Buffer several events, in order (all checked first: one bad event records none).

        Raises:
            DataError: an event is invalid; none of them is recorded.
        """
        batch = events if isinstance(events, list | tuple) else list(events)
        validate_events(batch)
        if not self.running:
            await self.start()
        now = time.time()
        options = self.options
        for event in batch:
            if len(self._buffer) >= options.max_buffer:
                await self._make_room()
            self._seq += 1
            self._buffer.append(event)
            self._seqs.append(self._seq)
            self._times.append(now)
            if len(self._buffer) - self._inflight == options.batch_size:
                # A batch is ready: let the writer task start it before recording on.
                self._wake.set()
                await asyncio.sleep(0)

    async def _make_room(self) -> None:
        if self.options.when_full == "spill":
            await self._spill(include_inflight=False)
            return
        async with self._progress:
            await self._progress.wait_for(
                lambda: len(self._buffer) < self.options.max_buffer or self._closed
            )
        if self._closed:
            raise errors.InterfaceError("the recorder is closed")

    async def flush(self) -> None:
        """Return when every event recorded before this call is durable.

        Durable means committed to the database; or, when the database is away (a write is
        failing and being retried), appended to the spool file and fsync'd: those events
        reach the database when the spool is replayed, in this run or the next one.
        """
        target = self._seq
        mark = self._spool_mark()
        while not (self._buffer_done(target) and self._spool_done(mark)):
            if self._away and self.running:
                # One more try now (cutting the backoff short): the database may be back.
                # An attempt begun before this call may still fail: wait for a later one.
                self._wake.set()
                async with self._progress:
                    await self._progress.wait_for(partial(self._tried_again, self._attempts))
            if self._away or not self.running:
                await self._spill(include_inflight=True)
                break
            if self._spool.backlog and len(self._buffer) > self._inflight:
                # The spool is replayed before the buffer: the buffer joins the backlog
                # (all but the batch being written, which is waited for below).
                await self._spill(include_inflight=False)
                mark = self._spool_mark()
                continue
            self._flush_wanted = True
            self._wake.set()
            async with self._progress:
                await self._progress.wait_for(partial(self._flushed_or_away, target, mark))
        if self._spool_open:
            # Under the lock: a spill in progress (its events already out of the buffer)
            # finishes writing before the file is synced.
            async with self._lock:
                await asyncio.to_thread(self._spool.sync)

    def _tried_again(self, attempts: int) -> bool:
        return not self._away or self._failed_attempt > attempts or not self.running

    def _flushed_or_away(self, target: int, mark: tuple[int, int]) -> bool:
        done = self._buffer_done(target) and self._spool_done(mark)
        return done or self._away or not self.running

    def _buffer_done(self, target: int) -> bool:
        return not self._seqs or self._seqs[0] > target

    def _spool_mark(self) -> tuple[int, int]:
        return self._spool.generation, self._spool.size

    def _spool_done(self, mark: tuple[int, int]) -> bool:
        return self._spool.generation != mark[0] or self._spool.read_offset >= mark[1]

    async def _spill(self, *, include_inflight: bool) -> None:
        """Move the buffer (with or without the batch being written) to the spool."""
        async with self._lock:
            if not self._spool_open:
                await asyncio.to_thread(self._spool.open)
                self._spool_open = True
            keep = 0 if include_inflight else self._inflight
            if len(self._buffer) <= keep:
                return
            n = len(self._buffer) - keep
            moved = [self._buffer.pop() for _ in range(n)]
            moved.reverse()
            times = [self._times.pop() for _ in range(n)]
            times.reverse()
            for _ in range(n):
                self._seqs.pop()
            if include_inflight and self._inflight:
                self._inflight_abandoned = True
                self._inflight = 0
            lines = [encode_event(e, at) for e, at in zip(moved, times, strict=True)]
            if self._spool_oldest is None or not self._spool.backlog:
                self._spool_oldest = times[0]
            await asyncio.to_thread(self._spool.append, lines)
            self._spool.pending += len(moved)
            self._stats["spilled"] += len(moved)
        async with self._progress:
            self._progress.notify_all()
        self._wake.set()

    # -- the background task ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recorder: the writer task stopped; events stay buffered or spooled")
            raise
        finally:
            self._task = None
            async with self._progress:
                self._progress.notify_all()

    async def _loop(self) -> None:
        options = self.options
        while True:
            async with self._lock:
                backlog = self._spool.backlog
                if not backlog and self._spool_open and self._spool.size:
                    await asyncio.to_thread(self._spool.truncate_if_done)
                    self._spool_oldest = None
            if backlog:
                await self._replay_chunk()
                continue
            # No await from here to the batch's start: a spill cannot slip in between.
            if self._buffer and (
                self._flush_wanted
                or len(self._buffer) >= options.batch_size
                or time.time() - self._times[0] >= options.flush_interval
            ):
                await self._write_buffer()
                continue
            self._flush_wanted = False
            self._wake.clear()
            timeout = None
            if self._buffer:
                timeout = max(0.0, options.flush_interval - (time.time() - self._times[0]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _write_buffer(self) -> None:
        count = min(len(self._buffer), self.options.batch_size)
        events = list(itertools.islice(self._buffer, count))
        last = self._seqs[count - 1]
        self._inflight = count
        self._inflight_abandoned = False
        try:
            done = await self._write(events, abandonable=True, validated=True)
        finally:
            self._inflight = 0
        if done:
            while self._seqs and self._seqs[0] <= last:
                self._buffer.popleft()
                self._seqs.popleft()
                self._times.popleft()
        async with self._progress:
            self._progress.notify_all()

    async def _replay_chunk(self) -> None:
        async with self._lock:
            read = await asyncio.to_thread(self._spool.read, self.options.batch_size)
        events, offset = read
        if events:
            await self._write([e for e, _at in events], abandonable=False)
            self._stats["replayed"] += len(events)
        async with self._lock:
            self._spool.read_offset = offset
            self._spool.pending = max(0, self._spool.pending - len(events))
            # The records after these were recorded no earlier than the last of them.
            self._spool_oldest = events[-1][1] if events else None
            if not self._spool.backlog:
                await asyncio.to_thread(self._spool.truncate_if_done)
        async with self._progress:
            self._progress.notify_all()

    async def _write(
        self, events: Sequence[ev.Event], *, abandonable: bool, validated: bool = False
    ) -> bool:
        """Write ``events`` (bisecting around poison), retrying while the database is away.

        Returns False when the batch was abandoned: ``flush()`` moved it to the spool while
        the database was away, so the spool's replay writes it instead.
        """
        attempt = 0
        while True:
            self._attempts += 1
            try:
                await self._write_isolating(events, validated)
            except Exception as exc:
                # Away: a transient error, a timeout, a missing table, a closed pool...
                # Nothing is dropped; the batch waits and is tried again.
                await self._note_failure(exc)
                if abandonable and self._inflight_abandoned:
                    return False
                await self._backoff(attempt)
                attempt += 1
                self._stats["retries"] += 1
                if abandonable and self._inflight_abandoned:
                    return False
                continue
            if self._away:
                log.info("recorder: the database is back, writing again")
                self._away = False
                async with self._progress:
                    self._progress.notify_all()
            return True

    async def _note_failure(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._errors[type(exc).__name__] += 1
        self._failed_attempt = self._attempts
        if not isinstance(exc, errors.BotDBError):
            # Not a database error: a bug somewhere. Keep the events and say so loudly.
            log.error("recorder: unexpected error writing a batch", exc_info=exc)
        elif not self._away:
            log.warning("recorder: cannot write (%s); keeping events and retrying", exc)
        self._away = True
        # flush() waiters then move the buffer to the spool instead of waiting.
        async with self._progress:
            self._progress.notify_all()

    async def _backoff(self, attempt: int) -> None:
        options = self.options
        delay = min(options.retry_max_delay, options.retry_initial_delay * (2**attempt))
        delay += random.uniform(0, options.retry_jitter)  # noqa: S311 - jitter, not secrecy
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            # A flush() or close() cuts the wait short (the batch may have been spilled).
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _write_isolating(self, events: Sequence[ev.Event], validated: bool) -> None:
        try:
            await self._commit(events, validated)
        except _POISON as exc:
            if len(events) == 1:
                await self._dead_letter(events[0], exc)
                return
            middle = len(events) // 2
            await self._write_isolating(events[:middle], validated)
            await self._write_isolating(events[middle:], validated)

    async def _commit(self, events: Sequence[ev.Event], validated: bool) -> None:
        async with self._db.transaction() as conn:
            # Buffered events were checked by record(); spooled ones are checked again (the
            # file may have been damaged).
            await write_events(conn, events, platform=self.options.platform, validate=not validated)
        self._stats["written"] += len(events)
        self._stats["batches"] += 1

    async def _dead_letter(self, event: ev.Event, exc: BaseException) -> None:
        self._stats["dead_lettered"] += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._errors[type(exc).__name__] += 1
        log.error("recorder: dead-lettered %s: %s", describe(event), exc)
        line = encode_event(event, time.time(), error=str(exc), error_type=type(exc).__name__)
        await asyncio.to_thread(_append_line, self.options.dead_letter_path, line)

    # -- observability ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and gauges.

        ``buffered``: events in memory; ``spooled``: events in the spool not yet replayed;
        ``written``: events committed; ``batches``: transactions committed; ``lag``: seconds
        the oldest event not yet written has waited; ``retries``; ``spilled``: events moved
        to the spool; ``replayed``: events written from the spool; ``dead_lettered``;
        ``spool_corrupt``: damaged spool records skipped; ``away``: whether writes are failing
        now; ``last_error``; ``errors``: how many of each error class writes met.
        """
        oldest: list[float] = []
        if self._buffer:
            oldest.append(self._times[0])
        if self._spool.backlog and self._spool_oldest is not None:
            oldest.append(self._spool_oldest)
        return {
            "buffered": len(self._buffer),
            "spooled": self._spool.pending if self._spool.backlog else 0,
            **self._stats,
            "lag": max(0.0, time.time() - min(oldest)) if oldest else 0.0,
            "spool_corrupt": self._spool.corrupt,
            "away": self._away,
            "last_error": self._last_error,
            "errors": dict(self._errors),
        }


def _append_line(path: Path, line: bytes) -> None:
    # Owner-only, like the spool: the events carry message contents.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as file:
        file.write(line)
