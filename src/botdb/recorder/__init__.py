"""The event recorder: chat events written at bulk speed.

:mod:`botdb.recorder._events` is the vocabulary shared with the importers and the adapters;
:func:`write_events` turns a batch of them into rows inside a transaction, idempotently.
"""

from __future__ import annotations

from botdb.recorder._events import (
    AttachmentInfo,
    ChannelInfo,
    CommandInvoked,
    Event,
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
    ReactionCounted,
    ReactionRemoved,
    ReactionsCleared,
    ThreadInfo,
    UserInfo,
)
from botdb.recorder._recorder import Recorder, RecorderOptions, default_spool_path
from botdb.recorder._writer import WriteCounts, write_events

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
    "Recorder",
    "RecorderOptions",
    "ThreadInfo",
    "UserInfo",
    "WriteCounts",
    "default_spool_path",
    "write_events",
]
