"""botdb.ext.aiogram: SQLStorage and SQLEventIsolation on SQLite and PostgreSQL.

aiogram's own storage contract tests (from the sdist of the installed aiogram, see
tests/aiogram_contract.py) run against SQLStorage first; then the project's own: key
separation, concurrent first writes, restart, TTLs, bad input, and the isolation across two
OS processes, including recovery after the lock holder is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

import botdb
from botdb import errors
from botdb.ext.aiogram import SQLEventIsolation, SQLStorage
from tests.aiogram_contract import storage_contract
from tests.helpers import MakeDB, child_env, wait_until

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

REQUIRE_SERVICES = os.environ.get("BOTDB_REQUIRE_SERVICES", "") not in ("", "0", "false")
KEY = StorageKey(bot_id=42, chat_id=-1001, user_id=7)


class Form(StatesGroup):
    name = State()


@pytest.fixture
async def db(make_db: MakeDB, builtin_tables: None) -> botdb.Database:
    """The built-in tables, FSM tables included (test_migrations pins that the Alembic
    revision makes the same schema)."""
    return await make_db(create_tables=True)


@pytest.fixture
async def storage(db: botdb.Database) -> SQLStorage:
    return SQLStorage(db)


@pytest.fixture
def storage_key() -> StorageKey:
    """The key aiogram's contract tests use (its conftest: chat -42, user 42, the bot's id)."""
    return StorageKey(chat_id=-42, user_id=42, bot_id=42)


# -- aiogram's own contract tests -------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per test method of aiogram's ``TestStorages`` (fetched at collection)."""
    if "contract_test" not in metafunc.fixturenames:
        return
    cache = getattr(metafunc.config, "cache", None)  # None under -p no:cacheprovider
    contract, reason = storage_contract(None if cache is None else cache.mkdir("aiogram-sdist"))
    if contract is None:
        metafunc.parametrize("contract_test", [pytest.param(reason, id="unavailable")])
        return
    names = sorted(name for name in vars(contract) if name.startswith("test"))
    metafunc.parametrize(
        "contract_test", [pytest.param((contract, name), id=name) for name in names]
    )


async def test_aiogram_storage_contract(
    contract_test: Any, storage: SQLStorage, request: pytest.FixtureRequest
) -> None:
    """aiogram's TestStorages, unchanged, passes against SQLStorage on every backend."""
    if isinstance(contract_test, str):  # the sdist could not be fetched
        if REQUIRE_SERVICES:
            pytest.fail(f"{contract_test} (BOTDB_REQUIRE_SERVICES=1 makes this a failure)")
        pytest.skip(contract_test)
    contract, name = contract_test
    method = getattr(contract(), name)
    arguments = {
        parameter: request.getfixturevalue(parameter)
        for parameter in inspect.signature(method).parameters
    }
    await method(**arguments)


# -- keys ---------------------------------------------------------------------------------------


def variants() -> list[StorageKey]:
    """KEY and keys that differ from it in one field each (None, 0 and "" all distinct)."""
    base = {"bot_id": 42, "chat_id": -1001, "user_id": 7}
    return [
        StorageKey(**base),
        StorageKey(**{**base, "bot_id": 43}),
        StorageKey(**{**base, "chat_id": -1002}),
        StorageKey(**{**base, "user_id": 8}),
        StorageKey(**base, thread_id=0),
        StorageKey(**base, thread_id=5),
        StorageKey(**base, business_connection_id=""),
        StorageKey(**base, business_connection_id="bc-1"),
        StorageKey(**base, thread_id=0, business_connection_id=""),
        StorageKey(**base, destiny="other"),
        StorageKey(bot_id=7, chat_id=42, user_id=-1001),  # the same numbers, other fields
    ]


async def test_every_key_field_selects_its_own_row(storage: SQLStorage, db: botdb.Database) -> None:
    keys = variants()
    assert len(set(keys)) == len(keys)
    for index, key in enumerate(keys):
        await storage.set_state(key, f"s{index}")
        await storage.set_data(key, {"index": index})
    for index, key in enumerate(keys):
        assert await storage.get_state(key) == f"s{index}"
        assert await storage.get_data(key) == {"index": index}
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == len(keys)
    await storage.set_state(keys[0], None)
    await storage.set_data(keys[0], {})
    assert await storage.get_state(keys[4]) == "s4"  # thread 0 is not "no thread"
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == len(keys) - 1


