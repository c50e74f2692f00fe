"""Fixtures shared by the whole suite: the real servers, one fresh database per run.

PostgreSQL: each run creates its own database (``botdb_test_<random>``) and drops it at the end;
each test gets a clean ``public`` schema (holding botdb's built-in tables, kept from the test
before when nothing but data changed, for a test that asks for ``builtin_tables``). Redis:
each run gets its own key prefix, whose keys are deleted at the end. Without a server the
tests that need it skip with the reason shown; with ``BOTDB_REQUIRE_SERVICES=1`` (as CI sets)
they fail instead.

Hypothesis: under CI (``CI`` set, as CI services do) the "ci" profile runs a fixed set of
examples (``derandomize``), so a run cannot fail by chance; locally the "dev" profile explores
new random inputs each run and keeps failures in ``.hypothesis/``. ``HYPOTHESIS_PROFILE``
chooses one explicitly. Tests may raise ``max_examples`` but never set ``derandomize`` or a
seed themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import settings

import botdb
from botdb.testing import database_at
from tests import builtin_schema
from tests.helpers import MakeDB

PG_ADMIN_DSN = os.environ.get("BOTDB_TEST_PG_DSN", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BOTDB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("BOTDB_REQUIRE_SERVICES", "") not in ("", "0", "false")
IN_CI = os.environ.get("CI", "") not in ("", "0", "false")
# The "pgbouncer" backend runs in the modules with PGBOUNCER_CONTRACT = True; with this set,
# also in those with PGBOUNCER_CONTRACT = "extended" (``make test-pgbouncer``).
PGBOUNCER_ALL = os.environ.get("BOTDB_TEST_PGBOUNCER_ALL", "") not in ("", "0", "false")
# The "citus" backend (a database distributed by ``botdb distribute`` on a Citus coordinator)
# runs only with this set (``make test-citus``), and only in modules with CITUS_CONTRACT = True.
CITUS = os.environ.get("BOTDB_TEST_CITUS", "") not in ("", "0", "false")
CITUS_URL = os.environ.get("BOTDB_TEST_CITUS_URL", "postgresql://root@127.0.0.1:9700/citus")

# The same examples on every CI run, no example database (nothing carried between runs), no
# per-example time limit on a shared, noisy machine; the failing example's blob is printed so
# it can be replayed locally with @reproduce_failure.
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=200, deadline=None, print_blob=True
)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the ``pgbouncer`` and ``citus`` backends only in the modules that ask for them;
    under a derandomized profile, refuse a test that would bring chance back in."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("backend") if callspec is not None else None
        module = getattr(item, "module", None)
        contract = getattr(module, "PGBOUNCER_CONTRACT", False)
        if (chosen == "pgbouncer" and not (contract is True or (contract and PGBOUNCER_ALL))) or (
            chosen == "citus" and not (CITUS and getattr(module, "CITUS_CONTRACT", False) is True)
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    if not settings.default.derandomize:
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None:
            continue
        if not own.derandomize or getattr(test, "_hypothesis_internal_use_seed", None) is not None:
            raise pytest.UsageError(
                f"{item.nodeid} sets derandomize=False or @seed: under the "
                f"{settings.get_current_profile_name()!r} profile every Hypothesis test must run "
                "the same examples on every run"
            )


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (BOTDB_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def _with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a database created for this run on the real PostgreSQL server, dropped after."""
    try:
        import asyncpg
    except ImportError:
        _unavailable("asyncpg is not installed (pip install 'botdb[postgres]')")
        raise  # unreachable: _unavailable raises

    name = f"botdb_test_{secrets.token_hex(6)}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    yield _with_database(PG_ADMIN_DSN, name)
    asyncio.run(drop())


