"""``BotDBCog``: a cog base class with the database and its services at hand (the
``BaseCog`` many bots write for themselves), and helpers that store discord.py users,
guilds and members."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from botdb import errors

if TYPE_CHECKING:
    from botdb import models
    from botdb.database import Database
    from botdb.recorder import Recorder
    from botdb.repository import Repository
    from botdb.services import CaseService, GuildConfigService, GuildSettings, UserService
    from botdb.services.users import UserRecord

__all__ = ["BotDBCog", "database_of"]


def database_of(bot: commands.Bot) -> Database:
    """``bot.db``, or a :class:`~botdb.errors.ConfigurationError` saying how to set it."""
    db: Database | None = getattr(bot, "db", None)
    if db is None:
        raise errors.ConfigurationError(
            "bot.db is not set: in setup_hook, await bot.load_extension('botdb.ext.discord') "
            "or await botdb.ext.discord.attach(bot) before adding cogs that use it"
        )
    return db


class BotDBCog(commands.Cog):
    """A cog with ``self.db`` (the bot's Database) and its services at hand.

    Subclass it instead of ``commands.Cog``::

        class Stats(BotDBCog):
            @commands.command()
            async def stats(self, ctx):
                await self.upsert_member(ctx.author)
                settings = await self.config.get(ctx.guild.id)
                count = await self.db.fetchval(
                    "SELECT count(*) FROM messages WHERE guild_id = $1", ctx.guild.id
                )
                await ctx.send(f"{count} messages; prefix {settings.prefix}")

        await bot.add_cog(Stats(bot))    # after botdb.ext.discord is loaded

    ``self.db`` raises :class:`~botdb.errors.ConfigurationError` when the bot has no
    database attached; every database error is a :class:`~botdb.errors.BotDBError`
    (discord.py hands it to error handlers as ``CommandInvokeError.original``).
    """

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @property
    def db(self) -> Database:
        """The bot's Database (``bot.db``)."""
        return database_of(self.bot)

    @property
    def users(self) -> UserService:
        """``db.users``: cached, race-free ``get_or_create`` of users."""
        return self.db.users

    @property
    def config(self) -> GuildConfigService:
        """``db.config``: per-guild configuration (prefix, locale, channels...), cached."""
        return self.db.config

    @property
    def cases(self) -> CaseService:
        """``db.cases``: moderation cases."""
        return self.db.cases

    @property
    def guilds(self) -> Repository[models.Guild]:
        """The guilds' repository."""
        return self.db.guilds

    @property
    def members(self) -> Repository[models.Member]:
        """The members' repository."""
        return self.db.members

    @property
    def recorder(self) -> Recorder:
        """``db.recorder``: batched writes of chat events."""
        return self.db.recorder

    async def guild_settings(self, guild: discord.abc.Snowflake) -> GuildSettings:
        """The guild's configuration with defaults filled in (cached)."""
        return await self.config.get(guild.id)

    async def upsert_user(self, user: discord.abc.User) -> UserRecord:
        """Store a discord.py ``User``/``Member`` (name, global name, bot flag) and return its
        row; no I/O when the cached row already matches.

        Raises:
            ArgumentError: ``user`` is not a discord.py user.
        """
        if not isinstance(user, discord.abc.User):
            raise errors.ArgumentError(f"expected a discord.py User or Member, got {user!r}")
        return await self.users.ensure(user)

    async def upsert_guild(self, guild: discord.Guild) -> models.Guild:
        """Store a guild (name, owner) in one upsert and return its row.

        Raises:
            ArgumentError: ``guild`` is not a ``discord.Guild``.
        """
        if not isinstance(guild, discord.Guild):
            raise errors.ArgumentError(f"expected a discord.Guild, got {guild!r}")
        return await self.db.run_in_session(lambda s: self._upsert_guild(s, guild))

    async def _upsert_guild(self, session: AsyncSession, guild: discord.Guild) -> models.Guild:
        values: dict[str, Any] = {
            "id": guild.id,
            "platform": "discord",
            "name": guild.name[:255],
            "owner_id": guild.owner_id,
        }
        return await self.guilds.upsert(values, session=session)

    async def upsert_member(self, member: discord.Member) -> models.Member:
        """Store a member: its user (as :meth:`upsert_user`), its guild, and its member row
        (nick, ``joined_at``, active) in one transaction; returns the member row.

        Raises:
            ArgumentError: ``member`` is not a ``discord.Member`` (a ``User`` in a DM has no
                guild: use :meth:`upsert_user`).
        """
        if not isinstance(member, discord.Member):
            raise errors.ArgumentError(
                f"expected a discord.Member (a guild member), got {type(member).__name__}"
            )
        await self.upsert_user(member)
        values: dict[str, Any] = {
            "guild_id": member.guild.id,
            "user_id": member.id,
            "nick": member.nick[:255] if member.nick else None,
            "joined_at": member.joined_at,
            "left_at": None,
            "is_active": True,
        }

        async def work(session: AsyncSession) -> models.Member:
            await self._upsert_guild(session, member.guild)
            return await self.members.upsert(values, session=session)

        return await self.db.run_in_session(work)
