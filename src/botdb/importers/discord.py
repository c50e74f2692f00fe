"""Import DiscordChatExporter JSON exports (every version) into the chat tables.

One export file is one channel (or thread, or DM): ``guild``, ``channel`` and ``messages``
(plus ``dateRange``, ``exportedAt`` and ``messageCount``, which are not needed). Each file is
turned into the shared chat events (:mod:`botdb.recorder._events`) and written by the
recorder's batch writer, so imported history and live events land in the same rows, keyed
by the same ids. All files of one call are imported in ONE transaction.

What is read, and how older exports differ:

* Ids are strings of digits. Times carry an offset (``+01:00`` local or ``+00:00``) and 0 to
  7 fractional digits; they are stored in UTC.
* ``author`` becomes a user (``name``, ``nickname`` as display name, ``isBot``).
* ``attachments`` become attachment rows; ``mentions`` (absent in old exports) user
  mentions, and ``@everyone``/``@here`` in the content a mention of the guild.
* ``reactions``: the count of each emoji is kept in ``reaction_counts``; when the export
  lists the reacting ``users`` (newer versions), each becomes a reaction row dated with the
  message's time (exports carry no reaction times). A custom emoji has an id; a standard one
  an empty or null id and its unicode character as name.
* ``reference`` of a ``Reply`` is the replied-to message. ``isPinned`` and
  ``timestampEdited`` are kept. The message ``type`` becomes ``kind`` in snake case
  (``GuildMemberJoin`` is ``join``, ``ChannelPinnedMessage`` is ``pin``); a member-join
  message also records the join. Embeds, stickers, components, the interaction and
  whatever else has no column go into ``extra``.
* Threads are exported as files of their own whose channel is a ``…Thread`` and whose
  ``category``/``categoryId`` is the parent channel; a ``ThreadCreated`` message in the parent
  links the thread (its ``reference.channelId``) too, so a thread file without a parent in
  its header is placed under the channel that announced it. Thread files are imported after
  the channel files of the same call. Messages of a thread have the parent as
  ``channel_id`` and the thread as ``thread_id``.
* Direct messages: the export's guild is "Direct Messages" with id 0. The chat becomes a
  guild whose id is the DM channel's id (``chat_type`` ``private``, or ``group`` for a group
  DM), as a bot recording the DM live would store it.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from botdb import errors
from botdb.importers._chat import (
    ChatImportDatabase,
    ChatImportReport,
    ExportReader,
    Progress,
    check_sources,
    clip,
    count_of,
    ensure_schema,
    finish,
    message_error,
    parse_iso,
    snake_case,
    started,
    write_all,
)
from botdb.recorder._events import (
    AttachmentInfo,
    ChannelInfo,
    CommandInvoked,
    Event,
    GuildInfo,
    MemberJoined,
    MemberLeft,
    MentionInfo,
    MessageCreated,
    ReactionAdded,
    ReactionCounted,
    ThreadInfo,
    UserInfo,
)

__all__ = ["DiscordExport", "import_discord", "parse_discord"]

_PLATFORM = "discord"
_MESSAGES = "messages.item"
_HEADER = ("guild", "channel")
#: Message types whose ``kind`` has a platform-neutral name.
_KINDS = {
    "Default": "default",
    "Reply": "reply",
    "ThreadCreated": "thread_created",
    "ChannelPinnedMessage": "pin",
    "GuildMemberJoin": "join",
    "RecipientAdd": "join",
    "RecipientRemove": "leave",
}
#: DiscordChatExporter's channel kinds, as discord.py names them (``channels.type``).
_CHANNEL_TYPES = {
    "GuildTextChat": "text",
    "DirectTextChat": "private",
    "DirectGroupTextChat": "group",
    "GuildVoiceChat": "voice",
    "GuildCategory": "category",
    "GuildNews": "news",
    "GuildNewsThread": "news_thread",
    "GuildPublicThread": "public_thread",
    "GuildPrivateThread": "private_thread",
    "GuildStageVoice": "stage_voice",
    "GuildDirectory": "directory",
    "GuildForum": "forum",
    "GuildStore": "store",
}
#: Message fields turned into columns or rows; the rest (when not empty) goes to ``extra``.
_CONSUMED = frozenset(
    {
        "id",
        "type",
        "timestamp",
        "timestampEdited",
        "isPinned",
        "content",
        "author",
        "attachments",
        "mentions",
        "reactions",
    }
)
_EVERYONE = re.compile(r"(?<![\w`])@(everyone|here)\b")
_DM_GUILD_ID = 0


@dataclass
class DiscordExport:
    """The header of one export file: where its messages go."""

    path: Path
    guild_id: int
    guild_name: str | None
    channel_id: int
    channel_name: str | None
    channel_type: str
    parent_id: int | None
    parent_name: str | None
    is_dm: bool
    is_thread: bool
    extra: dict[str, Any] = field(default_factory=dict)


def _snowflake(value: Any, what: str) -> int:
    """A Discord id from its string (or number) form."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an id, not {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value.strip().isdigit():
        result = int(value)
    else:
        raise ValueError(f"{what} must be an id (a string of digits), not {value!r}")
    if not 0 <= result < 1 << 63:
        raise ValueError(f"{what} {value!r} is out of range")
    return result


def _optional_id(value: Any, what: str) -> int | None:
    if value in (None, "", "0", 0):
        return None
    return _snowflake(value, what)


def read_header(path: Path) -> DiscordExport:
    """The guild and channel of an export, read from its head (blocking).

    Raises:
        DataError: not JSON, or not a DiscordChatExporter export (a Telegram export says so).
    """
    reader = ExportReader(path, (*_HEADER, _MESSAGES, "name", "type"), object_start=("chats",))
    found: dict[str, Any] = {}
    items = iter(reader)
    try:
        for prefix, value in items:
            if prefix in (_MESSAGES, "chats"):
                found[prefix] = value
                break
            found[prefix] = value
            if "guild" in found and "channel" in found:
                break
    finally:
        items.close()  # type: ignore[attr-defined]
    guild, channel = found.get("guild"), found.get("channel")
    if not isinstance(guild, dict) or not isinstance(channel, dict):
        hint = (
            ": it looks like a Telegram Desktop export (use `botdb import telegram`)"
            if "chats" in found or ("name" in found and "type" in found)
            else " (it has no guild and channel objects before its messages)"
        )
        raise errors.DataError(f"{path.name} is not a DiscordChatExporter export{hint}")
    try:
        guild_id = _snowflake(guild.get("id"), "guild.id")
        channel_id = _snowflake(channel.get("id"), "channel.id")
        kind = channel.get("type")
        kind = kind if isinstance(kind, str) else "GuildTextChat"
        is_dm = guild_id == _DM_GUILD_ID or kind.startswith("Direct")
        parent_id = _optional_id(channel.get("categoryId"), "channel.categoryId")
    except ValueError as exc:
        raise errors.DataError(f"{path.name}: bad export header: {exc}") from exc
    return DiscordExport(
        path=path,
        guild_id=channel_id if is_dm else guild_id,
        guild_name=clip(channel.get("name")) if is_dm else clip(guild.get("name")),
        channel_id=channel_id,
        channel_name=clip(channel.get("name")),
        channel_type=_CHANNEL_TYPES.get(kind, snake_case(kind)),
        parent_id=parent_id,
        parent_name=clip(channel.get("category")) if parent_id is not None else None,
        is_dm=is_dm,
        is_thread="Thread" in kind,
    )


class _Parser:
    """Turns the files of one import into events; remembers what it has already announced."""

    def __init__(
        self, report: ChatImportReport, progress: Progress | None, naive_tz: tzinfo
    ) -> None:
        self.report = report
        self.progress = progress
        self.naive_tz = naive_tz
        self.guilds: set[int] = set()
        self.channels: set[int] = set()
        self.threads: set[int] = set()
        self.users: set[int] = set()
        #: thread id -> (parent channel id, name), from ThreadCreated messages.
        self.thread_parents: dict[int, tuple[int, str | None]] = {}
        self.done_bytes = 0

    def _progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.done_bytes + done, self.report.bytes)

    # -- entities -----------------------------------------------------------------------

    def _guild(self, export: DiscordExport) -> Iterator[Event]:
        if export.guild_id in self.guilds:
            return
        self.guilds.add(export.guild_id)
        self.report.guilds += 1
        chat_type = (
            ("group" if export.channel_type == "group" else "private") if export.is_dm else None
        )
        yield GuildInfo(export.guild_id, _PLATFORM, export.guild_name, chat_type)

    def _channel(
        self, channel_id: int, guild_id: int, name: str | None, kind: str | None, parent: int | None
    ) -> Iterator[Event]:
        if channel_id in self.channels:
            return
        self.channels.add(channel_id)
        self.report.channels += 1
        yield ChannelInfo(channel_id, guild_id, name, kind, parent)

    def _place(self, export: DiscordExport) -> tuple[int, int | None, list[Event]]:
        """The channel and thread the file's messages go to, and the events announcing them."""
        events: list[Event] = list(self._guild(export))
        if export.is_thread:
            parent_id, parent_name = export.parent_id, export.parent_name
            if parent_id is None and export.channel_id in self.thread_parents:
                parent_id, _ = self.thread_parents[export.channel_id]
            if parent_id is not None:
                events += self._channel(parent_id, export.guild_id, parent_name, None, None)
                if export.channel_id not in self.threads:
                    self.threads.add(export.channel_id)
                    self.report.threads += 1
                    thread = ThreadInfo(
                        export.channel_id, export.guild_id, parent_id, export.channel_name
                    )
                    events.append(thread)
                return parent_id, export.channel_id, events
            self.report.skip("thread file without a known parent: imported as a channel")
        category = None
        if export.parent_id is not None and not export.is_thread:
            category = export.parent_id
            events += self._channel(category, export.guild_id, export.parent_name, "category", None)
        events += self._channel(
            export.channel_id,
            export.guild_id,
            export.channel_name,
            export.channel_type,
            category,
        )
        return export.channel_id, None, events

    def _user(self, raw: Any, what: str) -> tuple[int, bool, list[Event]]:
        if not isinstance(raw, dict):
            raise ValueError(f"{what} must be an object, not {type(raw).__name__}")
        user_id = _snowflake(raw.get("id"), f"{what}.id")
        if user_id == 0:
            raise ValueError(f"{what}.id must be positive")
        is_bot = raw.get("isBot") is True
        if user_id in self.users:
            return user_id, is_bot, []
        self.users.add(user_id)
        self.report.users += 1
        nickname = raw.get("nickname")
        return (
            user_id,
            is_bot,
            [
                UserInfo(
                    user_id,
                    _PLATFORM,
                    username=clip(raw.get("name")),
                    display_name=clip(nickname) if nickname else None,
                    is_bot=is_bot,
                )
            ],
        )

    # -- messages -----------------------------------------------------------------------

    def file_events(self, export: DiscordExport) -> Iterator[Event]:
        channel_id, thread_id, events = self._place(export)
        yield from events
        reader = ExportReader(
            export.path, (_MESSAGES,), counted=(_MESSAGES,), progress=self._progress
        )
        for _, raw in reader:
            try:
                yield from self._message(export, channel_id, thread_id, raw)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise message_error(reader, raw, exc) from exc
        self.done_bytes += os.path.getsize(export.path)

    def _message(
        self, export: DiscordExport, channel_id: int, thread_id: int | None, raw: Any
    ) -> Iterator[Event]:
        if not isinstance(raw, dict):
            raise ValueError(f"a message must be an object, not {type(raw).__name__}")
        guild_id = export.guild_id
        message_id = _snowflake(raw["id"], "id")
        created = parse_iso(raw["timestamp"], self.naive_tz)
        edited_raw = raw.get("timestampEdited")
        edited = parse_iso(edited_raw, self.naive_tz) if edited_raw else None
        author_id, is_bot, users = self._user(raw["author"], "author")
        yield from users
        kind_name = raw.get("type") or "Default"
        if not isinstance(kind_name, str):
            raise ValueError(f"type must be a string, not {kind_name!r}")
        kind = _KINDS.get(kind_name) or snake_case(kind_name)
        content = raw.get("content") or ""
        if not isinstance(content, str):
            raise ValueError(f"content must be a string, not {type(content).__name__}")
        reference = raw.get("reference")
        reply_to = None
        if isinstance(reference, dict) and kind_name == "Reply":
            reply_to = _optional_id(reference.get("messageId"), "reference.messageId")
        mentions: list[MentionInfo] = []
        for index, mentioned in enumerate(raw.get("mentions") or ()):
            target, _, more = self._user(mentioned, f"mentions[{index}]")
            yield from more
            mentions.append(MentionInfo("user", target))
        mentions.extend(
            MentionInfo(word, guild_id) for word in dict.fromkeys(_EVERYONE.findall(content))
        )
        attachments = tuple(
            _attachment(position, item)
            for position, item in enumerate(raw.get("attachments") or ())
        )
        if kind_name == "ThreadCreated" and isinstance(reference, dict):
            thread = _optional_id(reference.get("channelId"), "reference.channelId")
            if thread is not None and thread not in self.threads:
                self.thread_parents[thread] = (channel_id, clip(content) or None)
                self.threads.add(thread)
                self.report.threads += 1
                yield ThreadInfo(thread, guild_id, channel_id, clip(content) or None)
        command = self._command(raw.get("interaction"), guild_id, channel_id, created)
        yield from command
        extra = {
            key: value
            for key, value in raw.items()
            if key not in _CONSUMED and value not in (None, "", [], {})
        }
        if reply_to is not None and isinstance(reference, dict):
            extra.pop("reference", None)
        jump_guild = "@me" if export.is_dm else str(guild_id)
        yield MessageCreated(
            id=message_id,
            guild_id=guild_id,
            channel_id=channel_id,
            author_id=author_id,
            created_at=created,
            content=content,
            thread_id=thread_id,
            edited_at=edited,
            reply_to_id=reply_to,
            is_bot=is_bot,
            pinned=raw.get("isPinned") is True,
            kind=kind,
            jump_url=f"https://discord.com/channels/{jump_guild}/{export.channel_id}/{message_id}",
            attachments=attachments,
            mentions=tuple(dict.fromkeys(mentions)),
            extra=extra or None,
        )
        report = self.report
        report.messages += 1
        report.edited += edited is not None
        report.attachments += len(attachments)
        report.mentions += len(mentions)
        if kind_name in ("GuildMemberJoin", "RecipientAdd", "RecipientRemove"):
            yield from self._membership(kind_name, guild_id, author_id, mentions, created)
        for index, reaction in enumerate(raw.get("reactions") or ()):
            yield from self._reaction(
                guild_id, channel_id, message_id, created, reaction, f"reactions[{index}]"
            )

    def _command(
        self, interaction: Any, guild_id: int, channel_id: int, at: datetime
    ) -> list[Event]:
        """The slash command a bot's message answers, as a command-history row."""
        if not isinstance(interaction, dict) or not isinstance(interaction.get("name"), str):
            return []
        user_id, _, events = self._user(interaction.get("user"), "interaction.user")
        self.report.commands += 1
        return [
            *events,
            CommandInvoked(
                user_id,
                interaction["name"][:100],
                at,
                guild_id=guild_id,
                channel_id=channel_id,
                args={"interaction_id": interaction.get("id")},
            ),
        ]

    def _membership(
        self,
        kind_name: str,
        guild_id: int,
        author_id: int,
        mentions: list[MentionInfo],
        at: datetime,
    ) -> Iterator[Event]:
        # A join message is by the member; a group DM's add/remove names the member mentioned.
        targets = [m.target_id for m in mentions if m.target_type == "user"] or [author_id]
        for user_id in targets:
            if kind_name == "RecipientRemove":
                self.report.leaves += 1
                yield MemberLeft(guild_id, user_id, at)
            else:
                self.report.joins += 1
                yield MemberJoined(guild_id, user_id, at)

    def _reaction(
        self,
        guild_id: int,
        channel_id: int,
        message_id: int,
        at: datetime,
        raw: Any,
        what: str,
    ) -> Iterator[Event]:
        if not isinstance(raw, dict) or not isinstance(raw.get("emoji"), dict):
            raise ValueError(f"{what} must be an object with an emoji")
        emoji = raw["emoji"]
        emoji_id = _optional_id(emoji.get("id"), f"{what}.emoji.id")
        name = emoji.get("name") or (str(emoji_id) if emoji_id is not None else None)
        if not isinstance(name, str):
            raise ValueError(f"{what}.emoji has neither a name nor an id")
        count = count_of(raw.get("count", 0), f"{what}.count")
        animated = emoji.get("isAnimated") is True
        name = name[:255]
        self.report.reaction_counts += 1
        yield ReactionCounted(message_id, guild_id, channel_id, name, count, emoji_id, animated)
        for index, user in enumerate(raw.get("users") or ()):
            user_id, _, more = self._user(user, f"{what}.users[{index}]")
            yield from more
            self.report.reactions += 1
            yield ReactionAdded(
                message_id, guild_id, channel_id, user_id, name, at, emoji_id, animated
            )


def _attachment(position: int, raw: Any) -> AttachmentInfo:
    if not isinstance(raw, dict):
        raise ValueError(f"attachments[{position}] must be an object")
    filename = clip(raw.get("fileName"))
    size = raw.get("fileSizeBytes")
    if size is not None:
        size = count_of(size, f"attachments[{position}].fileSizeBytes", bits=63)
    external = raw.get("id")
    return AttachmentInfo(
        position=position,
        external_id=clip(external) if external not in (None, "") else None,
        filename=filename,
        url=raw.get("url") if isinstance(raw.get("url"), str) else None,
        content_type=mimetypes.guess_type(filename)[0] if filename else None,
        size=size,
    )


def parse_discord(
    *paths: str | os.PathLike[str],
    report: ChatImportReport | None = None,
    progress: Progress | None = None,
    naive_tz: tzinfo = UTC,
) -> Iterator[Event]:
    """The chat events of DiscordChatExporter JSON files, in import order (blocking I/O).

    Channel files come first, thread files after them, each in the order given. Nothing is
    written: :func:`import_discord` writes these events.

    Raises:
        ConfigurationError: a missing file or a directory.
        DataError: an empty file, invalid or truncated JSON, another kind of export, a
            message with a field of the wrong type (the message and byte offset are named).
    """
    sources = check_sources(paths)
    report = report if report is not None else ChatImportReport(_PLATFORM)
    exports = [read_header(path) for path in sources]
    report.files = [str(export.path) for export in exports]
    report.bytes = sum(os.path.getsize(export.path) for export in exports)
    parser = _Parser(report, progress, naive_tz)
    for export in sorted(exports, key=lambda e: e.is_thread):
        yield from parser.file_events(export)


async def import_discord(
    db: ChatImportDatabase,
    *paths: str | os.PathLike[str],
    batch_size: int = 20000,
    progress: Progress | None = None,
    naive_tz: tzinfo = UTC,
) -> ChatImportReport:
    """Import DiscordChatExporter JSON exports into ``db`` in one transaction.

    Args:
        db: a connected Database with the chat tables (``botdb init``).
        paths: export files (channels, threads, DMs); only read, never changed.
        batch_size: events per batch handed to the writer.
        progress: ``progress(bytes_read, bytes_total)`` while the files are read.
        naive_tz: the zone of a time written without an offset (no known version does).

    Returns:
        What was imported (counted from the files). Importing the same files again changes
        nothing and returns the same counts.

    Raises:
        ConfigurationError: a missing file or a directory; ``batch_size`` below 1.
        DataError: an empty, malformed or truncated file, or not a DiscordChatExporter
            export; nothing is written.
        UndefinedTableError: the database has no chat tables (run ``botdb init``).

    Example:
        >>> report = await import_discord(db, "general.json", "general-thread.json")
        >>> report.messages, report.reaction_counts
        (1234, 56)
    """
    if batch_size < 1:
        raise errors.ConfigurationError("batch_size must be at least 1")
    start = started()
    report = ChatImportReport(_PLATFORM)
    await ensure_schema(db)
    events = parse_discord(*paths, report=report, progress=progress, naive_tz=naive_tz)
    await write_all(db, events, report, platform=_PLATFORM, batch_size=batch_size)
    return finish(report, start)
