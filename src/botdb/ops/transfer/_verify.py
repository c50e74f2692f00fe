"""Verifying: row counts and order-independent checksums on both sides."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column

from botdb import errors
from botdb.ops._portable import Converter
from botdb.ops.transfer._copy import _batches
from botdb.ops.transfer._digest import _digest_rows
from botdb.ops.transfer._types import _MODULUS, STATE_TABLE, TransferReport, _TablePlan
from botdb.ops.transfer._values import _convert, _decoders

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase


async def _checksum(
    db: OpsDatabase,
    table: str,
    columns: list[Column[Any]],
    key: list[Column[Any]],
    convert: list[Converter | None],
    batch_size: int,
) -> tuple[int, str]:
    convert = _decoders(db, columns, convert)
    active = any(f is not None for f in convert)
    count = total = 0
    async with aclosing(_batches(db, table, columns, key, batch_size, None)) as batches:
        async for page in batches:
            rows = _convert(page, convert) if active else page
            total += _digest_rows(rows)
            count += len(rows)
    return count, f"{total % _MODULUS:064x}"


async def _target_checksum(
    target: OpsDatabase, plan: _TablePlan, batch_size: int
) -> tuple[int, str]:
    """Count and checksum of what landed: one streaming read of the target table through
    the driver (no ORDER BY), each raw value decoded, digested like the source side."""
    return await _checksum(
        target, plan.table.name, plan.columns, [], [None] * len(plan.columns), batch_size
    )


async def _verify(
    source: OpsDatabase,
    target: OpsDatabase,
    plans: list[_TablePlan],
    batch_size: int,
    report: TransferReport,
) -> None:
    """Compare each table's count and checksum on both sides.

    The source side was computed while reading, from the values copied (a resumed table,
    read only in part by this run, is read again). The target side is one streaming re-read
    of what landed, through the driver with no ordering and no SQLAlchemy processing: a
    digest of the rows as they were handed to the driver would not prove they were stored,
    or stored as meant (a column type that coerces or truncates, a trigger). It is the one
    extra pass; ``make bench`` (the ``transfer`` cases) measures the whole run with it.
    """
    for plan, entry in zip(plans, report.tables, strict=True):
        if not entry.source_checksum:
            entry.source_rows, entry.source_checksum = await _checksum(
                source,
                plan.table.name,
                plan.source_columns,
                plan.source_key,
                plan.convert,
                batch_size,
            )
        entry.target_rows, entry.target_checksum = await _target_checksum(
            target, plan, max(batch_size, 10_000)
        )
    bad = [entry.name for entry in report.tables if not entry.ok]
    if bad:
        await target.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")
        raise errors.VerificationError(
            f"the copy differs from the source in {', '.join(bad)}; "
            "re-run with yes=True (--yes) to copy again",
            report,
        )
    report.verified = True
