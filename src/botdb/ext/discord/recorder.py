"""Extension adding :class:`~botdb.ext.discord.RecorderCog` with every recorded event:
``await bot.load_extension("botdb.ext.discord.recorder")`` after ``botdb.ext.discord``."""

from __future__ import annotations

from discord.ext import commands

from botdb.ext.discord._cog import database_of
from botdb.ext.discord._lifecycle import attach, is_closing, stop_recording

__all__ = ["setup", "teardown"]


async def setup(bot: commands.Bot) -> None:
    """Start recording every event of :data:`~botdb.ext.discord.RECORDED_EVENTS`.

    Raises:
        ConfigurationError: ``bot.db`` is not set (load ``botdb.ext.discord`` first).
    """
    await attach(bot, database_of(bot), record=True)


async def teardown(bot: commands.Bot) -> None:
    """Stop recording (``bot.db`` stays). While the bot closes, the cog is left to
    ``bot.close()``, which removes it and then flushes the recorder."""
    if not is_closing(bot):
        await stop_recording(bot)
