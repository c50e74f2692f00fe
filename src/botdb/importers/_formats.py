"""The built-in legacy JSON stores: a reminder bot's watched messages and a per-member store.

A format turns one ``(key, value)`` member of the file into a validated record (pydantic
raises for a bad one) and a record into rows per table. :mod:`botdb.importers.json_store`
does the rest (streaming, validation report, transaction, upserts, verification).
"""

from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ANY_REACTION",
    "Format",
    "MembersFormat",
    "RemindersFormat",
    "TableRule",
]

#: ``event_reactions.emoji`` of a user the reminder store lists as having reacted: the store
#: keeps who reacted, not with which emoji.
ANY_REACTION = "*"

PositiveId = Annotated[int, Field(gt=0)]
_MEMBER_KEY = re.compile(r"\s*(-?\d+)_(\d+)\s*")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Legacy stores wrote naive ``isoformat()`` times; they are read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class _Stamped(BaseModel):
    """``created_at``/``updated_at`` a legacy record may carry: the imported row keeps them
    (instead of the import's time)."""

    created_at: dt.datetime | None = Field(
        default=None, validation_alias=AliasChoices("created_at", "created")
    )
    updated_at: dt.datetime | None = Field(
        default=None, validation_alias=AliasChoices("updated_at", "updated")
    )

    @field_validator("created_at", "updated_at")
    @classmethod
    def _stamp_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _utc(value)

    def stamps(self) -> dict[str, dt.datetime]:
        """The timestamps the record has (a missing one is left to the column's default)."""
        found = {"created_at": self.created_at, "updated_at": self.updated_at}
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class TableRule:
    """How rows go into one table: the natural key, and the columns an existing row gets
    updated with (empty: an existing row is left as it is)."""

    key: tuple[str, ...]
    update: tuple[str, ...] = ()


@dataclass
class Format(abc.ABC):
    """A JSON store layout: parse a member, and map a record to rows per table."""

    name: str = ""
    #: Tables written, parents first, with their rules.
    rules: dict[str, TableRule] = field(default_factory=dict)
    #: The table whose keys must equal the file's records one for one.
    primary: str = ""

    @abc.abstractmethod
    def parse(self, key: str, value: Any) -> Any:
        """Validate one member; raise ``ValueError`` (pydantic's included) when it is bad."""

    @abc.abstractmethod
    def rows(self, record: Any) -> dict[str, list[dict[str, Any]]]:
        """The rows one valid record becomes, per table."""

    def looks_like(self, key: str, value: Any) -> bool:
        """Whether a member looks like this format (for ``format="auto"``)."""
        return False


# -- the reminder bot's watched_matches.json -------------------------------------------------


