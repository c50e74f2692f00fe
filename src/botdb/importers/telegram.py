"""Import a Telegram Desktop JSON export (``result.json``) into the chat tables.

Two shapes are read: a single chat (top-level ``name``, ``type``, ``id``, ``messages``) and
a whole account (``chats.list[]`` and ``left_chats.list[]``, each a chat of that shape). The
file is turned into the shared chat events (:mod:`botdb.recorder._events`) and written by
the recorder's batch writer in ONE transaction, so imported history and live events meet in
the same rows.

Ids are the ones a bot sees through the Bot API, not the export's bare ids:

==========================================  ==================================  ============
export ``type``                             chat id                             chat_type
==========================================  ==================================  ============
``personal_chat``, ``bot_chat``,            the user's id (the export's ``id``)  private
``saved_messages``
``private_group``                           ``-id``                             group
``private_supergroup``, ``public_supergroup``  ``-(10**12 + id)`` (``-100…``)   supergroup
``private_channel``, ``public_channel``     ``-(10**12 + id)`` (``-100…``)      channel
==========================================  ==================================  ============

A chat is a guild and a channel with that id; its messages are keyed ``(id, chat id)``.

Senders: ``from_id`` is ``"user123"`` (or a bare number in old exports), or ``"channel123"``
/ ``"chat123"`` for a message sent on behalf of a chat. Such a message gets the author the Bot
API gives it: Telegram's placeholder user ``1087968824`` (GroupAnonymousBot) for an
anonymous administrator of the chat itself, ``136817688`` (Channel_Bot) for a channel (also
every post of a channel); the sending chat's id is kept in ``extra["sender_chat_id"]``.

Messages: ``text`` is a string or a list of strings and entities (``{type, text, …}``); the
content is their text, and ``mention_name`` entities (with a ``user_id``) become mentions.
Times come from ``date_unixtime``/``edited_unixtime``; exports older than those fields only
have local times without an offset, read in ``naive_tz`` (UTC unless told). A photo or a file
becomes an attachment (name, type, size, dimensions). ``reply_to_message_id`` is the replied-to
message. Forum topics: a ``topic_created`` service message opens a topic whose id is that
message's id (the Bot API's ``message_thread_id``); a message replying to it, or to a message
in it, is in that topic. ``reactions`` keep their counts (``reaction_counts``), and each
``recent`` reacting user with a date becomes a reaction row. Forwarding, signatures,
``via_bot``, media details and a service message's details go into ``extra``.

Service messages are stored as messages whose ``kind`` is the action (``join``, ``leave``,
``pin``, ``thread_created``, or the action's own name). Joins and leaves are also recorded
as member events: ``join_group_by_link``/``join_group_by_request`` name the member by id; an
``invite_members``, ``create_group`` or ``remove_members`` names members only by their display
name, which is resolved to an id when exactly one sender of the chat has that name
(otherwise it is counted in ``report.unresolved``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import PurePosixPath
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
    parse_unix,
    started,
    write_all,
)
from botdb.recorder._events import (
    AttachmentInfo,
    ChannelInfo,
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

__all__ = ["CHANNEL_BOT_ID", "GROUP_ANONYMOUS_BOT_ID", "import_telegram", "parse_telegram"]

_PLATFORM = "telegram"
#: The user the Bot API shows as the sender of a message sent on behalf of a channel.
CHANNEL_BOT_ID = 136817688
#: The user the Bot API shows as the sender of an anonymous group administrator's message.
GROUP_ANONYMOUS_BOT_ID = 1087968824
_SUPERGROUP_OFFSET = 10**12

#: export chat type -> chat_type (the Bot API id follows from it, see bot_api_chat_id)
_CHAT_TYPES: dict[str, str] = {
    "personal_chat": "private",
    "bot_chat": "private",
    "saved_messages": "private",
    "private_group": "group",
    "private_supergroup": "supergroup",
    "public_supergroup": "supergroup",
    "private_channel": "channel",
    "public_channel": "channel",
}
_SERVICE_KINDS = {
    "join_group_by_link": "join",
    "join_group_by_request": "join",
    "invite_members": "join",
    "remove_members": "leave",
    "pin_message": "pin",
    "topic_created": "thread_created",
    "create_group": "create_group",
}
_CONSUMED = frozenset(
    {
        "id",
        "type",
        "date",
        "date_unixtime",
        "edited",
        "edited_unixtime",
        "from",
        "from_id",
        "actor",
        "actor_id",
        "text",
        "text_entities",
        "reactions",
        "reply_to_message_id",
        "photo",
        "photo_file_size",
        "file",
        "file_name",
        "file_size",
        "mime_type",
        "width",
        "height",
    }
)
_MEMBERSHIP = frozenset(
    {
        "join_group_by_link",
        "join_group_by_request",
        "invite_members",
        "create_group",
        "remove_members",
    }
)
_SKIPPED_FILE = "("  # "(File not included. …)" and the like: no file in the export


def bot_api_chat_id(kind: str, bare_id: int) -> int:
    """The chat id a bot sees for an export's chat ``type`` and bare ``id``."""
    chat_type = _CHAT_TYPES[kind]
    if chat_type == "private":
        return bare_id
    if chat_type == "group":
        return -bare_id
    return -(_SUPERGROUP_OFFSET + bare_id)


