"""A discord.py bot on botdb: ``DISCORD_TOKEN=... python examples/discord_bot.py``.

* ``setup_hook`` loads ``botdb.ext.discord`` (``bot.db``, from ``BOTDB_DATABASE_URL`` /
  ``DATABASE_URL`` / … or ``sqlite:///bot.db``), migrates the schema and loads
  ``botdb.ext.discord.recorder``: every message, edit, deletion, reaction, join, leave and
  command is recorded in batches, including reactions and deletions on messages the bot has
  not cached;
* the prefix is each guild's own (``!prefix set ?``), read from ``db.config`` (cached), with a
  mention of the bot always accepted;
* ``!stats`` answers from the recorded messages; ``!prefix`` shows or sets the prefix;
* closing the bot (Ctrl+C) flushes the recorder and closes the database.

The bot needs the privileged "message content" and "server members" intents enabled in the
Developer Portal. The test suite runs this very bot offline, feeding it gateway payloads.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import discord
from discord.ext import commands

from botdb.errors import BotDBError
from botdb.ext.discord import BotDBCog, prefix_from_config


class Stats(BotDBCog):
    """Message statistics and the guild's prefix, stored by botdb."""

    @commands.command()
    @commands.guild_only()
    async def stats(self, ctx: commands.Context[commands.Bot]) -> None:
        """How many messages this guild and you have sent (as recorded so far)."""
        assert ctx.guild is not None  # guild_only
        # Events reach the database in batches: flush so that the answer includes the
        # messages recorded a moment ago (a bot with heavy traffic would skip this).
        await self.recorder.flush()
        await self.upsert_member(ctx.author)  # type: ignore[arg-type]  # a Member in a guild
        row = await self.db.fetchrow(
            "SELECT count(*) AS total, "
            "sum(CASE WHEN author_id = $2 THEN 1 ELSE 0 END) AS mine "
            "FROM messages WHERE guild_id = $1 AND NOT deleted",
            ctx.guild.id,
            ctx.author.id,
        )
        total, mine = (row["total"], row["mine"] or 0) if row is not None else (0, 0)
        await ctx.send(f"{total} messages in {ctx.guild.name}, {mine} of them yours.")

    @commands.group(invoke_without_command=True)
    async def prefix(self, ctx: commands.Context[commands.Bot]) -> None:
        """Show the prefix here."""
        prefixes = await ctx.bot.get_prefix(ctx.message)
        await ctx.send(f"My prefix here is {prefixes[-1]!r}.")

    @prefix.command(name="set")  # type: ignore[arg-type]  # mypy cannot solve this overload
    @commands.guild_only()
    @commands.has_guild_permissions(manage_guild=True)
    async def prefix_set(self, ctx: commands.Context[commands.Bot], new: str) -> None:
        """Set this guild's prefix (Manage Server)."""
        assert ctx.guild is not None  # guild_only
        try:
            settings = await self.config.set(ctx.guild.id, prefix=new)
        except BotDBError as exc:  # DataError: empty, too long, spaces around it
            await ctx.send(f"Not a usable prefix: {exc}")
            return
        await ctx.send(f"Prefix set to {settings.prefix!r}.")


class ExampleBot(commands.Bot):
    """The bot: its database attached in ``setup_hook``, never in ``on_ready``."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = True
        super().__init__(
            command_prefix=prefix_from_config(default="!", mention=True),
            intents=intents,
            **options,
        )

    async def setup_hook(self) -> None:
        await self.load_extension("botdb.ext.discord")
        await self.db.migrate()  # type: ignore[attr-defined]  # bot.db, set by the extension
        await self.load_extension("botdb.ext.discord.recorder")
        await self.add_cog(Stats(self))


def main() -> int:
    token = os.environ.get("DISCORD_TOKEN")
    if not token:
        print("set DISCORD_TOKEN to the bot's token (and BOTDB_DATABASE_URL to a database)")
        return 2
    # run() logs to stderr, and on Ctrl+C closes the bot: the recorder is flushed and the
    # database closed before it returns.
    ExampleBot().run(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
