"""The summaries the stats read: hourly message, reaction and join/leave counts.

On PostgreSQL four materialized views, each with a unique index (refreshed concurrently by
``db.stats.refresh()``); on SQLite the same names as tables kept exact by triggers on
``messages``, ``reactions``, ``reaction_counts`` and ``join_leave_logs``. Made on a database
that already holds rows, they are filled from them (the views when created, the tables by one
aggregate per table).

Revision ID: botdb_0004
Revises: botdb_0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from botdb.analytics import _schema

# revision identifiers, used by Alembic.
revision: str = "botdb_0004"
down_revision: str | Sequence[str] | None = "botdb_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    _schema.create(op.get_bind())


def downgrade() -> None:
    """Revert this revision (the summaries hold nothing that is not in the raw tables)."""
    _schema.drop(op.get_bind())
