"""Durable scheduled jobs: the table behind ``db.scheduler``.

One row per job. A worker claims due rows (``state`` ``scheduled`` or ``failed`` with
``run_at`` passed, or ``running`` with an expired lease ``locked_until``) by setting
``state = 'running'``, ``locked_by`` and ``locked_until`` in one UPDATE; it settles them when
the handler returns: ``done``, the next firing of a recurring job, a retry (``failed``), or
``dead`` with ``last_error`` kept. Finished rows (``done``, ``dead``, ``cancelled``) stay until
``db.scheduler.purge()``; a ``key`` stays taken while its row exists.

The invariants the two partial indexes rely on: a job holds ``locked_by`` exactly while it is
``running``, and ``finished_at`` exactly while it is ``done``, ``dead`` or ``cancelled``. The
indexes hold only live rows, so finding the next due job and claiming a batch
read a few index entries however many finished jobs the table keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Double,
    Index,
    Integer,
    String,
    Text,
    and_,
    column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, builtin_info
from botdb.models.types import JSON_TYPE, SURROGATE_KEY, UTCDateTime

__all__ = ["JOB_MISFIRE_POLICIES", "JOB_STATES", "ScheduledJob"]

#: Values of ``scheduled_jobs.state``.
JOB_STATES = ("scheduled", "running", "done", "failed", "dead", "cancelled")
#: Values of ``scheduled_jobs.misfire``.
JOB_MISFIRE_POLICIES = ("once", "all", "skip")


#: The rows of waiting jobs (``scheduled``/``failed``): never locked, never finished. Written
#: with NULL tests rather than ``state``, whose string comparison PostgreSQL reflects with
#: casts that the schema comparison would report as a difference.
_WAITING = and_(column("locked_by").is_(None), column("finished_at").is_(None))
#: The rows of running jobs: the only ones with a worker's lock.
_HELD = column("locked_by").is_not(None)


def _in(name: str, values: tuple[str, ...]) -> str:
    return f"{name} IN ({', '.join(repr(v) for v in values)})"


class ScheduledJob(Base):
    """A job of ``db.scheduler``: what to run (``kind``, ``payload``), when (``run_at``, and
    ``every_seconds`` or ``cron`` in ``tz`` for a recurring one), and where it stands."""

    __tablename__ = "scheduled_jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        CheckConstraint(_in("misfire", JOB_MISFIRE_POLICIES), name="misfire"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("every_seconds IS NULL OR every_seconds > 0", name="every_positive"),
        CheckConstraint("every_seconds IS NULL OR cron IS NULL", name="one_recurrence"),
        Index("ix_scheduled_jobs_due", "run_at", postgresql_where=_WAITING, sqlite_where=_WAITING),
        Index(
            "ix_scheduled_jobs_lease",
            "locked_until",
            postgresql_where=_HELD,
            sqlite_where=_HELD,
        ),
        Index("ix_scheduled_jobs_kind_run_at", "kind", "run_at"),
        Index(
            "ix_scheduled_jobs_guild_id_run_at",
            "guild_id",
            "run_at",
            postgresql_where=column("guild_id").is_not(None),
            sqlite_where=column("guild_id").is_not(None),
        ),
        Index(
            "ix_scheduled_jobs_user_id_run_at",
            "user_id",
            "run_at",
            postgresql_where=column("user_id").is_not(None),
            sqlite_where=column("user_id").is_not(None),
        ),
        Index(
            "ix_scheduled_jobs_finished_at",
            "finished_at",
            postgresql_where=column("finished_at").is_not(None),
            sqlite_where=column("finished_at").is_not(None),
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    payload: Mapped[Any] = mapped_column(JSON_TYPE)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    user_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), server_default=text("'scheduled'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("5"))
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    every_seconds: Mapped[float | None] = mapped_column(Double, default=None)
    cron: Mapped[str | None] = mapped_column(String(255), default=None)
    tz: Mapped[str | None] = mapped_column(String(64), default=None)
    misfire: Mapped[str] = mapped_column(String(8), server_default=text("'once'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
