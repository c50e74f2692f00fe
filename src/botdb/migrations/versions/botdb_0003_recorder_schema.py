"""What the event recorder and the chat-export importers need.

* ``messages.author_id`` becomes nullable and ``messages.partial`` marks a row known so far only
  from later events (an edit, deletion or reaction that arrived before its message): events
  may arrive in any order, and the final row must not depend on it.
* ``messages.kind``, ``messages.pinned`` and the JSON ``messages.extra`` keep what exports and
  gateway events carry beyond the text (message type, pins, embeds, stickers, forwards).
* ``reaction_counts`` keeps the per-emoji counts that exports carry without the reacting users.
* ``command_history`` and ``join_leave_logs`` get natural unique keys, so recording the same
  event twice (a retried batch, a replayed spool, a re-import) leaves one row.

Revision ID: botdb_0003
Revises: botdb_0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from botdb.models.types import JSON_TYPE

# revision identifiers, used by Alembic.
revision: str = "botdb_0003"
down_revision: str | Sequence[str] | None = "botdb_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: The descending indexes of ``messages``: SQLite's batch rebuild reflects an index without
#: its column order, so they are made again after each rebuild.
_DESC_INDEXES = {
    "ix_messages_author_id_created_at": "author_id",
    "ix_messages_channel_id_created_at": "channel_id",
    "ix_messages_guild_id_created_at": "guild_id",
}


def _restore_desc_indexes() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, column in _DESC_INDEXES.items():
        op.drop_index(name, table_name="messages")
        op.create_index(name, "messages", [column, sa.literal_column("created_at DESC")])
    op.drop_index("ix_messages_live_channel_id_created_at", table_name="messages")
    op.create_index(
        "ix_messages_live_channel_id_created_at",
        "messages",
        ["channel_id", sa.literal_column("created_at DESC")],
        sqlite_where=sa.column("deleted") == sa.false(),
    )


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("author_id", existing_type=sa.BigInteger(), nullable=True)
        batch.add_column(
            sa.Column("kind", sa.String(length=32), server_default="default", nullable=False)
        )
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("partial", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("extra", JSON_TYPE, nullable=True))
    _restore_desc_indexes()
    op.create_table(
        "reaction_counts",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("emoji_key", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("emoji_id", sa.BigInteger(), nullable=True),
        sa.Column("emoji_name", sa.String(length=255), nullable=False),
        sa.Column("animated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_reaction_counts_count_non_negative")),
        sa.ForeignKeyConstraint(
            ["message_id", "guild_id"],
            ["messages.id", "messages.guild_id"],
            name=op.f("fk_reaction_counts_message_id_guild_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "message_id", "guild_id", "emoji_key", name=op.f("pk_reaction_counts")
        ),
        info={"botdb_builtin": True},
    )
    with op.batch_alter_table("command_history") as batch:
        batch.create_unique_constraint(
            op.f("uq_command_history_user_id_command_started_at"),
            ["user_id", "command", "started_at"],
        )
    with op.batch_alter_table("join_leave_logs") as batch:
        batch.create_unique_constraint(
            op.f("uq_join_leave_logs_guild_id_user_id_event_occurred_at"),
            ["guild_id", "user_id", "event", "occurred_at"],
        )


def downgrade() -> None:
    """Revert this revision.

    Rows with no author (``partial`` rows recorded from later events) cannot satisfy the old
    NOT NULL ``author_id``: they are deleted with what hangs off them.
    """
    with op.batch_alter_table("join_leave_logs") as batch:
        batch.drop_constraint(
            op.f("uq_join_leave_logs_guild_id_user_id_event_occurred_at"), type_="unique"
        )
    with op.batch_alter_table("command_history") as batch:
        batch.drop_constraint(op.f("uq_command_history_user_id_command_started_at"), type_="unique")
    op.drop_table("reaction_counts")
    op.execute("DELETE FROM messages WHERE author_id IS NULL")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("extra")
        batch.drop_column("partial")
        batch.drop_column("pinned")
        batch.drop_column("kind")
        batch.alter_column("author_id", existing_type=sa.BigInteger(), nullable=False)
    _restore_desc_indexes()
