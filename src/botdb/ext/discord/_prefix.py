"""``prefix_from_config``: a ``command_prefix`` read from each guild's configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.ext import commands

from botdb import errors
from botdb.ext.discord._cog import database_of

__all__ = ["prefix_from_config"]

_MAX_PREFIX = 32


def _check_prefix(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_PREFIX:
        raise errors.ConfigurationError(
            f"{what} must be a non-empty str of at most {_MAX_PREFIX} characters, got {value!r}"
        )
    return value


def prefix_from_config(
    default: str | list[str] | tuple[str, ...] = "!", *, key: str = "prefix", mention: bool = False
) -> Callable[[commands.Bot, discord.Message], Awaitable[list[str]]]:
    """A ``command_prefix`` for ``commands.Bot`` that reads the guild's prefix from
    ``bot.db.config`` (cached: no I/O per message once a guild's configuration is loaded).

    Args:
        default: the prefix (or prefixes) in DMs and in guilds that set none.
        key: ``"prefix"`` reads the guild's ``prefix`` field
            (``await db.config.set(guild_id, prefix="?")``); another name reads that key of
            the guild's ``settings`` JSON object, which may hold a string or a list of them
            (``await db.config.set(guild_id, settings={"prefixes": ["?", "$"]})``).
        mention: also accept a mention of the bot, as ``commands.when_mentioned_or`` does.

    Example::

        bot = commands.Bot(
            command_prefix=botdb.ext.discord.prefix_from_config(default="!", mention=True),
            intents=intents,
        )

    Raises:
        ConfigurationError: an empty or too long default (at once), or, when a message
            arrives, a bot without ``bot.db``.

    A stored value that is not a usable prefix (empty, not a string) is ignored in favour of
    the default, so one guild's bad setting never stops the bot from reading commands there.
    """
    defaults = [default] if isinstance(default, str) else list(default)
    if not defaults:
        raise errors.ConfigurationError("the default prefix list is empty")
    fallback = [_check_prefix(item, "default prefix") for item in defaults]
    if not isinstance(key, str) or not key:
        raise errors.ConfigurationError("key must be a non-empty str")

    async def resolve(bot: commands.Bot, message: discord.Message) -> list[str]:
        prefixes = fallback
        if message.guild is not None:
            # The stored row (NULL = not set), from the cache: GuildSettings fills in the
            # service's own default prefix, which would hide this resolver's ``default``.
            raw = await database_of(bot).config._raw(message.guild.id)
            stored: Any = raw["prefix"] if key == "prefix" else (raw["settings"] or {}).get(key)
            if isinstance(stored, str):
                stored = [stored]
            if isinstance(stored, list | tuple):
                found = [item for item in stored if isinstance(item, str) and item]
                if found:
                    prefixes = found
        if mention:
            return commands.when_mentioned_or(*prefixes)(bot, message)
        return list(prefixes)

    return resolve
