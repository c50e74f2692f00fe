"""Scoped settings in the style of Red-DiscordBot's ``Config``, stored in ``kv_store``.

A cog registers defaults per scope, then reads and writes through a scope's group::

    scoped = ScopedConfig(db, namespace="economy")
    scoped.register_guild(currency="coins", daily=100)
    scoped.register_member(balance=0, banned=False, items=[])

    await scoped.guild(gid).get("currency")                   # "coins" (the default)
    await scoped.guild(gid).set("daily", 250)
    await scoped.member(gid, uid).increment("balance", 5)     # new value, one atomic statement
    await scoped.member(gid, uid).toggle("banned")            # new bool
    await scoped.member(gid, uid).append("items", "sword")    # new list
    await scoped.all_members(gid)                             # {uid: {"balance": 5, ...}}

Storage: one ``kv_store`` row per stored setting, keyed ``(namespace, scope, key)`` with a
JSON value; defaults are not stored. The ``scope`` column is written as:

=================  ===================================
scope              ``scope`` column
=================  ===================================
global             ``global``
guild              ``guild:<guild id>``
channel            ``channel:<channel id>``
role               ``role:<role id>``
user               ``user:<user id>``
member             ``member:<guild id>:<user id>``
custom group       ``custom:<group>:<id>[:<id>...]``
=================  ===================================

Every write is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement (see
:mod:`botdb.services._scoped_sql`), correct when several processes write at once. Reads are
cached per scope (``kv:<namespace>:<scope>``) and invalidated in every process after commit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, overload

from sqlalchemy import ColumnElement, and_, delete, select

from botdb import errors
from botdb.models import KeyValue
from botdb.services._common import (
    BIGINT_MAX,
    MISSING,
    check_guild_id,
    check_id,
    json_column,
    run_session,
)
from botdb.services._scoped_sql import (
    check_value,
    copy_json,
    json_of,
    merged,
    normalize,
    write_statement,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from botdb._protocols import ServiceDatabase

__all__ = ["ScopeGroup", "ScopedConfig"]

SCOPES: Final = ("global", "guild", "channel", "role", "user", "member")
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_IDENT: Final = re.compile(r"[^:\x00]{1,40}")


class ScopedConfig:
    """Registered defaults and stored values of one namespace (a cog, a feature).

    Args:
        db: the Database (its session and cache are used).
        namespace: what the settings belong to, 1-64 characters of ``[A-Za-z0-9_.-]``.

    Raises:
        ArgumentError: the namespace is malformed.
    """

    def __init__(self, db: ServiceDatabase, namespace: str) -> None:
        if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
            raise errors.ArgumentError(
                f"namespace must be 1-64 characters of [A-Za-z0-9_.-], got {namespace!r}"
            )
        self.db = db
        self.namespace = namespace
        self._defaults: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ registration

    def _register(self, kind: str, defaults: dict[str, Any]) -> None:
        table = self._defaults.setdefault(kind, {})
        for key, value in defaults.items():
            if len(key) > 255:
                raise errors.DataError(f"setting name {key[:40]!r}... is longer than 255")
            json_of(f"the default of {key!r}", value)
            table[key] = copy_json(value)

    def register_global(self, **defaults: Any) -> None:
        """Register settings of the bot as a whole, with their defaults (may be called again)."""
        self._register("global", defaults)

    def register_guild(self, **defaults: Any) -> None:
        """Register per-guild settings with their defaults."""
        self._register("guild", defaults)

    def register_channel(self, **defaults: Any) -> None:
        """Register per-channel settings with their defaults."""
        self._register("channel", defaults)

    def register_role(self, **defaults: Any) -> None:
        """Register per-role settings with their defaults."""
        self._register("role", defaults)

    def register_user(self, **defaults: Any) -> None:
        """Register per-user (global, all guilds) settings with their defaults."""
        self._register("user", defaults)

    def register_member(self, **defaults: Any) -> None:
        """Register per-member (a user in one guild) settings with their defaults."""
        self._register("member", defaults)

    def register_custom(self, group: str, **defaults: Any) -> None:
        """Register settings of a custom group (e.g. ``"ticket"``), identified by any ids."""
        if not isinstance(group, str) or not _NAME.fullmatch(group):
            raise errors.ArgumentError(f"group must match [A-Za-z0-9_.-]{{1,64}}, got {group!r}")
        self._register(f"custom:{group}", defaults)

    def defaults(self, kind: str) -> dict[str, Any]:
        """A copy of the registered defaults of ``kind`` ("guild", "member", "custom:<g>"...)."""
        return merged(self._kind(kind), {})

    def _kind(self, kind: str) -> dict[str, Any]:
        table = self._defaults.get(kind)
        if table is None:
            known = [*SCOPES, *(k for k in self._defaults if k.startswith("custom:"))]
            raise errors.ArgumentError(
                f"scope {kind!r} has no registered settings in namespace {self.namespace!r}; "
                f"register them first (scopes: {', '.join(known)})"
            )
        return table

    # ------------------------------------------------------------------ groups

    def global_(self) -> ScopeGroup:
        """The bot-wide group."""
        return ScopeGroup(self, "global", "global")

    def guild(self, guild_id: int) -> ScopeGroup:
        """The group of one guild."""
        return ScopeGroup(self, "guild", f"guild:{check_guild_id(guild_id)}")

    def channel(self, channel_id: int) -> ScopeGroup:
        """The group of one channel."""
        return ScopeGroup(self, "channel", f"channel:{check_id('channel_id', channel_id)}")

    def role(self, role_id: int) -> ScopeGroup:
        """The group of one role."""
        return ScopeGroup(self, "role", f"role:{check_id('role_id', role_id)}")

    def user(self, user_id: int) -> ScopeGroup:
        """The group of one user (across guilds)."""
        return ScopeGroup(self, "user", f"user:{check_id('user_id', user_id)}")

    def member(self, guild_id: int, user_id: int) -> ScopeGroup:
        """The group of one user in one guild."""
        gid, uid = check_guild_id(guild_id), check_id("user_id", user_id)
        return ScopeGroup(self, "member", f"member:{gid}:{uid}")

    def custom(self, group: str, *identifiers: int | str) -> ScopeGroup:
        """The group of a custom group's entry, e.g. ``custom("ticket", guild_id, 17)``."""
        kind = f"custom:{group}"
        self._kind(kind)
        if not identifiers:
            raise errors.ArgumentError("custom() needs at least one identifier")
        parts = []
        for ident in identifiers:
            if type(ident) is int:
                parts.append(str(ident))
            elif isinstance(ident, str) and _IDENT.fullmatch(ident):
                parts.append(ident)
            else:
                raise errors.ArgumentError(
                    f"identifiers are ints or 1-40 character strs without ':', got {ident!r}"
                )
        scope = f"{kind}:{':'.join(parts)}"
        if len(scope) > 128:
            raise errors.DataError(f"custom scope {scope[:40]!r}... is longer than 128")
        return ScopeGroup(self, kind, scope)

    # ------------------------------------------------------------------ bulk reads

    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Stored values of every scope starting with ``prefix``: {scope: {key: value}}."""
        statement = select(KeyValue.scope, KeyValue.key, KeyValue.value).where(
            and_(KeyValue.namespace == self.namespace, self._prefixed(prefix))
        )

        async def read(session: AsyncSession) -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = {}
            for scope, key, value in await session.execute(statement):
                found.setdefault(scope, {})[key] = value
            return found

        return await run_session(self.db, read, readonly=True)

    async def _all_of(self, kind: str) -> dict[int, dict[str, Any]]:
        defaults = self._kind(kind)
        found = await self._scan(f"{kind}:")
        return {
            int(scope.split(":", 1)[1]): merged(defaults, _typed(defaults, stored))
            for scope, stored in found.items()
        }

    async def all_guilds(self) -> dict[int, dict[str, Any]]:
        """Every guild with a stored setting: ``{guild_id: {setting: value}}`` (defaults filled)."""
        return await self._all_of("guild")

    async def all_channels(self) -> dict[int, dict[str, Any]]:
        """Every channel with a stored setting, like :meth:`all_guilds`."""
        return await self._all_of("channel")

    async def all_roles(self) -> dict[int, dict[str, Any]]:
        """Every role with a stored setting, like :meth:`all_guilds`."""
        return await self._all_of("role")

    async def all_users(self) -> dict[int, dict[str, Any]]:
        """Every user with a stored setting, like :meth:`all_guilds`."""
        return await self._all_of("user")

    @overload
    async def all_members(self, guild_id: None = None) -> dict[int, dict[int, dict[str, Any]]]: ...

    @overload
    async def all_members(self, guild_id: int) -> dict[int, dict[str, Any]]: ...

    async def all_members(
        self, guild_id: int | None = None
    ) -> dict[int, dict[int, dict[str, Any]]] | dict[int, dict[str, Any]]:
        """Members with a stored setting: ``{user_id: {...}}`` of one guild, or
        ``{guild_id: {user_id: {...}}}`` of every guild when ``guild_id`` is None."""
        defaults = self._kind("member")
        prefix = "member:" if guild_id is None else f"member:{check_guild_id(guild_id)}:"
        found = await self._scan(prefix)
        nested: dict[int, dict[int, dict[str, Any]]] = {}
        for scope, stored in found.items():
            _, gid, uid = scope.split(":")
            nested.setdefault(int(gid), {})[int(uid)] = merged(defaults, _typed(defaults, stored))
        if guild_id is None:
            return nested
        return nested.get(guild_id, {})

    async def clear_all(self, kind: str | None = None) -> int:
        """Delete every stored value of ``kind`` (all scopes when None); returns rows deleted.

        Cached values of this namespace are dropped in every process after the commit.
        """
        statement = delete(KeyValue).where(KeyValue.namespace == self.namespace)
        if kind is not None:
            self._kind(kind)
            statement = statement.where(
                self._prefixed("global" if kind == "global" else f"{kind}:")
            )
        # The scopes to invalidate come from the DELETE itself: a separate SELECT before it
        # could miss a scope committed in between, whose cached value would then outlive it.
        deleting = statement.returning(KeyValue.scope)

        async def write(session: AsyncSession) -> int:
            scopes = (await session.scalars(deleting)).all()
            await self.db.invalidate(*{self._key(s): None for s in scopes}, within=session)
            return len(scopes)

        return await run_session(self.db, write)

    def _key(self, scope: str) -> str:
        return f"kv:{self.namespace}:{scope}"

    def _prefixed(self, prefix: str) -> ColumnElement[bool]:
        """``scope`` starts with ``prefix``: a range (index-friendly on SQLite), compared
        byte-wise on PostgreSQL (a locale collation may ignore the ':' separators)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        column: ColumnElement[str] = KeyValue.__table__.c.scope
        if self.db.backend == "postgresql":
            column = column.collate("C")
        return and_(column >= prefix, column < upper)


