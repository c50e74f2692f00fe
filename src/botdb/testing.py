"""Helpers for bots' own tests.

``temporary_database()`` gives a fresh, isolated Database for one test: an in-memory SQLite
database by default (nothing on disk, nothing to clean up), or a throwaway PostgreSQL
database created on a server you name and dropped afterwards. ``database_at(url)`` connects
to a database your test already has (a file in ``tmp_path``, a schema your fixture cleans).
Built-in tables (and your own models on :class:`botdb.models.Base`) are created unless
``create_tables=False``.

Example (pytest + pytest-asyncio)::

    import pytest
    from botdb.testing import temporary_database

    @pytest.fixture
    async def db():
        async with temporary_database() as database:
            yield database

    async def test_xp_is_added(db):
        await db.execute("INSERT INTO guilds (id, name) VALUES ($1, $2)", 1, "test guild")
        assert await db.fetchval("SELECT name FROM guilds WHERE id = $1", 1) == "test guild"
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from botdb.config import DatabaseURL
from botdb.database import Database, connect

__all__ = ["database_at", "temporary_database"]


@asynccontextmanager
async def database_at(
    url: str, *, create_tables: bool = True, **options: Any
) -> AsyncIterator[Database]:
    """A Database connected to ``url`` for one test, closed afterwards (the data is kept).

    Example (pytest's ``tmp_path``)::

        @pytest.fixture
        async def db(tmp_path):
            async with database_at(f"sqlite:///{tmp_path / 'bot.db'}") as database:
                yield database

    Args:
        url: the database, as for :func:`botdb.connect`.
        create_tables: create the tables of :class:`botdb.models.Base` that are missing.
        options: Settings fields, as for :func:`botdb.connect`.
    """
    async with connect(url, **options) as db:
        if create_tables:
            await db.create_tables()
        yield db


@asynccontextmanager
async def temporary_database(
    postgres_server_url: str | None = None,
    *,
    create_tables: bool = True,
    **options: Any,
) -> AsyncIterator[Database]:
    """A fresh Database for one test, gone afterwards.

    Args:
        postgres_server_url: a PostgreSQL URL whose user may create databases; a database
            ``botdb_test_<random>`` is created on that server and dropped afterwards
            (``WITH (FORCE)``). None: an in-memory SQLite database.
        create_tables: create the tables of :class:`botdb.models.Base` (built-in and yours).
        options: Settings fields, as for :func:`botdb.connect`.
    """
    if postgres_server_url is None:
        async with database_at("sqlite:///:memory:", create_tables=create_tables, **options) as db:
            yield db
        return

    server = DatabaseURL.parse(postgres_server_url)
    name = f"botdb_test_{secrets.token_hex(6)}"
    async with connect(postgres_server_url, pool_min_size=1, pool_max_size=1) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    target = server.asyncpg_dsn().rsplit("/", 1)[0] + f"/{name}"
    try:
        async with database_at(target, create_tables=create_tables, **options) as db:
            yield db
    finally:
        async with connect(postgres_server_url, pool_min_size=1, pool_max_size=1) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