async def test_state_objects_are_stored_by_name(storage: SQLStorage) -> None:
    await storage.set_state(KEY, Form.name)
    assert await storage.get_state(KEY) == "Form:name"


async def test_a_cleared_key_leaves_no_row(storage: SQLStorage, db: botdb.Database) -> None:
    await storage.set_state(KEY, "a")
    await storage.set_data(KEY, {"x": 1})
    await storage.set_state(KEY, None)
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 1  # the data is kept
    assert await storage.get_data(KEY) == {"x": 1}
    await storage.set_data(KEY, {})
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 0


# -- concurrency, restart -----------------------------------------------------------------------


async def test_concurrent_first_writes_never_collide(
    storage: SQLStorage, db: botdb.Database
) -> None:
    """Many first writes of one key, and of many keys, at once: no unique violation."""
    writes = [storage.set_data(KEY, {"n": n}) for n in range(30)]
    writes += [storage.set_state(KEY, f"s{n}") for n in range(30)]
    keys = [StorageKey(bot_id=1, chat_id=c, user_id=c) for c in range(40)]
    writes += [storage.set_data(key, {"c": key.chat_id}) for key in keys]
    writes += [storage.set_state(key, "x") for key in keys]
    await asyncio.gather(*writes)
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 41
    assert (await storage.get_data(KEY))["n"] in range(30)
    assert [await storage.get_data(key) for key in keys] == [{"c": k.chat_id} for k in keys]


async def test_concurrent_update_data_keeps_every_field(storage: SQLStorage) -> None:
    """update_data merges in the database: fields written at once by many tasks all stay."""
    results = await asyncio.gather(*(storage.update_data(KEY, {f"f{n}": n}) for n in range(25)))
    assert await storage.get_data(KEY) == {f"f{n}": n for n in range(25)}
    assert all(result[f"f{n}"] == n for n, result in enumerate(results))


async def test_state_survives_a_new_database_object(make_db: MakeDB, db: botdb.Database) -> None:
    await SQLStorage(db).set_state(KEY, "Form:name")
    await SQLStorage(db).set_data(KEY, {"name": "Ann"})
    await db.close()
    again = await make_db()
    storage = SQLStorage(again)
    assert await storage.get_state(KEY) == "Form:name"
    assert await storage.get_data(KEY) == {"name": "Ann"}


async def test_close_leaves_the_callers_database_open(db: botdb.Database) -> None:
    await SQLStorage(db).close()
    assert await db.fetchval("SELECT 1") == 1


async def test_from_url_migrates_and_owns_its_database(db_url: str) -> None:
    storage = await SQLStorage.from_url(db_url)
    await storage.set_state(KEY, "a")
    assert await storage.get_state(KEY) == "a"
    await storage.close()
    with pytest.raises(errors.BotDBError):
        await storage.get_state(KEY)


# -- expiry -------------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def test_ttls_expire_state_and_data_separately(db: botdb.Database) -> None:
    clock = Clock()
    storage = SQLStorage(db, state_ttl=60, data_ttl=dt.timedelta(seconds=120), clock=clock)
    other = StorageKey(bot_id=1, chat_id=1, user_id=1)
    await storage.set_state(KEY, "a")
    await storage.set_data(KEY, {"x": 1})
    clock.advance(59)
    await storage.set_state(other, "b")
    assert (await storage.get_state(KEY), await storage.get_data(KEY)) == ("a", {"x": 1})
    clock.advance(2)  # t = 61: the state expired, the data did not
    assert (await storage.get_state(KEY), await storage.get_data(KEY)) == (None, {"x": 1})
    assert await storage.update_data(KEY, {"y": 2}) == {"x": 1, "y": 2}  # TTL restarts
    clock.advance(100)  # t = 161: the first data would have expired, the updated has not
    assert await storage.get_data(KEY) == {"x": 1, "y": 2}
    clock.advance(100)  # t = 261
    assert await storage.get_data(KEY) == {}
    assert await storage.update_data(KEY, {"z": 3}) == {"z": 3}  # expired data is not merged
    assert await storage.get_state(other) is None
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 2
    clock.advance(1000)
    assert await storage.purge_expired() == 2
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 0


async def test_purge_keeps_what_has_not_expired(db: botdb.Database) -> None:
    clock = Clock()
    storage = SQLStorage(db, state_ttl=10, clock=clock)
    await storage.set_state(KEY, "a")
    await storage.set_data(KEY, {"kept": True})  # no data TTL
    clock.advance(11)
    assert await storage.purge_expired() == 0
    assert (await storage.get_state(KEY), await storage.get_data(KEY)) == (None, {"kept": True})


async def test_bad_ttls_are_refused(db: botdb.Database) -> None:
    for ttl in (0, -1, "60", True):
        with pytest.raises(errors.ConfigurationError):
            SQLStorage(db, state_ttl=ttl)  # type: ignore[arg-type]


# -- bad input changes nothing ------------------------------------------------------------------


async def test_data_not_dict_like_is_refused_and_changes_nothing(
    storage: SQLStorage, db: botdb.Database
) -> None:
    await storage.set_data(KEY, {"x": 1})
    for bad in ((), [("a", 1)], "x", None, 1):
        with pytest.raises(DataNotDictLikeError):
            await storage.set_data(KEY, bad)  # type: ignore[arg-type]
    for bad in ([("a", 1)], "x", 1):
        with pytest.raises(DataNotDictLikeError):
            await storage.update_data(KEY, bad)  # type: ignore[arg-type]
    assert await storage.get_data(KEY) == {"x": 1}


async def test_values_that_are_not_json_are_refused(storage: SQLStorage) -> None:
    await storage.set_data(KEY, {"x": 1})
    for bad in ({"x": float("nan")}, {"x": object()}, {"x": 1 << 70}, {1: "int key"}):
        with pytest.raises(errors.DataError):
            await storage.set_data(KEY, bad)  # type: ignore[arg-type]
        with pytest.raises(errors.DataError):
            await storage.update_data(KEY, bad)  # type: ignore[arg-type]
    with pytest.raises(errors.DataError):
        await storage.set_state(KEY, 5)  # type: ignore[arg-type]
    assert await storage.get_data(KEY) == {"x": 1}
    assert await storage.get_state(KEY) is None


async def test_keys_that_do_not_fit_are_refused(storage: SQLStorage, db: botdb.Database) -> None:
    for bad in (
        StorageKey(bot_id=1 << 64, chat_id=1, user_id=1),
        StorageKey(bot_id=1, chat_id="1", user_id=1),  # type: ignore[arg-type]
        StorageKey(bot_id=1, chat_id=1, user_id=1, destiny="d" * 256),
        StorageKey(bot_id=1, chat_id=1, user_id=1, business_connection_id=5),  # type: ignore[arg-type]
    ):
        with pytest.raises(errors.DataError):
            await storage.set_state(bad, "a")
    assert await db.fetchval("SELECT count(*) FROM fsm_states") == 0


# -- isolation in one process -------------------------------------------------------------------


@pytest.fixture
async def isolation(storage: SQLStorage) -> AsyncIterator[SQLEventIsolation]:
    isolation = storage.create_isolation(lease=5.0)
    yield isolation
    await isolation.close()


async def test_one_key_is_held_by_one_task_at_a_time(isolation: SQLEventIsolation) -> None:
    inside: list[int] = []
    most = 0

    async def handle(n: int) -> None:
        nonlocal most
        async with isolation.lock(KEY):
            inside.append(n)
            most = max(most, len(inside))
            await asyncio.sleep(0)  # let the others run while this one holds the lock
            inside.remove(n)

    await asyncio.wait_for(asyncio.gather(*(handle(n) for n in range(10))), 30)
    assert most == 1


