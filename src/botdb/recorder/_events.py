"""The chat events botdb records, as plain frozen dataclasses.

They are the one vocabulary of the recorder (live gateway events), the chat-export importers
(DiscordChatExporter, Telegram Desktop) and the framework adapters: each source turns what it
sees into these, and :mod:`botdb.recorder._writer` turns a batch of them into rows.

Ids are the ones a bot sees live (Discord snowflakes; Telegram Bot API ids, so a supergroup is
``-100…``). Every datetime must be aware. Nothing here talks to a database.

Rows they land in:

========================  ============================================================
event                     rows
========================  ============================================================
:class:`GuildInfo`        ``guilds`` (upsert; only the fields given overwrite)
:class:`ChannelInfo`      ``channels``
:class:`ThreadInfo`       ``threads``
:class:`UserInfo`         ``users``
:class:`MessageCreated`   ``messages`` + ``attachments`` + ``mentions``
:class:`MessageEdited`    ``messages`` (content, ``edited_at``; attachments/mentions if given)
:class:`MessageDeleted`   ``messages.deleted`` / ``deleted_at``
:class:`MessagesBulkDeleted` the same for each id
:class:`ReactionAdded`    ``reactions`` (``removed_at`` cleared)
:class:`ReactionRemoved`  ``reactions.removed_at``
:class:`ReactionsCleared` ``reactions.removed_at`` for one emoji or all of a message
:class:`ReactionCounted`  ``reaction_counts`` (exports: counts without users)
:class:`MemberJoined`     ``members`` + ``join_leave_logs``
:class:`MemberLeft`       ``members`` (inactive) + ``join_leave_logs``
:class:`MemberUpdated`    ``members`` (nick)
:class:`CommandInvoked`   ``command_history``
========================  ============================================================

Guild, channel, thread and user rows a message or reaction refers to are created as bare rows
when they do not exist yet (their names filled in later by an ``*Info`` event); a message an
edit, deletion or reaction refers to is created as a ``partial`` row until the message itself
is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "AttachmentInfo",
    "ChannelInfo",
    "CommandInvoked",
    "Event",
    "GuildInfo",
    "MemberJoined",
    "MemberLeft",
    "MemberUpdated",
    "MentionInfo",
    "MessageCreated",
    "MessageDeleted",
    "MessageEdited",
    "MessagesBulkDeleted",
    "ReactionAdded",
    "ReactionCounted",
    "ReactionRemoved",
    "ReactionsCleared",
    "ThreadInfo",
    "UserInfo",
]


# -- entities ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuildInfo:
    """A guild, or a Telegram chat (``chat_type`` private/group/supergroup/channel)."""

    id: int
    platform: str = "discord"
    name: str | None = None
    chat_type: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel (on Telegram: the chat itself, ``id == guild_id``)."""

    id: int
    guild_id: int
    name: str | None = None
    type: str | None = None
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """A thread or Telegram forum topic; ``parent_id`` is its channel."""

    id: int
    guild_id: int
    parent_id: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as the platform shows them."""

    id: int
    platform: str = "discord"
    username: str | None = None
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    is_bot: bool | None = None


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """A file attached to a message, at ``position`` in it."""

    position: int = 0
    external_id: str | None = None
    file_id: str | None = None
    filename: str | None = None
    url: str | None = None
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class MentionInfo:
    """A mention: ``target_type`` is one of ``MENTION_TARGETS``; everyone/here target the guild."""

    target_type: str
    target_id: int


@dataclass(frozen=True, slots=True)
class MessageCreated:
    """A message as it was posted (or as an export shows it, edits included).

    ``author_id`` is None only when the source does not know the sender. ``kind`` is the
    message type (``default``, ``reply``, ``thread_created``, a Telegram service action…);
    ``extra`` a JSON object with what has no column (embeds, stickers, forward origin…).
    """

    id: int
    guild_id: int
    channel_id: int
    author_id: int | None
    created_at: datetime
    content: str = ""
    thread_id: int | None = None
    edited_at: datetime | None = None
    reply_to_id: int | None = None
    is_bot: bool = False
    pinned: bool = False
    kind: str = "default"
    jump_url: str | None = None
    attachments: tuple[AttachmentInfo, ...] = ()
    mentions: tuple[MentionInfo, ...] = ()
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """A message edited at ``edited_at``. Fields left None are unchanged by the edit."""

    id: int
    guild_id: int
    channel_id: int
    edited_at: datetime
    content: str | None = None
    pinned: bool | None = None
    attachments: tuple[AttachmentInfo, ...] | None = None
    mentions: tuple[MentionInfo, ...] | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """A message deleted at ``deleted_at`` (kept, flagged ``deleted``)."""

    id: int
    guild_id: int
    channel_id: int
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class MessagesBulkDeleted:
    """Several messages of one channel deleted at once (Discord's bulk delete)."""

    ids: tuple[int, ...]
    guild_id: int
    channel_id: int
    deleted_at: datetime


# -- reactions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReactionAdded:
    """``user_id`` reacted with an emoji: custom when ``emoji_id`` is set, else unicode."""

    message_id: int
    guild_id: int
    channel_id: int
    user_id: int
    emoji_name: str
    at: datetime
    emoji_id: int | None = None
    animated: bool = False


@dataclass(frozen=True, slots=True)
class ReactionRemoved:
    """``user_id`` took their reaction back."""

    message_id: int
    guild_id: int
    channel_id: int
    user_id: int
    emoji_name: str
    at: datetime
    emoji_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReactionsCleared:
    """Every reaction of a message removed, or (``emoji_name`` given) every one of one emoji."""

    message_id: int
    guild_id: int
    channel_id: int
    at: datetime
    emoji_name: str | None = None
    emoji_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReactionCounted:
    """A message has ``count`` reactions with one emoji, reacting users unknown (exports)."""

    message_id: int
    guild_id: int
    channel_id: int
    emoji_name: str
    count: int
    emoji_id: int | None = None
    animated: bool = False


# -- members and commands ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member joined a guild (a Telegram ``chat_member`` join, a service message)."""

    guild_id: int
    user_id: int
    at: datetime
    nick: str | None = None


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member left (or was removed from) a guild."""

    guild_id: int
    user_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """A member's guild profile changed (nick; role ids when given replace the member's)."""

    guild_id: int
    user_id: int
    at: datetime
    nick: str | None = None
    role_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class CommandInvoked:
    """A command run by ``user_id`` (``guild_id`` None in a DM): one row of the command history."""

    user_id: int
    command: str
    started_at: datetime
    guild_id: int | None = None
    channel_id: int | None = None
    args: dict[str, Any] = field(default_factory=dict)
    duration_ms: int | None = None
    success: bool | None = None
    error: str | None = None


#: Anything the recorder and the importers accept.
Event = (
    GuildInfo
    | ChannelInfo
    | ThreadInfo
    | UserInfo
    | MessageCreated
    | MessageEdited
    | MessageDeleted
    | MessagesBulkDeleted
    | ReactionAdded
    | ReactionRemoved
    | ReactionsCleared
    | ReactionCounted
    | MemberJoined
    | MemberLeft
    | MemberUpdated
    | CommandInvoked
)
