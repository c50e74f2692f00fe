"""``db.scheduler`` in one process, on every backend: the API, bad input, recurring schedules
(interval, cron in a time zone across DST), missed firings after downtime, retries, dead jobs,
leases, and the worker's wake-ups and idleness.

Times are made deterministic by scheduling in the past or at ``now`` (due at once) and running
``run_until_idle``; nothing waits on the wall clock except the marked idle test.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

import botdb
from botdb.scheduler import Job, Scheduler, ScheduleRequest
from botdb.scheduler._jobs import first_after, next_fire
from tests.helpers import MakeDB, wait_until

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

pytestmark = pytest.mark.timeout(120)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def db(make_db: MakeDB, builtin_tables: None) -> botdb.Database:
    return await make_db(
        create_tables=True,
        scheduler_retry_delay=0.0,
        scheduler_retry_max_delay=0.0,
        scheduler_poll_interval=0.05,
    )


class Recorder:
    """A handler that records the jobs it ran (and can fail on demand)."""

    def __init__(self, fail: int = 0) -> None:
        self.jobs: list[Job] = []
        self.fail = fail
        self.ran = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        self.jobs.append(job)
        self.ran.set()
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError(f"boom {len(self.jobs)}")

    @property
    def keys(self) -> list[str | None]:
        return [job.key for job in self.jobs]


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


async def count(db: botdb.Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM scheduled_jobs"))


# -- scheduling and reading -------------------------------------------------------------------


async def test_schedule_returns_the_stored_job_and_key_makes_it_idempotent(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    sched.register_kind("reminder")
    at = now() + timedelta(hours=1)
    job = await sched.schedule(
        "reminder", at=at, payload={"text": "hi", "n": [1, 2]}, key="r:1", guild_id=5, user_id=7
    )
    assert (job.kind, job.key, job.payload, job.guild_id, job.user_id) == (
        "reminder", "r:1", {"text": "hi", "n": [1, 2]}, 5, 7,
    )  # fmt: skip
    assert job.run_at == at
    assert job.run_at.tzinfo is not None
    assert (job.state, job.attempts, job.max_attempts, job.recurring) == ("scheduled", 0, 5, False)
    again = await sched.schedule("reminder", delay=5, payload={"other": True}, key="r:1")
    assert again == job  # the existing job: nothing new, nothing changed
    assert len({job, again}) == 1  # hashable (its payload is left out of the hash)
    assert await count(db) == 1
    assert await sched.get(job.id) == job
    assert await sched.get("r:1") == job
    assert await sched.get("missing") is None
    assert await sched.get(10**9) is None


async def test_schedule_many_is_one_transaction_in_request_order(db: botdb.Database) -> None:
    sched = db.scheduler
    sched.register_kind("a", "b")
    existing = await sched.schedule("a", delay=60, key="k1")
    requests = [
        ScheduleRequest(kind="b", delay=10, payload={"i": 0}),
        ScheduleRequest(kind="a", delay=20, key="k1"),  # taken: the stored job
        ScheduleRequest(kind="b", at=now() + timedelta(minutes=3), key="k2", user_id=9),
        ScheduleRequest(kind="a", every=timedelta(minutes=5), payload={"i": 3}),
        ScheduleRequest(kind="a", delay=30, key="k2"),  # taken earlier in the same call
    ]
    jobs = await sched.schedule_many(requests)
    assert len(jobs) == 5
    assert jobs[1] == existing
    assert jobs[4] == jobs[2]
    assert jobs[0].payload == {"i": 0}
    assert jobs[3].every == timedelta(minutes=5)
    assert jobs[2].user_id == 9
    assert jobs[2].key == "k2"
    assert await count(db) == 4
    assert await sched.schedule_many([]) == []
    big = await sched.schedule_many(
        [ScheduleRequest(kind="a", delay=i, key=f"bulk:{i}") for i in range(6000)]
    )
    assert [job.key for job in big] == [f"bulk:{i}" for i in range(6000)]
    assert await count(db) == 6004


async def test_schedule_within_a_transaction_exists_only_if_it_commits(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    sched.register_kind("x")
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await sched.schedule("x", delay=1, key="gone", within=conn)
            await sched.schedule_many([ScheduleRequest(kind="x", delay=1)], within=conn)
            raise RuntimeError("roll back")
    assert await count(db) == 0
    async with db.transaction() as conn:
        job = await sched.schedule("x", delay=1, key="kept", within=conn)
    assert await sched.get("kept") == job


async def test_cancel_reschedule_and_list_filters(db: botdb.Database) -> None:
    sched = db.scheduler
    sched.register_kind("a", "b")
    base = now() + timedelta(hours=1)
    a1 = await sched.schedule("a", at=base, guild_id=1, user_id=10, key="a1")
    a2 = await sched.schedule("a", at=base + timedelta(minutes=1), guild_id=1, user_id=11)
    b1 = await sched.schedule("b", at=base - timedelta(minutes=1), guild_id=2, user_id=10)
    assert [j.id for j in await sched.jobs()] == [b1.id, a1.id, a2.id]
    assert [j.id for j in await sched.jobs(kind="a")] == [a1.id, a2.id]
    assert [j.id for j in await sched.jobs(guild_id=1, user_id=10)] == [a1.id]
    assert [j.id for j in await sched.jobs(user_id=10)] == [b1.id, a1.id]
    assert [j.id for j in await sched.jobs(limit=1)] == [b1.id]

    assert await sched.cancel(a2.id) is True
    assert await sched.cancel(a2.id) is False  # already cancelled
    assert await sched.cancel(key="a1") is True
    assert await sched.cancel(key="nope") is False
    assert [j.id for j in await sched.jobs(state="scheduled")] == [b1.id]
    assert {j.id for j in await sched.jobs(state=["cancelled"])} == {a1.id, a2.id}
    cancelled = await sched.get(a2.id)
    assert cancelled is not None
    assert cancelled.finished_at is not None

    later = base + timedelta(days=1)
    moved = await sched.reschedule(b1.id, at=later)
    assert (moved.run_at, moved.state) == (later, "scheduled")
    revived = await sched.reschedule("a1", delay=timedelta(hours=2))  # a cancelled job again
    assert revived.state == "scheduled"
    assert revived.finished_at is None
    with pytest.raises(botdb.NotFoundError):
        await sched.reschedule(10**9, at=later)
    with pytest.raises(botdb.NotFoundError):
        await sched.reschedule("missing", at=later)


async def test_purge_deletes_finished_jobs_and_frees_their_keys(db: botdb.Database) -> None:
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("p", handler)
    await sched.schedule("p", delay=0, key="once")
    waiting = await sched.schedule("p", delay=3600, key="later")
    assert await sched.run_until_idle() == 1
    done = await sched.get("once")
    assert done is not None
    assert done.state == "done"
    assert done.finished_at is not None
    assert await sched.purge(older_than=timedelta(hours=1)) == 0  # too recent
    assert await sched.purge(older_than=0) == 1
    assert await sched.get("once") is None
    assert await sched.get(waiting.id) == waiting  # waiting jobs are never purged
    fresh = await sched.schedule("p", delay=0, key="once")
    assert fresh.id != done.id


# -- bad input: typed errors, nothing written -------------------------------------------------


#: (schedule() arguments, the error, words of its message)
BAD_INPUT: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"kind": "unknown", "delay": 1}, botdb.UnknownJobKindError, "register_kind"),
    ({"kind": "k", "at": datetime(2030, 1, 1)}, botdb.SchedulingError, "naive"),
    ({"kind": "k", "cron": "61 * * * *"}, botdb.SchedulingError, "cron"),
    ({"kind": "k", "cron": "not a cron"}, botdb.SchedulingError, "cron"),
    ({"kind": "k", "cron": "0 9 30 2 *"}, botdb.SchedulingError, "never fires"),
    ({"kind": "k", "cron": "0 9 * * *", "tz": "Mars/Olympus"}, botdb.SchedulingError, "tz"),
    ({"kind": "k", "delay": 1, "tz": "UTC"}, botdb.SchedulingError, "cron"),
    ({"kind": "k"}, botdb.SchedulingError, "at="),
    ({"kind": "k", "delay": 1, "at": datetime.now(UTC)}, botdb.SchedulingError, "not both"),
    ({"kind": "k", "every": 5, "cron": "* * * * *"}, botdb.SchedulingError, "not both"),
    ({"kind": "k", "delay": -1}, botdb.SchedulingError, "zero"),
    ({"kind": "k", "every": 0}, botdb.SchedulingError, "zero"),
    ({"kind": "k", "delay": float("nan")}, botdb.SchedulingError, "finite"),
    ({"kind": "k", "delay": "soon"}, botdb.SchedulingError, "timedelta"),
    ({"kind": "k", "delay": 1, "misfire": "never"}, botdb.SchedulingError, "misfire"),
    ({"kind": "k", "delay": 1, "max_attempts": 0}, botdb.SchedulingError, "max_attempts"),
    ({"kind": "k", "delay": 1, "key": ""}, botdb.SchedulingError, "key"),
    ({"kind": "k", "delay": 1, "guild_id": 2**64}, botdb.SchedulingError, "guild_id"),
    ({"kind": "k", "delay": 1, "payload": [1]}, botdb.SchedulingError, "mapping"),
    ({"kind": "k", "delay": 1, "payload": {"x": float("inf")}}, botdb.DataError, "Infinity"),
    ({"kind": "k", "delay": 1, "payload": {"d": datetime.now(UTC)}}, botdb.DataError, "JSON"),
    ({"kind": "", "delay": 1}, botdb.SchedulingError, "kind"),
    # what a chat user could put into a reminder command
    ({"kind": "k", "delay": 1, "key": "\ud800"}, botdb.DataError, "surrogate"),
    ({"kind": "k", "delay": 1, "key": "k" * 256}, botdb.SchedulingError, "key"),
    ({"kind": "k\ud800", "delay": 1}, botdb.SchedulingError, "kind"),
    ({"kind": "k", "delay": 1, "payload": {"t": "\ud800"}}, botdb.DataError, "surrogate"),
    ({"kind": "k", "delay": 1, "payload": {"n": 2**64}}, botdb.DataError, "64-bit"),
    ({"kind": "k", "delay": 1, "payload": {"d": _deep(10_000)}}, botdb.DataError, "deep"),
    ({"kind": "k", "cron": "0 9 * * *", "tz": "../../etc/passwd"}, botdb.SchedulingError, "tz"),
    ({"kind": "k", "cron": "0 9 * * *", "tz": "\x00"}, botdb.SchedulingError, "tz"),
    ({"kind": "k", "cron": "\ud800 * * * *"}, botdb.SchedulingError, "cron"),
    ({"kind": "k", "delay": 10**30}, botdb.SchedulingError, "range"),
    ({"kind": "k", "at": "tomorrow"}, botdb.SchedulingError, "datetime"),
]


async def test_bad_input_raises_a_typed_error_and_writes_nothing(db: botdb.Database) -> None:
    """Each case of BAD_INPUT, through schedule() and inside a schedule_many() batch (whose
    valid first request is not written either)."""
    db.scheduler.register_kind("k")
    for case, error, words in BAD_INPUT:
        kwargs = dict(case)
        kind = kwargs.pop("kind")
        with pytest.raises(error, match=words):
            await db.scheduler.schedule(kind, **kwargs)
        with pytest.raises(error, match=words):
            await db.scheduler.schedule_many(
                [ScheduleRequest(kind="k", delay=1), ScheduleRequest(kind=kind, **kwargs)]
            )
    assert await count(db) == 0


async def test_bad_arguments_elsewhere_are_typed(db: botdb.Database) -> None:
    sched = db.scheduler
    with pytest.raises(botdb.SchedulingError):
        await sched.cancel()
    with pytest.raises(botdb.SchedulingError):
        await sched.cancel(1, key="x")
    with pytest.raises(botdb.SchedulingError, match="naive"):
        await sched.reschedule(1, at=datetime(2030, 1, 1))
    with pytest.raises(botdb.SchedulingError, match="state"):
        await sched.jobs(state="sleeping")  # type: ignore[arg-type]
    with pytest.raises(botdb.SchedulingError, match="limit"):
        await sched.jobs(limit=0)
    with pytest.raises(botdb.SchedulingError):
        await sched.schedule_many(["job"])  # type: ignore[list-item]
    with pytest.raises(botdb.SchedulingError):
        sched.add_handler("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(botdb.SchedulingError, match="concurrency"):
        await sched.start(concurrency=0)
    assert not sched.running


# -- running: handlers, retries, dead jobs ----------------------------------------------------


async def test_due_jobs_run_once_and_are_done(db: botdb.Database) -> None:
    sched = db.scheduler
    handler = Recorder()
    sched.handler("greet")(handler)
    await sched.schedule_many(
        [ScheduleRequest(kind="greet", delay=0, key=f"g{i}") for i in range(25)]
    )
    future = await sched.schedule("greet", delay=3600, key="later")
    assert await sched.run_until_idle(concurrency=4) == 25
    assert sorted(handler.keys) == sorted(f"g{i}" for i in range(25))  # type: ignore[type-var]
    assert all(job.attempt == 1 and job.state == "running" for job in handler.jobs)
    assert {job.state for job in await sched.jobs(state="done", limit=1000)} == {"done"}
    assert len(await sched.jobs(state="done", limit=1000)) == 25
    assert await sched.get(future.id) == future
    assert await sched.run_until_idle() == 0
    stats = sched.stats()
    assert stats["run"] == 25
    assert stats["succeeded"] == 25
    assert stats["lateness_ms"]["p50"] is not None


async def test_failures_retry_with_backoff_then_die_with_the_error_kept(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    handler = Recorder(fail=10)
    sched.add_handler("flaky", handler)
    ok = await sched.schedule("flaky", delay=0, max_attempts=3, key="dies")
    assert await sched.run_until_idle() == 3  # retry delay 0: each retry is due at once
    dead = await sched.get(ok.id)
    assert dead is not None
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 3, "RuntimeError: boom 3")
    assert dead.finished_at is not None
    assert [job.attempt for job in handler.jobs] == [1, 2, 3]

    handler.fail = 1
    second = await sched.schedule("flaky", delay=0, max_attempts=3, key="recovers")
    await sched.run_until_idle()
    done = await sched.get(second.id)
    assert done is not None
    assert (done.state, done.attempts) == ("done", 2)
    assert done.last_error == "RuntimeError: boom 4"


async def test_backoff_doubles_up_to_its_cap(make_db: MakeDB) -> None:
    db = await make_db(
        create_tables=True, scheduler_retry_delay=60.0, scheduler_retry_max_delay=150.0
    )
    sched = db.scheduler
    sched.add_handler("f", Recorder(fail=10))
    job = await sched.schedule("f", delay=0)
    waits = []
    for _ in range(3):
        before = now()
        await sched.run_until_idle()
        failed = await sched.get(job.id)
        assert failed is not None
        assert failed.state == "failed"
        waits.append(round((failed.run_at - before).total_seconds() / 30))
        await db.execute("UPDATE scheduled_jobs SET run_at = $1", now() - timedelta(seconds=1))
    assert waits == [2, 4, 5]  # 60 s, 120 s, then capped at 150 s


# -- recurring jobs ---------------------------------------------------------------------------


async def test_interval_job_runs_again_every_interval(db: botdb.Database) -> None:
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("tick", handler)
    start = now()
    job = await sched.schedule("tick", at=start, every=timedelta(hours=1), key="tick")
    assert job.run_at == start
    assert job.recurring
    assert await sched.run_until_idle() == 1
    after = await sched.get(job.id)
    assert after is not None
    assert (after.state, after.run_at, after.attempts) == (
        "scheduled", start + timedelta(hours=1), 0,
    )  # fmt: skip
    plain = await sched.schedule("tick", every=30)
    assert timedelta(seconds=29) < plain.run_at - now() <= timedelta(seconds=30)


async def test_cron_in_a_time_zone_keeps_wall_clock_time_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    # Monday 9:00 in Paris: 08:00 UTC in winter, 07:00 UTC in summer.
    before_spring = datetime(2027, 3, 22, 9, 0, tzinfo=paris)  # Monday, CET
    nxt = next_fire(None, "0 9 * * mon", "Europe/Paris", before_spring)
    assert nxt == datetime(2027, 3, 29, 9, 0, tzinfo=paris)  # Monday after the change, CEST
    assert nxt.astimezone(UTC).hour == 7
    assert before_spring.astimezone(UTC).hour == 8
    # 02:30 does not exist on 2027-03-28 in Paris: it fires at 03:30 CEST (01:30 UTC).
    gap = next_fire(None, "30 2 * * *", "Europe/Paris", datetime(2027, 3, 27, 12, tzinfo=UTC))
    assert gap == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    after_gap = next_fire(None, "30 2 * * *", "Europe/Paris", gap)
    assert after_gap == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)  # 02:30 CEST
    # 02:30 exists twice on 2027-10-31: it fires once, at the first (00:30 UTC).
    fold = next_fire(None, "30 2 * * *", "Europe/Paris", datetime(2027, 10, 30, 12, tzinfo=UTC))
    assert fold == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert next_fire(None, "30 2 * * *", "Europe/Paris", fold) == datetime(
        2027, 11, 1, 1, 30, tzinfo=UTC
    )
    # Interval schedules: the first firing after a downtime, on the original grid.
    due = datetime(2027, 1, 1, tzinfo=UTC)
    assert first_after(3600.0, None, None, due, due + timedelta(hours=5, minutes=1)) == (
        due + timedelta(hours=6)
    )


_ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")


@given(
    every=st.floats(min_value=0.001, max_value=86_400 * 30),
    gap=st.floats(min_value=-86_400, max_value=86_400 * 365),
)
def test_first_after_an_interval_is_the_next_grid_point_after_now(every: float, gap: float) -> None:
    due = datetime(2026, 1, 1, tzinfo=UTC)
    now_ = due + timedelta(seconds=gap)
    step = timedelta(seconds=every)
    later = first_after(every, None, None, due, now_)
    assert later > now_
    assert (later - due) % step == timedelta(0)  # on the schedule's grid
    assert later == due or later - step <= now_  # the first grid point after now


@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    zone=st.sampled_from(_ZONES),
    offset_hours=st.integers(0, 24 * 366),
)
def test_next_cron_firing_is_later_and_at_the_wall_clock_time(
    minute: int, hour: int, zone: str, offset_hours: int
) -> None:
    """Daily ``minute hour``: the next firing is strictly later, at most a day and an hour
    later, and at that wall-clock time unless the time does not exist that day (DST gap)."""
    after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=offset_hours, minutes=7)
    fired = next_fire(None, f"{minute} {hour} * * *", zone, after)
    assert after < fired <= after + timedelta(days=1, hours=1)
    local = fired.astimezone(ZoneInfo(zone))
    wall = local.replace(tzinfo=None)
    if (local.hour, local.minute) != (hour, minute):  # only in a spring-forward gap
        skipped = wall.replace(hour=hour, minute=minute)
        assert skipped.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC) == fired


async def test_cron_job_is_stored_with_its_zone_and_reruns(db: botdb.Database) -> None:
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("weekly", handler)
    job = await sched.schedule(
        "weekly", cron="0 9 * * mon", tz=ZoneInfo("Europe/Paris"), payload={"x": 1}
    )
    assert (job.cron, job.tz) == ("0 9 * * mon", "Europe/Paris")
    local = job.run_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    assert job.run_at > now()
    start = await sched.schedule("weekly", cron="0 9 * * mon", tz="Europe/Paris",
                                 at=datetime(2027, 3, 23, tzinfo=UTC))  # fmt: skip
    assert start.run_at == datetime(2027, 3, 29, 7, tzinfo=UTC)


async def _downtime(db: botdb.Database, misfire: str, *, every: bool) -> tuple[Recorder, Job]:
    """A recurring job whose worker was down for 3.5 periods (hourly, or cron hourly)."""
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("r", handler)
    # Interval: off the hour, so that no firing falls due while the test runs. Cron: on the
    # hour (a test started within milliseconds of a full hour would see one firing more).
    current = now()
    start = current - timedelta(hours=3, minutes=30)
    if not every:
        start = current.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    if every:
        job = await sched.schedule("r", at=start, every=3600, misfire=misfire)  # type: ignore[arg-type]
    else:
        job = await sched.schedule("r", at=start, cron="0 * * * *", misfire=misfire)  # type: ignore[arg-type]
    assert job.run_at == start  # due 3 hours ago, missed 3 more firings since
    await sched.run_until_idle()
    return handler, job


@pytest.mark.parametrize("every", [True, False], ids=["every", "cron"])
async def test_misfire_once_runs_one_missed_firing_then_goes_on(
    db: botdb.Database, every: bool
) -> None:
    handler, job = await _downtime(db, "once", every=every)
    assert len(handler.jobs) == 1
    after = await db.scheduler.get(job.id)
    assert after is not None
    assert after.run_at > now()
    assert after.state == "scheduled"
    assert after.run_at - now() <= timedelta(hours=1)


@pytest.mark.parametrize("every", [True, False], ids=["every", "cron"])
async def test_misfire_all_runs_every_missed_firing(db: botdb.Database, every: bool) -> None:
    handler, job = await _downtime(db, "all", every=every)
    assert [j.run_at for j in handler.jobs] == [job.run_at + timedelta(hours=i) for i in range(4)]
    after = await db.scheduler.get(job.id)
    assert after is not None
    assert after.run_at == job.run_at + timedelta(hours=4)


@pytest.mark.parametrize("every", [True, False], ids=["every", "cron"])
async def test_misfire_skip_runs_none_and_waits_for_the_next(
    db: botdb.Database, every: bool
) -> None:
    handler, job = await _downtime(db, "skip", every=every)
    assert handler.jobs == []
    after = await db.scheduler.get(job.id)
    assert after is not None
    assert after.run_at == job.run_at + timedelta(hours=4)
    assert db.scheduler.stats()["skipped"] == 1


async def test_recurring_job_that_keeps_failing_moves_to_its_next_firing(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    sched.add_handler("bad", Recorder(fail=100))
    start = now()
    job = await sched.schedule("bad", at=start, every=3600, max_attempts=2)
    await sched.run_until_idle()
    after = await sched.get(job.id)
    assert after is not None
    assert (after.state, after.attempts) == ("scheduled", 0)
    assert after.last_error == "RuntimeError: boom 2"
    # The interval counts from the last retry (here: at once, the retry delay is 0).
    assert start + timedelta(hours=1) <= after.run_at <= now() + timedelta(hours=1)


# -- leases -----------------------------------------------------------------------------------


async def test_an_expired_lease_is_taken_again_and_a_stale_result_is_dropped(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("l", handler)
    job = await sched.schedule("l", delay=0)
    # A worker claims the job, then dies (its lease is already over).
    claimed = await sched._runner.claim("dead-worker", 10, ["l"])
    assert [j.id for j in claimed] == [job.id]
    assert claimed[0].state == "running"
    assert await sched._runner.claim("other", 10, ["l"]) == []  # held while the lease lasts
    await db.execute("UPDATE scheduled_jobs SET locked_until = $1", now() - timedelta(seconds=1))
    assert await sched.run_until_idle() == 1
    assert handler.jobs[0].attempt == 2  # the dead worker's try counted
    # The dead worker's late result changes nothing: the job is done by the new owner.
    from botdb.scheduler._runner import Settle

    await sched._runner.settle("dead-worker", [Settle(job.id, "failed", now(), 2, "late")])
    final = await sched.get(job.id)
    assert final is not None
    assert (final.state, final.last_error) == ("done", None)


async def test_a_long_handler_keeps_its_lease_renewed(make_db: MakeDB) -> None:
    """With a 1.5 s lease, a handler running past it keeps the job: the worker renews the
    lease every 0.5 s, so another worker finds nothing to take."""
    db = await make_db(create_tables=True, scheduler_lease=1.5)
    sched = db.scheduler
    started, release = asyncio.Event(), asyncio.Event()

    async def long(job: Job) -> None:
        started.set()
        await release.wait()

    sched.add_handler("long", long)
    job = await sched.schedule("long", delay=0)
    await sched.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    held = await sched.get(job.id)
    assert held is not None
    assert held.state == "running"
    assert held.locked_by is not None
    assert held.locked_until is not None
    first_end = held.locked_until
    await wait_until(lambda: now() > first_end + timedelta(seconds=0.1), what="the first lease")
    renewed = await sched.get(job.id)
    assert renewed is not None
    assert renewed.locked_until is not None
    assert renewed.locked_until > first_end
    assert renewed.locked_by == held.locked_by
    assert await sched._runner.claim("rival", 10, ["long"]) == []
    release.set()
    await sched.stop()
    done = await sched.get(job.id)
    assert done is not None
    assert (done.state, done.attempts, done.locked_by) == ("done", 1, None)


async def test_a_handler_that_is_not_async_fails_the_job_with_a_clear_error(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    sched.add_handler("sync", lambda job: None)  # type: ignore[arg-type,return-value]
    job = await sched.schedule("sync", delay=0, max_attempts=1)
    await sched.run_until_idle()
    dead = await sched.get(job.id)
    assert dead is not None
    assert dead.state == "dead"
    assert dead.last_error is not None
    assert "async def" in dead.last_error


async def test_a_job_whose_workers_keep_dying_is_dead_after_max_attempts(
    db: botdb.Database,
) -> None:
    """A job that kills (or freezes) every worker that runs it: each lost lease counts as a
    try, and past max_attempts it is not run again but dead, with the reason kept."""
    sched = db.scheduler
    handler = Recorder()
    sched.add_handler("poison", handler)
    job = await sched.schedule("poison", delay=0, max_attempts=2)
    expire = "UPDATE scheduled_jobs SET locked_until = $1"
    for worker in ("w1", "w2"):  # two workers die in the middle of it
        assert len(await sched._runner.claim(worker, 10, ["poison"])) == 1
        await db.execute(expire, now() - timedelta(seconds=1))
    await sched.run_until_idle()
    assert handler.jobs == []  # a third try is not made
    dead = await sched.get(job.id)
    assert dead is not None
    assert (dead.state, dead.attempts) == ("dead", 3)
    assert dead.last_error is not None
    assert dead.last_error.startswith("LeaseExpiredError: attempt 3 of 2")


async def test_reschedule_refuses_a_running_job(db: botdb.Database) -> None:
    sched = db.scheduler
    sched.register_kind("r")
    job = await sched.schedule("r", delay=0)
    await sched._runner.claim("w", 1, ["r"])
    with pytest.raises(botdb.SchedulingError, match="running"):
        await sched.reschedule(job.id, delay=10)


# -- the worker -------------------------------------------------------------------------------


async def test_worker_runs_due_jobs_and_is_woken_by_a_sooner_job(db: botdb.Database) -> None:
    sched = db.scheduler
    fired: asyncio.Queue[Job] = asyncio.Queue()

    async def handler(job: Job) -> None:
        await fired.put(job)

    sched.add_handler("w", handler)
    await sched.schedule("w", delay=3600, key="far")
    await sched.start(concurrency=3)
    assert sched.running
    await sched.start()  # idempotent
    await sched.schedule("w", delay=0, key="now")  # sooner than the planned wake-up
    job = await asyncio.wait_for(fired.get(), timeout=10)
    assert job.key == "now"
    await sched.stop()
    assert not sched.running
    assert (await sched.get("now")).state == "done"  # type: ignore[union-attr]
    assert (await sched.get("far")).state == "scheduled"  # type: ignore[union-attr]


async def test_worker_hears_jobs_scheduled_by_another_process(
    db: botdb.Database, make_db: MakeDB
) -> None:
    """Another Database on the same database stands in for another process: PostgreSQL
    NOTIFY, or SQLite's data_version, wakes the sleeping worker."""
    other = await make_db()
    other.scheduler.register_kind("w")
    fired = asyncio.Event()

    async def handler(job: Job) -> None:
        fired.set()

    db.scheduler.add_handler("w", handler)
    await db.scheduler.start()
    await other.scheduler.schedule("w", delay=0)
    await asyncio.wait_for(fired.wait(), timeout=10)


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_behind_pgbouncer_the_worker_polls_instead_of_listening(
    make_db: MakeDB, pg_url: str
) -> None:
    db = await make_db(url=pg_url, create_tables=True, pgbouncer=True, scheduler_poll_interval=0.05)
    other = await make_db(url=pg_url)
    other.scheduler.register_kind("p")
    fired = asyncio.Event()
    db.scheduler.add_handler("p", lambda job: _set(fired))
    await db.scheduler.start()
    await other.scheduler.schedule("p", delay=0)  # no NOTIFY reaches a poller: it looks
    await asyncio.wait_for(fired.wait(), timeout=10)
    assert db.scheduler.polls


