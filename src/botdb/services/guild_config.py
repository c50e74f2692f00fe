"""Per-guild configuration (``db.config``): typed, cached, validated, invalidated after commit.

``get`` is what a bot calls on every message (prefix, locale, log channels), so its cached
path does no I/O: one L1 lookup and the typed object built once per cache fill. A guild
without a row gets the service's defaults; a NULL column means "the default" too, so changing
a default changes it for every guild that never set the field.

This replaces the ``@lru_cache`` that bots put on an async config getter (which caches the
coroutine object, pins ``self``, and is cleared for every guild on any write) with a shared,
per-guild cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import delete

from botdb import _json_values, errors
from botdb.models import GuildConfig
from botdb.services._common import (
    MISSING,
    check_guild_id,
    check_id,
    check_str,
    ensure_guild,
    json_column,
    run_session,
    upsert,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from botdb._protocols import ServiceDatabase

__all__ = ["GuildConfigService", "GuildSettings"]

_ID_FIELDS: Final = ("log_channel_id", "mod_log_channel_id", "welcome_channel_id", "mute_role_id")
_TEXT_FIELDS: Final = {"prefix": 32, "locale": 16, "timezone": 64}
FIELDS: Final = (*_TEXT_FIELDS, *_ID_FIELDS, "settings")
_COLUMNS: Final = tuple(GuildConfig.__table__.c[name] for name in ("guild_id", *FIELDS))
_SELECT: Final = f"SELECT {', '.join(FIELDS)} FROM guild_configs WHERE guild_id = $1"
_LOCALE: Final = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")


@dataclasses.dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's configuration with the defaults filled in. Immutable and shared: do not try
    to change it, call :meth:`GuildConfigService.set`."""

    guild_id: int
    prefix: str
    locale: str
    timezone: str
    log_channel_id: int | None
    mod_log_channel_id: int | None
    welcome_channel_id: int | None
    mute_role_id: int | None
    settings: Mapping[str, Any]


