"""Per-guild configuration: prefix, locale, log channels and the guild's own settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, TimestampMixin, builtin_info

__all__ = ["GuildConfig"]


class GuildConfig(TimestampMixin, Base):
    """One row per guild; NULL means "use the bot's default".

    Channel and role ids are plain BIGINTs without foreign keys: a bot may configure a channel
    it has never stored in ``channels``. ``settings`` holds anything else as a JSON object.
    """

    __tablename__ = "guild_configs"
    __table_args__ = ({"info": builtin_info()},)

    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    prefix: Mapped[str | None] = mapped_column(String(32), default=None)
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    log_channel_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    mod_log_channel_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    welcome_channel_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    mute_role_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
