"""``RecorderCog``: discord.py's gateway events fed to ``bot.db.recorder``.

Each listener converts its event with :mod:`botdb.ext.discord._convert` and hands it to the
recorder, which writes batches (one transaction per batch, never one per event) and is
flushed when the bot closes. Messages, edits, deletions and reactions are taken from the raw
events wherever discord.py has one, so that what happens to messages outside the client's
message cache (older, or from before a restart) is recorded as well.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import discord
from discord.ext import commands

from botdb import errors
from botdb.ext.discord import _convert as convert
from botdb.recorder._events import Event

if TYPE_CHECKING:
    from botdb.database import Database

__all__ = ["RECORDED_EVENTS", "RecorderCog"]

log = logging.getLogger("botdb.ext.discord")

#: The events :class:`RecorderCog` listens to (discord.py's names, without ``on_``).
RECORDED_EVENTS: Final = frozenset(
    {
        "message",
        "raw_message_edit",
        "raw_message_delete",
        "raw_bulk_message_delete",
        "raw_reaction_add",
        "raw_reaction_remove",
        "raw_reaction_clear",
        "raw_reaction_clear_emoji",
        "member_join",
        "raw_member_remove",
        "member_update",
        "command_completion",
        "app_command_completion",
        "guild_join",
        "guild_available",
        "guild_update",
        "guild_channel_create",
        "guild_channel_update",
        "thread_create",
    }
)

#: Users and DM chats whose names were recorded by this process: bounded, then forgotten.
_SEEN_LIMIT = 100_000


def event_names(events: bool | Iterable[str]) -> frozenset[str]:
    """The recorded events chosen by ``record=`` (True: all of them; names with or without
    ``on_``).

    Raises:
        ConfigurationError: a name that is not one of :data:`RECORDED_EVENTS`.
    """
    if events is True:
        return RECORDED_EVENTS
    if events is False:
        return frozenset()
    if isinstance(events, str):
        events = (events,)
    names = frozenset(name.removeprefix("on_") for name in events)
    unknown = names - RECORDED_EVENTS
    if unknown:
        raise errors.ConfigurationError(
            f"unknown event(s) to record: {sorted(unknown)}; "
            f"known: {', '.join(sorted(RECORDED_EVENTS))}"
        )
    return names


class RecorderCog(commands.Cog, name="botdb recorder"):
    """Records chat events into ``bot.db.recorder`` (opt-in).

    Added by ``attach(bot, record=True)`` (or a set of event names), or by hand::

        await bot.add_cog(RecorderCog(bot, events={"message", "raw_reaction_add"}))

    Args:
        bot: the bot; its ``db`` attribute is read on every event (set by ``attach``).
        events: the events to record (default: all of :data:`RECORDED_EVENTS`).

    Raises:
        ConfigurationError: an unknown event name.
    """

    def __init__(self, bot: commands.Bot, events: bool | Iterable[str] = True) -> None:
        self.bot = bot
        self.events = event_names(events)
        # Only the chosen listeners are registered by add_cog (it reads this attribute).
        self.__cog_listeners__ = [
            (name, method)
            for name, method in type(self).__cog_listeners__
            if name.removeprefix("on_") in self.events
        ]
        self._users: dict[int, tuple[str | None, str | None, bool | None]] = {}
        self._dms: set[int] = set()

    @property
    def db(self) -> Database:
        """The bot's Database (``bot.db``)."""
        db: Database | None = getattr(self.bot, "db", None)
        if db is None:
            raise errors.ConfigurationError(
                "bot.db is not set: load the botdb.ext.discord extension (or call "
                "botdb.ext.discord.attach(bot)) in setup_hook before recording"
            )
        return db

    async def _record(self, *events: Event) -> None:
        await self.db.recorder.record_many(events)

    def _user_events(self, user: discord.abc.User) -> list[Event]:
        """The user's :class:`UserInfo` when its names differ from what this process recorded."""
        info = convert.user_info(user)
        seen = (info.username, info.display_name, info.is_bot)
        if self._users.get(info.id) == seen:
            return []
        if len(self._users) >= _SEEN_LIMIT:
            self._users.clear()
        self._users[info.id] = seen
        return [info]

    def _chat_events(self, channel: Any) -> list[Event]:
        """A DM chat's :class:`GuildInfo` (``private``/``group``), the first time it is seen."""
        if getattr(channel, "guild", None) is not None or channel.id in self._dms:
            return []
        if not isinstance(channel, discord.DMChannel | discord.GroupChannel):
            return []
        if len(self._dms) >= _SEEN_LIMIT:
            self._dms.clear()
        self._dms.add(channel.id)
        return [convert.guild_info(channel)]

    # -- messages -----------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        events = self._chat_events(message.channel) + self._user_events(message.author)
        await self._record(*events, convert.message_created(message))

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        event = convert.message_edited(payload)
        if event is not None:
            await self._record(event)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._record(convert.message_deleted(payload, client=self.bot))

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._record(convert.messages_bulk_deleted(payload, client=self.bot))

    # -- reactions ----------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        events = self._user_events(payload.member) if payload.member is not None else []
        await self._record(*events, convert.reaction_added(payload, client=self.bot))

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._record(convert.reaction_removed(payload, client=self.bot))

    @commands.Cog.listener()
    async def on_raw_reaction_clear(self, payload: discord.RawReactionClearEvent) -> None:
        await self._record(convert.reactions_cleared(payload, client=self.bot))

    @commands.Cog.listener()
    async def on_raw_reaction_clear_emoji(
        self, payload: discord.RawReactionClearEmojiEvent
    ) -> None:
        await self._record(convert.reactions_cleared(payload, client=self.bot))

    # -- members ------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_member_join(self, member: discord.Member) -> None:
        await self._record(*self._user_events(member), convert.member_joined(member))

    @commands.Cog.listener()
    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        await self._record(convert.member_left(payload))

    @commands.Cog.listener()
    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        # Recorded whatever changed: ``after`` is discord.py's live cached member, which a
        # later payload (a message's member data) may already have changed again by the time
        # this handler runs, so comparing it with ``before`` could miss a change.
        await self._record(convert.member_updated(after))

    # -- commands -----------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        events = self._user_events(ctx.author)
        await self._record(*events, convert.command_invoked(ctx))

    @commands.Cog.listener()
    async def on_app_command_completion(
        self,
        interaction: discord.Interaction[Any],
        command: discord.app_commands.Command[Any, ..., Any] | discord.app_commands.ContextMenu,
    ) -> None:
        events = self._user_events(interaction.user)
        await self._record(*events, convert.app_command_invoked(interaction, command))

    # -- guilds and channels ------------------------------------------------------------------

    async def _record_guild(self, guild: discord.Guild) -> None:
        events: list[Event] = [convert.guild_info(guild)]
        events += [convert.channel_info(channel) for channel in guild.channels]
        events += [convert.channel_info(thread) for thread in guild.threads]
        await self._record(*events)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._record_guild(guild)

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._record_guild(guild)

    @commands.Cog.listener()
    async def on_guild_update(self, before: discord.Guild, after: discord.Guild) -> None:
        await self._record(convert.guild_info(after))

    @commands.Cog.listener()
    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        await self._record(convert.channel_info(channel))

    @commands.Cog.listener()
    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        await self._record(convert.channel_info(after))

    @commands.Cog.listener()
    async def on_thread_create(self, thread: discord.Thread) -> None:
        await self._record(convert.channel_info(thread))
