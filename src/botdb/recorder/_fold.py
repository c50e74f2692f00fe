"""Folds a batch of events into one planned row per key, in arrival order, in Python.

PostgreSQL cannot ``ON CONFLICT DO UPDATE`` the same row twice in one statement, and doing
the ordering here keeps the SQL set-based: every table gets at most one row per natural key
from a batch. What must also hold *across* batches (an edit recorded before its message, a
reaction removal before the addition) is carried by the values themselves (``edited_at``,
``created_at``/``removed_at``, ``joined_at``/``left_at``) and resolved by
:func:`merge_message` against the stored row, or by the upsert's ``CASE`` expressions.

Versions are ``(event time, arrival index)`` pairs: the later event wins, ties go to the one
that arrived later. A stored row's values have arrival index -1 (they arrived before the
batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botdb.models.snowflake import snowflake_time
from botdb.recorder import _events as ev

__all__ = [
    "MESSAGE_COLUMNS",
    "Batch",
    "MessagePlan",
    "as_plan",
    "fold",
    "fresh_children",
    "fresh_row",
    "merge_message",
]

#: Older than any event: the version of a value nobody set.
NEVER = datetime.min.replace(tzinfo=UTC)
_NO_VERSION = (NEVER, -2)

Version = tuple[datetime, int]

#: The columns of ``messages`` the writer sets, in the order rows are built.
MESSAGE_COLUMNS = (
    "id",
    "guild_id",
    "channel_id",
    "thread_id",
    "author_id",
    "content",
    "created_at",
    "edited_at",
    "deleted",
    "deleted_at",
    "is_bot",
    "reply_to_id",
    "jump_url",
    "attachment_count",
    "kind",
    "pinned",
    "partial",
    "extra",
)
# Message fields an edit may change, each versioned on its own.
_EDITABLE = ("content", "pinned", "extra", "attachments", "mentions")
_DEFAULTS: dict[str, Any] = {
    "content": "",
    "pinned": False,
    "extra": None,
    "attachments": (),
    "mentions": (),
}


class MessagePlan:
    """What a batch says about one message ``(id, guild_id)``.

    A plain slotted class rather than a dataclass: one is built per message, on the path
    that bounds the recorder's ingest rate, and ``edits`` is created only on a first edit.
    """

    __slots__ = (
        "channel_id",
        "create",
        "create_version",
        "deleted_at",
        "edited_at",
        "edits",
        "first_seen",
        "guild_id",
        "id",
    )

    def __init__(
        self,
        id: int,
        guild_id: int,
        channel_id: int,
        create: ev.MessageCreated | None = None,
        create_version: Version = _NO_VERSION,
        first_seen: datetime | None = None,
    ) -> None:
        self.id = id
        self.guild_id = guild_id
        self.channel_id = channel_id
        #: The message itself, when the batch holds it (the latest by ``edited_at``, arrival).
        self.create = create
        self.create_version = create_version
        #: Per editable field: the newest edit's ``(version, value)``.
        self.edits: dict[str, tuple[Version, Any]] = _NO_EDITS
        self.edited_at: datetime | None = None
        self.deleted_at: datetime | None = None
        #: Earliest time of an event about the message (a partial row's ``created_at`` when
        #: the id carries no time).
        self.first_seen = first_seen

    def seen(self, at: datetime) -> None:
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at


_NO_EDITS: dict[str, tuple[Version, Any]] = {}


@dataclass(slots=True)
class ReactionPlan:
    """One user's reaction with one emoji: its newest add and newest removal."""

    channel_id: int
    emoji_id: int | None
    emoji_name: str
    animated: bool
    added: Version | None = None
    removed: Version | None = None

    def row_times(self) -> tuple[datetime, datetime | None]:
        """``(created_at, removed_at)``: removed when the newest event is a removal."""
        if self.added is None:
            assert self.removed is not None  # a plan holds at least one event
            return self.removed[0], self.removed[0]
        if self.removed is None or self.added > self.removed:
            return self.added[0], None
        return self.added[0], self.removed[0]


@dataclass(slots=True)
class MemberPlan:
    joined_at: datetime | None = None
    left_at: datetime | None = None
    nick: tuple[Version, str] | None = None
    roles: tuple[Version, tuple[int, ...]] | None = None
    #: Whether the batch holds a join or a leave (else only a profile update).
    presence: bool = False