@dataclass
class _Chat:
    """The chat whose messages are being read, and what is kept about it until its end."""

    id: int
    bare_id: int
    kind: str
    chat_type: str
    name: str | None
    #: display name -> user ids that sent (or reacted, or acted) with it
    names: dict[str, set[int]] = field(default_factory=dict)
    #: (time, is a leave, member ids, member names still to resolve)
    membership: list[tuple[datetime, bool, list[int], list[str]]] = field(default_factory=list)
    topics: set[int] = field(default_factory=set)
    #: message id -> its topic, for messages in a topic (forum chats only)
    topic_of: dict[int, int] = field(default_factory=dict)


def _int(value: Any, what: str) -> int:
    """An integer of the file (a number, or digits in a string) that fits in 64 bits."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"{what} {value} does not fit in 64 bits")
    return value


def _peer(value: Any, what: str) -> tuple[str, int]:
    """``("user", 123)`` from ``"user123"``, ``"channel123"``, ``"chat123"`` or a bare number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "user", _int(value, what)
    if isinstance(value, str):
        for prefix in ("user", "channel", "chat"):
            if value.startswith(prefix) and value[len(prefix) :].isdigit():
                return prefix, _int(value[len(prefix) :], what)
        if value.isdigit():
            return "user", _int(value, what)
    raise ValueError(f"{what} must be a peer id like 'user123', not {value!r}")


