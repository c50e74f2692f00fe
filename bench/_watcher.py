"""What the cross-process window cases share: a watcher process that reports when it sees each
config value, and the writer's loop that measures commit -> seen."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

import botdb
from botdb.services import GuildConfigService


@asynccontextmanager
async def config_write_window(
    db: botdb.Database,
    script: Path,
    *,
    url: str,
    reader_redis: str,
    prefix: str,
    writes: int,
    guild: int,
) -> AsyncIterator[Callable[[], Awaitable[list[float]]]]:
    """Start ``script`` (a watcher of ``guild``'s prefix on ``url``) and yield ``sample()``:
    ``writes`` config writes through ``db``, each timed from its COMMIT (SQLAlchemy's
    ``after_commit``) to the watcher printing ``SEEN value time``. Closes ``db`` at the end."""
    config = GuildConfigService(db)
    await config.set(guild, prefix="v0")
    commits: list[float] = []

    def committed(session: Session) -> None:
        commits.append(time.monotonic())

    src = str(Path(botdb.__file__).parents[1])
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, reader_redis, prefix, str(writes), str(guild),
        stdout=subprocess.PIPE, env=child_env,
    )  # fmt: skip
    assert child.stdout is not None
    stdout = child.stdout

    async def line() -> list[str]:
        raw = await asyncio.wait_for(stdout.readline(), 30)
        if not raw:
            raise RuntimeError("the watcher process exited early")
        return raw.decode().split()

    async def sample() -> list[float]:
        if (await line())[:2] != ["SEEN", "0"]:
            raise RuntimeError("the watcher did not start")
        delays = []
        event.listen(Session, "after_commit", committed)
        try:
            for value in range(1, writes + 1):
                await config.set(guild, prefix=f"v{value}")
                words = await line()
                if words[:2] != ["SEEN", str(value)]:
                    raise RuntimeError(f"expected SEEN {value}, got {words}")
                delays.append(float(words[2]) - commits[-1])
        finally:
            event.remove(Session, "after_commit", committed)
        return delays

    try:
        yield sample
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await db.close()
