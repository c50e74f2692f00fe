"""Importers: legacy JSON stores and chat exports into botdb's tables (see ``docs/import.md``).

Example:
    >>> from botdb.importers import import_discord, import_json, import_telegram
    >>> report = await import_json(db, "watched_matches.json")  # format detected
    >>> report.tables["tracked_events"].inserted
    42
    >>> (await import_discord(db, "general.json", "general-thread.json")).messages
    1234
    >>> (await import_telegram(db, "result.json")).messages
    5120
"""

from __future__ import annotations

from botdb.importers._chat import ChatImportReport
from botdb.importers._formats import ANY_REACTION
from botdb.importers.discord import import_discord
from botdb.importers.json_store import (
    FORMATS,
    ImportReport,
    ImportValidationError,
    Problem,
    TableCounts,
    detect_format,
    import_json,
)
from botdb.importers.telegram import import_telegram

__all__ = [
    "ANY_REACTION",
    "FORMATS",
    "ChatImportReport",
    "ImportReport",
    "ImportValidationError",
    "Problem",
    "TableCounts",
    "detect_format",
    "import_discord",
    "import_json",
    "import_telegram",
]
