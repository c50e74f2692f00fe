"""PostgreSQL specifics against the real server: lost connections, retries, bad connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import botdb
from botdb import errors
from botdb.engine.base import DriverConnection
from tests.helpers import in_use, pg_backend_running, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(pg_url, pool_max_size=4, retry_initial_delay=0.01) as database:
        await database.execute("CREATE TABLE ledger (id SERIAL PRIMARY KEY, note TEXT NOT NULL)")
        yield database


async def _terminate(pg_url: str, pid: int) -> None:
    """Terminate a server backend and wait until it is gone (the signal is asynchronous)."""
    import asyncpg

    admin = await asyncpg.connect(pg_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True

        async def gone() -> bool:
            query = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1"
            return bool(await admin.fetchval(query, pid))

        await wait_until(gone, what=f"backend {pid} to exit")
    finally:
        await admin.close()


async def test_run_in_transaction_reruns_after_its_connection_is_killed(
    db: botdb.Database, pg_url: str
) -> None:
    attempts = 0

    async def work(conn: botdb.Connection) -> int:
        nonlocal attempts
        attempts += 1
        await conn.execute("INSERT INTO ledger (note) VALUES ($1)", "once")
        if attempts == 1:
            await _terminate(pg_url, await conn.fetchval("SELECT pg_backend_pid()"))
        await conn.execute("UPDATE ledger SET note = note || '!'")
        return attempts

    assert await db.run_in_transaction(work) == 2
    assert [r["note"] for r in await db.fetch("SELECT note FROM ledger")] == ["once!"]
    assert db.stats()["retries"] >= 1


async def test_read_is_retried_on_a_fresh_connection_after_a_kill(
    db: botdb.Database, pg_url: str
) -> None:
    pid = await db.fetchval("SELECT pg_backend_pid()")
    await _terminate(pg_url, pid)
    assert await db.fetchval("SELECT 42") == 42
    assert await db.fetchval("SELECT pg_backend_pid()") != pid


async def test_write_lost_in_flight_is_in_doubt_and_not_retried(
    db: botdb.Database, pg_url: str
) -> None:
    write = asyncio.create_task(
        db.execute("INSERT INTO ledger (note) SELECT 'slow' FROM pg_sleep(60)")
    )
    await _terminate(pg_url, await pg_backend_running(pg_url, "FROM pg_sleep(60)"))
    with pytest.raises(errors.ConnectionLostError) as info:
        await write
    assert info.value.in_doubt is True
    assert db.stats()["retries"] == 0
    assert await db.fetchval("SELECT count(*) FROM ledger") == 0


async def test_serialization_failure_is_retried_by_run_in_transaction(
    db: botdb.Database,
) -> None:
    await db.execute("INSERT INTO ledger (note) VALUES ('0')")
    both_read = asyncio.Barrier(2)
    runs = 0

    async def bump(conn: botdb.Connection) -> None:
        nonlocal runs
        runs += 1
        value = int(await conn.fetchval("SELECT note FROM ledger WHERE id = 1"))
        if runs <= 2:
            await both_read.wait()
        await conn.execute("UPDATE ledger SET note = $1 WHERE id = 1", str(value + 1))

    await asyncio.gather(
        db.run_in_transaction(bump, isolation="serializable"),
        db.run_in_transaction(bump, isolation="serializable"),
    )
    assert await db.fetchval("SELECT note FROM ledger WHERE id = 1") == "2"
    assert runs == 3


async def test_unreachable_server_is_a_connection_error_without_the_password() -> None:
    url = "postgresql://root:hunter2@127.0.0.1:1/test"
    with pytest.raises(errors.ConnectionFailedError) as info:
        await botdb.connect(url, retry_attempts=1, pool_acquire_timeout=2)
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


async def test_unknown_role_is_an_authentication_error(pg_url: str) -> None:
    url = pg_url.replace("root@", "no_such_role_botdb:pw@", 1)
    with pytest.raises(errors.AuthenticationError) as info:
        await botdb.connect(url, retry_attempts=1)
    assert "pw@" not in str(info.value)


async def test_missing_database_is_a_configuration_error(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/botdb_no_such_database"
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        await botdb.connect(url, retry_attempts=1)


async def test_application_name_and_pgbouncer_mode(pg_url: str) -> None:
    async with botdb.connect(pg_url, application_name="my-bot", pgbouncer=True) as database:
        assert await database.fetchval("SELECT current_setting('application_name')") == "my-bot"
        for value in range(3):  # no server-side prepared statement is kept between calls
            assert await database.fetchval("SELECT $1::int", value) == value
        assert await database.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0


async def test_concurrent_queries_share_the_pool(db: botdb.Database) -> None:
    results = await asyncio.gather(*(db.fetchval("SELECT $1::int", i) for i in range(50)))
    assert results == list(range(50))
    assert db.pool_stats()["leased"] <= 4


async def test_orm_session_gets_a_connection_when_raw_leases_hold_the_pool(
    pg_url: str,
) -> None:
    from sqlalchemy import text

    async with botdb.connect(pg_url, pool_max_size=2, pool_acquire_timeout=2) as database:
        await asyncio.gather(*(database.fetchval("SELECT pg_sleep(0.05)") for _ in range(4)))
        assert database.pool_stats()["leased_idle"] == 2
        async with database.session() as session:
            assert (await session.execute(text("SELECT 7"))).scalar_one() == 7


async def test_command_timeout_is_enforced_by_the_server(pg_url: str) -> None:
    async with botdb.connect(pg_url, command_timeout=0.2) as database:
        assert await database.fetchval("SHOW statement_timeout") == "200ms"
        with pytest.raises(errors.QueryTimeoutError):
            await database.fetchval("SELECT pg_sleep(2)")
        assert await database.fetchval("SELECT 1") == 1


# -- cancellation and concurrent use -----------------------------------------------------------


async def test_cancelled_validate_connections_loses_no_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling validate_connections() leaves every connection usable.

    White-box: the connections the check took out are remembered (through the lease pool's
    ``drain_idle``) only to hand a leaked one back for a clean teardown; what the test pins
    is read from the public ``pool_stats()``.
    """
    async with botdb.connect(pg_url, pool_max_size=3, pool_min_size=3) as db:
        leases = db._core.leases
        assert leases is not None
        drained: list[DriverConnection] = []
        drain = leases.drain_idle

        def drain_and_remember() -> list[DriverConnection]:
            idle = drain()
            drained.extend(idle)
            return idle

        monkeypatch.setattr(leases, "drain_idle", drain_and_remember)
        assert db.pool_stats()["leased_idle"] == 3
        task = asyncio.create_task(db.validate_connections())
        await asyncio.sleep(0)  # two loop turns: the check is under way
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        try:
            # The connection interrupted mid-check is closed in the background: let it settle.
            await wait_until(lambda: in_use(db) == 0, what="every lease back or closed")
            stats = db.pool_stats()
            assert stats["leased"] == stats["leased_idle"], stats
        finally:
            if in_use(db):  # a connection leaked: hand it back for a clean teardown
                for conn in drained:
                    if conn not in leases._idle:
                        await conn.when_idle()
                        leases.release(conn)


async def test_concurrent_use_of_one_postgres_connection_is_an_interface_error(
    pg_url: str,
) -> None:
    """Two tasks on one acquired connection: the second gets InterfaceError, as on SQLite."""
    async with botdb.connect(pg_url) as db, db.acquire() as conn:
        first = asyncio.create_task(conn.fetchval("SELECT pg_sleep(0.3)"))
        await asyncio.sleep(0)  # one loop turn: the first statement has started
        with pytest.raises(errors.InterfaceError):
            await conn.fetchval("SELECT 1")
        await first
