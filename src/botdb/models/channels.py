"""Channels and threads.

Threads are a table of their own rather than channels with a type: they carry state channels
do not (owner, archived, locked), they are far more numerous, and on Telegram a forum topic's
id is only unique inside its chat, so a thread's key is ``(id, guild_id)`` while a channel's
is its global ``id``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, SoftDeleteMixin, TimestampMixin, builtin_info

__all__ = ["Channel", "Thread"]


class Channel(SoftDeleteMixin, TimestampMixin, Base):
    """A Discord channel (text, voice, category, forum...) or a Telegram chat.

    ``type`` is free text (discord.py's ``ChannelType`` name, or Telegram's chat type) so that
    new platform types need no migration. ``parent_id`` is the category.
    """

    __tablename__ = "channels"
    __table_args__ = (
        Index("ix_channels_guild_id_position", "guild_id", "position"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("channels.id", ondelete="SET NULL"), default=None, index=True
    )
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    type: Mapped[str] = mapped_column(String(32), default="text", server_default="text")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    topic: Mapped[str | None] = mapped_column(Text, default=None)
    is_nsfw: Mapped[bool] = mapped_column(default=False, server_default=false())


class Thread(SoftDeleteMixin, TimestampMixin, Base):
    """A Discord thread or a Telegram forum topic (``id`` = ``message_thread_id``)."""

    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_guild_id_parent_id", "guild_id", "parent_id"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("guilds.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    parent_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    is_archived: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_locked: Mapped[bool] = mapped_column(default=False, server_default=false())
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
