"""discord.py objects turned into botdb's chat events (:mod:`botdb.recorder`).

Every function here is pure: it reads a discord.py object (or a raw gateway event) and returns
a frozen event dataclass, the same vocabulary the DiscordChatExporter importer produces, so a
bot that records live and later imports an export of the same channel ends up with the same
rows:

* a message in a thread has the thread's parent as ``channel_id`` and the thread as
  ``thread_id``;
* a direct message (no guild) is stored in a "guild" whose id is the DM channel's id
  (``chat_type`` ``private``, or ``group`` for a group DM);
* the message type becomes ``kind`` (``default``, ``reply``, ``thread_created``, ``pin``,
  ``join``, ``leave``, else discord.py's name of the type, e.g. ``chat_input_command``).

Raw events (``on_raw_*``) carry ids only: a raw event about a thread whose channel is not in
the client's cache keeps the thread's id as ``channel_id`` (nothing tells it apart from a
channel without the cache); pass ``client`` so that cached threads are resolved.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import discord
from discord.ext import commands

from botdb.recorder._events import (
    AttachmentInfo,
    ChannelInfo,
    CommandInvoked,
    GuildInfo,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    MentionInfo,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    MessagesBulkDeleted,
    ReactionAdded,
    ReactionRemoved,
    ReactionsCleared,
    ThreadInfo,
    UserInfo,
)

__all__ = [
    "app_command_invoked",
    "channel_info",
    "command_invoked",
    "guild_info",
    "member_joined",
    "member_left",
    "member_updated",
    "message_created",
    "message_deleted",
    "message_edited",
    "messages_bulk_deleted",
    "reaction_added",
    "reaction_removed",
    "reactions_cleared",
    "user_info",
]

_PLATFORM = "discord"
#: Message types whose ``kind`` has a platform-neutral name (as the importer names them).
_KINDS: Mapping[discord.MessageType, str] = {
    discord.MessageType.default: "default",
    discord.MessageType.reply: "reply",
    discord.MessageType.thread_created: "thread_created",
    discord.MessageType.pins_add: "pin",
    discord.MessageType.new_member: "join",
    discord.MessageType.recipient_add: "join",
    discord.MessageType.recipient_remove: "leave",
}
_EVERYONE = re.compile(r"(?<![\w`])@(everyone|here)\b")
_NAME = 255
_COMMAND = 100


def _text(value: str) -> str:
    """Text a database column can hold: a NUL (which PostgreSQL text and jsonb refuse) becomes
    U+FFFD and a lone surrogate (which UTF-8 cannot encode) ``?``; the length is kept."""
    if value.isascii() and "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _clip(value: object, length: int = _NAME) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return _text(text[:length])


def _json(value: Any) -> Any:
    """A JSON value (embeds, stickers) with every string made storable by :func:`_text`."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(key)): _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _jsonable(value: Any) -> Any:
    """A command argument as a JSON value: discord objects by id, the rest as text."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Sequence):
        return [_jsonable(item) for item in value]
    ident = getattr(value, "id", None)
    if isinstance(ident, int):
        return ident
    return str(value)


# -- where things are -------------------------------------------------------------------------


def _place_channel(channel: Any) -> tuple[int, int, int | None]:
    """``(guild_id, channel_id, thread_id)`` of a message's channel object."""
    guild = getattr(channel, "guild", None)
    if isinstance(channel, discord.Thread):
        return channel.guild.id, channel.parent_id, channel.id
    if guild is None:  # a DM or group DM: the chat is its own guild
        return channel.id, channel.id, None
    return guild.id, channel.id, None


def _place_ids(
    client: discord.Client | None, guild_id: int | None, channel_id: int
) -> tuple[int, int]:
    """``(guild_id, channel_id)`` of a raw event, a cached thread resolved to its parent."""
    if guild_id is None:
        return channel_id, channel_id
    if client is not None:
        channel = client.get_channel(channel_id)
        if isinstance(channel, discord.Thread):
            return guild_id, channel.parent_id
    return guild_id, channel_id


# -- entities ---------------------------------------------------------------------------------


def guild_info(guild: discord.Guild | discord.abc.PrivateChannel) -> GuildInfo:
    """A guild as :class:`~botdb.recorder.GuildInfo`; a DM or group DM channel as the
    ``private``/``group`` chat its messages are stored under."""
    if isinstance(guild, discord.Guild):
        return GuildInfo(guild.id, _PLATFORM, _clip(guild.name))
    if isinstance(guild, discord.GroupChannel):
        return GuildInfo(guild.id, _PLATFORM, _clip(guild.name), "group")
    recipient = getattr(guild, "recipient", None)
    name = _clip(recipient.name) if recipient is not None else None
    return GuildInfo(guild.id, _PLATFORM, name, "private")


def channel_info(channel: discord.abc.GuildChannel | discord.Thread) -> ChannelInfo | ThreadInfo:
    """A guild channel as :class:`~botdb.recorder.ChannelInfo` (``type`` is discord.py's
    name of the channel type, ``parent_id`` its category), a thread as
    :class:`~botdb.recorder.ThreadInfo`."""
    if isinstance(channel, discord.Thread):
        return ThreadInfo(channel.id, channel.guild.id, channel.parent_id, _clip(channel.name))
    return ChannelInfo(
        channel.id,
        channel.guild.id,
        _clip(channel.name),
        _clip(channel.type, 32),
        channel.category_id,
    )


def user_info(user: discord.abc.User) -> UserInfo:
    """A user or member as :class:`~botdb.recorder.UserInfo`: ``username`` is the account
    name, ``display_name`` the account-wide global name (not a guild nick), as
    ``db.users.ensure(user)`` / ``get_or_create(user)`` store them."""
    return UserInfo(
        user.id,
        _PLATFORM,
        username=_clip(user.name),
        display_name=_clip(user.global_name),
        is_bot=bool(user.bot),
    )


# -- messages ---------------------------------------------------------------------------------


def _attachments(message: discord.Message) -> tuple[AttachmentInfo, ...]:
    return tuple(
        AttachmentInfo(
            position=position,
            external_id=str(item.id),
            filename=_clip(item.filename),
            url=_text(item.url),
            content_type=_clip(item.content_type),
            size=item.size,
            width=item.width,
            height=item.height,
        )
        for position, item in enumerate(message.attachments)
    )


def _mentions(message: discord.Message, guild_id: int) -> tuple[MentionInfo, ...]:
    if not message.mention_everyone and "<" not in message.content:
        # No mention markup: skip discord.py's three regex scans, which were more than half
        # of message_created's time on a plain message (measured 17 -> 7.6 µs a message).
        return ()
    found: list[MentionInfo] = [MentionInfo("user", uid) for uid in message.raw_mentions]
    found += [MentionInfo("role", rid) for rid in message.raw_role_mentions]
    found += [MentionInfo("channel", cid) for cid in message.raw_channel_mentions]
    if message.mention_everyone:
        found += [MentionInfo(word, guild_id) for word in _EVERYONE.findall(message.content)]
    return tuple(dict.fromkeys(found))


def _extra(message: discord.Message) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if message.embeds:
        extra["embeds"] = [_json(embed.to_dict()) for embed in message.embeds]
    if message.stickers:
        extra["stickers"] = [{"id": s.id, "name": _clip(s.name)} for s in message.stickers]
    if message.webhook_id is not None:
        extra["webhook_id"] = message.webhook_id
    if message.application_id is not None:
        extra["application_id"] = message.application_id
    return extra or None


def message_created(message: discord.Message) -> MessageCreated:
    """A message as :class:`~botdb.recorder.MessageCreated`, with its attachments, mentions
    (users, roles, channels, ``@everyone``/``@here``), reply target and, in ``extra``, its
    embeds, stickers, webhook and application ids."""
    guild_id, channel_id, thread_id = _place_channel(message.channel)
    reference = message.reference
    reply_to = None
    if reference is not None and message.type is discord.MessageType.reply:
        reply_to = reference.message_id
    guild_part = "@me" if message.guild is None else str(guild_id)
    return MessageCreated(
        id=message.id,
        guild_id=guild_id,
        channel_id=channel_id,
        author_id=message.author.id,
        created_at=message.created_at,
        content=_text(message.content),
        thread_id=thread_id,
        edited_at=message.edited_at,
        reply_to_id=reply_to,
        is_bot=bool(message.author.bot),
        pinned=message.pinned,
        kind=_KINDS.get(message.type) or _clip(message.type.name, 32) or "default",
        jump_url=f"https://discord.com/channels/{guild_part}/{message.channel.id}/{message.id}",
        attachments=_attachments(message),
        mentions=_mentions(message, guild_id),
        extra=_extra(message),
    )


def message_edited(event: discord.RawMessageUpdateEvent | discord.Message) -> MessageEdited | None:
    """An edit (``on_raw_message_edit``'s payload, or the edited message) as
    :class:`~botdb.recorder.MessageEdited`: content, pinned flag, attachments, mentions and
    extra as they are after the edit.

    Returns None for an update that is not an edit by its author (no ``edited_at``: an embed
    unfurled by Discord, a poll's results), so that it does not mark the message edited.
    """
    message = event.message if isinstance(event, discord.RawMessageUpdateEvent) else event
    if message.edited_at is None:
        return None
    guild_id, channel_id, _ = _place_channel(message.channel)
    return MessageEdited(
        id=message.id,
        guild_id=guild_id,
        channel_id=channel_id,
        edited_at=message.edited_at,
        content=_text(message.content),
        pinned=message.pinned,
        attachments=_attachments(message),
        mentions=_mentions(message, guild_id),
        extra=_extra(message),
    )


def message_deleted(
    event: discord.RawMessageDeleteEvent, *, client: discord.Client | None = None
) -> MessageDeleted:
    """``on_raw_message_delete``'s payload as :class:`~botdb.recorder.MessageDeleted` (now),
    also for a message the client never cached."""
    guild_id, channel_id = _place_ids(client, event.guild_id, event.channel_id)
    return MessageDeleted(event.message_id, guild_id, channel_id, _now())


def messages_bulk_deleted(
    event: discord.RawBulkMessageDeleteEvent, *, client: discord.Client | None = None
) -> MessagesBulkDeleted:
    """``on_raw_bulk_message_delete``'s payload as :class:`~botdb.recorder.MessagesBulkDeleted`."""
    guild_id, channel_id = _place_ids(client, event.guild_id, event.channel_id)
    return MessagesBulkDeleted(tuple(sorted(event.message_ids)), guild_id, channel_id, _now())


# -- reactions --------------------------------------------------------------------------------


def _emoji_name(emoji: discord.PartialEmoji) -> str:
    # A custom emoji deleted from its guild comes without a name; its id still tells it apart.
    name = emoji.name or (str(emoji.id) if emoji.id is not None else "")
    return _clip(name) or ""


def reaction_added(
    event: discord.RawReactionActionEvent, *, client: discord.Client | None = None
) -> ReactionAdded:
    """``on_raw_reaction_add``'s payload as :class:`~botdb.recorder.ReactionAdded` (now);
    raw, so reactions on messages outside the client's cache are recorded too."""
    guild_id, channel_id = _place_ids(client, event.guild_id, event.channel_id)
    return ReactionAdded(
        event.message_id,
        guild_id,
        channel_id,
        event.user_id,
        _emoji_name(event.emoji),
        _now(),
        emoji_id=event.emoji.id,
        animated=event.emoji.animated,
    )


def reaction_removed(
    event: discord.RawReactionActionEvent, *, client: discord.Client | None = None
) -> ReactionRemoved:
    """``on_raw_reaction_remove``'s payload as :class:`~botdb.recorder.ReactionRemoved`."""
    guild_id, channel_id = _place_ids(client, event.guild_id, event.channel_id)
    return ReactionRemoved(
        event.message_id,
        guild_id,
        channel_id,
        event.user_id,
        _emoji_name(event.emoji),
        _now(),
        emoji_id=event.emoji.id,
    )


