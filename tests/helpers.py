"""Small helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import subprocess
import time
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


async def start_redis_server(binary: str, port: int) -> asyncio.subprocess.Process:
    """A throwaway redis-server on ``port`` (nothing saved), returned once it answers PING."""
    import redis.asyncio as aioredis

    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                await client.ping()
                return proc
            except (aioredis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()