@pytest.fixture
async def pg_url(
    pg_server_url: str, pg_builtin_state: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The run's PostgreSQL database with an empty ``public`` schema for this test (with
    botdb's built-in tables only, when the test asks for ``builtin_tables``)."""
    import asyncpg

    builtin = "builtin_tables" in request.fixturenames
    state = pg_builtin_state
    if state["kept"] and not builtin:
        await _drop_public_schema(pg_server_url, state)
    elif builtin and not state["kept"]:
        await builtin_schema.make_builtin_schema(pg_server_url)
        state["kept"] = True
        if state["fresh"] is None:
            conn = await asyncpg.connect(pg_server_url, timeout=5)
            try:
                state["fresh"] = await builtin_schema.capture(conn)
            finally:
                await conn.close()
    yield pg_server_url
    if not builtin:
        await _drop_public_schema(pg_server_url, state)
        return
    state["kept"] = False
    conn = await asyncpg.connect(pg_server_url, timeout=5)
    try:
        fresh = state["fresh"]
        if fresh.resettable and await builtin_schema.fingerprint(conn) == fresh.fingerprint:
            await builtin_schema.reset_data(conn, state["fresh"])
            state["kept"] = True
        else:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def _drop_public_schema(url: str, state: dict[str, Any]) -> None:
    import asyncpg

    state["kept"] = False
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_builtin_state() -> dict[str, Any]:
    """Whether the run's database holds the built-in tables now (``kept``), and what a fresh
    ``create_tables`` looks like (``fresh``, read the first time a test asks for them)."""
    return {"kept": False, "fresh": None}


@pytest.fixture
def builtin_tables() -> None:
    """Asked for (directly or by a fixture such as ``db``) by a test that starts from botdb's
    built-in tables and nothing else: ``pg_url`` and ``sqlite_url`` then come with them,
    made once per run instead of once per test (tests/builtin_schema.py)."""


@pytest.fixture(scope="session")
def sqlite_builtin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed SQLite file holding the built-in tables, made once per run."""
    path = tmp_path_factory.mktemp("builtin") / "bot.db"
    # In a thread of its own: this may be asked for while a test's event loop runs.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, builtin_schema.make_builtin_schema(f"sqlite:///{path}")).result()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh SQLite file for this test (a copy of one with the built-in tables, when the
    test asks for ``builtin_tables``)."""
    path = tmp_path / "bot.db"
    if "builtin_tables" in request.fixturenames:
        builtin_schema.copy_sqlite_file(request.getfixturevalue("sqlite_builtin_file"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql", "pgbouncer", "citus"])
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over every backend; use with ``db_url``.

    ``"pgbouncer"`` is PostgreSQL through a private pgbouncer in transaction mode (with
    ``BOTDB_PGBOUNCER=1`` set for the test); it runs only in the modules that set
    ``PGBOUNCER_CONTRACT = True`` (the contract suites: raw API, repositories, services,
    recorder), in those with ``PGBOUNCER_CONTRACT = "extended"`` too when
    ``BOTDB_TEST_PGBOUNCER_ALL=1`` (``make test-pgbouncer``), and is deselected elsewhere.

    ``"citus"`` is a database on a Citus cluster, migrated and distributed by
    ``botdb distribute``; it runs only with ``BOTDB_TEST_CITUS=1`` (``make test-citus``) and
    only in the modules that set ``CITUS_CONTRACT = True``.
    """
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A clean database URL on the backend chosen by ``backend``."""
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    if backend == "pgbouncer":
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("BOTDB_PGBOUNCER", "1")
        return str(request.getfixturevalue("pgbouncer_url"))
    if backend == "citus":
        return str(request.getfixturevalue("citus_url"))
    return str(request.getfixturevalue("pg_url"))


def citus_node_urls(coordinator: str, conn_rows: list[Any]) -> list[str]:
    """The URLs of the coordinator and of its active workers (same user, same database)."""
    base = urlsplit(coordinator)
    user = base.username or "root"
    urls = [coordinator]
    for row in conn_rows:
        urls.append(urlunsplit(base._replace(netloc=f"{user}@{row[0]}:{row[1]}")))
    return urls


@pytest.fixture(scope="session")
def citus_server_url() -> Iterator[str]:
    """URL of a database made for this run on the Citus cluster (``BOTDB_TEST_CITUS_URL``,
    its coordinator): created on the coordinator and every worker with the citus extension,
    the nodes registered, migrated and distributed by ``botdb distribute``; dropped after."""
    import asyncpg

    name = f"botdb_test_{secrets.token_hex(6)}"
    nodes: list[str] = []

    async def create() -> str:
        admin = await asyncpg.connect(CITUS_URL, timeout=5)
        try:
            workers = await admin.fetch("SELECT * FROM citus_get_active_worker_nodes()")
        finally:
            await admin.close()
        nodes.extend(citus_node_urls(CITUS_URL, [tuple(w) for w in workers]))
        for url in nodes:
            await _execute_on(url, f'CREATE DATABASE "{name}"')
            await _execute_on(_with_database(url, name), "CREATE EXTENSION citus")
        coordinator = urlsplit(CITUS_URL)
        url = _with_database(CITUS_URL, name)
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(
                "SELECT citus_set_coordinator_host($1, $2)",
                coordinator.hostname,
                coordinator.port or 5432,
            )
            for worker in workers:
                await conn.execute("SELECT citus_add_node($1, $2)", worker[0], worker[1])
            # 4 shards a table instead of 32: the same routing, a tenth of the DDL per test.
            await conn.execute(f'ALTER DATABASE "{name}" SET citus.shard_count = 4')
        finally:
            await conn.close()
        await _citus_build(url)
        return url

    async def drop() -> None:
        for url in nodes:
            await _execute_on(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if not CITUS:  # opt-in: never a failure, even with BOTDB_REQUIRE_SERVICES=1
        pytest.skip("the citus backend runs with BOTDB_TEST_CITUS=1 (make test-citus)")
    try:
        url = asyncio.run(create())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        asyncio.run(drop())
        _unavailable(f"the Citus cluster is not reachable at {CITUS_URL}: {exc}")
    try:
        yield url
    finally:
        asyncio.run(drop())


async def _execute_on(url: str, statement: str) -> None:
    """One statement on its own short connection (database DDL on each Citus node)."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _citus_build(url: str) -> None:
    """botdb's schema on the distributed database: migrated, then ``botdb distribute``."""
    async with botdb.connect(url) as db:
        await db.migrate()
        await db.distribute()


@pytest.fixture
async def citus_url(citus_server_url: str) -> AsyncIterator[str]:
    """The run's distributed database, emptied after this test: botdb's tables truncated
    (distributing them again for each test would cost seconds), anything else dropped. A
    test that dropped or renamed one of botdb's tables gets the schema rebuilt."""
    import asyncpg

    from botdb.analytics._schema import SUMMARIES
    from botdb.ops.distribution import PLACEMENTS

    yield citus_server_url
    conn = await asyncpg.connect(citus_server_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS kind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition "
            "AND c.relname NOT IN ('citus_tables', 'citus_schemas')"
        )
        present = {row["relname"] for row in rows}
        kept = set(PLACEMENTS) | set(SUMMARIES)
        if not (kept - {"botdb_meta"}) <= present:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            await _citus_build(citus_server_url)
            return
        kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}
        for row in rows:
            if row["relname"] not in kept:
                kind = kinds.get(row["kind"], "TABLE")
                await conn.execute(f'DROP {kind} IF EXISTS "{row["relname"]}" CASCADE')
        tables = sorted(present & set(PLACEMENTS) - {"botdb_alembic_version"})
        listed = ", ".join(f'"{t}"' for t in tables)
        await conn.execute(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
        for view in SUMMARIES:
            await conn.execute(f'REFRESH MATERIALIZED VIEW "{view}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pgbouncer_server(pg_server_url: str) -> Iterator[str]:
    """URL of the run's PostgreSQL database through a private pgbouncer (transaction
    pooling, Debian's ``pgbouncer``) on a free port; skips (fails in CI) without it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        _unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    server = urlsplit(pg_server_url)
    workdir = Path(tempfile.mkdtemp(prefix="botdb-pgbouncer-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (workdir / "userlist.txt").write_text(f'"{server.username or "root"}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        textwrap.dedent(f"""\
            [databases]
            * = host={server.hostname} port={server.port or 5432}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {workdir / "userlist.txt"}
            pool_mode = transaction
            default_pool_size = 40
            max_client_conn = 500
            server_idle_timeout = 10
            logfile = {workdir / "pgbouncer.log"}
            pidfile = {workdir / "pgbouncer.pid"}
            """)
    )
    prefix: list[str] = []
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(workdir, "postgres")
        for file in workdir.iterdir():
            shutil.chown(file, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    process = subprocess.Popen(
        [*prefix, binary, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15.0
        while True:
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.settimeout(0.5)
                probe.connect(("127.0.0.1", port))
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log = workdir / "pgbouncer.log"
                detail = log.read_text()[-500:] if log.exists() else ""
                _unavailable(f"pgbouncer did not start: {detail}")
            time.sleep(0.05)  # waiting for the listener to appear, bounded by the deadline
        yield urlunsplit(server._replace(netloc=f"{server.username or 'root'}@127.0.0.1:{port}"))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pgbouncer_url(pg_url: str, pgbouncer_server: str) -> str:
    """This test's clean PostgreSQL database (``pg_url``) reached through pgbouncer."""
    return pgbouncer_server


@pytest.fixture
async def make_db(db_url: str) -> AsyncIterator[MakeDB]:
    """Connect Databases to this test's clean database (``db_url``, every backend), with the
    settings a test needs; each is closed after the test.

    ``await make_db(create_tables=False, url=None, **settings)``: ``url`` replaces ``db_url``
    (the same database under another spelling); retries wait 10 ms unless told otherwise.
    """
    async with AsyncExitStack() as stack:

        async def make(
            *, url: str | None = None, create_tables: bool = False, **options: Any
        ) -> botdb.Database:
            options.setdefault("retry_initial_delay", 0.01)
            context = database_at(url or db_url, create_tables=create_tables, **options)
            return await stack.enter_async_context(context)

        yield make


@pytest.fixture
async def db(make_db: MakeDB, builtin_tables: None) -> botdb.Database:
    """A Database on this test's clean database, on every backend, with the built-in tables.

    A module that needs other settings or its own schema defines its own ``db`` on
    ``make_db`` (or on this one: a fixture may request the one it overrides).
    """
    return await make_db(create_tables=True)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """URL of the real Redis server; skips (or fails in CI) when it does not answer."""
    try:
        import redis
    except ImportError:
        _unavailable("redis is not installed (pip install 'botdb[redis]')")
        raise
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis

    prefix = f"botdb-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """Path of ``redis-server``, for tests that start and stop their own throwaway server."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH (needed to stop and restart a Redis)")
        raise AssertionError("unreachable: _unavailable raises")
    return binary
