"""The transfer's report, its per-table plan and the names its modules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Table

from botdb.ops._portable import Converter

if TYPE_CHECKING:
    pass


#: Progress of an unfinished transfer, kept in the target; dropped once verified.
STATE_TABLE = "botdb_transfer_state"
_MODULUS = 1 << 256

#: ``progress(table, rows_done, rows_total)``, called after each committed batch.
ProgressCallback = Callable[[str, int, int], object]


@dataclass
class TableTransfer:
    """What happened to one table."""

    name: str
    source_rows: int = 0
    target_rows: int = 0
    copied: int = 0
    resumed_at: int = 0
    source_checksum: str = ""
    target_checksum: str = ""
    skipped_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Counts and checksums agree."""
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class TransferReport:
    """The result of :func:`transfer` (also the ``--json`` output of the CLI)."""

    source: str
    target: str
    schema: str = ""
    resumed: bool = False
    verified: bool = False
    seconds: float = 0.0
    tables: list[TableTransfer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``"botdb"`` (its migration table or its built-in tables say so: botdb's models are
    #: used) or ``"reflected"`` (any other schema: the source's own, reflected and mapped).
    source_schema: str = ""
    #: Views, materialized views, functions and triggers not moved (``skip_unportable``).
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        for table, entry in zip(self.tables, data["tables"], strict=True):
            entry["ok"] = table.ok
        return data


@dataclass
class _TablePlan:
    table: Table  # the target's table
    columns: list[Column[Any]]  # the target's columns copied
    key: list[Column[Any]]  # the target's primary key (for the target's re-read)
    source_columns: list[Column[Any]] = field(default_factory=list)  # read with these
    source_key: list[Column[Any]] = field(default_factory=list)
    convert: list[Converter | None] = field(default_factory=list)  # value read -> written
    total: int = 0


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n", 1)[0].split())
