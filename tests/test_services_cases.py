"""botdb.services.cases: gapless per-guild case numbers, reads, closing, bad input.

Every test runs on SQLite and on the real PostgreSQL server. Numbering across two processes
is in tests/test_services_processes.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

import botdb
from botdb import errors
from botdb.models import ModerationCase
from botdb.services import CaseService

#: This contract also runs through pgbouncer in transaction mode (see conftest).
PGBOUNCER_CONTRACT = True
CITUS_CONTRACT = True

G = 1_150_000_000_000_000_001
IN_AN_HOUR = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


async def numbers(db: botdb.Database, guild: int = G) -> list[int]:
    rows = await db.fetch(
        "SELECT case_number FROM moderation_cases WHERE guild_id = $1 ORDER BY case_number", guild
    )
    return [r[0] for r in rows]


async def test_case_numbers_count_from_one_in_each_guild(db: botdb.Database) -> None:
    cases = CaseService(db)
    first = await cases.create(G, 5, 6, "warn", reason="spam")
    assert isinstance(first, ModerationCase)
    assert (first.case_number, first.action, first.reason, first.is_active) == (
        1,
        "warn",
        "spam",
        True,
    )
    assert first.id is not None
    assert first.created_at.tzinfo is not None
    assert (await cases.create(G, 5, 6, "mute")).case_number == 2
    assert (await cases.create(-1001, 5, 6, "ban")).case_number == 1  # another guild (a chat)
    assert await numbers(db) == [1, 2]


async def test_concurrent_creation_yields_consecutive_numbers(db: botdb.Database) -> None:
    cases = CaseService(db)
    created = await asyncio.gather(*(cases.create(G, 5 + i, 6, "warn") for i in range(30)))
    assert sorted(c.case_number for c in created) == list(range(1, 31))
    assert await numbers(db) == list(range(1, 31))


async def test_get_list_close_and_reason(db: botdb.Database) -> None:
    cases = CaseService(db)
    await cases.create(G, 5, 6, "warn")
    await cases.create(G, 7, 6, "tempban", expires_at=IN_AN_HOUR)
    await cases.create(G, 5, 6, "kick", reason="again")
    assert (await cases.get(G, 2)).user_id == 7
    assert [c.case_number for c in await cases.list_for_user(G, 5)] == [3, 1]
    assert [c.case_number for c in await cases.list_for_guild(G, action="tempban")] == [2]
    assert [c.case_number for c in await cases.list_for_guild(G, limit=2)] == [3, 2]
    closed = await cases.close(G, 1)
    assert closed.is_active is False
    assert closed.case_number == 1
    assert [c.case_number for c in await cases.list_for_user(G, 5, active_only=True)] == [3]
    assert (await cases.set_reason(G, 3, "edited")).reason == "edited"
    assert (await cases.get(G, 3)).reason == "edited"
    later = IN_AN_HOUR + dt.timedelta(minutes=1)
    assert [c.case_number for c in await cases.expired(now=later)] == [2]
    assert await cases.expired() == []
    await cases.deactivate(G, 2)
    assert await cases.expired(now=later) == []


async def test_missing_case_raises_not_found(db: botdb.Database) -> None:
    cases = CaseService(db)
    with pytest.raises(errors.NotFoundError):
        await cases.get(G, 1)
    assert await cases.get_or_none(G, 1) is None
    with pytest.raises(errors.NotFoundError):
        await cases.close(G, 1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"action": "yeet"}, errors.DataError),
        ({"action": 3}, errors.ArgumentError),
        ({"user_id": "5"}, errors.ArgumentError),
        ({"moderator_id": 0}, errors.DataError),
        ({"guild_id": 0}, errors.DataError),
        ({"reason": "x" * 5000}, errors.DataError),
        ({"reason": 12}, errors.ArgumentError),
        ({"expires_at": dt.datetime(2030, 1, 1)}, errors.DataError),
        ({"expires_at": dt.datetime(2001, 1, 1, tzinfo=dt.UTC)}, errors.DataError),  # past
        ({"expires_at": "tomorrow"}, errors.ArgumentError),
    ],
)
async def test_bad_input_raises_a_typed_error_and_uses_no_number(
    db: botdb.Database, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    cases = CaseService(db)
    await cases.create(G, 5, 6, "warn")
    arguments: dict[str, Any] = {"guild_id": G, "user_id": 5, "moderator_id": 6, "action": "ban"}
    with pytest.raises(error):
        await cases.create(**(arguments | kwargs))
    assert (await cases.create(G, 5, 6, "note")).case_number == 2  # no number was burnt
    assert await numbers(db) == [1, 2]


async def test_a_guild_with_imported_cases_but_no_counter_continues_after_them(
    db: botdb.Database,
) -> None:
    """Cases imported without a counter row: the next case takes the next free number."""
    await db.execute("INSERT INTO guilds (id, name) VALUES (77, 'imported')")
    for number in (1, 2, 5):
        await db.execute(
            "INSERT INTO moderation_cases (guild_id, case_number, user_id, moderator_id, "
            "action, is_active) VALUES (77, $1, 10, 20, 'warn', TRUE)",
            number,
        )
    case = await db.cases.create(77, 10, 20, "warn", reason="after the import")
    assert case.case_number == 6
    assert (await db.cases.create(77, 10, 20, "note")).case_number == 7
