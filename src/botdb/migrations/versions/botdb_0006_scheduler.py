"""Durable scheduled jobs for ``db.scheduler``: the ``scheduled_jobs`` table.

Partial indexes on the live rows only (due jobs by ``run_at``, running jobs by lease end), so
finding the next due job reads one index entry however many finished jobs the table keeps.

Revision ID: botdb_0006
Revises: botdb_0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from botdb.models.types import JSON_TYPE, UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "botdb_0006"
down_revision: str | Sequence[str] | None = "botdb_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = "'scheduled', 'running', 'done', 'failed', 'dead', 'cancelled'"


def upgrade() -> None:
    """Create ``scheduled_jobs`` and its indexes."""
    op.create_table(
        "scheduled_jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column(
            "state", sa.String(length=16), server_default=sa.text("'scheduled'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("every_seconds", sa.Double(), nullable=True),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("tz", sa.String(length=64), nullable=True),
        sa.Column("misfire", sa.String(length=8), server_default=sa.text("'once'"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(f"state IN ({_STATES})", name=op.f("ck_scheduled_jobs_state")),
        sa.CheckConstraint(
            "misfire IN ('once', 'all', 'skip')", name=op.f("ck_scheduled_jobs_misfire")
        ),
        sa.CheckConstraint(
            "max_attempts >= 1", name=op.f("ck_scheduled_jobs_max_attempts_positive")
        ),
        sa.CheckConstraint(
            "every_seconds IS NULL OR every_seconds > 0",
            name=op.f("ck_scheduled_jobs_every_positive"),
        ),
        sa.CheckConstraint(
            "every_seconds IS NULL OR cron IS NULL", name=op.f("ck_scheduled_jobs_one_recurrence")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
        sa.UniqueConstraint("key", name=op.f("uq_scheduled_jobs_key")),
        info={"botdb_builtin": True},
    )
    live = sa.and_(sa.column("locked_by").is_(None), sa.column("finished_at").is_(None))
    running = sa.column("locked_by").is_not(None)
    op.create_index(
        "ix_scheduled_jobs_due",
        "scheduled_jobs",
        ["run_at"],
        postgresql_where=live,
        sqlite_where=live,
    )
    op.create_index(
        "ix_scheduled_jobs_lease",
        "scheduled_jobs",
        ["locked_until"],
        postgresql_where=running,
        sqlite_where=running,
    )
    op.create_index("ix_scheduled_jobs_kind_run_at", "scheduled_jobs", ["kind", "run_at"])
    for name, first in (("guild_id", "guild_id"), ("user_id", "user_id")):
        where = sa.column(first).is_not(None)
        op.create_index(
            f"ix_scheduled_jobs_{name}_run_at",
            "scheduled_jobs",
            [first, "run_at"],
            postgresql_where=where,
            sqlite_where=where,
        )
    finished = sa.column("finished_at").is_not(None)
    op.create_index(
        "ix_scheduled_jobs_finished_at",
        "scheduled_jobs",
        ["finished_at"],
        postgresql_where=finished,
        sqlite_where=finished,
    )


def downgrade() -> None:
    """Drop ``scheduled_jobs`` (its indexes go with it)."""
    op.drop_table("scheduled_jobs")
