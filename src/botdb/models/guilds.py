"""Guilds (Discord servers and Telegram chats) and their roles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, SoftDeleteMixin, TimestampMixin, builtin_info

__all__ = ["PLATFORMS", "TELEGRAM_CHAT_TYPES", "Guild", "Role"]

#: Values of ``platform`` columns.
PLATFORMS = ("discord", "telegram")
#: Values of ``guilds.chat_type``; NULL for a Discord guild.
TELEGRAM_CHAT_TYPES = ("private", "group", "supergroup", "channel")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Guild(TimestampMixin, Base):
    """A Discord guild or a Telegram chat (``id`` is the chat id, negative for groups).

    A private conversation (Discord DM channel, Telegram private chat) may be stored as a guild
    with ``chat_type='private'`` whose id is the DM channel id / the chat id.
    """

    __tablename__ = "guilds"
    __table_args__ = (
        CheckConstraint(_in("platform", PLATFORMS), name="platform"),
        CheckConstraint(
            f"chat_type IS NULL OR {_in('chat_type', TELEGRAM_CHAT_TYPES)}", name="chat_type"
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    platform: Mapped[str] = mapped_column(String(16), default="discord", server_default="discord")
    chat_type: Mapped[str | None] = mapped_column(String(16), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    owner_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    icon: Mapped[str | None] = mapped_column(String(255), default=None)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    joined_at: Mapped[datetime | None] = mapped_column(default=None)
    left_at: Mapped[datetime | None] = mapped_column(default=None)


class Role(SoftDeleteMixin, TimestampMixin, Base):
    """A Discord role (Telegram has none). ``permissions`` is Discord's 64-bit bit field."""

    __tablename__ = "roles"
    __table_args__ = (
        CheckConstraint("color >= 0 AND color <= 16777215", name="color_rgb"),
        CheckConstraint("position >= 0", name="position_non_negative"),
        Index("ix_roles_guild_id_position", "guild_id", "position"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    color: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    permissions: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    is_managed: Mapped[bool] = mapped_column(default=False, server_default=false())
