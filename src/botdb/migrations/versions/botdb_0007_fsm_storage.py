"""FSM storage: ``fsm_states`` (aiogram's state and data per full ``StorageKey``) and
``fsm_locks`` (the leases that serialise a key's events across processes on SQLite).

An optional key part (thread id, business connection id) is a NOT NULL value plus a
``has_*`` flag, so ``None`` stays distinct from ``0`` / ``""`` under a plain primary key on
both backends (see :mod:`botdb.models.fsm`).

Revision ID: botdb_0007
Revises: botdb_0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from botdb.models.types import UTCDateTime, utcnow

# revision identifiers, used by Alembic.
revision: str = "botdb_0007"
down_revision: str | Sequence[str] | None = "botdb_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "fsm_states",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("has_thread", sa.Boolean(), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("has_business_connection", sa.Boolean(), nullable=False),
        sa.Column("business_connection_id", sa.String(length=255), nullable=False),
        sa.Column("destiny", sa.String(length=255), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column(
            "data",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
            ),
            nullable=True,
        ),
        sa.Column("state_expires_at", UTCDateTime(), nullable=True),
        sa.Column("data_expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.CheckConstraint(
            "has_thread OR thread_id = 0", name=op.f("ck_fsm_states_thread_id_absent")
        ),
        sa.CheckConstraint(
            "has_business_connection OR business_connection_id = ''",
            name=op.f("ck_fsm_states_business_connection_id_absent"),
        ),
        sa.PrimaryKeyConstraint(
            "bot_id",
            "guild_id",
            "user_id",
            "has_thread",
            "thread_id",
            "has_business_connection",
            "business_connection_id",
            "destiny",
            name=op.f("pk_fsm_states"),
        ),
        info={"botdb_builtin": True},
    )
    op.create_table(
        "fsm_locks",
        sa.Column("lock_key", sa.String(length=512), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lock_key", name=op.f("pk_fsm_locks")),
        info={"botdb_builtin": True},
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("fsm_locks")
    op.drop_table("fsm_states")
