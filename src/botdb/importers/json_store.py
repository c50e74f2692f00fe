"""Import a legacy JSON store into the database: detect, validate, back up, migrate, verify.

The steps a bot takes to move from JSON files to a database, made safe:

1. **Detect** the format (``reminders``, ``members``, or ``generic`` with a spec).
2. **Validate everything first**, streaming the file: every bad record is reported with its
   key and the reason; if there is one, nothing is imported (:class:`ImportValidationError`).
3. **Back up** the file (a timestamped copy, mode 0600) unless it is a dry run.
4. **Migrate in one transaction**: upserts keyed on natural keys, so a second run changes
   nothing and reports every row unchanged.
5. **Verify** inside the same transaction: every key of the file is in the database and the
   counts agree; otherwise everything is rolled back.

The JSON file is only ever read. A dry run does all of it and rolls back (no backup either).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import os
import shutil
import time
import tomllib
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from botdb import errors
from botdb._json_values import check_json, short
from botdb.importers._formats import Format, MembersFormat, RemindersFormat
from botdb.importers._generic import GenericFormat, parse_spec
from botdb.importers._stream import JSONStreamError, ObjectReader
from botdb.importers._write import count_present, fill_event_ids, upsert

if TYPE_CHECKING:
    from botdb._protocols import EngineDatabase

__all__ = [
    "FORMATS",
    "ImportReport",
    "ImportValidationError",
    "Problem",
    "TableCounts",
    "detect_format",
    "import_json",
]

FORMATS = ("auto", "reminders", "members", "generic")
#: How code (rather than the command line) initialises a database, in error messages.
IN_CODE = " (in code: `await db.migrate()`)"
#: Bad records kept in a report (all of them are counted).
MAX_PROBLEMS = 1000
_DETECT_SAMPLE = 5
#: The range of a 64-bit signed integer column (BIGINT; SQLite's INTEGER).
_INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass
class Problem:
    """One bad record: its key in the file and why it was refused."""

    key: str
    reason: str


@dataclass
class TableCounts:
    """Rows per table: new, changed, and already equal to the file."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportReport:
    """What :func:`import_json` did (or, in a dry run, would do)."""

    path: str
    format: str = ""
    dry_run: bool = False
    records: int = 0
    backup: str | None = None
    verified: bool = False
    seconds: float = 0.0
    tables: dict[str, TableCounts] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class ImportValidationError(errors.DataError):
    """Records of the file are invalid; nothing was imported.

    Attributes:
        problems: the bad records (key and reason), at most ``MAX_PROBLEMS`` of them.
        report: the :class:`ImportReport` (``problem_count`` counts every bad record).
    """

    def __init__(self, report: ImportReport) -> None:
        shown = "; ".join(f"{p.key}: {p.reason}" for p in report.problems[:3])
        more = report.problem_count - min(3, len(report.problems))
        super().__init__(
            f"{report.problem_count} bad record(s), nothing was imported: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )
        self.problems = report.problems
        self.report = report


# -- reading ----------------------------------------------------------------------------------


def _members(
    path: Path, members_path: tuple[str, ...] = ()
) -> Generator[tuple[str, Any], None, None]:
    """The file's members, streamed; file-level problems become :class:`DataError`."""
    try:
        with path.open(encoding="utf-8-sig") as fp:
            yield from ObjectReader(fp).items(members_path)
    except JSONStreamError as exc:
        raise errors.DataError(f"{path.name} is not a usable JSON store: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise errors.DataError(f"{path.name} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise errors.ConfigurationError(f"cannot read {path}: {exc}") from exc


def detect_format(path: Path) -> str:
    """``"reminders"`` or ``"members"``, from the first members of the file (blocking I/O).

    Raises:
        DataError: the file is not JSON, not an object, or matches no format.
    """
    sample = []
    for item in _members(path):
        sample.append(item)
        if len(sample) == _DETECT_SAMPLE:
            break
    if not sample:
        raise errors.DataError(f"{path.name} is an empty object: pass the format explicitly")
    for candidate in (RemindersFormat(), MembersFormat()):
        if all(candidate.looks_like(key, value) for key, value in sample):
            return candidate.name
    raise errors.DataError(
        f"{path.name} matches no known format (reminders, members): "
        "pass --format, or --spec for the generic mapping"
    )


def _validate(path: Path, fmt: Format, report: ImportReport) -> None:
    """Pass 1: parse every record, collect every bad one, count rows per table."""
    seen: set[tuple[Any, ...]] = set()
    key_columns = fmt.rules[fmt.primary].key
    for key, value in _members(path, _path_of(fmt)):
        report.records += 1
        try:
            record = fmt.parse(key, value)
            rows = fmt.rows(record)
            _check_values(rows)
            primary = rows[fmt.primary]
        except (ValueError, ValidationError, errors.DataError) as exc:
            _problem(report, key, _reason(exc))
            continue
        for row in primary:
            natural = tuple(row[c] for c in key_columns)
            if natural in seen:
                _problem(report, key, f"duplicate key {natural} (another record has it)")
            seen.add(natural)


def _check_values(rows: Mapping[str, list[dict[str, Any]]]) -> None:
    """Reject a value no column would store as it is, so the record is named in the report
    instead of failing the write: an int beyond 64 bits, NaN/Infinity, a lone surrogate, a
    JSON value that is not storable (see :mod:`botdb._json_values`)."""
    for table, table_rows in rows.items():
        for row in table_rows:
            for column, value in row.items():
                kind = type(value)
                if kind is int and not _INT64[0] <= value <= _INT64[1]:
                    raise ValueError(f"{table}.{column}: {short(value)} does not fit in 64 bits")
                if kind is float and not math.isfinite(value):
                    raise ValueError(f"{table}.{column}: {value} is not a finite number")
                if kind in (str, dict, list, tuple):
                    check_json(value, f"{table}.{column}")


def _file_digest(path: Path) -> str:
    """SHA-256 of the file, to notice a file changed while it is imported. Blocking."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _problem(report: ImportReport, key: str, reason: str) -> None:
    report.problem_count += 1
    if len(report.problems) < MAX_PROBLEMS:
        report.problems.append(Problem(key, reason))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def _path_of(fmt: Format) -> tuple[str, ...]:
    return fmt.path if isinstance(fmt, GenericFormat) else ()


def _backup(path: Path, backup_dir: Path | None) -> Path:
    """A copy of the file named with a UTC timestamp, readable by its owner only."""
    directory = backup_dir if backup_dir is not None else path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot create the backup directory {directory}: {exc}"
        ) from exc
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"{path.stem}.{stamp}{path.suffix}.bak"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, path.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
    shutil.copystat(path, target)
    os.chmod(target, 0o600)
    return target


def _take(items: Iterator[tuple[str, Any]], count: int) -> list[tuple[str, Any]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == count:
            break
    return batch


# -- the import -------------------------------------------------------------------------------


async def _tables(db: EngineDatabase) -> dict[str, Table]:
    import botdb.models

    known: dict[str, Table] = dict(botdb.models.Base.metadata.tables)

    def reflect(sync_conn: Any) -> None:
        names = [n for n in inspect(sync_conn).get_table_names() if n not in known]
        if names:
            extra = MetaData()
            extra.reflect(bind=sync_conn, only=names)
            known.update(extra.tables)

    await db.free_pool_slot()
    async with db.engine.connect() as conn:
        await conn.run_sync(reflect)
    return known


async def _require_tables(db: EngineDatabase, fmt: Format) -> None:
    """Refuse a database that has not been initialised, before anything is written."""

    def names(sync_conn: Any) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    await db.free_pool_slot()
    async with db.engine.connect() as conn:
        present = await conn.run_sync(names)
    missing = [name for name in fmt.rules if name not in present]
    if missing:
        raise errors.UndefinedTableError(
            f"the database has no botdb schema yet (no table {', '.join(missing)}): "
            f"run `botdb init` first{IN_CODE}; nothing was imported",
            table=missing[0],
        )


async def _load_format(db: EngineDatabase, fmt_name: str, spec: Path | None, path: Path) -> Format:
    if spec is not None or fmt_name == "generic":
        if spec is None:
            raise errors.ConfigurationError("the generic format needs a spec file (--spec)")
        if fmt_name not in ("auto", "generic"):
            raise errors.ConfigurationError(f"--spec is for the generic format, not {fmt_name}")
        try:
            raw = await asyncio.to_thread(spec.read_bytes)
            data = tomllib.loads(raw.decode()) if spec.suffix == ".toml" else orjson.loads(raw)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise errors.ConfigurationError(f"cannot read the spec {spec.name}: {exc}") from exc
        return parse_spec(data, await _tables(db))
    if fmt_name == "auto":
        fmt_name = await asyncio.to_thread(detect_format, path)
    return RemindersFormat() if fmt_name == "reminders" else MembersFormat()


async def import_json(
    db: EngineDatabase,
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    spec: Path | None = None,
    dry_run: bool = False,
    backup_dir: Path | None = None,
    batch_size: int = 1000,
) -> ImportReport:
    """Import a legacy JSON store into ``db``, verified, in one transaction.

    Args:
        db: a connected Database whose schema exists (``await db.migrate()``).
        path: the JSON file; it is only read.
        format: ``"auto"`` (detect), ``"reminders"`` (a reminder bot's watched messages),
            ``"members"`` (a per-member store keyed ``"<guild>_<user>"``) or ``"generic"``
            (needs ``spec``).
        spec: a TOML or JSON mapping spec for the generic format (see ``docs/import.md``).
        dry_run: do everything in a transaction that is rolled back; no backup is written.
        backup_dir: where the backup goes (default: next to the file).
        batch_size: records per round trip.

    Returns:
        The report: rows inserted / updated / unchanged per table, the backup's path.

    Raises:
        ConfigurationError: an unknown format, a missing file, a bad spec (unknown table or
            column...).
        UndefinedTableError: the database has no botdb schema yet (never initialised);
            nothing was written, no backup either.
        DataError: the file is empty, not JSON, not an object, or matches no format.
        ImportValidationError: some records are invalid; ``problems`` lists them.
    """
    if format not in FORMATS:
        raise errors.ConfigurationError(f"unknown format {format!r}; use one of {FORMATS}")
    if batch_size < 1:
        raise errors.ConfigurationError("batch_size must be at least 1")
    source = Path(path)
    if not await asyncio.to_thread(source.is_file):
        raise errors.ConfigurationError(f"no such file: {source}")
    started = time.perf_counter()
    fmt = await _load_format(db, format, spec, source)
    if not isinstance(fmt, GenericFormat):  # a spec's tables are checked by parse_spec
        await _require_tables(db, fmt)
    report = ImportReport(path=str(source), format=fmt.name, dry_run=dry_run)
    report.tables = {name: TableCounts() for name in fmt.rules}
    before = await asyncio.to_thread(_file_digest, source)
    await asyncio.to_thread(_validate, source, fmt, report)
    if report.problem_count:
        raise ImportValidationError(report)
    if not dry_run:
        report.backup = str(await asyncio.to_thread(_backup, source, backup_dir))
    tables = await _tables(db) if isinstance(fmt, GenericFormat) else None
    # Database errors arrive typed: the engine's handle_error event is their boundary.
    await db.free_pool_slot()
    async with db.engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await _migrate(conn, source, fmt, report, batch_size, tables)
            await _verify(conn, source, fmt, report, batch_size, tables)
            if await asyncio.to_thread(_file_digest, source) != before:
                raise errors.DataError(
                    f"{source.name} changed while it was imported; nothing was imported: "
                    "stop the bot that writes it and run the import again"
                )
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
    report.verified = True
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _table(name: str, tables: Mapping[str, Table] | None) -> Table:
    if tables is not None:
        return tables[name]
    import botdb.models

    return botdb.models.Base.metadata.tables[name]


async def _record_batches(
    source: Path, fmt: Format, batch_size: int
) -> AsyncGenerator[list[dict[str, list[dict[str, Any]]]], None]:
    items = _members(source, _path_of(fmt))
    try:
        while batch := await asyncio.to_thread(_take, items, batch_size):
            yield [fmt.rows(fmt.parse(key, value)) for key, value in batch]
    finally:
        await asyncio.to_thread(items.close)


async def _migrate(
    conn: AsyncConnection,
    source: Path,
    fmt: Format,
    report: ImportReport,
    batch_size: int,
    tables: Mapping[str, Table] | None,
) -> None:
    async with aclosing(_record_batches(source, fmt, batch_size)) as batches:
        async for records in batches:
            await _write_batch(conn, fmt, records, report, tables)


async def _write_batch(
    conn: AsyncConnection,
    fmt: Format,
    records: list[dict[str, list[dict[str, Any]]]],
    report: ImportReport,
    tables: Mapping[str, Table] | None,
) -> None:
    for name, rule in fmt.rules.items():
        rows = [row for record in records for row in record[name]]
        if name == "event_reactions":
            await fill_event_ids(conn, _table("tracked_events", tables), rows)
        counts = await upsert(conn, _table(name, tables), rows, rule.key, rule.update)
        entry = report.tables[name]
        entry.inserted += counts[0]
        entry.updated += counts[1]
        entry.unchanged += counts[2]


async def _verify(
    conn: AsyncConnection,
    source: Path,
    fmt: Format,
    report: ImportReport,
    batch_size: int,
    tables: Mapping[str, Table] | None,
) -> None:
    expected = found = 0
    async with aclosing(_record_batches(source, fmt, batch_size)) as batches:
        async for records in batches:
            found += await _verify_batch(conn, fmt, records, tables)
            expected += len(records)
    if expected != report.records or found != expected:
        raise errors.DataError(
            f"verification failed: {report.records} records in the file, {found} in "
            f"{fmt.primary}; nothing was imported"
        )


async def _verify_batch(
    conn: AsyncConnection,
    fmt: Format,
    records: list[dict[str, list[dict[str, Any]]]],
    tables: Mapping[str, Table] | None,
) -> int:
    """Check every row of the batch is present; returns how many primary rows are."""
    found = 0
    for name, rule in fmt.rules.items():
        rows = [row for record in records for row in record[name]]
        if name == "event_reactions":
            await fill_event_ids(conn, _table("tracked_events", tables), rows)
        keys = {tuple(row[c] for c in rule.key) for row in rows}
        present = await count_present(conn, _table(name, tables), rule.key, keys)
        if present != len(keys):
            raise errors.DataError(
                f"verification failed: {len(keys) - present} row(s) of {name} from the file "
                "are missing after the import; nothing was imported"
            )
        if name == fmt.primary:
            found += present
    return found