class GuildConfigService:
    """Guild configuration with defaults, cached by guild id.

    Args:
        db: the Database (its session and cache are used).
        prefix: the prefix of a guild that set none.
        locale: the locale of a guild that set none.
        timezone: the IANA time zone of a guild that set none.

    Example::

        config = GuildConfigService(db)
        settings = await config.get(guild.id)            # cached; defaults without a row
        await config.set(guild.id, prefix="?", mod_log_channel_id=123)
        bot = commands.Bot(command_prefix=config.prefix_resolver(), ...)
    """

    def __init__(
        self, db: ServiceDatabase, *, prefix: str = "!", locale: str = "en", timezone: str = "UTC"
    ) -> None:
        self.db = db
        try:
            self.defaults = _defaults(prefix, locale, timezone)
        except errors.BotDBError as exc:
            raise errors.ConfigurationError(f"invalid default: {exc}") from exc
        self._memo: dict[int, tuple[str, object, GuildSettings]] = {}

    @staticmethod
    def key(guild_id: int) -> str:
        """The cache key of a guild's configuration."""
        return f"guildcfg:{guild_id}"

    # ------------------------------------------------------------------ reads

    async def get(self, guild_id: int) -> GuildSettings:
        """The guild's settings: served from the cache, loaded once per invalidation.

        Raises:
            ArgumentError / DataError: ``guild_id`` is not a non-zero 64-bit int.
        """
        if type(guild_id) is int:
            # Hot path: one dict lookup, one L1 peek, no I/O. The typed object is reused for
            # as long as the cache holds the very same entry.
            memo = self._memo.get(guild_id)
            if memo is not None and self.db.cache.peek(memo[0], MISSING) is memo[1]:
                return memo[2]
        return self._typed(guild_id, await self._raw(check_guild_id(guild_id)))

    async def _raw(self, guild_id: int) -> Mapping[str, Any]:
        """The cached row (NULL = default); the cache's own object: never mutate it."""
        data = self.db.cache.peek(self.key(guild_id), MISSING)
        if data is MISSING:
            data = await self.db.cache.get_or_load(self.key(guild_id), lambda: self._load(guild_id))
        result: Mapping[str, Any] = data
        return result

    async def _load(self, guild_id: int) -> dict[str, Any]:
        # The raw API: a cache miss (after every invalidation) costs one indexed read, not an
        # ORM session; this is most of the cross-process window's length.
        row = await self.db.fetchrow(_SELECT, guild_id)
        if row is None:
            return dict.fromkeys(FIELDS)
        data = {name: row[name] for name in FIELDS}
        data["settings"] = json_column(self.db, data["settings"])
        return data

    def _typed(self, guild_id: int, data: Mapping[str, Any]) -> GuildSettings:
        defaults = self.defaults
        settings = GuildSettings(
            guild_id=guild_id,
            prefix=data["prefix"] or defaults["prefix"],
            locale=data["locale"] or defaults["locale"],
            timezone=data["timezone"] or defaults["timezone"],
            log_channel_id=data["log_channel_id"],
            mod_log_channel_id=data["mod_log_channel_id"],
            welcome_channel_id=data["welcome_channel_id"],
            mute_role_id=data["mute_role_id"],
            settings=MappingProxyType(orjson.loads(orjson.dumps(data["settings"] or {}))),
        )
        if len(self._memo) >= self.db.settings.cache_max_size:
            self._memo.clear()  # bounded; rebuilt from the cache on demand
        self._memo[guild_id] = (self.key(guild_id), data, settings)
        return settings

    # ------------------------------------------------------------------ writes

    async def set(self, guild_id: int, **fields: Any) -> GuildSettings:
        """Store ``fields`` (others keep their value) in one upsert; None restores a default.

        Fields: ``prefix`` (1-32 characters, no leading/trailing space), ``locale`` (like
        ``en`` or ``pt-BR``), ``timezone`` (an IANA name), ``log_channel_id``,
        ``mod_log_channel_id``, ``welcome_channel_id``, ``mute_role_id`` (positive ints),
        ``settings`` (a JSON object; replaces the stored one). Every process sees the change
        once the commit's invalidation reaches it.

        Raises:
            ArgumentError: an unknown field, or a value of the wrong type.
            DataError: a value out of range (prefix too long, unknown time zone...).
            Nothing is stored when either is raised.
        """
        gid = check_guild_id(guild_id)
        clean = await _validate(fields)
        insert = upsert(self.db, GuildConfig.__table__)  # type: ignore[arg-type]  # a Table
        now = dt.datetime.now(dt.UTC)
        statement = (
            insert.values(guild_id=gid, **clean)
            .on_conflict_do_update(
                index_elements=["guild_id"],
                set_={**{name: insert.excluded[name] for name in clean}, "updated_at": now},
            )
            .returning(*_COLUMNS)
        )

        async def write(session: AsyncSession) -> dict[str, Any]:
            await ensure_guild(self.db, session, gid)
            row = (await session.execute(statement)).one()
            await self.db.invalidate(self.key(gid), within=session)
            return {name: row._mapping[name] for name in FIELDS}

        return self._typed(gid, await run_session(self.db, write))

    #: The same as :meth:`set`, under the name of a config controller's ``update_config``.
    update = set

    async def reset(self, guild_id: int) -> GuildSettings:
        """Forget every setting of the guild (its row is deleted); returns the defaults."""
        gid = check_guild_id(guild_id)

        async def write(session: AsyncSession) -> None:
            await session.execute(delete(GuildConfig).where(GuildConfig.guild_id == gid))
            await self.db.invalidate(self.key(gid), within=session)

        await run_session(self.db, write)
        return self._typed(gid, dict.fromkeys(FIELDS))

    # ------------------------------------------------------------------ discord.py

    def prefix_resolver(
        self, default: str | None = None, *, mention: bool = False
    ) -> Callable[[Any, Any], Awaitable[list[str]]]:
        """A ``command_prefix`` callable for discord.py: ``commands.Bot(command_prefix=...)``.

        Args:
            default: the prefix in DMs and in guilds that set none (the service's default
                prefix when None).
            mention: also accept a mention of the bot as a prefix.

        The callable takes ``(bot, message)`` (duck-typed: ``message.guild`` may be None in
        a DM) and returns the list of accepted prefixes, from the cache.
        """
        fallback = self.defaults["prefix"] if default is None else default
        if not isinstance(fallback, str) or not fallback:
            raise errors.ConfigurationError("default prefix must be a non-empty str")

        async def resolve(bot: Any, message: Any) -> list[str]:
            guild = getattr(message, "guild", None)
            prefix = fallback
            if guild is not None:
                stored = (await self._raw(guild.id))["prefix"]
                prefix = stored or fallback
            if mention:
                user = getattr(bot, "user", None)
                if user is not None:
                    return [f"<@{user.id}> ", f"<@!{user.id}> ", prefix]
            return [prefix]

        return resolve


def _defaults(prefix: str, locale: str, timezone: str) -> dict[str, str]:
    clean = {"prefix": prefix, "locale": locale, "timezone": timezone}
    for name, value in clean.items():
        _check_text(name, value)
    zone_exists(timezone)
    return clean


def _check_text(name: str, value: object) -> str | None:
    text = check_str(name, value, _TEXT_FIELDS[name], min_len=1)
    if text is None:
        return None
    if name == "prefix" and text != text.strip():
        raise errors.DataError("prefix must not start or end with whitespace")
    if name == "locale" and not _LOCALE.fullmatch(text):
        raise errors.DataError(f"locale {text!r} is not a language tag like 'en' or 'pt-BR'")
    return text


def zone_exists(name: str) -> None:
    """Raise DataError unless ``name`` is an IANA time zone (reads the tz database: sync)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.DataError(f"unknown time zone {name!r}") from exc


async def _validate(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise errors.ArgumentError(
            f"unknown guild setting(s) {sorted(unknown)}; known: {', '.join(FIELDS)}"
        )
    if not fields:
        raise errors.ArgumentError("set() needs at least one field")
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _TEXT_FIELDS:
            clean[name] = _check_text(name, value)
        elif name in _ID_FIELDS:
            clean[name] = None if value is None else check_id(name, value)
        else:
            clean[name] = _check_settings(value)
    zone = clean.get("timezone")
    if zone is not None:
        await asyncio.to_thread(zone_exists, zone)  # may read a file: not on the loop
    return clean


def _check_settings(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.ArgumentError(f"settings must be a dict, got {type(value).__name__}")
    # Checked (no NaN/Infinity, 64-bit ints, no lone surrogates, bounded depth) and copied.
    copy: dict[str, Any] = orjson.loads(_json_values.dumps(value, "settings"))
    return copy