async def test_different_keys_do_not_wait_for_each_other(isolation: SQLEventIsolation) -> None:
    both_in = asyncio.Event()
    entered = 0

    async def handle(key: StorageKey) -> None:
        nonlocal entered
        async with isolation.lock(key):
            entered += 1
            if entered == 2:
                both_in.set()
            await both_in.wait()  # deadlocks (times out) if the keys shared a lock

    other = StorageKey(bot_id=42, chat_id=-1001, user_id=7, thread_id=0)
    await asyncio.wait_for(asyncio.gather(handle(KEY), handle(other)), 30)


async def test_a_failing_handler_releases_the_lock(
    isolation: SQLEventIsolation, db: botdb.Database
) -> None:
    with pytest.raises(RuntimeError):
        async with isolation.lock(KEY):
            raise RuntimeError("handler failed")
    async with asyncio.timeout(30):
        async with isolation.lock(KEY):
            pass
    assert await db.fetchval("SELECT count(*) FROM fsm_locks") == 0


async def held_locks(db: botdb.Database) -> int:
    """Locks held on the database: advisory locks (PostgreSQL) or lease rows (SQLite, and
    PostgreSQL behind pgbouncer)."""
    if db.backend == "postgresql" and not db.settings.pgbouncer:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        return int(await db.fetchval(query))
    return int(await db.fetchval("SELECT count(*) FROM fsm_locks"))


async def take(isolation: SQLEventIsolation, key: StorageKey = KEY) -> None:
    """Take the key's lock and release it at once."""
    async with isolation.lock(key):
        pass


async def no_locks(db: botdb.Database) -> bool:
    return await held_locks(db) == 0


async def test_a_waiter_cancelled_while_another_holder_has_the_key_leaves_no_lock(
    storage: SQLStorage, db: botdb.Database
) -> None:
    """Two isolations (as two processes would have); the second's waiter is cancelled at
    some point of its polling; afterwards no lock is left behind and the key is free."""
    first = storage.create_isolation(lease=5.0)
    second = storage.create_isolation(lease=5.0, retry_initial=0.001, retry_max=0.002)
    try:
        for round_ in range(8):
            async with first.lock(KEY):
                waiter = asyncio.create_task(take(second))
                for _ in range(round_):
                    await asyncio.sleep(0)  # cancel it at a different point each round
                waiter.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiter
            # A connection closed or reset to free a lock does so in the background.
            await wait_until(lambda: no_locks(db), what="every lock released")
        async with asyncio.timeout(30), second.lock(KEY):
            assert await held_locks(db) == 1
    finally:
        await first.close()
        await second.close()
    await wait_until(lambda: no_locks(db), what="every lock released")


@pytest.mark.slow
async def test_a_lease_is_renewed_while_its_handler_runs(
    storage: SQLStorage, db: botdb.Database
) -> None:
    """SQLite: a handler running for several lease periods keeps the key."""
    if db.backend != "sqlite":
        pytest.skip("PostgreSQL's advisory locks have no lease")
    first = storage.create_isolation(lease=1.5)
    second = storage.create_isolation(lease=1.5)
    try:
        async with first.lock(KEY):
            waiter = asyncio.create_task(take(second))
            done, _ = await asyncio.wait({waiter}, timeout=4.0)  # over 2.5 lease periods
            assert not done, "the lease of a running handler expired"
        await asyncio.wait_for(waiter, 30)
    finally:
        await second.close()
        await first.close()


# -- isolation across processes -----------------------------------------------------------------

