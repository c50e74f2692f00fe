"""Small helpers shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

import botdb


@contextmanager
def statements(db: botdb.Database) -> Iterator[list[str]]:
    """Collect every statement sent while the block runs: through the ORM/Core engine, and
    (as "raw API query") through the raw SQL API."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = db.engine.sync_engine
    raw_before = db.stats()["queries"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
        seen.extend(["raw API query"] * (db.stats()["queries"] - raw_before))
