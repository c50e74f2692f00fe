"""Importers: legacy JSON stores into botdb's tables (see ``docs/import.md``).

Example:
    >>> from botdb.importers import import_json
    >>> report = await import_json(db, "watched_matches.json")  # format detected
    >>> report.tables["tracked_events"].inserted
    42
"""

from __future__ import annotations

from botdb.importers._formats import ANY_REACTION
from botdb.importers.json_store import (
    FORMATS,
    ImportReport,
    ImportValidationError,
    Problem,
    TableCounts,
    detect_format,
    import_json,
)

__all__ = [
    "ANY_REACTION",
    "FORMATS",
    "ImportReport",
    "ImportValidationError",
    "Problem",
    "TableCounts",
    "detect_format",
    "import_json",
]