async def test_stop_hands_a_running_job_back(db: botdb.Database) -> None:
    sched = db.scheduler
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    sched.add_handler("s", stuck)
    job = await sched.schedule("s", delay=0)
    await sched.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    await sched.stop(timeout=0)
    back = await sched.get(job.id)
    assert back is not None
    assert (back.state, back.attempts) == ("scheduled", 0)


async def test_stop_waits_for_running_handlers_and_writes_their_results(
    db: botdb.Database,
) -> None:
    sched = db.scheduler
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await release.wait()

    sched.add_handler("s", slow)
    job = await sched.schedule("s", delay=0)
    await sched.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    stopping = asyncio.create_task(sched.stop(timeout=30))
    await asyncio.sleep(0)  # stop() has begun: it waits for the handler
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, timeout=30)
    done = await sched.get(job.id)
    assert done is not None
    assert (done.state, done.attempts) == ("done", 1)


async def test_worker_on_an_in_memory_database() -> None:
    """No other process can reach ``:memory:``: no listening connection, in-process pokes."""
    async with botdb.connect("sqlite:///:memory:") as db:
        await db.create_tables()
        fired = asyncio.Event()

        async def handler(job: Job) -> None:
            fired.set()

        db.scheduler.add_handler("m", handler)
        await db.scheduler.start()
        await db.scheduler.schedule("m", delay=0.01)
        await asyncio.wait_for(fired.wait(), timeout=10)