class _Parser:
    def __init__(self, report: ChatImportReport, reader: ExportReader, naive_tz: tzinfo) -> None:
        self.report = report
        self.reader = reader
        self.naive_tz = naive_tz
        #: user id -> the display name announced (None: announced without one)
        self.users: dict[int, str | None] = {}
        self.chats: set[int] = set()
        self.chat: _Chat | None = None
        self.header: dict[str, Any] = {}
        self.skipping = False

    # -- the file -----------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        any_chat = False
        for path, value in self.reader:
            key = path.rpartition(".")[2]
            if path in ("guild", "channel"):
                raise self.reader.error(
                    "not a Telegram Desktop export: it looks like a DiscordChatExporter "
                    "export (use `botdb import discord`)"
                )
            if path.endswith("list.item"):  # a new chat of an account export
                yield from self._end_chat()
                self.header = {}
                continue
            if key in ("name", "type", "id"):
                self.header[key] = value
                continue
            any_chat = True
            if self.chat is None and not self.skipping:
                yield from self._start_chat()
            if self.skipping:
                self.report.skip(f"message of a {self.header.get('type')!r} chat")
                continue
            try:
                yield from self._message(value)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise message_error(self.reader, value, exc) from exc
        yield from self._end_chat()
        if not any_chat and not self.chats and "type" not in self.header:
            raise self.reader.error(
                "not a Telegram Desktop export (no chat with messages, no chats list)"
            )

    def _start_chat(self) -> Iterator[Event]:
        header = self.header
        kind, bare = header.get("type"), header.get("id")
        if kind is None or bare is None:
            raise self.reader.error(
                "not a Telegram Desktop export: messages come before the chat's type and id"
            )
        if kind not in _CHAT_TYPES:
            self.skipping = True
            return
        try:
            bare_id = _int(bare, "the chat id")
        except ValueError as exc:
            raise self.reader.error(str(exc)) from exc
        chat_id = bot_api_chat_id(kind, bare_id)
        chat_type = _CHAT_TYPES[kind]
        name = clip(header.get("name"))
        self.chat = _Chat(chat_id, bare_id, kind, chat_type, name)
        if chat_id in self.chats:
            return
        self.chats.add(chat_id)
        self.report.guilds += 1
        self.report.channels += 1
        yield GuildInfo(chat_id, _PLATFORM, None if chat_type == "private" else name, chat_type)
        yield ChannelInfo(chat_id, chat_id, name, chat_type)

    def _end_chat(self) -> Iterator[Event]:
        chat, self.chat, self.skipping = self.chat, None, False
        if chat is None:
            return
        for at, leave, ids, names in sorted(chat.membership, key=lambda item: item[0]):
            targets = list(ids)
            for name in names:
                found = chat.names.get(name)
                if found is not None and len(found) == 1:
                    targets.extend(found)
                else:
                    self.report.unresolved += 1
            for user_id in dict.fromkeys(targets):
                if leave:
                    self.report.leaves += 1
                    yield MemberLeft(chat.id, user_id, at)
                else:
                    self.report.joins += 1
                    yield MemberJoined(chat.id, user_id, at)

    # -- users --------------------------------------------------------------------------

    def _sender(
        self, chat: _Chat, peer: Any, name: Any, what: str
    ) -> tuple[int, int | None, list[Event]]:
        """``(author id, sending chat id or None, events)`` for a ``from_id``-like value."""
        kind, bare = _peer(peer, what)
        if kind == "user":
            if bare <= 0:
                raise ValueError(f"{what} must be a positive user id, not {peer!r}")
            if isinstance(name, str):
                chat.names.setdefault(name, set()).add(bare)
            is_bot = chat.kind == "bot_chat" and bare == chat.bare_id
            return bare, None, self._user(bare, clip(name), is_bot)
        sender_chat = -bare if kind == "chat" else -(_SUPERGROUP_OFFSET + bare)
        if sender_chat == chat.id and chat.chat_type in ("group", "supergroup"):
            user = GROUP_ANONYMOUS_BOT_ID
            events = self._user(user, "Group", True, "GroupAnonymousBot")
        else:
            user = CHANNEL_BOT_ID
            events = self._user(user, "Channel", True, "Channel_Bot")
        return user, sender_chat, events

    def _user(
        self, user_id: int, name: str | None, is_bot: bool, username: str | None = None
    ) -> list[Event]:
        known = self.users.get(user_id, False)
        if known is not False and (known is not None or name is None):
            return []  # announced already, and with a name if one is known
        self.users[user_id] = name
        self.report.users += known is False
        return [
            UserInfo(
                user_id,
                _PLATFORM,
                username=username,
                display_name=name,
                is_bot=is_bot or None,
            )
        ]

    # -- messages -----------------------------------------------------------------------

    def _time(self, message: dict[str, Any], key: str) -> datetime | None:
        unix = message.get(f"{key}_unixtime")
        if unix is not None:
            return parse_unix(unix)
        local = message.get(key)
        return parse_iso(local, self.naive_tz) if local is not None else None

    def _message(self, message: Any) -> Iterator[Event]:
        chat = self.chat
        assert chat is not None  # set by _start_chat before any message
        if not isinstance(message, dict):
            raise ValueError(f"a message must be an object, not {type(message).__name__}")
        message_type = message.get("type", "message")
        message_id = _int(message["id"], "id")
        if message_type not in ("message", "service"):
            self.report.skip(f"{message_type} message")
            return
        created = self._time(message, "date")
        if created is None:
            raise KeyError("date")
        edited = self._time(message, "edited")
        if edited is not None and edited < created:
            edited = None  # old exports write the epoch (in local time) for "never edited"
        service = message_type == "service"
        action = message.get("action") if service else None
        if service and not isinstance(action, str):
            action = "custom" if "information_text" in message else "unknown"
        peer_key, name_key = ("actor_id", "actor") if service else ("from_id", "from")
        author: int | None = None
        sender_chat = None
        if message.get(peer_key) is not None:
            author, sender_chat, users = self._sender(
                chat, message[peer_key], message.get(name_key), peer_key
            )
            yield from users
        elif chat.chat_type == "channel" and not service:
            author, _, users = self._sender(chat, f"channel{chat.bare_id}", None, peer_key)
            sender_chat = chat.id
            yield from users
        content, mentions = _text(message)
        thread_id, reply_to = self._thread(chat, message_id, message.get("reply_to_message_id"))
        if action == "topic_created":
            title = clip(message.get("title"))
            chat.topics.add(message_id)
            self.report.threads += 1
            thread_id = message_id
            yield ThreadInfo(message_id, chat.id, chat.id, title)
        attachment = _attachment(message)
        extra = {
            key: value
            for key, value in message.items()
            if key not in _CONSUMED and value not in (None, "", [], {})
        }
        if sender_chat is not None:
            extra["sender_chat_id"] = sender_chat
        kind = "default"
        if service:
            kind = _SERVICE_KINDS.get(str(action), str(action))[:32]
        yield MessageCreated(
            id=message_id,
            guild_id=chat.id,
            channel_id=chat.id,
            author_id=author,
            created_at=created,
            content=content,
            thread_id=thread_id,
            edited_at=edited,
            reply_to_id=reply_to,
            is_bot=author in (CHANNEL_BOT_ID, GROUP_ANONYMOUS_BOT_ID)
            or (chat.kind == "bot_chat" and author == chat.bare_id),
            kind=kind,
            jump_url=(
                f"https://t.me/c/{chat.bare_id}/{message_id}"
                if chat.chat_type in ("supergroup", "channel")
                else None
            ),
            attachments=(attachment,) if attachment is not None else (),
            mentions=mentions,
            extra=extra or None,
        )
        report = self.report
        report.messages += 1
        report.edited += edited is not None
        report.attachments += attachment is not None
        report.mentions += len(mentions)
        if action in _MEMBERSHIP:
            self._membership(chat, message, str(action), author, created)
        for index, reaction in enumerate(message.get("reactions") or ()):
            yield from self._reaction(chat, message_id, reaction, f"reactions[{index}]")

    def _thread(self, chat: _Chat, message_id: int, reply: Any) -> tuple[int | None, int | None]:
        """``(topic, replied-to message)``: a reply to a topic's first message is no reply."""
        if reply is None:
            return None, None
        reply_to = _int(reply, "reply_to_message_id")
        if not chat.topics:
            return None, reply_to
        thread = reply_to if reply_to in chat.topics else chat.topic_of.get(reply_to)
        if thread is not None:
            chat.topic_of[message_id] = thread
        return thread, None if reply_to == thread else reply_to

    def _membership(
        self, chat: _Chat, message: dict[str, Any], action: str, actor: int | None, at: datetime
    ) -> None:
        """Keep a join or leave until the chat's end, when every sender's name is known."""
        listed = message.get("members")
        names = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
        actor_name = message.get("actor")
        ids: list[int] = []
        if action in ("join_group_by_link", "join_group_by_request"):
            if actor is None:
                self.report.unresolved += 1
            else:
                ids.append(actor)
        elif actor is not None and (action == "create_group" or actor_name in names):
            # The creator is a member; "X joined/left the group" names X among the members.
            ids.append(actor)
            names = [name for name in names if name != actor_name]
        chat.membership.append((at, action == "remove_members", ids, names))

    def _reaction(self, chat: _Chat, message_id: int, raw: Any, what: str) -> Iterator[Event]:
        if not isinstance(raw, dict):
            raise ValueError(f"{what} must be an object")
        kind = raw.get("type", "emoji")
        emoji_id: int | None = None
        if kind == "custom_emoji":
            emoji_id = _int(raw.get("document_id"), f"{what}.document_id")
            name = str(emoji_id)
        elif kind == "paid":
            name = "\u2b50"
        else:
            emoji = raw.get("emoji")
            if not isinstance(emoji, str) or not emoji:
                raise ValueError(f"{what}.emoji must be the emoji, not {emoji!r}")
            name = emoji
        count = count_of(raw.get("count", 0), f"{what}.count")
        self.report.reaction_counts += 1
        yield ReactionCounted(message_id, chat.id, chat.id, name[:255], count, emoji_id)
        for index, recent in enumerate(raw.get("recent") or ()):
            if not isinstance(recent, dict) or None in (recent.get("date"), recent.get("from_id")):
                self.report.skip("recent reaction without its user or date")
                continue
            kind_of, _ = _peer(recent.get("from_id"), f"{what}.recent[{index}].from_id")
            if kind_of != "user":
                self.report.skip("reaction sent on behalf of a chat")
                continue
            user_id, _, users = self._sender(
                chat, recent["from_id"], recent.get("from"), f"{what}.recent[{index}].from_id"
            )
            yield from users
            at = parse_iso(recent["date"], self.naive_tz)
            self.report.reactions += 1
            yield ReactionAdded(message_id, chat.id, chat.id, user_id, name[:255], at, emoji_id)


