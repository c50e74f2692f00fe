"""Seed 002's points transfer, done right: ``python examples/economy.py [DATABASE_URL]``.

Seed 002 moves points with ``session.get`` + ``sender.points -= n`` and catches every error to
``return False``. Two concurrent transfers can then both read 100, both pass the check, and
overdraw the sender; a failure is a silent False. Here:

* the check and the debit are ONE conditional statement (``UPDATE ... WHERE points >= $1
  RETURNING points``), so concurrent transfers can never overdraw, and a CHECK constraint
  stands behind it;
* debit, credit and the log row run in one transaction through ``db.run_in_transaction``,
  which re-runs the whole function on a deadlock, a serialization failure or SQLite BUSY;
* insufficient funds is a typed error (:class:`InsufficientFundsError`); nothing is changed;
* balances are cached (``db.cache``) and invalidated after the COMMIT, never on rollback.

Without an argument it runs on a throwaway SQLite file; pass a PostgreSQL URL to run there.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import botdb
from botdb.errors import ArgumentError, DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS wallets (
    guild_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    points BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS points_transfers (
    id TEXT PRIMARY KEY,
    guild_id BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    receiver_id BIGINT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""

CREDIT = """
INSERT INTO wallets (guild_id, user_id, points) VALUES ($1, $2, $3)
ON CONFLICT (guild_id, user_id) DO UPDATE SET points = wallets.points + EXCLUDED.points
RETURNING points
"""
DEBIT = """
UPDATE wallets SET points = points - $1
WHERE guild_id = $2 AND user_id = $3 AND points >= $1
RETURNING points
"""


class InsufficientFundsError(Exception):
    """The sender has fewer points than the transfer needs; nothing was changed."""

    def __init__(self, balance: int, amount: int) -> None:
        super().__init__(f"insufficient points: has {balance}, needs {amount}")
        self.balance = balance
        self.amount = amount


def wallet_key(guild_id: int, user_id: int) -> str:
    """The cache key of a wallet's balance."""
    return f"wallet:{guild_id}:{user_id}"


def _check_amount(amount: object) -> int:
    if type(amount) is not int:
        raise ArgumentError(f"amount must be an int, got {type(amount).__name__}")
    if amount <= 0:
        raise DataError(f"amount must be positive, got {amount}")
    return amount


async def balance(db: botdb.Database, guild_id: int, user_id: int) -> int:
    """A member's points, from the cache (loaded once per invalidation)."""

    async def load() -> int:
        points = await db.fetchval(
            "SELECT points FROM wallets WHERE guild_id = $1 AND user_id = $2", guild_id, user_id
        )
        return int(points or 0)

    return await db.cache.get_or_load(wallet_key(guild_id, user_id), load)


async def deposit(db: botdb.Database, guild_id: int, user_id: int, amount: int) -> int:
    """Add points (a daily reward, an admin grant); returns the new balance."""
    amount = _check_amount(amount)

    async def credit(conn: botdb.Connection) -> int:
        points = int(await conn.fetchval(CREDIT, guild_id, user_id, amount))
        await db.invalidate(wallet_key(guild_id, user_id), within=conn)
        return points

    return await db.run_in_transaction(credit)


async def transfer(
    db: botdb.Database, guild_id: int, sender_id: int, receiver_id: int, amount: int
) -> tuple[int, int]:
    """Move ``amount`` points from sender to receiver; returns both new balances.

    Raises:
        InsufficientFundsError: the sender has less than ``amount``; nothing changed.
        ArgumentError / DataError: a non-int or non-positive amount, or a transfer to oneself.
    """
    amount = _check_amount(amount)
    if sender_id == receiver_id:
        raise ArgumentError("cannot transfer points to oneself")

    async def move(conn: botdb.Connection) -> tuple[int, int]:
        debited = await conn.fetchrow(DEBIT, amount, guild_id, sender_id)
        if debited is None:
            have = await conn.fetchval(
                "SELECT points FROM wallets WHERE guild_id = $1 AND user_id = $2",
                guild_id,
                sender_id,
            )
            raise InsufficientFundsError(int(have or 0), amount)  # rolls the transaction back
        credited = await conn.fetchval(CREDIT, guild_id, receiver_id, amount)
        await conn.execute(
            "INSERT INTO points_transfers (id, guild_id, sender_id, receiver_id, amount) "
            "VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4().hex,
            guild_id,
            sender_id,
            receiver_id,
            amount,
        )
        # Sent after the COMMIT, dropped on rollback.
        await db.invalidate(
            wallet_key(guild_id, sender_id), wallet_key(guild_id, receiver_id), within=conn
        )
        return int(debited["points"]), int(credited)

    return await db.run_in_transaction(move)


async def main(url: str) -> None:
    """Deposit, transfer, refuse an overdraft, and race ten transfers against one balance."""
    guild, alice, bob = 1_150_000_000_000_000_001, 80_351_110_224_678_912, 80_351_110_224_678_913
    async with botdb.connect(url) as db:
        await db.execute_script(SCHEMA)
        await deposit(db, guild, alice, 100)
        print(f"alice has {await balance(db, guild, alice)} points")
        print("alice -> bob 30:", await transfer(db, guild, alice, bob, 30))
        try:
            await transfer(db, guild, alice, bob, 500)
        except InsufficientFundsError as exc:
            print(f"refused: {exc}; alice still has {await balance(db, guild, alice)}")
        results = await asyncio.gather(
            *(transfer(db, guild, alice, bob, 10) for _ in range(10)), return_exceptions=True
        )
        done = sum(not isinstance(r, Exception) for r in results)
        print(f"10 concurrent transfers of 10 from 70 points: {done} done, {10 - done} refused")
        print(f"alice {await balance(db, guild, alice)}, bob {await balance(db, guild, bob)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="botdb-economy-") as tmp:
            asyncio.run(main(f"sqlite:///{Path(tmp) / 'bot.db'}"))
