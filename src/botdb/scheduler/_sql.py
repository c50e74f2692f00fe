"""The scheduler's statements, one set per backend.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` (workers never wait for each other's rows)
and wakes listeners with ``pg_notify`` in the writing statement, so a notification goes out
exactly when the job's transaction commits. SQLite has one writer at a time: the same UPDATE
is atomic there without row locks. Lists of ids or kinds are bound as one parameter
(``= ANY($1::bigint[])`` on PostgreSQL, ``IN (SELECT value FROM json_each($1))`` on SQLite)
so each statement is prepared once, whatever the list's length.

Times are bound from the worker's clock (aware UTC) on both backends, so a job scheduled
``delay=60`` and the worker that runs it read the same clock; processes on several machines
need synchronised clocks (NTP), as they do for any lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CHANNEL", "COLUMNS", "Statements", "statements"]

#: The PostgreSQL NOTIFY channel a scheduling statement wakes workers on.
CHANNEL: Final = "botdb_jobs"

COLUMNS: Final = (
    "id, kind, key, payload, guild_id, user_id, run_at, state, attempts, max_attempts, "
    "locked_by, locked_until, last_error, every_seconds, cron, tz, misfire, created_at, "
    "updated_at, finished_at"
)
_INSERTED = (
    "kind, key, payload, guild_id, user_id, run_at, state, attempts, max_attempts, "
    "every_seconds, cron, tz, misfire, created_at, updated_at"
)
# The state test, and the NULL tests that let the planner use the partial indexes (a waiting
# job is never locked nor finished; a running one is the only kind with a lock).
_WAITING = "state IN ('scheduled', 'failed') AND locked_by IS NULL AND finished_at IS NULL"
_HELD = "state = 'running' AND locked_by IS NOT NULL"
_FINISHED = "state IN ('done', 'dead', 'cancelled')"


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the scheduler runs; ``$n`` parameters as documented per field."""

    #: kind, key, payload, guild_id, user_id, run_at, max_attempts, every, cron, tz, misfire,
    #: now, wake (text) -> the inserted row, or none when ``key`` is taken
    insert: str
    #: kinds[], keys[], payloads[], guild_ids[], user_ids[], run_ats[], max_attempts[],
    #: everys[], crons[], tzs[], misfires[], now, wake -> the inserted rows (SQLite: $1 is a
    #: JSON array of rows, $2 now, $3 wake is unused)
    insert_many: str
    #: key -> row
    by_key: str
    #: keys (list) -> rows
    by_keys: str
    #: id -> row
    by_id: str
    #: worker, lease end, now, limit, kinds (list) -> claimed rows: waiting jobs now due,
    #: soonest first (one range of the partial index ``ix_scheduled_jobs_due``, no sort)
    claim: str
    #: the same for running jobs whose lease ended (``ix_scheduled_jobs_lease``)
    claim_expired: str
    #: kinds (list) -> (the earliest due time of a waiting job, the earliest lease end of a
    #: running job) of these kinds, each None when there is none
    next_due: str
    #: lease end, worker, now -> renews every job this worker holds
    renew: str
    #: ids (list), worker, now -> one-shot jobs done
    done: str
    #: id, worker, state, run_at, attempts, last_error, finished_at, now
    settle: str
    #: id, now -> cancelled row (none when not waiting or running)
    cancel_id: str
    #: key, now
    cancel_key: str
    #: id, run_at, now, wake -> rescheduled row
    reschedule_id: str
    #: key, run_at, now, wake
    reschedule_key: str
    #: id, worker, now: a claimed job handed back unstarted (worker stopping)
    release: str
    #: cutoff -> deleted count (status)
    purge: str
    #: list's ``IN`` for one bound list parameter ``$n``
    in_list: str


def _postgres() -> Statements:
    notify = f"CROSS JOIN (SELECT pg_notify('{CHANNEL}', $WAKE::text)) AS wake"
    insert = (
        f"WITH ins AS (INSERT INTO scheduled_jobs ({_INSERTED}) "
        "VALUES ($1, $2, $3::jsonb, $4, $5, $6, 'scheduled', 0, $7, $8, $9, $10, $11, $12, $12) "
        f"ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}) "
        f"SELECT ins.* FROM ins {notify.replace('$WAKE', '$13')}"
    )
    insert_many = (
        f"WITH ins AS (INSERT INTO scheduled_jobs ({_INSERTED}) "
        "SELECT k, ky, p::jsonb, g, u, r, 'scheduled', 0, m, e, c, t, mf, $12, $12 "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], "
        "$6::timestamptz[], $7::int[], $8::float8[], $9::text[], $10::text[], $11::text[]) "
        "AS r_(k, ky, p, g, u, r, m, e, c, t, mf) "
        f"ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}) "
        f"SELECT ins.* FROM ins {notify.replace('$WAKE', '$13')}"
    )
    claim = (
        "UPDATE scheduled_jobs SET state = 'running', attempts = attempts + 1, "
        "locked_by = $1, locked_until = $2, updated_at = $3 "
        "WHERE id IN (SELECT id FROM scheduled_jobs WHERE {due} "
        "AND kind = ANY($5::text[]) ORDER BY {order} LIMIT $4 FOR UPDATE SKIP LOCKED) "
        f"RETURNING {COLUMNS}"
    )
    reschedule = (
        "WITH up AS (UPDATE scheduled_jobs SET run_at = $2, state = 'scheduled', attempts = 0, "
        "locked_by = NULL, locked_until = NULL, finished_at = NULL, updated_at = $3 "
        f"WHERE {{where}} AND state <> 'running' RETURNING {COLUMNS}) "
        f"SELECT up.* FROM up {notify.replace('$WAKE', '$4')}"
    )
    return _common(
        insert=insert,
        insert_many=insert_many,
        claim=claim,
        reschedule=reschedule,
        in_list="= ANY({}::{})",
        indexed="",
    )