def _text(message: dict[str, Any]) -> tuple[str, tuple[MentionInfo, ...]]:
    """The message's text and its user mentions, from ``text`` or ``text_entities``."""
    raw = message.get("text", "")
    parts = message.get("text_entities")
    if not isinstance(parts, list):
        parts = raw if isinstance(raw, list) else None
    if isinstance(raw, str):
        content = raw
    elif isinstance(raw, list):
        content = "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in raw
            if isinstance(part, str | dict)
        )
    else:
        raise ValueError(f"text must be a string or a list, not {type(raw).__name__}")
    mentions: dict[MentionInfo, None] = {}
    for part in parts or ():
        if isinstance(part, dict) and part.get("type") == "mention_name":
            user_id = _int(part.get("user_id"), "a mention's user_id")
            if user_id > 0:
                mentions[MentionInfo("user", user_id)] = None
    return content, tuple(mentions)


def _attachment(message: dict[str, Any]) -> AttachmentInfo | None:
    path = message.get("photo")
    is_photo = path is not None
    if not is_photo:
        path = message.get("file")
    if path is None:
        return None
    if not isinstance(path, str):
        raise ValueError(f"{'photo' if is_photo else 'file'} must be a path")
    name = message.get("file_name")
    if not isinstance(name, str) or not name:
        name = None if path.startswith(_SKIPPED_FILE) else PurePosixPath(path).name
    size = message.get("photo_file_size" if is_photo else "file_size")
    width, height = message.get("width"), message.get("height")
    return AttachmentInfo(
        position=0,
        filename=clip(name),
        content_type="image/jpeg" if is_photo else clip(message.get("mime_type")),
        size=count_of(size, "file_size", bits=63) if size is not None else None,
        width=count_of(width, "width") if width is not None else None,
        height=count_of(height, "height") if height is not None else None,
    )


