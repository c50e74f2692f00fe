"""The event recorder: chat events written at bulk speed.

:mod:`botdb.recorder._events` is the vocabulary shared with the importers and the adapters.
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
