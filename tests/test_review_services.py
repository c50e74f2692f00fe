"""Review findings in botdb.services: each test pins a bug fixed during the review.

Every test runs on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import botdb
from botdb import errors
from botdb.services import ScopedConfig, UserService

G, U = 1_150_000_000_000_000_001, 80_351_110_224_678_912
BIG = (1 << 63) - 1


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(db_url, retry_initial_delay=0.01) as database:
        await database.create_tables()
        yield database


async def test_cached_get_or_create_refuses_an_int_for_a_bool_field(db: botdb.Database) -> None:
    """is_bot=1 is refused on a cache hit exactly as on a miss (1 == True must not match)."""
    users = UserService(db)
    await users.get_or_create(id=U, username="ann", is_bot=True)
    await users.get_or_create(id=U, username="ann", is_bot=True)  # cached now
    with pytest.raises(errors.ArgumentError):
        await users.get_or_create(id=U, username="ann", is_bot=1)
    with pytest.raises(errors.ArgumentError):
        await users.get_or_create(id=U, username="ann", is_premium=0)


async def test_increment_past_64_bits_raises_and_keeps_the_value(db: botdb.Database) -> None:
    """An increment whose result leaves the 64-bit range raises DataError and stores nothing
    (PostgreSQL's numeric would store a 65-bit int; SQLite would silently turn it into a float)."""
    scoped = ScopedConfig(db, namespace="eco")
    scoped.register_member(balance=0)
    group = scoped.member(G, U)
    await group.set("balance", BIG - 1)
    with pytest.raises(errors.DataError):
        await group.increment("balance", 5)
    assert await group.get("balance") == BIG - 1
    stored = await db.fetchval("SELECT count(*) FROM kv_store")
    assert stored == 1
    assert await group.increment("balance", 1) == BIG
    scoped2 = ScopedConfig(db, namespace="eco")
    scoped2.register_member(balance=0)
    assert await scoped2.member(G, U).get("balance") == BIG


async def test_clear_all_counts_rows_and_drops_every_cleared_scope_from_the_cache(
    db: botdb.Database,
) -> None:
    """clear_all takes the scopes to invalidate from its DELETE ... RETURNING: the count is the
    rows deleted and each cached scope reads its default afterwards."""
    scoped = ScopedConfig(db, namespace="eco")
    scoped.register_member(balance=0, note="")
    await scoped.member(G, U).set("balance", 5)
    await scoped.member(G, U).set("note", "x")
    await scoped.member(G, U + 1).set("balance", 7)
    assert await scoped.member(G, U).get("balance") == 5  # cached
    assert await scoped.member(G, U + 1).get("balance") == 7
    assert await scoped.clear_all("member") == 3
    assert await scoped.member(G, U).get("balance") == 0
    assert await scoped.member(G, U + 1).get("balance") == 0
    assert await scoped.clear_all("member") == 0
