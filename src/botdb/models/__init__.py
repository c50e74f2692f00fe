"""botdb's declarative base, mixins and built-in chat models.

Importing this package registers every built-in table on ``Base.metadata``. See
:mod:`botdb.models.base` for extending ``Base`` with your own tables.
"""

from __future__ import annotations

from botdb.models.activity import CommandHistory, JoinLeaveLog
from botdb.models.base import (
    NAMING_CONVENTION,
    Base,
    SoftDeleteMixin,
    TimestampMixin,
    builtin_tables,
    is_builtin,
)
from botdb.models.channels import Channel, Thread
from botdb.models.community import Level, Snippet
from botdb.models.config import GuildConfig
from botdb.models.guilds import PLATFORMS, TELEGRAM_CHAT_TYPES, Guild, Role
from botdb.models.kv import KeyValue
from botdb.models.messages import (
    MENTION_TARGETS,
    Attachment,
    Mention,
    Message,
    Reaction,
    ReactionCount,
)
from botdb.models.moderation import CASE_ACTIONS, GuildCaseCounter, ModerationCase
from botdb.models.reminders import (
    REMINDER_STATUSES,
    EventReaction,
    ReminderLog,
    TrackedEvent,
    UserReminder,
)
from botdb.models.scheduler import JOB_MISFIRE_POLICIES, JOB_STATES, ScheduledJob
from botdb.models.snowflake import DISCORD_EPOCH_MS, snowflake_time, time_snowflake
from botdb.models.types import JSON_TYPE, SURROGATE_KEY, UTCDateTime, utcnow
from botdb.models.users import Member, MemberRole, User

__all__ = [
    "CASE_ACTIONS",
    "DISCORD_EPOCH_MS",
    "JOB_MISFIRE_POLICIES",
    "JOB_STATES",
    "JSON_TYPE",
    "MENTION_TARGETS",
    "NAMING_CONVENTION",
    "PLATFORMS",
    "REMINDER_STATUSES",
    "SURROGATE_KEY",
    "TELEGRAM_CHAT_TYPES",
    "Attachment",
    "Base",
    "Channel",
    "CommandHistory",
    "EventReaction",
    "Guild",
    "GuildCaseCounter",
    "GuildConfig",
    "JoinLeaveLog",
    "KeyValue",
    "Level",
    "Member",
    "MemberRole",
    "Mention",
    "Message",
    "ModerationCase",
    "Reaction",
    "ReactionCount",
    "ReminderLog",
    "Role",
    "ScheduledJob",
    "Snippet",
    "SoftDeleteMixin",
    "Thread",
    "TimestampMixin",
    "TrackedEvent",
    "UTCDateTime",
    "User",
    "UserReminder",
    "builtin_tables",
    "is_builtin",
    "snowflake_time",
    "time_snowflake",
    "utcnow",
]