@dataclass(slots=True)
class Batch:
    """The rows a batch asks for, one per natural key."""

    guilds: dict[int, ev.GuildInfo] = field(default_factory=dict)
    bare_guilds: set[int] = field(default_factory=set)
    channels: dict[int, ev.ChannelInfo] = field(default_factory=dict)
    bare_channels: dict[int, int] = field(default_factory=dict)  # id -> guild_id
    threads: dict[tuple[int, int], ev.ThreadInfo] = field(default_factory=dict)
    bare_threads: dict[tuple[int, int], int] = field(default_factory=dict)  # -> parent_id
    users: dict[int, ev.UserInfo] = field(default_factory=dict)
    bare_users: set[int] = field(default_factory=set)
    #: A message the batch only creates is kept as its event (no plan object: the common
    #: case, and an object per event costs ~10% of the ingest rate in garbage collection).
    messages: dict[tuple[int, int], MessagePlan | ev.MessageCreated] = field(default_factory=dict)
    reactions: dict[tuple[int, int, str, int], ReactionPlan] = field(default_factory=dict)
    #: Reaction clears to apply to stored rows: (message_id, guild_id, emoji_key or None, at).
    clears: list[tuple[int, int, str | None, datetime]] = field(default_factory=list)
    reaction_counts: dict[tuple[int, int, str], ev.ReactionCounted] = field(default_factory=dict)
    members: dict[tuple[int, int], MemberPlan] = field(default_factory=dict)
    bare_roles: dict[int, int] = field(default_factory=dict)  # role id -> guild_id
    join_leave: set[tuple[int, int, str, datetime]] = field(default_factory=set)
    commands: dict[tuple[int, str, datetime], ev.CommandInvoked] = field(default_factory=dict)


def emoji_key(emoji_id: int | None, emoji_name: str) -> str:
    """What ``reactions.emoji_key`` computes: the custom emoji id as text, else the name."""
    return str(emoji_id) if emoji_id is not None else emoji_name


def fold(events: Sequence[ev.Event], platform: str) -> Batch:
    """Fold validated ``events`` (arrival order) into one planned row per key."""
    batch = Batch()
    # Reaction clears are applied after every reaction event is folded: an addition that
    # arrives after a clear but happened before it is cleared too.
    clears: list[tuple[ev.ReactionsCleared, int]] = []
    for seq, event in enumerate(events):
        match event:
            case ev.MessageCreated():
                _message_created(batch, event, seq)
            case ev.MessageEdited():
                _message_edited(batch, event, seq)
            case ev.MessageDeleted():
                _message_deleted(
                    batch, event.id, event.guild_id, event.channel_id, event.deleted_at
                )
            case ev.MessagesBulkDeleted():
                for message_id in event.ids:
                    _message_deleted(
                        batch, message_id, event.guild_id, event.channel_id, event.deleted_at
                    )
            case ev.ReactionAdded() | ev.ReactionRemoved():
                _reaction(batch, event, seq)
            case ev.ReactionsCleared():
                _message(batch, event.message_id, event.guild_id, event.channel_id).seen(event.at)
                clears.append((event, seq))
            case ev.ReactionCounted():
                _message(batch, event.message_id, event.guild_id, event.channel_id)
                key = (
                    event.message_id,
                    event.guild_id,
                    emoji_key(event.emoji_id, event.emoji_name),
                )
                batch.reaction_counts[key] = event
            case ev.MemberJoined() | ev.MemberLeft() | ev.MemberUpdated():
                _member(batch, event, seq)
            case ev.CommandInvoked():
                _command(batch, event)
            case ev.GuildInfo():
                _guild_info(batch, event)
            case ev.ChannelInfo():
                _channel_info(batch, event)
            case ev.ThreadInfo():
                _thread_info(batch, event)
            case ev.UserInfo():
                _user_info(batch, event)
    for clear, seq in clears:
        _apply_clear(batch, clear, seq)
    _finish_references(batch, platform)
    return batch


# -- messages ---------------------------------------------------------------------------------


def as_plan(value: MessagePlan | ev.MessageCreated) -> MessagePlan:
    """The plan of a message the batch may only create (arrival: before the rest)."""
    if isinstance(value, MessagePlan):
        return value
    return MessagePlan(
        value.id,
        value.guild_id,
        value.channel_id,
        value,
        (value.edited_at or NEVER, -1),
        value.created_at,
    )


