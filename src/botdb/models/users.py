"""Users (Discord or Telegram accounts), guild members and their roles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, TimestampMixin, builtin_info
from botdb.models.guilds import PLATFORMS

__all__ = ["Member", "MemberRole", "User"]


class User(TimestampMixin, Base):
    """A Discord or Telegram account; ``id`` is the platform's user id (never autoincrement).

    Global, not chat-scoped: per-guild facts live in :class:`Member`.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("id > 0", name="id_positive"),
        CheckConstraint(f"platform IN ({', '.join(repr(p) for p in PLATFORMS)})", name="platform"),
        Index("ix_users_is_active_created_at", "is_active", "created_at"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    platform: Mapped[str] = mapped_column(String(16), default="discord", server_default="discord")
    username: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    first_name: Mapped[str | None] = mapped_column(String(255), default=None)
    last_name: Mapped[str | None] = mapped_column(String(255), default=None)
    language_code: Mapped[str | None] = mapped_column(String(16), default=None)
    is_bot: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_premium: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_seen: Mapped[datetime | None] = mapped_column(default=None)


class Member(TimestampMixin, Base):
    """A user in a guild (the member record bots keep: preferences and statistics included).

    Roles are rows of :class:`MemberRole`, not a cached list.
    """

    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("message_count >= 0", name="message_count_non_negative"),
        {"info": builtin_info()},
    )

    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    nick: Mapped[str | None] = mapped_column(String(255), default=None)
    joined_at: Mapped[datetime | None] = mapped_column(default=None)
    left_at: Mapped[datetime | None] = mapped_column(default=None)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    message_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_active_at: Mapped[datetime | None] = mapped_column(default=None)


class MemberRole(Base):
    """That a member holds a role (a role-membership row, not a cached list)."""

    __tablename__ = "member_roles"
    __table_args__ = (
        ForeignKeyConstraint(
            ["guild_id", "user_id"],
            ["members.guild_id", "members.user_id"],
            ondelete="CASCADE",
        ),
        {"info": builtin_info()},
    )

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    role_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )
