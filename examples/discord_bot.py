"""A discord.py bot on botdb: ``DISCORD_TOKEN=... python examples/discord_bot.py``.

* ``setup_hook`` loads ``botdb.ext.discord`` (``bot.db``, from ``BOTDB_DATABASE_URL`` /
  ``DATABASE_URL`` / … or ``sqlite:///bot.db``), migrates the schema and loads
  ``botdb.ext.discord.recorder``: every message, edit, deletion, reaction, join, leave and
  command is recorded in batches, including reactions and deletions on messages the bot has
  not cached;
* the prefix is each guild's own (``!prefix set ?``), read from ``db.config`` (cached), with a
  mention of the bot always accepted;
* ``!stats`` answers from the recorded messages; ``!prefix`` shows or sets the prefix;
* reminders through ``db.reminders``, sent by ``db.scheduler``'s worker (started in
  ``setup_hook``, stopped when the bot closes): ``!remind 10m text`` ("90s", "2h", "1d",
  "1h30m"), ``!reminders``, ``!cancel ID``; and tracked events (Manage Messages):
  ``!track <message_id> [interval] ✅ ❌`` pings, every interval (default 6h), the members who
  can see the channel and have not reacted with one of the emoji yet; reactions reach
  ``db.reminders.record_reaction`` from the raw reaction listener, so messages out of the
  cache count too; ``!nag <message_id>`` reminds now, ``!untrack <message_id>`` stops;
* closing the bot (Ctrl+C) flushes the recorder and closes the database.

The bot needs the privileged "message content" and "server members" intents enabled in the
Developer Portal. The test suite runs this very bot offline, feeding it gateway payloads.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Any

import discord
from discord.ext import commands

from botdb.errors import BotDBError
from botdb.ext.discord import BotDBCog, prefix_from_config
from botdb.models import TrackedEvent
from botdb.services import DueReminder, EventReminder, parse_duration

#: Pings only the users a reminder names, never @everyone or a role.
ONLY_USERS = discord.AllowedMentions(everyone=False, roles=False, users=True)


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


class Reminders(BotDBCog):
    """Personal reminders and tracked events, kept by ``db.reminders``; the cog only sends."""

    async def cog_load(self) -> None:
        # The service wraps these: it reads the reminder or the event, finds who has not
        # reacted (one query) and logs each run; a send that raises is retried.
        self.db.reminders.on_reminder(self.send_reminder)
        self.db.reminders.on_event_reminder(candidates=self.can_see)(self.nag_pending)
        await self.db.scheduler.start()

    async def cog_unload(self) -> None:
        # Bot.close removes the cogs before botdb closes the database: the worker finishes
        # (or hands back) what it runs while bot.db and the HTTP session still work.
        await self.db.scheduler.stop()

    # -- what the worker calls ----------------------------------------------------------------

    async def send_reminder(self, due: DueReminder) -> None:
        channel = self.bot.get_partial_messageable(due.reminder.channel_id)
        text = f"<@{due.reminder.user_id}> ⏰ {due.reminder.content}"
        await channel.send(text, allowed_mentions=ONLY_USERS)

    async def nag_pending(self, due: EventReminder) -> None:
        channel = self.bot.get_partial_messageable(due.event.channel_id)
        mentions = " ".join(f"<@{user}>" for user in due.users)
        emoji = " ".join(due.event.required_reactions)
        event = due.event
        link = (
            f"https://discord.com/channels/{event.guild_id}/{event.channel_id}/{event.message_id}"
        )
        text = f"**{event.title}**: please react with {emoji} {link}\n{mentions}"
        await channel.send(text, allowed_mentions=ONLY_USERS)

    async def can_see(self, event: TrackedEvent) -> list[int] | None:
        """Who should react: the guild's members (not bots) who can read the channel, from
        discord.py's cache; None (the ``members`` table) while the guild is not cached."""
        guild = self.bot.get_guild(event.guild_id)
        where = guild.get_channel_or_thread(event.channel_id) if guild is not None else None
        if guild is None or where is None:
            return None
        return [
            member.id
            for member in guild.members
            if not member.bot and where.permissions_for(member).read_messages
        ]

    # -- reactions ------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        event = await self._tracked(payload)
        if event is not None:
            await self.db.reminders.record_reaction(event, payload.user_id, str(payload.emoji))

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        event = await self._tracked(payload)
        if event is not None:
            await self.db.reminders.remove_reaction(event, payload.user_id, str(payload.emoji))

    async def _tracked(self, payload: discord.RawReactionActionEvent) -> TrackedEvent | None:
        if payload.guild_id is None or (self.bot.user and payload.user_id == self.bot.user.id):
            return None
        return await self.db.reminders.get_event_by_message(payload.guild_id, payload.message_id)

    # -- personal reminders -------------------------------------------------------------------

    @commands.command()
    async def remind(
        self, ctx: commands.Context[commands.Bot], when: str = "", *, text: str = ""
    ) -> None:
        """``!remind 10m take the cake out``: a reminder here, after the delay."""
        if not when or not text.strip():
            await ctx.send(f"Usage: {ctx.prefix}remind 10m take the cake out (s, m, h, d or w)")
            return
        try:
            reminder = await self.db.reminders.remind(
                ctx.author.id,
                text.strip(),
                delay=parse_duration(when),
                channel_id=ctx.channel.id,
                guild_id=ctx.guild.id if ctx.guild is not None else None,
            )
        except BotDBError as exc:  # DataError: not a duration, too long, text too long
            await ctx.send(f"Cannot set that reminder: {exc}")
            return
        due = discord.utils.format_dt(reminder.due_at, "R")
        await ctx.send(f"Reminder #{reminder.id} set, {due}.")

    @commands.command()
    async def reminders(self, ctx: commands.Context[commands.Bot]) -> None:
        """Your reminders still to come, soonest first."""
        upcoming = await self.db.reminders.list_for(ctx.author.id)
        if not upcoming:
            await ctx.send(f"No reminders. Set one with {ctx.prefix}remind 10m text")
            return
        lines = [f"#{r.id} {discord.utils.format_dt(r.due_at, 'R')}: {r.content}" for r in upcoming]
        await ctx.send("\n".join(lines), allowed_mentions=discord.AllowedMentions.none())

    @commands.command(name="cancel")
    async def cancel_reminder(
        self, ctx: commands.Context[commands.Bot], reminder_id: str = ""
    ) -> None:
        """``!cancel 3``: cancel your reminder #3 (nobody else's)."""
        number = reminder_id.lstrip("#")
        if not number.isdigit():
            await ctx.send(f"Usage: {ctx.prefix}cancel ID (see {ctx.prefix}reminders)")
            return
        try:
            gone = await self.db.reminders.cancel(int(number), user_id=ctx.author.id)
        except BotDBError:  # NotFoundError: no such reminder of this user
            await ctx.send(f"You have no reminder #{number}.")
            return
        await ctx.send(
            f"Reminder #{gone.id} cancelled: {gone.content}",
            allowed_mentions=discord.AllowedMentions.none(),
        )

    # -- tracked events -----------------------------------------------------------------------

    @commands.command()
    @commands.guild_only()
    @commands.has_guild_permissions(manage_messages=True)
    async def track(self, ctx: commands.Context[commands.Bot], message_id: int, *args: str) -> None:
        """``!track <message_id> [interval] ✅ ❌``: remind who has not reacted, every interval
        (default 6h), in this channel."""
        assert ctx.guild is not None  # guild_only
        interval = dt.timedelta(hours=6)
        emoji = list(args)
        if emoji:
            try:
                interval = parse_duration(emoji[0])
                emoji = emoji[1:]
            except BotDBError:
                pass  # not an interval: the first emoji
        cached = discord.utils.get(self.bot.cached_messages, id=message_id)
        title = (cached.content if cached is not None else "")[:100] or f"message {message_id}"
        try:
            event = await self.db.reminders.track(
                message_id,
                ctx.guild.id,
                ctx.channel.id,
                title,
                required_reactions=emoji,
                interval=interval,
            )
        except BotDBError as exc:  # no emoji, interval not whole minutes, already tracked
            await ctx.send(f"Cannot track that message: {exc}")
            return
        await ctx.send(
            f"Tracking message {message_id}: reminding who has not reacted with"
            f" {' '.join(event.required_reactions)} every {event.interval_minutes} min."
        )

    @commands.command()
    @commands.guild_only()
    @commands.has_guild_permissions(manage_messages=True)
    async def nag(self, ctx: commands.Context[commands.Bot], message_id: int) -> None:
        """``!nag <message_id>``: remind who has not reacted, now (the schedule is unchanged)."""
        event = await self._event(ctx, message_id)
        if event is not None:
            await self.db.reminders.remind_now(event)

    @commands.command()
    @commands.guild_only()
    @commands.has_guild_permissions(manage_messages=True)
    async def untrack(self, ctx: commands.Context[commands.Bot], message_id: int) -> None:
        """``!untrack <message_id>``: stop reminding (its reactions and logs are deleted)."""
        event = await self._event(ctx, message_id)
        if event is not None:
            await self.db.reminders.untrack(event)
            await ctx.send(f"No longer tracking message {message_id}.")

    async def _event(
        self, ctx: commands.Context[commands.Bot], message_id: int
    ) -> TrackedEvent | None:
        assert ctx.guild is not None  # guild_only
        event = await self.db.reminders.get_event_by_message(ctx.guild.id, message_id)
        if event is None:
            await ctx.send(f"Message {message_id} is not tracked.")
        return event


class ExampleBot(commands.Bot):
    """The bot: its database attached in ``setup_hook``, never in ``on_ready``."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = True
        super().__init__(
            command_prefix=prefix_from_config(default="!", mention=True),
            intents=intents,
            # Echoed user text (a reminder, an error quoting it) never pings @everyone.
            allowed_mentions=ONLY_USERS,
            **options,
        )

    async def setup_hook(self) -> None:
        await self.load_extension("botdb.ext.discord")
        await self.db.migrate()  # type: ignore[attr-defined]  # bot.db, set by the extension
        await self.load_extension("botdb.ext.discord.recorder")
        await self.add_cog(Stats(self))
        await self.add_cog(Reminders(self))  # starts the reminders' worker


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