def _message(batch: Batch, message_id: int, guild_id: int, channel_id: int) -> MessagePlan:
    key = (message_id, guild_id)
    value = batch.messages.get(key)
    if value is None:
        plan = batch.messages[key] = MessagePlan(message_id, guild_id, channel_id)
    elif isinstance(value, MessagePlan):
        plan = value
    else:
        plan = batch.messages[key] = as_plan(value)
    batch.bare_guilds.add(guild_id)
    batch.bare_channels.setdefault(channel_id, guild_id)
    return plan


def _message_created(batch: Batch, event: ev.MessageCreated, seq: int) -> None:
    key = (event.id, event.guild_id)
    value = batch.messages.get(key)
    if value is None:
        # The common case, kept short: the first thing the batch says about this message.
        batch.messages[key] = event
        if event.guild_id not in batch.bare_guilds:
            batch.bare_guilds.add(event.guild_id)
        if event.channel_id not in batch.bare_channels:
            batch.bare_channels[event.channel_id] = event.guild_id
    else:
        plan = value if isinstance(value, MessagePlan) else as_plan(value)
        batch.messages[key] = plan
        version = (event.edited_at or NEVER, seq)
        if version >= plan.create_version:
            plan.create = event
            plan.create_version = version
            plan.channel_id = event.channel_id
        plan.seen(event.created_at)
    if event.author_id is not None:
        batch.bare_users.add(event.author_id)
    if event.thread_id is not None:
        batch.bare_threads.setdefault((event.thread_id, event.guild_id), event.channel_id)


def _message_edited(batch: Batch, event: ev.MessageEdited, seq: int) -> None:
    plan = _message(batch, event.id, event.guild_id, event.channel_id)
    plan.seen(event.edited_at)
    version = (event.edited_at, seq)
    for name in _EDITABLE:
        value = getattr(event, name)
        if value is None:
            continue
        if plan.edits is _NO_EDITS:
            plan.edits = {}
        current = plan.edits.get(name)
        if current is None or version >= current[0]:
            plan.edits[name] = (version, value)
    if plan.edited_at is None or event.edited_at > plan.edited_at:
        plan.edited_at = event.edited_at


def _message_deleted(
    batch: Batch, message_id: int, guild_id: int, channel_id: int, at: datetime
) -> None:
    plan = _message(batch, message_id, guild_id, channel_id)
    plan.seen(at)
    if plan.deleted_at is None or at < plan.deleted_at:
        plan.deleted_at = at


def merge_message(
    existing: dict[str, Any] | None, plan: MessagePlan, platform: str
) -> tuple[dict[str, Any], tuple[ev.AttachmentInfo, ...] | None, tuple[ev.MentionInfo, ...] | None]:
    """The message row after ``plan``, given the stored row (None when there is none).

    Returns the row (every column of :data:`MESSAGE_COLUMNS`) and the message's attachments
    and mentions when the batch replaces them (None: leave the stored ones).

    An editable field keeps the newest value by ``edited_at``: a message recorded after a
    later edit keeps the edit's content. On a stored *partial* row a field still at its
    default (empty content, not pinned, no extra, no attachments) counts as unknown, so the
    message fills it.
    """
    if existing is None:
        row = _partial_row(plan, platform)
        stored_version: Version = _NO_VERSION
        partial_defaults = True
    else:
        row = dict(existing)
        stored_version = (row["edited_at"] or NEVER, -1)
        partial_defaults = bool(row["partial"])
    versions: dict[str, Version] = {}
    for name in _EDITABLE:
        if existing is None:
            unknown = True
        elif not partial_defaults:
            unknown = False
        elif name == "attachments":
            unknown = row["attachment_count"] == 0
        elif name == "mentions":
            unknown = True  # not read back: a partial row's mentions yield to the message's
        else:
            unknown = row[name] == _DEFAULTS[name]
        versions[name] = _NO_VERSION if unknown else stored_version
    won = _winning_values(plan, versions)
    for name, value in won.items():
        if name not in ("attachments", "mentions"):
            row[name] = value
    create = plan.create
    if create is not None:
        row.update(
            channel_id=create.channel_id,
            thread_id=create.thread_id,
            author_id=create.author_id,
            created_at=create.created_at,
            is_bot=create.is_bot,
            reply_to_id=create.reply_to_id,
            jump_url=create.jump_url,
            kind=create.kind,
            partial=False,
        )
    edited = [t for t in (row["edited_at"], plan.edited_at) if t is not None]
    if create is not None and create.edited_at is not None:
        edited.append(create.edited_at)
    row["edited_at"] = max(edited) if edited else None
    if plan.deleted_at is not None:
        # Deleted is sticky, and the deletion time is the earliest one seen.
        row["deleted"] = True
        if row["deleted_at"] is None or plan.deleted_at < row["deleted_at"]:
            row["deleted_at"] = plan.deleted_at
    attachments = won.get("attachments")
    if attachments is not None:
        row["attachment_count"] = len({a.position for a in attachments})
    return row, attachments, won.get("mentions")