CHILD = """
import asyncio, os, sys
import botdb
from aiogram.fsm.storage.base import StorageKey
from botdb.ext.aiogram import SQLStorage

KEY = StorageKey(bot_id=42, chat_id=-1001, user_id=7)


async def main(url, mode, rounds, lease):
    async with botdb.connect(url) as db:
        isolation = SQLStorage(db).create_isolation(lease=lease)
        pid = os.getpid()
        if mode == "hold":
            async with isolation.lock(KEY):
                print("holding", flush=True)
                await asyncio.Event().wait()
        await db.execute("INSERT INTO ready (pid) VALUES ($1)", pid)
        while await db.fetchval("SELECT count(*) FROM ready") < 2:
            await asyncio.sleep(0.01)  # both processes start the rounds together
        for _ in range(rounds):
            async with isolation.lock(KEY):
                await db.execute("INSERT INTO trail (pid, what) VALUES ($1, 'in')", pid)
                n = await db.fetchval("SELECT n FROM counter")
                await asyncio.sleep(0.001)  # a read-modify-write with room for a race
                await db.execute("UPDATE counter SET n = $1", n + 1)
                await db.execute("INSERT INTO trail (pid, what) VALUES ($1, 'out')", pid)
        await isolation.close()


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


@pytest.fixture
async def spawn(tmp_path: Path, db_url: str) -> AsyncIterator[Callable[..., Any]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    children: list[asyncio.subprocess.Process] = []

    async def start(mode: str, rounds: int = 0, lease: float = 30.0) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            db_url,
            mode,
            str(rounds),
            str(lease),
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        children.append(proc)
        return proc

    yield start
    for proc in children:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.slow
async def test_two_processes_are_serialised_by_the_isolation(
    db: botdb.Database, spawn: Callable[..., Any]
) -> None:
    """Two processes each add 1 to a counter 40 times inside the lock: nothing is lost and
    no process enters while the other is inside."""
    serial = "INTEGER PRIMARY KEY" if db.backend == "sqlite" else "BIGSERIAL PRIMARY KEY"
    await db.execute(f"CREATE TABLE trail (id {serial}, pid BIGINT NOT NULL, what TEXT NOT NULL)")
    await db.execute("CREATE TABLE ready (pid BIGINT NOT NULL)")
    await db.execute("CREATE TABLE counter (n BIGINT NOT NULL)")
    await db.execute("INSERT INTO counter (n) VALUES (0)")
    rounds = 40
    children = [await spawn("rounds", rounds) for _ in range(2)]
    for child in children:
        assert await asyncio.wait_for(child.wait(), 120) == 0
    assert await db.fetchval("SELECT n FROM counter") == 2 * rounds
    trail = [
        (r["pid"], r["what"]) for r in await db.fetch("SELECT pid, what FROM trail ORDER BY id")
    ]
    assert len(trail) == 4 * rounds
    for (pid_in, what_in), (pid_out, what_out) in zip(trail[::2], trail[1::2], strict=True):
        assert (what_in, what_out, pid_in) == ("in", "out", pid_out), "two processes inside"
    assert len({pid for pid, _ in trail}) == 2


@pytest.mark.slow
async def test_a_sigkilled_holder_does_not_wedge_the_key(
    db: botdb.Database, spawn: Callable[..., Any]
) -> None:
    """The holder is killed inside the lock: its session ends (PostgreSQL) or its lease
    expires (SQLite, 1 s here), and the next process gets the key."""
    holder = await spawn("hold", lease=1.0)
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"holding\n"
    storage = SQLStorage(db)
    isolation = storage.create_isolation(lease=1.0)
    try:
        waiter = asyncio.create_task(take(isolation))
        done, _ = await asyncio.wait({waiter}, timeout=0.3)
        assert not done, "the lock was taken while its holder was alive"
        os.kill(holder.pid, signal.SIGKILL)
        await holder.wait()
        await asyncio.wait_for(waiter, 60)
    finally:
        await isolation.close()


# -- imports ------------------------------------------------------------------------------------


def test_botdb_never_imports_aiogram_and_its_absence_names_the_extra() -> None:
    """``import botdb`` (models and the ext package included) loads no aiogram; without
    aiogram installed, ``botdb.ext.aiogram`` raises MissingDependencyError naming the extra."""
    code = (
        "import sys, botdb, botdb.ext, botdb.models\n"
        "print('aiogram' in sys.modules)\n"
        "sys.modules['aiogram'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    import botdb.ext.aiogram\n"
        "except botdb.MissingDependencyError as exc:\n"
        "    print(isinstance(exc, ImportError), exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False",
        "True aiogram is not installed; install it with: pip install 'botdb[aiogram]'",
    ]
