"""Durable scheduled jobs (``db.scheduler``): one-shot and recurring, across restarts and
processes, on SQLite and PostgreSQL.

* :class:`Scheduler` — ``schedule``, ``schedule_many``, ``cancel``, ``reschedule``, ``get``,
  ``jobs``, ``purge``; handlers per kind; ``start``/``stop`` a worker; ``run_until_idle``.
* :class:`Job` — a job as stored; :class:`ScheduleRequest` — one job for ``schedule_many``.

See ``docs/scheduler.md`` for the guarantees (at-least-once, leases, missed firings, idle
behaviour and wake latency per backend).
"""

from __future__ import annotations

from botdb.scheduler._jobs import Job, JobState, Misfire, ScheduleRequest
from botdb.scheduler._scheduler import Handler, Scheduler

__all__ = ["Handler", "Job", "JobState", "Misfire", "ScheduleRequest", "Scheduler"]
