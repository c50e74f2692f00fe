"""Checks a batch of events before anything of it is written.

Every field is checked against its annotation (an ``int`` is an int and not a bool, and fits
a signed 64-bit column; a datetime is aware; a str fits its column and is valid Unicode; a
JSON object is one botdb can store), and the values the schema constrains are checked here
too (mention targets, platforms, chat types, non-negative counts and sizes, positive user
ids), so a bad event raises :class:`~botdb.errors.DataError` naming it, and the batch writes
nothing, on both backends alike.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from botdb._json_values import INT64_MAX, INT64_MIN, check_json, check_text, short
from botdb.errors import DataError
from botdb.models.guilds import PLATFORMS, TELEGRAM_CHAT_TYPES
from botdb.models.messages import MENTION_TARGETS
from botdb.recorder import _events as ev

__all__ = ["EVENT_TYPES", "describe", "validate_events"]

#: Every class :func:`validate_events` accepts (the members of :data:`~botdb.recorder.Event`).
EVENT_TYPES: tuple[type[Any], ...] = typing.get_args(ev.Event)

# Longest text the columns hold (VARCHAR lengths; PostgreSQL enforces them, SQLite does not,
# so they are checked here for both). Keyed by (class, field).
_LENGTHS: dict[tuple[type[Any], str], int] = {
    (ev.GuildInfo, "name"): 255,
    (ev.ChannelInfo, "name"): 255,
    (ev.ChannelInfo, "type"): 32,
    (ev.ThreadInfo, "name"): 255,
    (ev.UserInfo, "username"): 255,
    (ev.UserInfo, "display_name"): 255,
    (ev.UserInfo, "first_name"): 255,
    (ev.UserInfo, "last_name"): 255,
    (ev.AttachmentInfo, "external_id"): 255,
    (ev.AttachmentInfo, "file_id"): 255,
    (ev.AttachmentInfo, "filename"): 255,
    (ev.AttachmentInfo, "content_type"): 255,
    (ev.MessageCreated, "kind"): 32,
    (ev.MessageCreated, "jump_url"): 255,
    (ev.ReactionAdded, "emoji_name"): 255,
    (ev.ReactionRemoved, "emoji_name"): 255,
    (ev.ReactionsCleared, "emoji_name"): 255,
    (ev.ReactionCounted, "emoji_name"): 255,
    (ev.MemberJoined, "nick"): 255,
    (ev.MemberUpdated, "nick"): 255,
    (ev.CommandInvoked, "command"): 100,
}
# Fields that must be >= 0 (counts, sizes, positions); SMALLINT/INTEGER columns bound them.
_NON_NEGATIVE: dict[tuple[type[Any], str], int] = {
    (ev.AttachmentInfo, "position"): 32767,
    (ev.AttachmentInfo, "size"): INT64_MAX,
    (ev.AttachmentInfo, "width"): 2**31 - 1,
    (ev.AttachmentInfo, "height"): 2**31 - 1,
    (ev.ReactionCounted, "count"): 2**31 - 1,
    (ev.CommandInvoked, "duration_ms"): 2**31 - 1,
}
# User ids (``users.id > 0``).
_USER_IDS: set[tuple[type[Any], str]] = {
    (ev.UserInfo, "id"),
    (ev.MessageCreated, "author_id"),
    (ev.ReactionAdded, "user_id"),
    (ev.ReactionRemoved, "user_id"),
    (ev.MemberJoined, "user_id"),
    (ev.MemberLeft, "user_id"),
    (ev.MemberUpdated, "user_id"),
    (ev.CommandInvoked, "user_id"),
}

Check = Callable[[Any, str], None]


def describe(event: object) -> str:
    """A short, bounded description of an event for error messages."""
    return short(event, 120)


def validate_events(events: Sequence[object]) -> None:
    """Raise :class:`~botdb.errors.DataError` naming the first bad event of ``events``.

    Args:
        events: the batch, in arrival order.

    Raises:
        DataError: an object that is not an event, or an event with a wrong type, a naive
            datetime, an unknown mention target or platform, a negative count, or a text too
            long for its column. The message names the event and its position in the batch.
    """
    for index, event in enumerate(events):
        if type(event) is ev.MessageCreated and _plain_message(event):
            continue
        check = _CHECKS.get(type(event))
        if check is None:
            raise DataError(
                f"event {index} is not a recorder event: {type(event).__name__} ({describe(event)})"
            )
        try:
            check(event, "")
        except DataError as exc:
            raise DataError(f"event {index} ({describe(event)}): {exc.message}") from None


def _plain_message(e: ev.MessageCreated) -> bool:
    """Whether ``e`` is a plain message that passes every check (no attachments, mentions,
    extra, thread, reply or edit; ASCII content).

    The general checker walks every field through closures (~12 µs per event); this one
    expression costs ~2 µs, and plain messages are most of what a bot records. Anything it
    does not accept goes through the general checker, which names what is wrong.
    """
    created_at = e.created_at
    content = e.content
    author_id = e.author_id
    return (
        type(e.id) is int
        and type(e.guild_id) is int
        and type(e.channel_id) is int
        and INT64_MIN <= e.id <= INT64_MAX
        and INT64_MIN <= e.guild_id <= INT64_MAX
        and INT64_MIN <= e.channel_id <= INT64_MAX
        and (author_id is None or (type(author_id) is int and 0 < author_id <= INT64_MAX))
        and type(created_at) is datetime
        and created_at.utcoffset() is not None
        and type(content) is str
        and content.isascii()
        and "\x00" not in content
        and e.is_bot.__class__ is bool
        and e.pinned.__class__ is bool
        and e.kind == "default"
        and e.thread_id is None
        and e.edited_at is None
        and e.reply_to_id is None
        and e.jump_url is None
        and e.extra is None
        and e.attachments == ()
        and e.mentions == ()
    )


# -- compiled checkers ------------------------------------------------------------------------


def _check_int(value: Any, where: str) -> None:
    if type(value) is not int:
        raise DataError(f"{where} must be an int, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise DataError(f"{where} = {value} does not fit a 64-bit integer column")


def _check_str(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise DataError(f"{where} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise DataError(f"{where} holds a NUL character, which PostgreSQL text cannot store")
    check_text(where, value)


def _check_bool(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise DataError(f"{where} must be a bool, got {type(value).__name__}")


def _check_datetime(value: Any, where: str) -> None:
    if not isinstance(value, datetime):
        raise DataError(f"{where} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError(f"{where} is a naive datetime: pass an aware one, e.g. datetime.now(UTC)")


def _check_json_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise DataError(f"{where} must be a dict, got {type(value).__name__}")
    check_json(value, where)


def _optional(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def _tuple_of(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, tuple):
            raise DataError(f"{where} must be a tuple, got {type(value).__name__}")
        for position, item in enumerate(value):
            inner(item, f"{where}[{position}]")

    return check


def _checker_for(hint: Any) -> Check:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional(_checker_for(rest[0]))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_of(_checker_for(args[0]))
    if origin is dict:
        return _check_json_object
    if hint is int:
        return _check_int
    if hint is str:
        return _check_str
    if hint is bool:
        return _check_bool
    if hint is datetime:
        return _check_datetime
    if dataclasses.is_dataclass(hint):
        return _dataclass_checker(hint)  # type: ignore[arg-type]  # a dataclass type here
    raise TypeError(f"no recorder check for the annotation {hint!r}")  # a programming error


def _dataclass_checker(cls: type[Any]) -> Check:
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Check]] = []
    for f in dataclasses.fields(cls):
        check = _checker_for(hints[f.name])
        length = _LENGTHS.get((cls, f.name))
        if length is not None:
            check = _with_length(check, length)
        bound = _NON_NEGATIVE.get((cls, f.name))
        if bound is not None:
            check = _with_range(check, 0, bound)
        if (cls, f.name) in _USER_IDS:
            check = _with_range(check, 1, INT64_MAX)
        fields.append((f.name, check))
    extra = _EXTRA_CHECKS.get(cls)

    def check_instance(value: Any, where: str) -> None:
        if type(value) is not cls:
            raise DataError(f"{where or 'value'} must be a {cls.__name__}")
        for name, check in fields:
            check(getattr(value, name), f"{where}.{name}" if where else name)
        if extra is not None:
            extra(value, where)

    return check_instance


def _with_length(inner: Check, length: int) -> Check:
    def check(value: Any, where: str) -> None:
        inner(value, where)
        if value is not None and len(value) > length:
            raise DataError(f"{where} is longer than {length} characters")

    return check


def _with_range(inner: Check, low: int, high: int) -> Check:
    def check(value: Any, where: str) -> None:
        inner(value, where)
        if value is not None and not low <= value <= high:
            raise DataError(f"{where} = {value} is out of range ({low}..{high})")

    return check


# -- constraints beyond the types -------------------------------------------------------------


def _check_platform(value: Any, where: str) -> None:
    if value.platform not in PLATFORMS:
        raise DataError(f"platform {value.platform!r} is not one of {', '.join(PLATFORMS)}")


def _check_guild(value: ev.GuildInfo, where: str) -> None:
    _check_platform(value, where)
    if value.chat_type is not None and value.chat_type not in TELEGRAM_CHAT_TYPES:
        raise DataError(
            f"chat_type {value.chat_type!r} is not one of {', '.join(TELEGRAM_CHAT_TYPES)}"
        )


def _check_mention(value: ev.MentionInfo, where: str) -> None:
    if value.target_type not in MENTION_TARGETS:
        raise DataError(
            f"{where}.target_type {value.target_type!r} is not one of {', '.join(MENTION_TARGETS)}"
        )


def _check_mentions(mentions: tuple[ev.MentionInfo, ...] | None, guild_id: int) -> None:
    for position, mention in enumerate(mentions or ()):
        if mention.target_type in ("everyone", "here") and mention.target_id != guild_id:
            raise DataError(
                f"mentions[{position}]: an {mention.target_type} mention targets the guild "
                f"(target_id must be {guild_id})"
            )


def _check_message(value: ev.MessageCreated | ev.MessageEdited, where: str) -> None:
    _check_mentions(value.mentions, value.guild_id)
    if value.attachments is not None and len(value.attachments) > 32767:
        raise DataError("more than 32767 attachments")


def _check_bulk_delete(value: ev.MessagesBulkDeleted, where: str) -> None:
    if not value.ids:
        raise DataError("ids is empty")


_EXTRA_CHECKS: dict[type[Any], Callable[[Any, str], None]] = {
    ev.GuildInfo: _check_guild,
    ev.UserInfo: _check_platform,
    ev.MentionInfo: _check_mention,
    ev.MessageCreated: _check_message,
    ev.MessageEdited: _check_message,
    ev.MessagesBulkDeleted: _check_bulk_delete,
}

_CHECKS: dict[type[Any], Check] = {cls: _dataclass_checker(cls) for cls in EVENT_TYPES}