class ReminderRecord(_Stamped):
    """One watched message of a reminder bot's JSON store (``watched_matches.json``)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    message_id: PositiveId
    channel_id: PositiveId
    guild_id: int = Field(
        description="0 in stores saved before guilds were tracked: such records are refused"
    )
    title: str = Field(min_length=1, max_length=255)
    description: str | None = None
    guild_name: str | None = Field(default=None, max_length=255)
    required_reactions: list[Annotated[str, Field(min_length=1, max_length=255)]] = []
    interval_minutes: int = Field(
        default=60, gt=0, validation_alias=AliasChoices("interval_minutes", "interval")
    )
    is_paused: bool = Field(default=False, validation_alias=AliasChoices("is_paused", "paused"))
    last_reminder: dt.datetime | None = Field(
        default=None,
        validation_alias=AliasChoices("last_reminder", "last_reminder_at", "last_remind"),
    )
    users_who_reacted: list[PositiveId] = []
    all_users: list[PositiveId] = []

    @field_validator("guild_id")
    @classmethod
    def _guild_known(cls, value: int) -> int:
        if value == 0:
            raise ValueError("guild_id is 0 (a store saved before guilds were tracked)")
        return value

    @field_validator("last_reminder")
    @classmethod
    def _as_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _utc(value)


@dataclass
class RemindersFormat(Format):
    """``{"<message id>": {title, guild_id, channel_id, required_reactions, ...}}``.

    Rows: a placeholder guild (``"Guild <id>"`` unless the record has ``guild_name``), a user
    and a member row per listed user, the tracked event (with the record's ``created_at`` and
    ``updated_at`` when it has them), and one ``event_reactions`` row per user who reacted
    (emoji :data:`ANY_REACTION`).
    """

    name: str = "reminders"
    primary: str = "tracked_events"
    rules: dict[str, TableRule] = field(
        default_factory=lambda: {
            "guilds": TableRule(("id",)),
            "users": TableRule(("id",)),
            "members": TableRule(("guild_id", "user_id")),
            "tracked_events": TableRule(
                ("message_id", "guild_id"),
                (
                    "channel_id",
                    "title",
                    "description",
                    "interval_minutes",
                    "is_paused",
                    "last_reminder_at",
                    "required_reactions",
                ),
            ),
            "event_reactions": TableRule(("event_id", "guild_id", "user_id", "emoji")),
        }
    )
    _fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "channel_id", "required_reactions", "users_who_reacted", "interval_minutes"}
    )

    def looks_like(self, key: str, value: Any) -> bool:
        return (
            key.strip().isdigit()
            and isinstance(value, Mapping)
            and len(self._fields & value.keys()) >= 2
        )

    def parse(self, key: str, value: Any) -> ReminderRecord:
        if not key.strip().isdigit():
            raise ValueError("the key is not a message id")
        if not isinstance(value, Mapping):
            raise ValueError("the value is not an object")
        data = dict(value)
        data.setdefault("message_id", key.strip())
        record = ReminderRecord.model_validate(data)
        if str(record.message_id) != key.strip():
            raise ValueError(f"message_id {record.message_id} differs from the key")
        return record

    def rows(self, record: Any) -> dict[str, list[dict[str, Any]]]:
        assert isinstance(record, ReminderRecord)
        guild = record.guild_id
        users = sorted(set(record.all_users) | set(record.users_who_reacted))
        return {
            "guilds": [{"id": guild, "name": record.guild_name or f"Guild {guild}"}],
            "users": [{"id": user} for user in users],
            "members": [{"guild_id": guild, "user_id": user} for user in users],
            "tracked_events": [
                {
                    "message_id": record.message_id,
                    "guild_id": guild,
                    "channel_id": record.channel_id,
                    "title": record.title,
                    "description": record.description,
                    "interval_minutes": record.interval_minutes,
                    "is_paused": record.is_paused,
                    "last_reminder_at": record.last_reminder,
                    "required_reactions": list(record.required_reactions),
                    **record.stamps(),
                }
            ],
            "event_reactions": [
                # event_id is filled in once the event row exists (see json_store).
                {
                    "event_id": (record.message_id, guild),
                    "guild_id": guild,
                    "user_id": user,
                    "emoji": ANY_REACTION,
                }
                for user in sorted(set(record.users_who_reacted))
            ],
        }


# -- the member store {"<guild>_<user>": {...}} ----------------------------------------------


class MemberStatistics(BaseModel):
    model_config = ConfigDict(extra="allow")

    message_count: int = Field(default=0, ge=0)
    last_active: dt.datetime | None = None

    @field_validator("last_active")
    @classmethod
    def _as_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _utc(value)


class MemberRecord(_Stamped):
    """One member of the per-member JSON store (``{"<guild>_<user>": {...}}``)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    guild_id: int
    user_id: PositiveId
    join_date: dt.datetime | None = Field(
        default=None, validation_alias=AliasChoices("join_date", "joined_at")
    )
    nick: str | None = Field(
        default=None, max_length=255, validation_alias=AliasChoices("nick", "nickname")
    )
    username: str | None = Field(default=None, max_length=255)
    roles: list[int | str] = []
    preferences: dict[str, Any] = {}
    statistics: MemberStatistics | None = None

    @field_validator("join_date")
    @classmethod
    def _as_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _utc(value)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[int | str]) -> list[int | str]:
        out: list[int | str] = []
        for role in value:
            if isinstance(role, str) and role.strip().isdigit():
                role = int(role)
            if isinstance(role, int) and role <= 0:
                raise ValueError(f"role id {role} is not positive")
            if isinstance(role, str) and not role.strip():
                raise ValueError("a role name is empty")
            out.append(role)
        return out


