"""Repository cases: ``get_by_id`` and ``create_many`` against the naive ORM handler path.

The baseline is what the seeds' handlers do: their own ``async_sessionmaker`` over a plain
``create_async_engine``, one new ``AsyncSession`` per lookup (``session.get``), and
``session.add_all`` + ``commit`` for many rows.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, Pair, require
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import botdb
from botdb.models import User

USERS = User.metadata.tables["users"]

KEYS = 1000
NAIVE_LOOKUPS = 1000
LOOKUPS = 10_000
BATCH = 2000
#: Ids of the rows these cases write, far from any other case's rows (removed afterwards).
FIRST_ID = 10**12


def _rows(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"id": start + i, "username": f"user{i}", "display_name": f"User {i}", "is_bot": i % 9 == 0}
        for i in range(n)
    ]


async def _prepare(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: USERS.create(sync, checkfirst=True))
        await conn.execute(delete(User).where(User.id >= FIRST_ID))
        await conn.execute(USERS.insert(), _rows(FIRST_ID, KEYS))


async def _cleanup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(User).where(User.id >= FIRST_ID))


@asynccontextmanager
async def _get_by_id(url: str, sa_url: str) -> AsyncIterator[Pair]:
    engine = create_async_engine(sa_url)
    await _prepare(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    db = await botdb.connect(url)
    users = db.repo(User)

    async def baseline() -> int:
        for i in range(NAIVE_LOOKUPS):
            async with sessions() as session:
                user = await session.get(User, FIRST_ID + i % KEYS)
                assert user is not None
        return NAIVE_LOOKUPS

    async def subject() -> int:
        for i in range(LOOKUPS):
            user = await users.get_by_id(FIRST_ID + i % KEYS)
            assert user is not None
        return LOOKUPS

    try:
        yield baseline, subject
    finally:
        await db.close()
        await _cleanup(engine)
        await engine.dispose()


@asynccontextmanager
async def _create_many(url: str, sa_url: str) -> AsyncIterator[Pair]:
    engine = create_async_engine(sa_url)
    await _prepare(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    db = await botdb.connect(url)
    users = db.repo(User)
    starts = itertools.count(FIRST_ID + KEYS, BATCH)

    async def baseline() -> int:
        async with sessions() as session:
            session.add_all([User(**row) for row in _rows(next(starts), BATCH)])
            await session.commit()
        return BATCH

    async def subject() -> int:
        created = await users.create_many(_rows(next(starts), BATCH))
        assert len(created) == BATCH
        return BATCH

    try:
        yield baseline, subject
    finally:
        await db.close()
        await _cleanup(engine)
        await engine.dispose()


def _pg(env: dict[str, Any]) -> tuple[str, str]:
    url: str = require(env, "pg_url")
    return url, url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _sqlite(env: dict[str, Any], name: str) -> tuple[str, str]:
    path = env["tmp"] / name
    return f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"


def pg_get_by_id(env: dict[str, Any]) -> Any:
    return _get_by_id(*_pg(env))


def sqlite_get_by_id(env: dict[str, Any]) -> Any:
    return _get_by_id(*_sqlite(env, "repo_get.db"))


def pg_create_many(env: dict[str, Any]) -> Any:
    return _create_many(*_pg(env))


def sqlite_create_many(env: dict[str, Any]) -> Any:
    return _create_many(*_sqlite(env, "repo_create.db"))


CASES: list[Case] = [
    Case("pg repo get_by_id", "new AsyncSession + session.get", 2.0, pg_get_by_id),
    Case("sqlite repo get_by_id", "new AsyncSession + session.get", 2.0, sqlite_get_by_id),
    Case("pg repo create_many", "session.add_all + commit", None, pg_create_many),
    Case("sqlite repo create_many", "session.add_all + commit", None, sqlite_create_many),
]
