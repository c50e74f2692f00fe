"""botdb.services.users: get_or_create from platform objects, the cached path, writes, errors.

Every test runs on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import types
from typing import Any

import pytest

import botdb
from botdb import errors
from botdb.services import UserRecord, UserService
from tests.helpers import statements

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"


def discord_user(**overrides: Any) -> types.SimpleNamespace:
    """What discord.py's User/Member looks like to duck typing."""
    fields = {"id": 80_351_110_224_678_912, "name": "nelly", "global_name": "Nelly"}
    fields |= {"discriminator": "0", "bot": False, "display_name": "nick-in-guild"}
    return types.SimpleNamespace(**(fields | overrides))


def telegram_user(**overrides: Any) -> types.SimpleNamespace:
    """What an aiogram / python-telegram-bot User looks like to duck typing."""
    fields = {"id": 777_000, "is_bot": False, "first_name": "Ann", "last_name": "Lee"}
    fields |= {"username": "ann", "language_code": "de", "is_premium": None}
    return types.SimpleNamespace(**(fields | overrides))


async def row_count(db: botdb.Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM users"))


async def test_ensure_reads_a_discord_user(db: botdb.Database) -> None:
    users = UserService(db)
    record = await users.ensure(discord_user())
    assert isinstance(record, UserRecord)
    assert (record.id, record.platform, record.username) == (
        80_351_110_224_678_912,
        "discord",
        "nelly",
    )
    assert record.display_name == "Nelly"  # the account-wide name, not the guild nick
    assert record.is_active
    assert not record.is_bot
    assert record.last_seen is not None
    assert record.last_seen.tzinfo is not None
    assert record.name == "Nelly"


async def test_ensure_reads_a_telegram_user(db: botdb.Database) -> None:
    users = UserService(db)
    record = await users.ensure(telegram_user())
    assert (record.platform, record.first_name, record.last_name) == ("telegram", "Ann", "Lee")
    assert (record.language_code, record.is_premium, record.display_name) == (
        "de",
        False,
        "Ann Lee",
    )


async def test_ensure_accepts_keyword_fields_and_a_mapping(db: botdb.Database) -> None:
    users = UserService(db)
    a = await users.ensure(id=5, username="kw", platform="telegram")
    b = await users.ensure({"id": 6, "username": "map"})
    assert (a.username, a.platform, b.username, b.platform) == ("kw", "telegram", "map", "discord")
    # keywords override the object's fields
    c = await users.ensure(telegram_user(), language_code="fr")
    assert c.language_code == "fr"


async def test_cached_hit_with_unchanged_fields_sends_no_statement(db: botdb.Database) -> None:
    users = UserService(db)
    first = await users.ensure(telegram_user())
    await users.ensure(telegram_user())  # loads the row into the cache
    with statements(db) as sent:
        hits = [await users.ensure(telegram_user()) for _ in range(50)]
    assert sent == []
    assert all(h is hits[0] for h in hits)  # one shared immutable record per cache fill
    assert hits[0].id == first.id


async def test_changed_field_is_written_once_and_omitted_fields_are_kept(
    db: botdb.Database,
) -> None:
    users = UserService(db)
    before = await users.ensure(telegram_user())
    await users.ensure(telegram_user())
    with statements(db) as sent:
        after = await users.ensure(telegram_user(username="ann_new"))
    # One upsert of the row (plus, on SQLite, the cache's invalidation log row).
    assert sum("INSERT" in s and "botdb_invalidations" not in s for s in sent) == 1
    assert after.username == "ann_new"
    assert (after.first_name, after.language_code) == ("Ann", "de")
    assert after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    # keyword call with only an id does not reset platform or names
    same = await users.ensure(id=777_000)
    assert (same.platform, same.username) == ("telegram", "ann_new")
    assert await row_count(db) == 1


async def test_last_seen_is_written_at_most_once_per_interval(db: botdb.Database) -> None:
    throttled = UserService(db, last_seen_interval=3600)
    first = await throttled.ensure(id=9)
    await throttled.ensure(id=9)
    with statements(db) as sent:
        again = await throttled.ensure(id=9)
    assert sent == []
    assert again.last_seen == first.last_seen
    eager = UserService(db, last_seen_interval=0)
    newer = await eager.ensure(id=9)
    assert newer.last_seen is not None
    assert first.last_seen is not None
    assert newer.last_seen > first.last_seen


async def test_concurrent_ensure_of_a_new_user_makes_one_row(db: botdb.Database) -> None:
    users = UserService(db)
    results = await asyncio.gather(*(users.ensure(discord_user()) for _ in range(20)))
    assert {r.id for r in results} == {80_351_110_224_678_912}
    assert await row_count(db) == 1


async def test_get_update_deactivate_and_reactivation_by_an_event(db: botdb.Database) -> None:
    users = UserService(db)
    await users.ensure(telegram_user())
    assert (await users.get(777_000)).username == "ann"
    updated = await users.update(777_000, username="renamed", language_code=None)
    assert (updated.username, updated.language_code) == ("renamed", None)
    assert (await users.get(777_000)).username == "renamed"  # the cache was invalidated
    assert (await users.deactivate(777_000)).is_active is False
    assert (await users.get(777_000)).is_active is False
    assert (await users.ensure(id=777_000)).is_active is True  # they are back


async def test_missing_user_raises_not_found_and_creates_nothing(db: botdb.Database) -> None:
    users = UserService(db)
    with pytest.raises(errors.NotFoundError):
        await users.get(424242)
    assert await users.get_or_none(424242) is None
    with pytest.raises(errors.NotFoundError):
        await users.update(424242, username="x")
    with pytest.raises(errors.NotFoundError):
        await users.deactivate(424242)
    assert await row_count(db) == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((object(),), {}, errors.ArgumentError),  # not a user object
        ((), {"id": "5"}, errors.ArgumentError),  # id of the wrong type
        ((), {"id": True}, errors.ArgumentError),  # a bool is not an id
        ((), {"id": -3}, errors.DataError),  # ids are positive
        ((), {"id": 5, "karma": 1}, errors.ArgumentError),  # unknown field
        ((), {"id": 5, "username": "x" * 256}, errors.DataError),  # too long
        ((), {"id": 5, "username": 12}, errors.ArgumentError),
        ((), {"id": 5, "is_bot": 1}, errors.ArgumentError),
        ((), {"id": 5, "platform": "irc"}, errors.DataError),
        ((), {}, errors.ArgumentError),  # no id at all
    ],
)
async def test_bad_input_raises_a_typed_error_and_stores_nothing(
    db: botdb.Database, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    users = UserService(db)
    with pytest.raises(error):
        await users.ensure(*args, **kwargs)
    assert await row_count(db) == 0


async def test_bad_update_changes_nothing(db: botdb.Database) -> None:
    users = UserService(db)
    await users.ensure(id=5, username="keep")
    refusals: list[tuple[dict[str, Any], type[errors.BotDBError]]] = [
        ({"username": "x" * 300}, errors.DataError),  # a value the column cannot hold
        ({"nope": 1}, errors.ArgumentError),  # no such field
        ({}, errors.ArgumentError),  # nothing to update
        ({"last_seen": dt.datetime(2024, 1, 1)}, errors.DataError),  # naive
    ]
    for kwargs, error in refusals:
        with pytest.raises(error) as info:
            await users.update(5, **kwargs)
        assert type(info.value) is error, (kwargs, info.value)
    assert await db.fetchval("SELECT username FROM users WHERE id = 5") == "keep"


async def test_cached_ensure_refuses_an_int_for_a_bool_field(db: botdb.Database) -> None:
    """is_bot=1 is refused on a cache hit exactly as on a miss (1 == True must not match)."""
    users = UserService(db)
    uid = 80_351_110_224_678_912
    await users.ensure(id=uid, username="ann", is_bot=True)
    await users.ensure(id=uid, username="ann", is_bot=True)  # cached now
    with pytest.raises(errors.ArgumentError):
        await users.ensure(id=uid, username="ann", is_bot=1)
    with pytest.raises(errors.ArgumentError):
        await users.ensure(id=uid, username="ann", is_premium=0)


async def test_get_or_create_says_whether_it_created_like_the_repositories(
    db: botdb.Database,
) -> None:
    """(record, created): True once, for the call that inserted the row; False on a cache
    hit, on a changed field (an update), and after a deactivation."""
    users = UserService(db)
    record, created = await users.get_or_create(telegram_user())
    assert created is True
    assert isinstance(record, UserRecord)
    again, created = await users.get_or_create(telegram_user())
    assert created is False
    assert again.created_at == record.created_at
    with statements(db) as sent:
        hit, created = await users.get_or_create(telegram_user())
    assert (sent, created) == ([], False)
    assert hit is await users.ensure(telegram_user()), "the same cached record"
    renamed, created = await users.get_or_create(telegram_user(username="ann2"))
    assert (renamed.username, created) == ("ann2", False)
    await users.deactivate(777_000)
    back, created = await users.get_or_create(id=777_000)
    assert (back.is_active, created) == (True, False)
    # the guild repository's verb has the same shape
    guild, guild_created = await db.guilds.get_or_create(id=1, defaults={"name": "g"})
    assert (guild.id, guild_created) == (1, True)


async def test_concurrent_get_or_create_reports_exactly_one_creation(db: botdb.Database) -> None:
    users = UserService(db)
    results = await asyncio.gather(*(users.get_or_create(discord_user()) for _ in range(20)))
    assert [created for _, created in results].count(True) == 1
    assert {record.id for record, _ in results} == {80_351_110_224_678_912}
    assert await row_count(db) == 1


async def test_two_services_racing_for_a_new_user_report_one_creation(
    make_db: Any,
) -> None:
    """Two Databases (two pools and caches, as two processes would have): one creation."""
    a = await make_db(create_tables=True)
    b = await make_db()
    first, second = await asyncio.gather(
        UserService(a).get_or_create(id=31337, username="x"),
        UserService(b).get_or_create(id=31337, username="x"),
    )
    assert sorted([first[1], second[1]]) == [False, True]


async def test_seed_style_get_or_create_user_returns_the_record(db: botdb.Database) -> None:
    """A service layer's ``get_or_create_user(telegram_user) -> User`` keeps working with
    ``db.users`` in its place."""
    user_service = db.users
    user = await user_service.get_or_create_user(telegram_user())
    assert isinstance(user, UserRecord)
    assert user.display_name == "Ann Lee"
    assert await user_service.get_or_create_user(telegram_user()) == user