def _check_sum(key: str, default: Any, value: Any) -> None:
    """An int setting's new sum must still be a 64-bit int: PostgreSQL's numeric would store
    a wider one, SQLite turns an overflowing integer sum into a float."""
    if type(default) is int and (type(value) is not int or not -BIGINT_MAX <= value <= BIGINT_MAX):
        raise errors.DataError(f"incrementing {key!r} would leave the 64-bit range")


def _typed(defaults: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    return {key: normalize(defaults.get(key), value) for key, value in stored.items()}


class ScopeGroup:
    """The settings of one scope (a guild, a member...), from :class:`ScopedConfig`."""

    __slots__ = ("_config", "_defaults", "cache_key", "kind", "scope")

    def __init__(self, config: ScopedConfig, kind: str, scope: str) -> None:
        self._config = config
        self._defaults = config._kind(kind)
        self.kind = kind
        self.scope = scope
        self.cache_key = config._key(scope)

    def __repr__(self) -> str:
        return f"<ScopeGroup {self._config.namespace}/{self.scope}>"

    def _default(self, key: str) -> Any:
        default = self._defaults.get(key, MISSING)
        if default is MISSING:
            raise errors.ArgumentError(
                f"{key!r} is not a registered {self.kind} setting of namespace "
                f"{self._config.namespace!r} (registered: {', '.join(self._defaults) or 'none'})"
            )
        return default

    async def _stored(self) -> dict[str, Any]:
        cache = self._config.db.cache
        data = cache.peek(self.cache_key, MISSING)
        if data is MISSING:
            data = await cache.get_or_load(self.cache_key, self._load)
        stored: dict[str, Any] = data
        return stored

    async def _load(self) -> dict[str, Any]:
        config = self._config
        db = config.db
        rows = await db.fetch(
            "SELECT key, value FROM kv_store WHERE namespace = $1 AND scope = $2",
            config.namespace,
            self.scope,
        )
        return {
            key: normalize(self._defaults.get(key), json_column(db, value)) for key, value in rows
        }

    async def get(self, key: str, default: Any = MISSING) -> Any:
        """The stored value of ``key``, else ``default`` if given, else the registered default.

        Lists and dicts are returned as copies: change them through :meth:`set`.

        Raises:
            ArgumentError: ``key`` is not registered for this scope.
        """
        registered = self._default(key)
        value = (await self._stored()).get(key, MISSING)
        if value is MISSING:
            value = registered if default is MISSING else default
        return copy_json(value)

    async def all(self) -> dict[str, Any]:
        """Every registered setting of this scope: stored values over defaults (a copy)."""
        return merged(self._defaults, await self._stored())

    async def set(self, key: str, value: Any) -> Any:
        """Store ``value`` (one upsert); returns it.

        Raises:
            ArgumentError: unregistered key, or a value of another type than the default's.
            DataError: the value is not JSON. Nothing is stored on error.
        """
        clean = check_value(key, self._default(key), value)
        return await self._write(key, "set", clean)

    async def increment(self, key: str, by: int | float = 1) -> int | float:
        """Add ``by`` to a number setting in ONE atomic statement; returns the new value.

        Concurrent increments from any number of tasks or processes all count.

        Raises:
            ArgumentError: the setting is not a number, or ``by`` is not a number.
        """
        default = self._default(key)
        if type(default) not in (int, float):
            raise errors.ArgumentError(f"{key!r} is not a number setting; cannot increment it")
        if type(by) not in (int, float) or (type(default) is int and type(by) is not int):
            raise errors.ArgumentError(
                f"increment of {key!r} must be {type(default).__name__}, got {type(by).__name__}"
            )
        initial = check_value(key, default, default + by)
        result: int | float = await self._write(key, "increment", initial, by)
        return result

    async def toggle(self, key: str) -> bool:
        """Flip a bool setting in ONE atomic statement; returns the new value."""
        default = self._default(key)
        if type(default) is not bool:
            raise errors.ArgumentError(f"{key!r} is not a bool setting; cannot toggle it")
        return bool(await self._write(key, "toggle", not default))

    async def append(self, key: str, item: Any) -> list[Any]:
        """Append ``item`` to a list setting in ONE atomic statement; returns the new list."""
        default = self._default(key)
        if type(default) is not list:
            raise errors.ArgumentError(f"{key!r} is not a list setting; cannot append to it")
        item = check_value(key, None, item)
        initial = [*default, item]
        result: list[Any] = await self._write(key, "append", initial, item)
        return result

    async def _write(self, key: str, op: str, initial: Any, operand: Any = None) -> Any:
        config = self._config
        statement = write_statement(
            config.db, config.namespace, self.scope, key, op=op, initial=initial, operand=operand
        ).returning(KeyValue.value)

        async def write(session: AsyncSession) -> Any:
            value = normalize(self._defaults[key], (await session.execute(statement)).scalar_one())
            if op == "increment":
                _check_sum(key, self._defaults[key], value)  # raising rolls the sum back
            await config.db.invalidate(self.cache_key, within=session)
            return value

        return await run_session(config.db, write)

    async def clear(self, key: str | None = None) -> None:
        """Forget the stored value of ``key`` (back to its default), or of every key."""
        config = self._config
        statement = delete(KeyValue).where(
            KeyValue.namespace == config.namespace, KeyValue.scope == self.scope
        )
        if key is not None:
            self._default(key)
            statement = statement.where(KeyValue.key == key)

        async def write(session: AsyncSession) -> None:
            await session.execute(statement)
            await config.db.invalidate(self.cache_key, within=session)

        await run_session(config.db, write)
