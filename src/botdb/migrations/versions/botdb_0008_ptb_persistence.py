"""python-telegram-bot persistence: one row per user, chat, bot, callback or conversation key.

The table ``ptb_persistence`` (see :mod:`botdb.models.persistence`), keyed
``(namespace, kind, scope, key)``, with a per-row ``version``.

The statements are written out here, not imported from the models, which will have moved on
by the time someone runs this revision.

Revision ID: botdb_0008
Revises: botdb_0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from botdb.models.types import UTCDateTime, utcnow

# revision identifiers, used by Alembic.
revision: str = "botdb_0008"
down_revision: str | Sequence[str] | None = "botdb_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``ptb_persistence``."""
    op.create_table(
        "ptb_persistence",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("pickled", sa.LargeBinary(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('user', 'chat', 'bot', 'callback', 'conversation')",
            name=op.f("ck_ptb_persistence_kind_known"),
        ),
        sa.CheckConstraint(
            "(value IS NULL AND pickled IS NOT NULL) OR (value IS NOT NULL AND pickled IS NULL)",
            name=op.f("ck_ptb_persistence_one_value"),
        ),
        sa.PrimaryKeyConstraint(
            "namespace", "kind", "scope", "key", name=op.f("pk_ptb_persistence")
        ),
        info={"botdb_builtin": True},
    )


def downgrade() -> None:
    """Drop ``ptb_persistence`` (and every persisted key in it)."""
    op.drop_table("ptb_persistence")
