"""botdb.services.scoped: Red-style scoped settings in kv_store, atomic writes, bulk reads.

Every test runs on SQLite and on the real PostgreSQL server. The two-process increment test
is in tests/test_services_processes.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import botdb
from botdb import errors
from botdb.services import ScopedConfig

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

G, U = 1_150_000_000_000_000_001, 80_351_110_224_678_912


@pytest.fixture
def eco(db: botdb.Database) -> ScopedConfig:
    scoped = ScopedConfig(db, namespace="economy")
    scoped.register_global(season=1)
    scoped.register_guild(currency="coins", daily=100, prefix="!")
    scoped.register_channel(enabled=True)
    scoped.register_role(multiplier=1.0)
    scoped.register_user(badges=[])
    scoped.register_member(balance=0, banned=False, items=[], profile={}, note=None)
    scoped.register_custom("ticket", status="open", replies=0)
    return scoped


async def rows(db: botdb.Database) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.fetch("SELECT scope, key FROM kv_store ORDER BY scope, key")]


async def test_get_returns_defaults_and_stores_nothing(
    eco: ScopedConfig, db: botdb.Database
) -> None:
    assert await eco.guild(G).get("currency") == "coins"
    assert await eco.guild(G).get("currency", "gems") == "gems"  # explicit fallback
    assert await eco.member(G, U).all() == {
        "balance": 0, "banned": False, "items": [], "profile": {}, "note": None,
    }  # fmt: skip
    assert await rows(db) == []


async def test_set_get_clear_round_trip_with_documented_scope_strings(
    eco: ScopedConfig, db: botdb.Database
) -> None:
    await eco.global_().set("season", 2)
    await eco.guild(G).set("currency", "gems")
    await eco.channel(5).set("enabled", False)
    await eco.role(6).set("multiplier", 1.5)
    await eco.user(U).set("badges", ["early"])
    await eco.member(G, U).set("profile", {"bio": "hi"})
    await eco.custom("ticket", G, 17).set("status", "closed")
    assert await rows(db) == [
        ("channel:5", "enabled"),
        (f"custom:ticket:{G}:17", "status"),
        ("global", "season"),
        (f"guild:{G}", "currency"),
        (f"member:{G}:{U}", "profile"),
        ("role:6", "multiplier"),
        (f"user:{U}", "badges"),
    ]
    assert await eco.guild(G).get("currency") == "gems"
    assert await eco.role(6).get("multiplier") == 1.5
    assert await eco.custom("ticket", G, 17).all() == {"status": "closed", "replies": 0}
    await eco.guild(G).set("daily", 5)
    await eco.guild(G).clear("currency")
    assert await eco.guild(G).all() == {"currency": "coins", "daily": 5, "prefix": "!"}
    await eco.guild(G).clear()
    assert await eco.guild(G).get("daily") == 100
    assert (f"guild:{G}", "daily") not in await rows(db)


async def test_returned_lists_and_dicts_are_copies(eco: ScopedConfig) -> None:
    await eco.user(U).set("badges", ["a"])
    badges = await eco.user(U).get("badges")
    badges.append("mutated")
    assert await eco.user(U).get("badges") == ["a"]
    defaults = await eco.member(G, U).get("items")
    defaults.append("x")
    assert await eco.member(G, U).get("items") == []


async def test_increment_toggle_append_return_the_new_value(eco: ScopedConfig) -> None:
    member = eco.member(G, U)
    assert await member.increment("balance", 5) == 5  # from the default
    assert await member.increment("balance") == 6
    assert await member.increment("balance", -10) == -4
    assert await member.get("balance") == -4
    assert await member.toggle("banned") is True
    assert await member.toggle("banned") is False
    assert await member.append("items", "sword") == ["sword"]
    assert await member.append("items", {"kind": "shield", "hp": [1, 2]}) == [
        "sword",
        {"kind": "shield", "hp": [1, 2]},
    ]
    assert await member.get("items") == ["sword", {"kind": "shield", "hp": [1, 2]}]
    role = eco.role(3)
    assert await role.increment("multiplier", 0.5) == 1.5
    assert await role.set("multiplier", 2) == 2.0  # an int is accepted for a float setting
    assert isinstance(await role.get("multiplier"), float)


async def test_concurrent_increments_in_one_process_all_count(eco: ScopedConfig) -> None:
    member = eco.member(G, U)
    results = await asyncio.gather(*(member.increment("balance") for _ in range(100)))
    assert sorted(results) == list(range(1, 101))  # each saw a distinct new value
    assert await member.get("balance") == 100


async def test_bulk_reads_merge_defaults(eco: ScopedConfig) -> None:
    await eco.guild(G).set("daily", 1)
    await eco.guild(-100500).set("currency", "stars")
    await eco.member(G, U).increment("balance", 3)
    await eco.member(G, 7).set("banned", True)
    await eco.member(-100500, 7).append("items", 1)
    assert await eco.all_guilds() == {
        G: {"currency": "coins", "daily": 1, "prefix": "!"},
        -100500: {"currency": "stars", "daily": 100, "prefix": "!"},
    }
    one = await eco.all_members(G)
    assert set(one) == {U, 7}
    assert one[U]["balance"] == 3
    assert one[7]["banned"] is True
    assert one[7]["balance"] == 0
    every = await eco.all_members()
    assert set(every) == {G, -100500}
    assert every[-100500][7]["items"] == [1]
    assert await eco.all_members(42) == {}
    other = ScopedConfig(eco.db, namespace="other")
    other.register_guild(currency="none")
    assert await other.all_guilds() == {}  # namespaces are separate
    assert await eco.clear_all("member") == 3
    assert await eco.all_members() == {}
    assert await eco.member(G, U).get("balance") == 0  # the cache was invalidated
    assert set(await eco.all_guilds()) == {G, -100500}


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda s: s.guild(G).set("currency", 5), errors.ArgumentError),  # str setting, int
        (lambda s: s.guild(G).set("daily", "100"), errors.ArgumentError),  # int setting, str
        (lambda s: s.guild(G).set("daily", True), errors.ArgumentError),  # a bool is no int
        (lambda s: s.guild(G).set("daily", 2**70), errors.DataError),
        (lambda s: s.guild(G).set("unknown", 1), errors.ArgumentError),
        (lambda s: s.guild(G).get("unknown"), errors.ArgumentError),
        (lambda s: s.member(G, U).set("profile", {"x": {1, 2}}), errors.DataError),
        (lambda s: s.member(G, U).increment("banned"), errors.ArgumentError),
        (lambda s: s.member(G, U).increment("balance", 1.5), errors.ArgumentError),
        (lambda s: s.member(G, U).increment("balance", "1"), errors.ArgumentError),
        (lambda s: s.member(G, U).toggle("balance"), errors.ArgumentError),
        (lambda s: s.member(G, U).append("balance", 1), errors.ArgumentError),
        (lambda s: s.member(G, U).append("items", object()), errors.DataError),
        (lambda s: s.member(G, 0).get("balance"), errors.DataError),
        (lambda s: s.member(G, "7").get("balance"), errors.ArgumentError),
        (lambda s: s.custom("nogroup", 1).get("x"), errors.ArgumentError),
        (lambda s: s.custom("ticket", "a:b").get("status"), errors.ArgumentError),
        (lambda s: s.custom("ticket").get("status"), errors.ArgumentError),
        (lambda s: s.clear_all("planet"), errors.ArgumentError),
    ],
)
async def test_bad_input_raises_a_typed_error_and_stores_nothing(
    eco: ScopedConfig, db: botdb.Database, action: Any, error: type[Exception]
) -> None:
    await eco.guild(G).set("daily", 7)
    with pytest.raises(error):
        await action(eco)
    assert await rows(db) == [(f"guild:{G}", "daily")]
    assert await eco.guild(G).get("daily") == 7


async def test_unknown_scope_and_bad_names_are_rejected(db: botdb.Database) -> None:
    bare = ScopedConfig(db, namespace="bare")
    with pytest.raises(errors.ArgumentError, match="register"):
        bare.guild(G)
    with pytest.raises(errors.ArgumentError):
        ScopedConfig(db, namespace="has space")
    with pytest.raises(errors.ArgumentError):
        bare.register_custom("bad:group", x=1)
    with pytest.raises(errors.DataError):
        bare.register_guild(when=object())
    assert await rows(db) == []


BIG = (1 << 63) - 1


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
