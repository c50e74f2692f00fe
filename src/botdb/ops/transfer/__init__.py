"""Copy a whole database between SQLite and PostgreSQL, resumably, and verify the copy.

``botdb transfer sqlite:///bot.db postgresql://...`` (or the other way round) is how a bot
moves to PostgreSQL when it outgrows its SQLite file. What happens, in order:

1. **Plan.** The source is inspected. A botdb database (its ``botdb_alembic_version`` table,
   or built-in tables with exactly botdb's columns) is copied with botdb's models (default
   ``botdb.models.Base.metadata``: built-in tables and the user's models) plus its other
   tables, reflected. Any other database is reflected whole: its schema is the truth. A
   reflected table's types are mapped for the target (:mod:`botdb.ops._portable`); a column
   that cannot move, or (unless ``skip_unportable``) a view, materialized view, function or
   trigger, raises :class:`UnportableSchemaError` before anything is written.
2. **Refuse or resume.** A target that holds rows is refused (:class:`TargetNotEmptyError`)
   unless ``yes=True``, which empties the copied tables first. A target holding this module's
   progress table (``botdb_transfer_state``) from an interrupted run of the *same* source is
   resumed; from a different source it is refused.
3. **Schema.** For a botdb source ``target.migrate()``, then ``create_all`` for the rest; for
   any other, ``create_all`` of the mapped tables. If this fails, the tables it made are
   dropped again.
4. **Copy.** Per table, a reader task pages through the source in primary-key order (keyset,
   never OFFSET; a table without a key is streamed) through the driver, decodes and maps each
   value, and adds each row's digest to the source checksum; the writer encodes the rows for
   the target driver and writes each batch with its bulk path (COPY on PostgreSQL, one
   ``executemany`` on SQLite) *in the same transaction as its progress row*, so an
   interruption loses at most the batch in flight and a re-run continues after the last
   committed one, without duplicates. A bounded queue between them bounds memory. Foreign-key
   checks are off on the copying connection (the source was consistent; self-references may
   point forward); SQLite runs ``PRAGMA foreign_key_check`` at the end.
5. **Sequences** are moved past the copied ids on PostgreSQL.
6. **Verify.** Row counts and a checksum per table (see :func:`row_digest`): the source side
   from the copy pass, the target side from one streaming re-read of what landed; a mismatch
   raises :class:`VerificationError`. On success the progress table is dropped.

``transfer`` takes two connected Databases; the ``botdb transfer`` command opens them from
its URLs (the source with ``sqlite_create=False``, so a mistyped path is not created; a new
SQLite target is written as ``<path>.partial`` and renamed once verified).
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import MetaData
from sqlalchemy.exc import SQLAlchemyError

from botdb import errors
from botdb.ops.transfer._copy import _copy_all
from botdb.ops.transfer._digest import row_digest
from botdb.ops.transfer._plan import _check_target, _create_schema, _plan, _read_state
from botdb.ops.transfer._types import (
    STATE_TABLE,
    ProgressCallback,
    TableTransfer,
    TransferReport,
    _one_line,
)
from botdb.ops.transfer._verify import _verify

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = [
    "STATE_TABLE",
    "ProgressCallback",
    "TableTransfer",
    "TargetNotEmptyError",
    "TransferReport",
    "UnportableSchemaError",
    "VerificationError",
    "row_digest",
    "transfer",
]


# Defined with every other error in botdb.errors; importable from here too.
TargetNotEmptyError = errors.TargetNotEmptyError
VerificationError = errors.VerificationError
UnportableSchemaError = errors.UnportableSchemaError


def _identity(db: OpsDatabase) -> str:
    """What tells databases apart: the SQLite file's absolute path, an in-memory database's
    object (each is its own database), or the masked PostgreSQL URL."""
    url = db.settings.url
    if url.backend == "sqlite":
        return (
            f"sqlite:memory:{id(db):x}" if url.is_memory else f"sqlite:{os.path.abspath(url.path)}"
        )
    return url.masked()


async def transfer(
    source: OpsDatabase,
    target: OpsDatabase,
    *,
    yes: bool = False,
    batch_size: int = 5000,
    tables: Iterable[str] | None = None,
    metadata: MetaData | None = None,
    progress: ProgressCallback | None = None,
    skip_unportable: bool = False,
    queue_depth: int = 4,
) -> TransferReport:
    """Copy every table from ``source`` to ``target`` and verify the copy.

    Both are connected Databases, opened and closed by the caller (``botdb transfer`` opens
    them from its two URLs). The target's in-process cache is cleared, since the rows under
    it were replaced. Python's cyclic garbage collector is paused while rows move (it was
    more than half the time of a large copy) and turned back on afterwards.

    Args:
        source: the database to read (SQLite or PostgreSQL); it is never written.
        target: the database to fill. For a botdb source its schema is made with migrations,
            then ``create_all``; for any other schema with ``create_all`` of the mapped tables.
        yes: allow a non-empty target; the copied tables are emptied first.
        batch_size: rows per batch (and per target transaction).
        tables: copy only these tables (names); default every table.
        metadata: botdb's models to use when the source is a botdb database; default
            ``botdb.models.Base.metadata`` (built-in tables and the user's models). A source
            that is not a botdb database is reflected: its own schema is the truth.
        progress: called as ``progress(table, rows_done, rows_total)`` after each batch.
        skip_unportable: leave out the source's views, materialized views, functions and
            triggers (listed in ``report.skipped``) instead of refusing the transfer.
        queue_depth: batches read ahead of the writer (memory: ``batch_size * queue_depth``
            rows in flight).

    Returns:
        The report; ``report.verified`` is True (a failed verification raises).

    Raises:
        ArgumentError: ``source`` or ``target`` is not a Database (e.g. a URL string).
        ConfigurationError: the same database twice, an unknown table name, a batch size
            below 1.
        UnportableSchemaError: a column's type or values have no equivalent on the target,
            or (without ``skip_unportable``) the source has views, functions or triggers
            that cannot move; raised before anything is written.
        TargetNotEmptyError: the target holds rows and ``yes`` is False, or holds another
            source's unfinished transfer.
        VerificationError: counts or checksums differ after the copy.

    Example:
        >>> async with (
        ...     botdb.connect("sqlite:///bot.db", sqlite_create=False) as source,
        ...     botdb.connect("postgresql://bot@localhost/bot") as target,
        ... ):
        ...     report = await transfer(source, target)
        >>> report.verified
        True
    """
    for role, db in (("source", source), ("target", target)):
        if isinstance(db, str | bytes | os.PathLike):
            raise errors.ArgumentError(
                f"transfer() takes connected Databases, got a {type(db).__name__} as {role}: "
                "open it with `async with botdb.connect(url) as db`"
            )
    if batch_size < 1:
        raise errors.ConfigurationError("batch_size must be at least 1")
    if queue_depth < 1:
        raise errors.ConfigurationError("queue_depth must be at least 1")
    fingerprint = hashlib.sha256(_identity(source).encode()).hexdigest()
    if source is target or _identity(source) == _identity(target):
        raise errors.ConfigurationError("the source and the target are the same database")
    started = time.perf_counter()
    report = TransferReport(source=source.url, target=target.url)
    try:
        plans = await _plan(source, target, metadata, tables, skip_unportable, report)
    except SQLAlchemyError as exc:
        raise errors.UnportableSchemaError(
            f"the source's schema cannot be read for a transfer: {_one_line(exc)}"
        ) from exc
    state = await _read_state(target)
    # The cyclic garbage collector is paused while rows move: every batch makes ~10**5 new
    # tuples, each generation-0 pass then walks the batches in flight and older passes the
    # whole heap (measured: 2.4x slower at 200k rows, worse as the heap grows). The copy
    # makes no reference cycles; memory stays bounded by the queue. Restored afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        await _check_target(target, plans, state, fingerprint, yes, report)
        await _create_schema(target, plans, report)
        await target.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name VARCHAR(255) PRIMARY KEY,"
            " last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL,"
            " source_fingerprint VARCHAR(64) NOT NULL)"
        )
        state = await _read_state(target)
        await _copy_all(
            source, target, plans, state, fingerprint, batch_size, queue_depth, progress, report
        )
        await _verify(source, target, plans, batch_size, report)
        await target.execute(f"DROP TABLE {STATE_TABLE}")
    finally:
        if collecting:
            gc.enable()
        target.cache.clear()
    report.seconds = round(time.perf_counter() - started, 3)
    return report