async def test_db_close_stops_the_worker(make_db: MakeDB) -> None:
    db = await make_db(create_tables=True)
    db.scheduler.add_handler("c", Recorder())
    await db.scheduler.start()
    worker = db.scheduler._worker
    assert worker is not None
    await db.close()
    assert not db.scheduler.running


async def test_start_without_the_table_raises_at_once(make_db: MakeDB) -> None:
    db = await make_db()  # no tables: db.migrate() was forgotten
    db.scheduler.add_handler("x", Recorder())
    with pytest.raises(botdb.UndefinedTableError):
        await db.scheduler.start()
    assert not db.scheduler.running


def test_scheduler_is_one_per_database() -> None:
    db = botdb.Database(botdb.Settings.from_env(url="sqlite:///:memory:"))
    assert db.scheduler is db.scheduler
    assert isinstance(db.scheduler, Scheduler)


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_worker_survives_its_connections_being_terminated_mid_batch(
    make_db: MakeDB, pg_url: str
) -> None:
    """Every connection of the worker's Database (pool and LISTEN) is terminated by the server
    while handlers run: every job still ends done and recorded (handlers that lost their
    connection raise and are retried), and the LISTEN connection comes back, so a job
    scheduled by another process afterwards still wakes the sleeping worker."""
    a = await make_db(url=pg_url, create_tables=True)
    b = await make_db(
        url=pg_url, application_name="sched-fault-b", scheduler_retry_delay=0.0,
        scheduler_retry_max_delay=0.0, scheduler_lease=5.0, retry_attempts=1,
    )  # fmt: skip
    await a.execute("CREATE TABLE handled (job_key text PRIMARY KEY)")
    a.scheduler.register_kind("f")
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[BaseException] = []

    async def handler(job: Job) -> None:
        started.set()
        await release.wait()
        try:
            await b.execute("INSERT INTO handled VALUES ($1) ON CONFLICT DO NOTHING", job.key)
        except Exception as exc:
            seen.append(exc)
            raise

    b.scheduler.add_handler("f", handler)
    await b.scheduler.start(concurrency=20)
    await a.scheduler.schedule_many(
        [ScheduleRequest(kind="f", delay=0, key=f"f{i}") for i in range(200)]
    )
    await asyncio.wait_for(started.wait(), timeout=30)
    killed = await a.fetchval(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'sched-fault-b%') AS k"
    )
    assert killed >= 2  # the pool's connection(s) and the LISTEN connections
    release.set()

    async def all_done() -> bool:
        done = await a.fetchval("SELECT count(*) FROM scheduled_jobs WHERE state = 'done'")
        return int(done) == 200

    await wait_until(all_done, timeout=60, what="every job done after the terminations")
    assert await a.fetchval("SELECT count(*) FROM handled") == 200
    assert all(isinstance(exc, botdb.BotDBError) for exc in seen), seen

    async def listening_again() -> bool:  # the cache's and the scheduler's listeners
        count = await a.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'sched-fault-b listener'"
        )
        return int(count) == 2

    await wait_until(listening_again, timeout=30, what="the LISTEN connections back")
    fired = asyncio.Event()
    b.scheduler.add_handler("g", lambda job: _set(fired))
    a.scheduler.register_kind("g")
    await a.scheduler.schedule("g", delay=0)
    await asyncio.wait_for(fired.wait(), timeout=30)


