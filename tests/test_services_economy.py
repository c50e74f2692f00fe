"""examples/economy.py: seed 002's points transfer with run_in_transaction, on both backends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import botdb
from botdb import errors
from tests.helpers import MakeDB, load_example

#: This contract also runs through pgbouncer in transaction mode (see conftest).
PGBOUNCER_CONTRACT = True
CITUS_CONTRACT = True

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "economy.py"
G, ALICE, BOB = 1, 10, 20


eco = load_example(EXAMPLE, "botdb_example_economy")


@pytest.fixture
async def db(make_db: MakeDB) -> botdb.Database:
    """The example's economy schema (no built-in tables), Alice holding 100 points."""
    database = await make_db()
    await database.execute_script(eco.SCHEMA)
    await eco.deposit(database, G, ALICE, 100)
    return database


async def state(db: botdb.Database) -> tuple[list[tuple[int, int]], int]:
    wallets = await db.fetch("SELECT user_id, points FROM wallets ORDER BY user_id")
    return [(r[0], r[1]) for r in wallets], await db.fetchval(
        "SELECT count(*) FROM points_transfers"
    )


async def test_transfer_moves_points_and_logs_it(db: botdb.Database) -> None:
    assert await eco.transfer(db, G, ALICE, BOB, 30) == (70, 30)
    assert await state(db) == ([(ALICE, 70), (BOB, 30)], 1)
    assert await eco.balance(db, G, ALICE) == 70
    assert await eco.balance(db, G, BOB) == 30


async def test_cached_balance_is_invalidated_by_a_transfer(db: botdb.Database) -> None:
    assert await eco.balance(db, G, ALICE) == 100  # now cached
    await eco.transfer(db, G, ALICE, BOB, 1)
    assert await eco.balance(db, G, ALICE) == 99


async def test_insufficient_funds_is_a_typed_error_and_changes_nothing(
    db: botdb.Database,
) -> None:
    before = await state(db)
    assert await eco.balance(db, G, ALICE) == 100
    with pytest.raises(eco.InsufficientFundsError) as info:
        await eco.transfer(db, G, ALICE, BOB, 101)
    assert (info.value.balance, info.value.amount) == (100, 101)
    assert await state(db) == before
    assert db.cache.peek(eco.wallet_key(G, ALICE)) == 100  # a rollback invalidates nothing
    with pytest.raises(eco.InsufficientFundsError):
        await eco.transfer(db, G, BOB, ALICE, 1)  # bob has no wallet at all
    assert await state(db) == before


@pytest.mark.parametrize(
    ("amount", "receiver", "error"),
    [
        (0, BOB, errors.DataError),
        (-5, BOB, errors.DataError),
        ("5", BOB, errors.ArgumentError),
        (5.0, BOB, errors.ArgumentError),
        (5, ALICE, errors.ArgumentError),  # to oneself
    ],
)
async def test_bad_amounts_are_refused_and_change_nothing(
    db: botdb.Database, amount: object, receiver: int, error: type[Exception]
) -> None:
    before = await state(db)
    with pytest.raises(error):
        await eco.transfer(db, G, ALICE, receiver, amount)
    assert await state(db) == before


async def test_concurrent_transfers_never_overdraw(db: botdb.Database) -> None:
    results = await asyncio.gather(
        *(eco.transfer(db, G, ALICE, BOB, 15) for _ in range(10)), return_exceptions=True
    )
    done = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, eco.InsufficientFundsError)]
    assert (len(done), len(refused)) == (6, 4)  # 6 * 15 = 90 <= 100 < 7 * 15
    assert await state(db) == ([(ALICE, 10), (BOB, 90)], 6)


def test_the_example_runs_as_a_script() -> None:
    src = str(Path(botdb.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused: insufficient points: has 70, needs 500" in done.stdout
    assert "7 done, 3 refused" in done.stdout