def fresh_row(value: MessagePlan | ev.MessageCreated, platform: str) -> list[Any]:
    """The row (values of :data:`MESSAGE_COLUMNS`) of a message not stored yet.

    The common case (the message itself, nothing else about it in the batch) is built here
    directly: the general :func:`merge_message` costs ~3x as much per row, and this path is
    what bounds the recorder's ingest rate. A list, so that the writer can convert values in
    place for the driver.
    """
    if isinstance(value, MessagePlan):
        create = value.create
        if create is None or value.edits or value.deleted_at is not None:
            row = merge_message(None, value, platform)[0]
            return [row[c] for c in MESSAGE_COLUMNS]
    else:
        create = value
    return [
        create.id,
        create.guild_id,
        create.channel_id,
        create.thread_id,
        create.author_id,
        create.content,
        create.created_at,
        create.edited_at,
        False,
        None,
        create.is_bot,
        create.reply_to_id,
        create.jump_url,
        len({a.position for a in create.attachments}) if create.attachments else 0,
        create.kind,
        create.pinned,
        False,
        create.extra,
    ]


def fresh_children(
    value: MessagePlan | ev.MessageCreated, platform: str
) -> tuple[tuple[ev.AttachmentInfo, ...] | None, tuple[ev.MentionInfo, ...] | None]:
    """The attachments and mentions of a message not stored yet (None: none to write)."""
    if isinstance(value, ev.MessageCreated):
        return value.attachments, value.mentions
    _row, attachments, mentions = merge_message(None, value, platform)
    return attachments, mentions


def _winning_values(plan: MessagePlan, versions: dict[str, Version]) -> dict[str, Any]:
    """The editable fields whose newest value comes from this batch."""
    won: dict[str, Any] = {}
    for name, stored in versions.items():
        best, value = stored, None
        if plan.create is not None and plan.create_version > best:
            best, value = plan.create_version, getattr(plan.create, name)
        edit = plan.edits.get(name)
        if edit is not None and edit[0] > best:
            best, value = edit
        if best is not stored:
            won[name] = value
    return won


def _partial_row(plan: MessagePlan, platform: str) -> dict[str, Any]:
    # Only a reaction count (from an export) carries no time at all: the row is stamped now.
    created_at = plan.first_seen or datetime.now(UTC)
    if platform == "discord":
        with contextlib.suppress(ValueError):  # an id too large to be a snowflake
            created_at = snowflake_time(plan.id)
    return {
        "id": plan.id,
        "guild_id": plan.guild_id,
        "channel_id": plan.channel_id,
        "thread_id": None,
        "author_id": None,
        "content": "",
        "created_at": created_at,
        "edited_at": None,
        "deleted": False,
        "deleted_at": None,
        "is_bot": False,
        "reply_to_id": None,
        "jump_url": None,
        "attachment_count": 0,
        "kind": "default",
        "pinned": False,
        "partial": True,
        "extra": None,
    }


# -- reactions --------------------------------------------------------------------------------


def _reaction(batch: Batch, event: ev.ReactionAdded | ev.ReactionRemoved, seq: int) -> None:
    _message(batch, event.message_id, event.guild_id, event.channel_id).seen(event.at)
    batch.bare_users.add(event.user_id)
    key = (
        event.message_id,
        event.guild_id,
        emoji_key(event.emoji_id, event.emoji_name),
        event.user_id,
    )
    plan = batch.reactions.get(key)
    animated = isinstance(event, ev.ReactionAdded) and event.animated
    if plan is None:
        plan = batch.reactions[key] = ReactionPlan(
            event.channel_id, event.emoji_id, event.emoji_name, animated
        )
    version = (event.at, seq)
    if isinstance(event, ev.ReactionAdded):
        plan.animated = animated
        if plan.added is None or version > plan.added:
            plan.added = version
    elif plan.removed is None or version > plan.removed:
        plan.removed = version


