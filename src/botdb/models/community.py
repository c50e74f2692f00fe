"""Community features: snippets (saved replies) and levels (XP per member)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, TimestampMixin, builtin_info
from botdb.models.types import SURROGATE_KEY

__all__ = ["Level", "Snippet"]


class Snippet(TimestampMixin, Base):
    """A named text a guild can recall; either ``content`` or an alias of another snippet.

    Names are unique per guild as stored; services should normalize (e.g. lowercase) them.
    Deleting a snippet deletes its aliases.
    """

    __tablename__ = "snippets"
    __table_args__ = (
        UniqueConstraint("guild_id", "name"),
        CheckConstraint("uses >= 0", name="uses_non_negative"),
        CheckConstraint(
            "(content IS NULL AND alias_of_id IS NOT NULL)"
            " OR (content IS NOT NULL AND alias_of_id IS NULL)",
            name="content_xor_alias",
        ),
        Index("ix_snippets_author_id", "author_id"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    content: Mapped[str | None] = mapped_column(Text, default=None)
    alias_of_id: Mapped[int | None] = mapped_column(
        SURROGATE_KEY, ForeignKey("snippets.id", ondelete="CASCADE"), default=None, index=True
    )
    author_id: Mapped[int] = mapped_column(BigInteger)
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_locked: Mapped[bool] = mapped_column(default=False, server_default=false())


class Level(TimestampMixin, Base):
    """A member's experience and level; deleted with the member."""

    __tablename__ = "levels"
    __table_args__ = (
        ForeignKeyConstraint(
            ["guild_id", "user_id"],
            ["members.guild_id", "members.user_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("xp >= 0", name="xp_non_negative"),
        CheckConstraint("level >= 0", name="level_non_negative"),
        Index("ix_levels_guild_id_xp", "guild_id", "xp"),
        {"info": builtin_info()},
    )

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    xp: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_blacklisted: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_xp_at: Mapped[datetime | None] = mapped_column(default=None)
