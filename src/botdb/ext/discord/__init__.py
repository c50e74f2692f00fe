"""botdb for discord.py bots (``pip install 'botdb[discord]'``).

Load it as an extension in ``setup_hook`` (the URL and options come from botdb's settings in
the environment: ``BOTDB_DATABASE_URL``, ``DATABASE_URL``…)::

    class Bot(commands.Bot):
        async def setup_hook(self) -> None:
            await self.load_extension("botdb.ext.discord")            # bot.db
            await self.load_extension("botdb.ext.discord.recorder")   # optional: record events
            await self.add_cog(MyCog(self))

or call :func:`attach` there with explicit options::

    async def setup_hook(self) -> None:
        await botdb.ext.discord.attach(self, url="sqlite:///bot.db", record=True)

Either way ``bot.db`` is connected before the bot logs in to the gateway, never in
``on_ready``, and it is closed, with the recorder flushed, when the bot closes. Also here:
:class:`BotDBCog` (a cog base class with the database at hand), :class:`RecorderCog` (the
opt-in listeners feeding ``db.recorder``), :func:`prefix_from_config` (a ``command_prefix``
from each guild's configuration) and the functions that turn discord.py objects into
botdb's chat events (:func:`message_created`, :func:`user_info`, …).
"""

from __future__ import annotations

try:
    import discord as _discord  # noqa: F401  # only to fail early with the extra's name
except ImportError as exc:  # pragma: no cover - tested in a subprocess
    from botdb.errors import MissingDependencyError

    raise MissingDependencyError("discord.py", "discord") from exc

from discord.ext import commands

from botdb.ext.discord._cog import BotDBCog, database_of
from botdb.ext.discord._convert import (
    app_command_invoked,
    channel_info,
    command_invoked,
    guild_info,
    member_joined,
    member_left,
    member_updated,
    message_created,
    message_deleted,
    message_edited,
    messages_bulk_deleted,
    reaction_added,
    reaction_removed,
    reactions_cleared,
    user_info,
)
from botdb.ext.discord._lifecycle import attach, detach, is_closing, stop_recording
from botdb.ext.discord._listeners import RECORDED_EVENTS, RecorderCog
from botdb.ext.discord._prefix import prefix_from_config

__all__ = [
    "RECORDED_EVENTS",
    "BotDBCog",
    "RecorderCog",
    "app_command_invoked",
    "attach",
    "channel_info",
    "command_invoked",
    "database_of",
    "detach",
    "guild_info",
    "member_joined",
    "member_left",
    "member_updated",
    "message_created",
    "message_deleted",
    "message_edited",
    "messages_bulk_deleted",
    "prefix_from_config",
    "reaction_added",
    "reaction_removed",
    "reactions_cleared",
    "setup",
    "stop_recording",
    "teardown",
    "user_info",
]


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``await bot.load_extension("botdb.ext.discord")``): attach a
    Database built from botdb's settings in the environment as ``bot.db``."""
    await attach(bot)


async def teardown(bot: commands.Bot) -> None:
    """Extension exit point: on ``unload_extension`` the Database is flushed and closed and
    ``bot.db`` removed; while the bot is closing, ``bot.close()`` does that itself after
    the other cogs are unloaded and the event handlers have finished."""
    if not is_closing(bot):
        await detach(bot)
