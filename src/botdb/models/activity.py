"""Append-only activity logs: commands run and members joining or leaving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, builtin_info
from botdb.models.types import SURROGATE_KEY, utcnow

__all__ = ["CommandHistory", "JoinLeaveLog"]


class CommandHistory(Base):
    """One command invocation. ``guild_id`` is NULL in a DM.

    ``(user_id, command, started_at)`` is unique: it is the invocation's natural key, what
    makes recording it again (a retried batch, a replayed spool, a re-import) a no-op.

    ``success`` is NULL while the command runs (when the row is written at the start and
    completed later); ``args`` is a JSON object (positional arguments under ``"args"``).
    """

    __tablename__ = "command_history"
    __table_args__ = (
        CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration_non_negative"),
        UniqueConstraint("user_id", "command", "started_at"),
        Index("ix_command_history_guild_id_started_at", "guild_id", "started_at"),
        Index("ix_command_history_user_id_started_at", "user_id", "started_at"),
        Index("ix_command_history_command_started_at", "command", "started_at"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), default=None
    )
    channel_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    started_at: Mapped[datetime] = mapped_column(server_default=utcnow())
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    success: Mapped[bool | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class JoinLeaveLog(Base):
    """A member joining or leaving a guild (Telegram: ``chat_member`` updates).

    ``(guild_id, user_id, event, occurred_at)`` is unique, so the same event recorded twice
    (a replayed spool, a re-import) is one row.
    """

    __tablename__ = "join_leave_logs"
    __table_args__ = (
        CheckConstraint("event IN ('join', 'leave')", name="event"),
        UniqueConstraint("guild_id", "user_id", "event", "occurred_at"),
        Index("ix_join_leave_logs_guild_id_occurred_at", "guild_id", "occurred_at"),
        Index("ix_join_leave_logs_user_id_occurred_at", "user_id", "occurred_at"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(server_default=utcnow())