def _apply_clear(batch: Batch, clear: ev.ReactionsCleared, seq: int) -> None:
    wanted = None if clear.emoji_name is None else emoji_key(clear.emoji_id, clear.emoji_name)
    version = (clear.at, seq)
    for (message_id, guild_id, key, _user), plan in batch.reactions.items():
        if message_id != clear.message_id or guild_id != clear.guild_id:
            continue
        if wanted is not None and key != wanted:
            continue
        if plan.removed is None or version > plan.removed:
            plan.removed = version
    batch.clears.append((clear.message_id, clear.guild_id, wanted, clear.at))


# -- members, commands, entities --------------------------------------------------------------


def _member(
    batch: Batch, event: ev.MemberJoined | ev.MemberLeft | ev.MemberUpdated, seq: int
) -> None:
    batch.bare_guilds.add(event.guild_id)
    batch.bare_users.add(event.user_id)
    plan = batch.members.setdefault((event.guild_id, event.user_id), MemberPlan())
    version = (event.at, seq)
    if isinstance(event, ev.MemberJoined):
        plan.presence = True
        if plan.joined_at is None or event.at > plan.joined_at:
            plan.joined_at = event.at
        batch.join_leave.add((event.guild_id, event.user_id, "join", event.at))
    elif isinstance(event, ev.MemberLeft):
        plan.presence = True
        if plan.left_at is None or event.at > plan.left_at:
            plan.left_at = event.at
        batch.join_leave.add((event.guild_id, event.user_id, "leave", event.at))
    nick = None if isinstance(event, ev.MemberLeft) else event.nick
    if nick is not None and (plan.nick is None or version >= plan.nick[0]):
        plan.nick = (version, nick)
    if isinstance(event, ev.MemberUpdated) and event.role_ids is not None:
        if plan.roles is None or version >= plan.roles[0]:
            plan.roles = (version, tuple(dict.fromkeys(event.role_ids)))
        for role_id in event.role_ids:
            batch.bare_roles.setdefault(role_id, event.guild_id)


def member_active(joined_at: datetime | None, left_at: datetime | None) -> bool:
    """Whether a member whose last join and leave were these is in the guild."""
    if left_at is None:
        return True
    return joined_at is not None and joined_at >= left_at


def _command(batch: Batch, event: ev.CommandInvoked) -> None:
    batch.bare_users.add(event.user_id)
    if event.guild_id is not None:
        batch.bare_guilds.add(event.guild_id)
    key = (event.user_id, event.command, event.started_at)
    batch.commands[key] = event


def _merge_info(old: Any, new: Any) -> Any:
    """``new`` with its None fields taken from ``old`` (both the same dataclass)."""
    if old is None:
        return new
    values = {name: getattr(new, name) for name in new.__slots__}
    for name, value in values.items():
        if value is None:
            values[name] = getattr(old, name)
    return type(new)(**values)


def _guild_info(batch: Batch, event: ev.GuildInfo) -> None:
    batch.guilds[event.id] = _merge_info(batch.guilds.get(event.id), event)


def _channel_info(batch: Batch, event: ev.ChannelInfo) -> None:
    batch.channels[event.id] = _merge_info(batch.channels.get(event.id), event)
    batch.bare_guilds.add(event.guild_id)
    if event.parent_id is not None:
        batch.bare_channels.setdefault(event.parent_id, event.guild_id)


def _thread_info(batch: Batch, event: ev.ThreadInfo) -> None:
    key = (event.id, event.guild_id)
    batch.threads[key] = _merge_info(batch.threads.get(key), event)
    batch.bare_guilds.add(event.guild_id)
    batch.bare_channels.setdefault(event.parent_id, event.guild_id)


def _user_info(batch: Batch, event: ev.UserInfo) -> None:
    batch.users[event.id] = _merge_info(batch.users.get(event.id), event)


def _finish_references(batch: Batch, platform: str) -> None:
    """Bare rows for everything referred to. A channel an ``*Info`` describes keeps its bare
    row too (written first, then filled): a channel may be another's parent in the same
    batch, and SQLite checks a foreign key row by row."""
    for thread_key, parent_id in list(batch.bare_threads.items()):
        if thread_key in batch.threads:
            del batch.bare_threads[thread_key]
        else:
            batch.bare_channels.setdefault(parent_id, thread_key[1])
    for info in batch.channels.values():
        batch.bare_channels.setdefault(info.id, info.guild_id)
    batch.bare_guilds.update(batch.bare_channels.values())
    batch.bare_guilds.difference_update(batch.guilds)
    batch.bare_users.difference_update(batch.users)