_PATHS = (
    "name",
    "type",
    "id",
    "messages.item",
    "guild",
    "channel",
    *(
        f"{where}.list.item.{key}"
        for where in ("chats", "left_chats")
        for key in ("name", "type", "id", "messages.item")
    ),
)
_COUNTED = ("messages.item", "chats.list.item.messages.item", "left_chats.list.item.messages.item")
_STARTS = ("chats.list.item", "left_chats.list.item", "guild", "channel")


def parse_telegram(
    path: str | os.PathLike[str],
    *,
    report: ChatImportReport | None = None,
    progress: Progress | None = None,
    naive_tz: tzinfo = UTC,
) -> Iterator[Event]:
    """The chat events of a Telegram Desktop ``result.json`` (blocking I/O).

    Raises:
        ConfigurationError: a missing file or a directory.
        DataError: an empty file, invalid or truncated JSON, another kind of export, a
            message with a field of the wrong type (the message and byte offset are named).
    """
    (source,) = check_sources([path])
    report = report if report is not None else ChatImportReport(_PLATFORM)
    report.files = [str(source)]
    report.bytes = source.stat().st_size
    reader = ExportReader(source, _PATHS, object_start=_STARTS, counted=_COUNTED, progress=progress)
    yield from _Parser(report, reader, naive_tz).events()


async def import_telegram(
    db: ChatImportDatabase,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 20000,
    progress: Progress | None = None,
    naive_tz: tzinfo = UTC,
) -> ChatImportReport:
    """Import a Telegram Desktop JSON export into ``db`` in one transaction.

    Args:
        db: a connected Database with the chat tables (``botdb init``).
        path: the export's ``result.json`` (one chat or a whole account); only read.
        batch_size: events per batch handed to the writer.
        progress: ``progress(bytes_read, bytes_total)`` while the file is read.
        naive_tz: the zone of the local times of exports older than ``date_unixtime``
            (the zone of the computer that made the export); UTC by default.

    Returns:
        What was imported (counted from the file). Importing it again changes nothing.

    Raises:
        ConfigurationError: a missing file or a directory; ``batch_size`` below 1.
        DataError: an empty, malformed or truncated file, or not a Telegram Desktop
            export; nothing is written.
        UndefinedTableError: the database has no chat tables (run ``botdb init``).

    Example:
        >>> report = await import_telegram(db, "ChatExport_2024-01-01/result.json")
        >>> report.messages, report.joins
        (5120, 37)
    """
    if batch_size < 1:
        raise errors.ConfigurationError("batch_size must be at least 1")
    start = started()
    report = ChatImportReport(_PLATFORM)
    await ensure_schema(db)
    events = parse_telegram(path, report=report, progress=progress, naive_tz=naive_tz)
    await write_all(db, events, report, platform=_PLATFORM, batch_size=batch_size)
    return finish(report, start)