@dataclass
class MembersFormat(Format):
    """``{"<guild id>_<user id>": {roles, preferences, statistics, join_date, ...}}``.

    Rows: a placeholder guild and user, the member (``preferences`` as is, ``message_count``
    and ``last_active_at`` from ``statistics``, the record's ``created_at``/``updated_at``
    when it has them), and for numeric role ids a placeholder role
    plus a ``member_roles`` row. What has no column (role *names*, other statistics, other
    fields) is kept in ``preferences["_legacy"]``.
    """

    name: str = "members"
    primary: str = "members"
    rules: dict[str, TableRule] = field(
        default_factory=lambda: {
            "guilds": TableRule(("id",)),
            "users": TableRule(("id",)),
            "members": TableRule(
                ("guild_id", "user_id"),
                ("nick", "joined_at", "preferences", "message_count", "last_active_at"),
            ),
            "roles": TableRule(("id",)),
            "member_roles": TableRule(("guild_id", "user_id", "role_id")),
        }
    )
    _fields: ClassVar[frozenset[str]] = frozenset(
        {"roles", "preferences", "statistics", "join_date", "user_id", "guild_id"}
    )

    def looks_like(self, key: str, value: Any) -> bool:
        return (
            bool(_MEMBER_KEY.fullmatch(key))
            and isinstance(value, Mapping)
            and bool(self._fields & value.keys())
        )

    def parse(self, key: str, value: Any) -> MemberRecord:
        match = _MEMBER_KEY.fullmatch(key)
        if match is None:
            raise ValueError("the key is not '<guild id>_<user id>'")
        if not isinstance(value, Mapping):
            raise ValueError("the value is not an object")
        data = dict(value)
        guild, user = int(match.group(1)), int(match.group(2))
        data.setdefault("guild_id", guild)
        data.setdefault("user_id", user)
        record = MemberRecord.model_validate(data)
        if (record.guild_id, record.user_id) != (guild, user):
            raise ValueError(
                f"guild_id/user_id {record.guild_id}/{record.user_id} differ from the key"
            )
        return record

    def rows(self, record: Any) -> dict[str, list[dict[str, Any]]]:
        assert isinstance(record, MemberRecord)
        guild, user = record.guild_id, record.user_id
        role_ids = sorted({r for r in record.roles if isinstance(r, int)})
        legacy: dict[str, Any] = dict(record.model_extra or {})
        if names := [r for r in record.roles if isinstance(r, str)]:
            legacy["roles"] = names
        stats = record.statistics or MemberStatistics()
        if stats.model_extra:
            legacy["statistics"] = dict(stats.model_extra)
        if record.username is not None:
            legacy["username"] = record.username
        preferences = dict(record.preferences)
        if legacy:
            preferences["_legacy"] = legacy
        return {
            "guilds": [{"id": guild, "name": f"Guild {guild}"}],
            "users": [{"id": user, "username": record.username}],
            "members": [
                {
                    "guild_id": guild,
                    "user_id": user,
                    "nick": record.nick,
                    "joined_at": record.join_date,
                    "preferences": preferences,
                    "message_count": stats.message_count,
                    "last_active_at": stats.last_active,
                    **record.stamps(),
                }
            ],
            "roles": [{"id": r, "guild_id": guild, "name": f"Role {r}"} for r in role_ids],
            "member_roles": [{"guild_id": guild, "user_id": user, "role_id": r} for r in role_ids],
        }
