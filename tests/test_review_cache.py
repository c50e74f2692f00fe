"""Review findings: the cache, the migrations check and the models."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

import botdb
from botdb.cache import Cache
from botdb.migrations import Migrator
from botdb.models import Base


def builtin_metadata() -> sa.MetaData:
    """A copy of the built-in tables only (other test modules add models to Base.metadata)."""
    from botdb.models import is_builtin

    metadata = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        if is_builtin(table):
            table.to_metadata(metadata)
    return metadata


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(db_url) as database:
        yield database


async def test_check_reports_a_changed_server_default(db: botdb.Database) -> None:
    """A server default changed in a model, with no revision, is reported by check()."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    column = metadata.tables["guild_configs"].c.settings
    column.server_default = sa.DefaultClause(sa.text("'{\"a\": 1}'"))
    differences = await Migrator(db, metadata=metadata).check()
    assert any("guild_configs.settings" in d for d in differences), differences


async def test_check_reports_a_changed_nullable(db: botdb.Database) -> None:
    """A column made NOT NULL in a model, with no revision, is reported by check()."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    metadata.tables["guild_configs"].c.prefix.nullable = False
    differences = await Migrator(db, metadata=metadata).check()
    assert any("guild_configs.prefix" in d for d in differences), differences


async def test_check_reports_a_changed_partial_index_where(db: botdb.Database) -> None:
    """A partial index whose WHERE changed in a model, with no revision, is reported."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    (index,) = (
        ix
        for ix in metadata.tables["messages"].indexes
        if ix.name == "ix_messages_live_channel_id_created_at"
    )
    index.dialect_options[db.backend]["where"] = sa.column("deleted") == sa.true()
    differences = await Migrator(db, metadata=metadata).check()
    assert differences == [
        "modify index where ix_messages_live_channel_id_created_at on messages: "
        + (
            "'deleted=false' -> 'deleted=true'"
            if db.backend == "postgresql"
            else "'deleted=0' -> 'deleted=1'"
        )
    ], differences


async def test_check_reads_common_server_defaults_as_equal(db: botdb.Database) -> None:
    """Defaults like '', a quote, 0, now(), false and '[]' migrate and check as unchanged."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    table = sa.Table(
        f"review_defaults_{secrets.token_hex(3)}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer, server_default="0", nullable=False),
        sa.Column("b", sa.Integer, server_default=sa.text("0")),
        sa.Column("c", sa.String(20), server_default="hello"),
        sa.Column("d", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("e", sa.Boolean, server_default=sa.false()),
        sa.Column("f", sa.String(20), server_default=""),
        sa.Column("g", sa.Float, server_default="1.5"),
        sa.Column("h", sa.String(20), server_default="it's"),
        sa.Column("i", sa.JSON, server_default=sa.text("'[]'")),
    )
    async with db.engine.begin() as conn:
        await conn.run_sync(table.create)
    assert await Migrator(db, metadata=metadata).check() == []
    table.c.c.server_default = sa.DefaultClause("bye")
    assert await Migrator(db, metadata=metadata).check() == [
        f"modify server default {table.name}.c: 'hello' -> 'bye'"
    ]


# --------------------------------------------------------------------------- cache


@pytest.fixture
async def raw_redis(redis_server_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server_url)
    yield client
    await client.aclose()


async def test_invalidation_after_redis_lost_its_keys_still_drops_older_entries(
    redis_server_url: str, redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    """A FLUSHDB (or eviction) restarts the version clock at 1: entries read before still go."""
    async with (
        Cache(redis_url=redis_server_url, prefix=redis_prefix) as a,
        Cache(redis_url=redis_server_url, prefix=redis_prefix) as b,
    ):
        for _ in range(3):
            await b.invalidate("k")  # the key's version is now 3
        calls = 0

        async def load() -> str:
            nonlocal calls
            calls += 1
            return f"v{calls}"

        assert await a.get_or_load("k", load) == "v1"
        # What FLUSHDB does to this prefix, without flushing the shared server.
        names = [name async for name in raw_redis.scan_iter(match=f"{redis_prefix}*")]
        await raw_redis.delete(*names)
        await b.invalidate("k")  # version 1 again, older than a's entry (3)
        for _ in range(400):  # the message takes a moment to arrive
            if a.peek("k") is None:
                break
            await asyncio.sleep(0.005)
        assert await a.get_or_load("k", load) == "v2"
