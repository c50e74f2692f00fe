"""Messages and what hangs off them: attachments, mentions, reactions (for bots that log
every message and reaction).

A message's key is ``(id, guild_id)``: Discord ids are globally unique, but a Telegram
``message_id`` is unique only inside its chat. The children reference it with the composite
foreign key ``(message_id, guild_id)``, which also keeps every row of a message in the same
guild (what a distributed PostgreSQL needs to co-locate them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Computed,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
    false,
    true,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models import _search
from botdb.models.base import Base, SoftDeleteMixin, builtin_info
from botdb.models.types import SURROGATE_KEY, utcnow

__all__ = ["MENTION_TARGETS", "Attachment", "Mention", "Message", "Reaction", "ReactionCount"]

#: Values of ``mentions.target_type``.
MENTION_TARGETS = ("user", "role", "channel", "everyone", "here")

_MESSAGE_FK = ("messages.id", "messages.guild_id")


class Message(SoftDeleteMixin, Base):
    """A chat message.

    ``channel_id`` is the channel (for a message in a thread: the thread's parent channel) and
    ``thread_id`` the thread or Telegram forum topic. ``deleted`` is the flag the partial
    "live messages" index filters on; ``deleted_at`` is when, if known. ``reply_to_id`` has no
    foreign key: the replied-to message may predate the bot or have been purged.

    ``kind`` is the message type (``default``, ``reply``, ``thread_created``, ``pin``, a
    Telegram service action such as ``join`` …); ``extra`` is a JSON object for what has no
    column (embeds, stickers, forward origin, a service message's details). ``partial`` marks a
    row known so far only from later events (an edit, a deletion or a reaction that arrived
    before the message, or a message the bot never saw): its ``author_id`` may be NULL and its
    content is whatever the later event carried. Recording the message itself clears it.
    """

    __tablename__ = "messages"
    __table_args__ = (
        ForeignKeyConstraint(
            ["thread_id", "guild_id"], ["threads.id", "threads.guild_id"], ondelete="CASCADE"
        ),
        CheckConstraint("attachment_count >= 0", name="attachment_count_non_negative"),
        CheckConstraint("deleted_at IS NULL OR deleted", name="deleted_at_implies_deleted"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("guilds.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    channel_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("channels.id", ondelete="CASCADE")
    )
    thread_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    author_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    content: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(server_default=utcnow())
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_bot: Mapped[bool] = mapped_column(default=False, server_default=false())
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    jump_url: Mapped[str | None] = mapped_column(String(255), default=None)
    attachment_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    # Added by botdb_0003, after the mixin's ``deleted_at``: ``sort_order`` keeps create_all's
    # column order equal to the migrated table's.
    kind: Mapped[str] = mapped_column(
        String(32), default="default", server_default="default", sort_order=910
    )
    pinned: Mapped[bool] = mapped_column(default=False, server_default=false(), sort_order=910)
    partial: Mapped[bool] = mapped_column(default=False, server_default=false(), sort_order=910)
    extra: Mapped[dict[str, Any] | None] = mapped_column(default=None, sort_order=910)

    @hybrid_property
    def is_deleted(self) -> bool:
        """Whether the message was deleted (the ``deleted`` flag)."""
        return self.deleted

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted == true()

    @classmethod
    def not_deleted(cls) -> ColumnElement[bool]:
        """``deleted = false`` (``= 0`` on SQLite): the exact form the partial index matches."""
        return cls.deleted == false()

    @classmethod
    def soft_delete_values(cls, now: datetime) -> dict[str, Any]:
        """Set both the flag and the time: the partial index filters on the flag."""
        return {"deleted": True, "deleted_at": now}


# Every read path bots page through has an index that starts with its filter and goes on with
# the page order and the rest of the key, so a keyset page is one index range however large the
# guild (find_page leaves out of the order the key columns an equality filter pins, so the
# default order ``id`` with ``guild_id=g`` walks ``(guild_id, id)``). Ascending columns: both
# backends scan them backwards for descending pages, and SQLite only uses an index for a
# row-value comparison ``(created_at, id) < (?, ?)`` when its columns share one direction.
_LIVE = column("deleted") == false()
_IN_THREAD = column("thread_id").is_not(None)
Index("ix_messages_guild_id_id", Message.guild_id, Message.id)
Index("ix_messages_guild_id_created_at", Message.guild_id, Message.created_at, Message.id)
Index("ix_messages_channel_id_id", Message.channel_id, Message.id, Message.guild_id)
Index(
    "ix_messages_channel_id_created_at",
    Message.channel_id,
    Message.created_at,
    Message.id,
    Message.guild_id,
)
Index("ix_messages_author_id_id", Message.author_id, Message.id, Message.guild_id)
Index(
    "ix_messages_author_id_created_at",
    Message.author_id,
    Message.created_at,
    Message.id,
    Message.guild_id,
)
Index(
    "ix_messages_live_channel_id_created_at",
    Message.channel_id,
    Message.created_at,
    Message.id,
    Message.guild_id,
    sqlite_where=_LIVE,
    postgresql_where=_LIVE,
)
# A thread's key is (id, guild_id) (a Telegram topic id is unique in its chat only): page a
# thread with both, filters={"thread_id": t, "guild_id": g}.
Index(
    "ix_messages_thread_id_id",
    Message.thread_id,
    Message.guild_id,
    Message.id,
    sqlite_where=_IN_THREAD,
    postgresql_where=_IN_THREAD,
)
Index(
    "ix_messages_thread_id_created_at",
    Message.thread_id,
    Message.guild_id,
    Message.created_at,
    Message.id,
    sqlite_where=_IN_THREAD,
    postgresql_where=_IN_THREAD,
)
# The full-text index over ``content`` (FTS5 on SQLite, GIN on PostgreSQL): botdb.models._search.
_search.attach(cast(Table, Message.__table__))


class Attachment(Base):
    """A file attached to a message; ``position`` is its index in the message.

    ``external_id`` is the platform's id for the file (Discord attachment id, Telegram
    ``file_unique_id``); ``file_id`` is Telegram's id for sending the file again.
    """

    __tablename__ = "attachments"
    __table_args__ = (
        ForeignKeyConstraint(["message_id", "guild_id"], list(_MESSAGE_FK), ondelete="CASCADE"),
        UniqueConstraint("message_id", "guild_id", "position"),
        CheckConstraint("position >= 0", name="position_non_negative"),
        CheckConstraint("size IS NULL OR size >= 0", name="size_non_negative"),
        CheckConstraint(
            "(width IS NULL OR width >= 0) AND (height IS NULL OR height >= 0)",
            name="dimensions_non_negative",
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    file_id: Mapped[str | None] = mapped_column(String(255), default=None)
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    content_type: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)


class Mention(Base):
    """That a message mentions a user, role, channel, or everyone.

    For ``everyone`` and ``here`` the target is the guild itself (on Discord the @everyone
    role's id is the guild id), so ``target_id`` equals ``guild_id``.
    """

    __tablename__ = "mentions"
    __table_args__ = (
        ForeignKeyConstraint(["message_id", "guild_id"], list(_MESSAGE_FK), ondelete="CASCADE"),
        CheckConstraint(
            f"target_type IN ({', '.join(repr(t) for t in MENTION_TARGETS)})",
            name="target_type",
        ),
        CheckConstraint(
            "target_type NOT IN ('everyone', 'here') OR target_id = guild_id",
            name="everyone_targets_guild",
        ),
        # "Who mentioned me": with ``target_id`` pinned, the rest is the key's order.
        Index(
            "ix_mentions_target_id_message_id",
            "target_id",
            "message_id",
            "guild_id",
            "target_type",
        ),
        {"info": builtin_info()},
    )

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    target_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class Reaction(Base):
    """One user's reaction with one emoji on one message (kept with ``removed_at`` when removed).

    ``emoji_id`` is set for a custom emoji (Discord emoji id, Telegram ``custom_emoji_id``),
    NULL for a unicode one. ``emoji_key`` is computed by the database (the custom id as text,
    else the unicode name) and is what uniqueness is checked on: UPSERT on
    ``(message_id, guild_id, emoji_key, user_id)``. Never write ``emoji_key`` yourself.
    """

    __tablename__ = "reactions"
    __table_args__ = (
        ForeignKeyConstraint(["message_id", "guild_id"], list(_MESSAGE_FK), ondelete="CASCADE"),
        UniqueConstraint("message_id", "guild_id", "emoji_key", "user_id"),
        Index("ix_reactions_user_id_created_at", "user_id", "created_at", "id"),
        Index("ix_reactions_user_id_id", "user_id", "id"),
        Index("ix_reactions_guild_id_id", "guild_id", "id"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    emoji_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    emoji_name: Mapped[str] = mapped_column(String(255))
    emoji_key: Mapped[str] = mapped_column(
        String(255), Computed("COALESCE(CAST(emoji_id AS TEXT), emoji_name)", persisted=True)
    )
    animated: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(server_default=utcnow())
    removed_at: Mapped[datetime | None] = mapped_column(default=None)


class ReactionCount(Base):
    """How many reactions a message has with one emoji, when who reacted is not known.

    Chat exports (DiscordChatExporter, Telegram Desktop) carry reaction counts without the
    reacting users; they land here, keyed like :class:`Reaction` without the user. Live
    reactions (with their user) go to ``reactions``; a message's count for an emoji is the
    larger of the two sources.
    """

    __tablename__ = "reaction_counts"
    __table_args__ = (
        ForeignKeyConstraint(["message_id", "guild_id"], list(_MESSAGE_FK), ondelete="CASCADE"),
        CheckConstraint("count >= 0", name="count_non_negative"),
        {"info": builtin_info()},
    )

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    emoji_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    emoji_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    emoji_name: Mapped[str] = mapped_column(String(255))
    animated: Mapped[bool] = mapped_column(default=False, server_default=false())
    count: Mapped[int] = mapped_column(Integer)
