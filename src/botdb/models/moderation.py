"""Moderation cases with per-guild, gapless case numbers.

Allocate a case number in the same transaction as the case insert::

    INSERT INTO guild_case_counters (guild_id, last_case_number) VALUES ($1, 1)
    ON CONFLICT (guild_id) DO UPDATE
        SET last_case_number = guild_case_counters.last_case_number + 1
    RETURNING last_case_number

The counter row is locked until commit, so concurrent allocations in one guild serialize, and a
rolled-back case rolls its number back too: numbers never repeat and never skip.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    column,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, TimestampMixin, builtin_info
from botdb.models.types import SURROGATE_KEY

__all__ = ["CASE_ACTIONS", "GuildCaseCounter", "ModerationCase"]

#: Values of ``moderation_cases.action``.
CASE_ACTIONS = (
    "warn",
    "note",
    "timeout",
    "untimeout",
    "mute",
    "unmute",
    "kick",
    "softban",
    "tempban",
    "ban",
    "unban",
    "jail",
    "unjail",
)

_EXPIRING = and_(column("is_active") == true(), column("expires_at").is_not(None))


class ModerationCase(TimestampMixin, Base):
    """A moderation action against a user; ``case_number`` counts from 1 in each guild.

    ``user_id`` and ``moderator_id`` have no foreign key: a case may target a user the bot has
    never stored (a ban by id), and it must outlive the user row.
    """

    __tablename__ = "moderation_cases"
    __table_args__ = (
        UniqueConstraint("guild_id", "case_number"),
        CheckConstraint("case_number > 0", name="case_number_positive"),
        CheckConstraint(f"action IN ({', '.join(repr(a) for a in CASE_ACTIONS)})", name="action"),
        Index("ix_moderation_cases_guild_id_user_id", "guild_id", "user_id"),
        Index(
            "ix_moderation_cases_expiring",
            "expires_at",
            sqlite_where=_EXPIRING,
            postgresql_where=_EXPIRING,
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    case_number: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(BigInteger)
    moderator_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())


class GuildCaseCounter(Base):
    """The last case number handed out in a guild (see the module docstring)."""

    __tablename__ = "guild_case_counters"
    __table_args__ = (
        CheckConstraint("last_case_number >= 0", name="last_case_number_non_negative"),
        {"info": builtin_info()},
    )

    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    last_case_number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