def reactions_cleared(
    event: discord.RawReactionClearEvent | discord.RawReactionClearEmojiEvent,
    *,
    client: discord.Client | None = None,
) -> ReactionsCleared:
    """``on_raw_reaction_clear`` (every reaction of a message) or
    ``on_raw_reaction_clear_emoji`` (every reaction with one emoji) as
    :class:`~botdb.recorder.ReactionsCleared`."""
    guild_id, channel_id = _place_ids(client, event.guild_id, event.channel_id)
    if isinstance(event, discord.RawReactionClearEmojiEvent):
        return ReactionsCleared(
            event.message_id,
            guild_id,
            channel_id,
            _now(),
            emoji_name=_emoji_name(event.emoji),
            emoji_id=event.emoji.id,
        )
    return ReactionsCleared(event.message_id, guild_id, channel_id, _now())


# -- members ----------------------------------------------------------------------------------


def member_joined(member: discord.Member) -> MemberJoined:
    """``on_member_join``'s member as :class:`~botdb.recorder.MemberJoined` at its
    ``joined_at`` (now when Discord did not say)."""
    return MemberJoined(
        member.guild.id, member.id, member.joined_at or _now(), nick=_clip(member.nick)
    )


def member_left(event: discord.RawMemberRemoveEvent | discord.Member) -> MemberLeft:
    """``on_raw_member_remove``'s payload (or a member) as :class:`~botdb.recorder.MemberLeft`
    (now); raw, so members outside the cache are recorded too."""
    if isinstance(event, discord.RawMemberRemoveEvent):
        return MemberLeft(event.guild_id, event.user.id, _now())
    return MemberLeft(event.guild.id, event.id, _now())


def member_updated(member: discord.Member) -> MemberUpdated:
    """A member's guild profile (nick and role ids, ``@everyone`` left out) as
    :class:`~botdb.recorder.MemberUpdated` (now)."""
    roles = tuple(role.id for role in member.roles if not role.is_default())
    return MemberUpdated(
        member.guild.id, member.id, _now(), nick=_clip(member.nick), role_ids=roles
    )


# -- commands ---------------------------------------------------------------------------------


def command_invoked(ctx: commands.Context[Any], *, success: bool | None = True) -> CommandInvoked:
    """A prefix (or hybrid) command run, from its :class:`~discord.ext.commands.Context`, as
    :class:`~botdb.recorder.CommandInvoked`.

    ``started_at`` is the invoking message's time (so the row's key is stable however often
    it is recorded); ``args`` maps the command's parameters to their converted values
    (discord objects by id, other objects as text).
    """
    command = ctx.command
    name = command.qualified_name if command is not None else (ctx.invoked_with or "")
    args: dict[str, Any] = {}
    if command is not None:
        skip = 2 if command.cog is not None else 1  # the cog (self) and ctx
        params = list(command.clean_params)
        for param, value in zip(params, ctx.args[skip:], strict=False):
            args[_text(param)] = _jsonable(value)
        for param, value in ctx.kwargs.items():
            args[_text(param)] = _jsonable(value)
    guild_id, channel_id, _ = _place_channel(ctx.channel)
    return CommandInvoked(
        user_id=ctx.author.id,
        command=_clip(name, _COMMAND) or "",
        started_at=ctx.message.created_at,
        guild_id=guild_id if ctx.guild is not None else None,
        channel_id=channel_id,
        args=args,
        success=success,
    )


def app_command_invoked(
    interaction: discord.Interaction[Any],
    command: discord.app_commands.Command[Any, ..., Any] | discord.app_commands.ContextMenu,
    *,
    success: bool | None = True,
) -> CommandInvoked:
    """A slash or context-menu command run (``on_app_command_completion``'s arguments) as
    :class:`~botdb.recorder.CommandInvoked`, started at the interaction's time."""
    args = {_text(name): _jsonable(value) for name, value in interaction.namespace}
    channel_id = interaction.channel_id
    guild_id: int | None = interaction.guild_id
    if isinstance(interaction.channel, discord.Thread):
        channel_id = interaction.channel.parent_id
    return CommandInvoked(
        user_id=interaction.user.id,
        command=_clip(command.qualified_name, _COMMAND) or "",
        started_at=interaction.created_at,
        guild_id=guild_id,
        channel_id=channel_id,
        args=args,
        success=success,
    )