def _sqlite() -> Statements:
    insert = (
        f"INSERT INTO scheduled_jobs ({_INSERTED}) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', 0, $7, $8, $9, $10, $11, $12, $12) "
        f"ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}"
    )
    insert_many = (
        f"INSERT INTO scheduled_jobs ({_INSERTED}) "
        "SELECT value ->> 0, value ->> 1, json(value ->> 2), value ->> 3, value ->> 4, "
        "value ->> 5, 'scheduled', 0, value ->> 6, value ->> 7, value ->> 8, value ->> 9, "
        "value ->> 10, $2, $2 FROM json_each($1) WHERE true "
        f"ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}"
    )
    claim = (
        "UPDATE scheduled_jobs SET state = 'running', attempts = attempts + 1, "
        "locked_by = $1, locked_until = $2, updated_at = $3 "
        "WHERE id IN (SELECT id FROM scheduled_jobs WHERE {due} "
        "AND kind IN (SELECT value FROM json_each($5)) ORDER BY {order} LIMIT $4) "
        f"RETURNING {COLUMNS}"
    )
    reschedule = (
        "UPDATE scheduled_jobs SET run_at = $2, state = 'scheduled', attempts = 0, "
        "locked_by = NULL, locked_until = NULL, finished_at = NULL, updated_at = $3 "
        f"WHERE {{where}} AND state <> 'running' AND $4 IS NOT NULL RETURNING {COLUMNS}"
    )
    return _common(
        insert=insert,
        insert_many=insert_many,
        claim=claim,
        reschedule=reschedule,
        in_list="IN (SELECT value FROM json_each({}))",
        # SQLite's planner prefers the (kind, run_at) index for a kind list, which reads
        # every finished job of those kinds; the partial index reads only live ones.
        indexed="INDEXED BY ix_scheduled_jobs_{} ",
    )


def _common(
    *, insert: str, insert_many: str, claim: str, reschedule: str, in_list: str, indexed: str
) -> Statements:
    def listed(param: str, pg_type: str) -> str:
        return in_list.format(param, pg_type) if "{}::{}" in in_list else in_list.format(param)

    kinds = listed("$1", "text[]")
    return Statements(
        insert=insert,
        insert_many=insert_many,
        by_key=f"SELECT {COLUMNS} FROM scheduled_jobs WHERE key = $1",
        by_keys=f"SELECT {COLUMNS} FROM scheduled_jobs WHERE key {listed('$1', 'text[]')}",
        by_id=f"SELECT {COLUMNS} FROM scheduled_jobs WHERE id = $1",
        claim=claim.format(due=f"{_WAITING} AND run_at <= $3", order="run_at"),
        claim_expired=claim.format(due=f"{_HELD} AND locked_until < $3", order="locked_until"),
        next_due=(
            # ORDER BY ... LIMIT 1 (not min()): a walk of the partial index in order that stops
            # at the first row of these kinds, however many finished rows the kinds have.
            "SELECT "
            f"(SELECT run_at FROM scheduled_jobs {indexed.format('due')}"
            f"WHERE {_WAITING} AND kind {kinds} ORDER BY run_at LIMIT 1) AS waiting, "
            f"(SELECT locked_until FROM scheduled_jobs {indexed.format('lease')}"
            f"WHERE {_HELD} AND kind {kinds} ORDER BY locked_until LIMIT 1) AS lease"
        ),
        renew=(
            "UPDATE scheduled_jobs SET locked_until = $1, updated_at = $3 "
            "WHERE locked_by = $2 AND state = 'running'"
        ),
        done=(
            "UPDATE scheduled_jobs SET state = 'done', locked_by = NULL, locked_until = NULL, "
            "finished_at = $3, updated_at = $3 "
            f"WHERE id {listed('$1', 'bigint[]')} AND locked_by = $2 AND state = 'running'"
        ),
        settle=(
            "UPDATE scheduled_jobs SET state = $3, run_at = $4, attempts = $5, "
            "last_error = $6, finished_at = $7, updated_at = $8, "
            "locked_by = NULL, locked_until = NULL "
            "WHERE id = $1 AND locked_by = $2 AND state = 'running'"
        ),
        cancel_id=(
            "UPDATE scheduled_jobs SET state = 'cancelled', locked_by = NULL, "
            "locked_until = NULL, finished_at = $2, updated_at = $2 "
            "WHERE id = $1 AND state NOT IN ('done', 'dead', 'cancelled') RETURNING id"
        ),
        cancel_key=(
            "UPDATE scheduled_jobs SET state = 'cancelled', locked_by = NULL, "
            "locked_until = NULL, finished_at = $2, updated_at = $2 "
            "WHERE key = $1 AND state NOT IN ('done', 'dead', 'cancelled') RETURNING id"
        ),
        reschedule_id=reschedule.format(where="id = $1"),
        reschedule_key=reschedule.format(where="key = $1"),
        release=(
            "UPDATE scheduled_jobs SET state = CASE WHEN attempts > 1 THEN 'failed' "
            "ELSE 'scheduled' END, attempts = attempts - 1, locked_by = NULL, "
            "locked_until = NULL, updated_at = $3 "
            "WHERE id = $1 AND locked_by = $2 AND state = 'running'"
        ),
        purge=f"DELETE FROM scheduled_jobs WHERE {_FINISHED} AND finished_at < $1",
        in_list=in_list,
    )


_POSTGRES = _postgres()
_SQLITE = _sqlite()


def statements(backend: str) -> Statements:
    """The statements of ``backend`` (``"postgresql"`` or ``"sqlite"``)."""
    return _POSTGRES if backend == "postgresql" else _SQLITE
