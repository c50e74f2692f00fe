"""Small helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pytest
from sqlalchemy import event

import botdb


class MakeDB(Protocol):
    """The ``make_db`` fixture: ``await make_db(create_tables=False, url=None, **settings)``."""

    async def __call__(
        self, *, url: str | None = None, create_tables: bool = False, **options: Any
    ) -> botdb.Database: ...


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


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    what: str | None = None,
    interval: float = 0.005,
) -> None:
    """Wait until ``predicate()`` (sync or async) is true, polling every ``interval`` seconds.

    The bound only turns a hang into a clear failure; it is not a measurement, so it is
    generous. Use it to wait for something another task, thread or process does; wait for an
    event instead where the code offers one.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or _describe(predicate)}")
        await asyncio.sleep(interval)


def _describe(predicate: Callable[..., object]) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


async def pg_backend_running(url: str, fragment: str) -> int:
    """Wait until a PostgreSQL backend runs a statement containing ``fragment``; its pid."""
    import asyncpg

    admin = await asyncpg.connect(url)
    pid: int | None = None
    try:

        async def found() -> bool:
            nonlocal pid
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> "
                "pg_backend_pid() AND position($1 in query) > 0",
                fragment,
            )
            return pid is not None

        await wait_until(found, what=f"a statement containing {fragment!r} to run")
    finally:
        await admin.close()
    assert pid is not None
    return pid


def in_use(db: botdb.Database) -> int:
    """Connections the raw API has leased out and not yet taken back (from ``pool_stats``)."""
    stats = db.pool_stats()
    return int(stats["leased"]) - int(stats["leased_idle"])


async def start_redis_server(binary: str, port: int) -> asyncio.subprocess.Process:
    """A throwaway redis-server on ``port`` (nothing saved), returned once it answers PING."""
    import redis.asyncio as aioredis

    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (aioredis.ConnectionError, OSError):
            return False

    try:
        await wait_until(answers, timeout=10, what=f"redis-server to answer on port {port}")
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    finally:
        await client.aclose()
    return proc


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (to show an import left its input untouched)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def row_counts(db: botdb.Database, tables: Iterable[str]) -> dict[str, int]:
    """``{table: count(*)}`` for each of ``tables``."""
    return {t: int(await db.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}


def child_env() -> dict[str, str]:
    """Environment for a child Python process that imports this checkout's botdb (and the
    ``tests`` package)."""
    src = str(Path(botdb.__file__).resolve().parents[1])
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def load_example(path: Path, name: str) -> ModuleType:
    """Import an example script (``examples/*.py``) as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
