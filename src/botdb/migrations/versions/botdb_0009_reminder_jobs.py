"""Reminders on the scheduler: the job of a tracked event and of a user's reminder.

``tracked_events.job_id`` and ``user_reminders.job_id`` name the ``scheduled_jobs`` row that
fires them (no foreign key: the scheduler purges finished jobs on its own schedule, and a
reminder outlives the job of its last run). ``user_reminders.cron`` and ``tz`` hold a reminder
that recurs by calendar ("every Monday 9:00 Europe/Paris"). Nullable columns only, so the
upgrade is an ``ALTER TABLE ... ADD COLUMN`` on both backends and rewrites no row.

Revision ID: botdb_0009
Revises: botdb_0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "botdb_0009"
down_revision: str | Sequence[str] | None = "botdb_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the job columns."""
    op.add_column("tracked_events", sa.Column("job_id", sa.BigInteger(), nullable=True))
    op.add_column("user_reminders", sa.Column("job_id", sa.BigInteger(), nullable=True))
    op.add_column("user_reminders", sa.Column("cron", sa.String(length=128), nullable=True))
    op.add_column("user_reminders", sa.Column("tz", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop them again (SQLite 3.35+ drops a column without a rebuild)."""
    with op.batch_alter_table("user_reminders") as batch:
        batch.drop_column("tz")
        batch.drop_column("cron")
        batch.drop_column("job_id")
    with op.batch_alter_table("tracked_events") as batch:
        batch.drop_column("job_id")