async def _set(event: asyncio.Event) -> None:
    event.set()


# -- query plans ------------------------------------------------------------------------------


async def test_the_workers_queries_read_only_live_rows_through_the_partial_indexes(
    db: botdb.Database,
) -> None:
    """With 5,000 finished jobs beside 50 live ones, the next-due query and both claims walk
    the partial indexes in order: no full scan, no sort (EXPLAIN on each backend)."""
    from botdb.scheduler._sql import statements

    sched = db.scheduler
    sched.register_kind("a", "b")
    start = now()
    await sched.schedule_many(
        [ScheduleRequest(kind="a", at=start - timedelta(seconds=i)) for i in range(5000)]
    )
    await db.execute("UPDATE scheduled_jobs SET state = 'done', finished_at = $1", start)
    await sched.schedule_many([ScheduleRequest(kind="b", delay=i) for i in range(50)])
    await db.execute("ANALYZE")
    sql = statements(db.backend)
    indexes = ("ix_scheduled_jobs_due", "ix_scheduled_jobs_lease", "rowid=?")
    claim_args = ["w", start, start, 10, ["a", "b"]]
    for query, args in (
        (sql.next_due, [["a", "b"]]),
        (sql.claim, claim_args),
        (sql.claim_expired, claim_args),
    ):
        async with db.transaction() as conn:  # EXPLAIN of an UPDATE runs nothing
            if db.backend == "sqlite":
                plan = [
                    str(list(r)[-1]) for r in await conn.fetch(f"EXPLAIN QUERY PLAN {query}", *args)
                ]
                assert not any("TEMP B-TREE" in line for line in plan), plan
                for line in plan:
                    if "scheduled_jobs" in line:
                        assert any(index in line for index in indexes), plan
            else:
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", *args))
                assert "Seq Scan" not in plan, plan
                assert "Sort" not in plan, plan
