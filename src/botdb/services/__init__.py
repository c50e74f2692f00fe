"""The services a bot calls on every event, on top of the cache and the built-in models.

* :class:`UserService` (``db.users``): ``get_or_create`` from a discord.py or Telegram user.
* :class:`GuildConfigService` (``db.config``): typed, cached per-guild configuration.
* :class:`ScopedConfig` (``db.scoped(namespace)``): Red-DiscordBot-style scoped settings.
* :class:`CaseService` (``db.cases``): moderation cases with gapless per-guild numbers.
* :class:`ReminderService` (``db.reminders``): tracked events and personal reminders, fired
  by the scheduler; the bot's handler only sends. :func:`parse_duration` reads what users
  type after ``/remind`` ("10m", "2h", "1d").

Each takes the :class:`~botdb.Database` and knows no framework. See ``docs/cache.md`` for
what the cache promises across processes.
"""

from __future__ import annotations

from botdb.services.cases import CaseService
from botdb.services.guild_config import GuildConfigService, GuildSettings
from botdb.services.reminders import (
    DueReminder,
    EventReminder,
    ReminderService,
    parse_duration,
)
from botdb.services.scoped import ScopedConfig, ScopeGroup
from botdb.services.users import UserRecord, UserService

__all__ = [
    "CaseService",
    "DueReminder",
    "EventReminder",
    "GuildConfigService",
    "GuildSettings",
    "ReminderService",
    "ScopeGroup",
    "ScopedConfig",
    "UserRecord",
    "UserService",
    "parse_duration",
]
