"""Users seen by the bot: ``ensure`` (or ``get_or_create``) on every event, from the cache.

``get_or_create`` returns ``(record, created)`` like the repositories; ``ensure`` returns the
record alone (and ``get_or_create_user`` is ``ensure`` under a common service-layer name).
Both accept a discord.py ``User``/``Member``, an aiogram or python-telegram-bot
``User``, or plain keyword fields; frameworks are recognised by their attributes (no import).
The cached path compares the incoming fields with the cached row and returns without any I/O
when nothing changed; otherwise one ``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE <a
tracked field differs> RETURNING`` writes only what changed, with no get-then-insert race.

``last_seen`` is throttled: it is written at most once per ``last_seen_interval`` (60 s by
default) per user. Writing it on every event would turn every message into a write and an
invalidation broadcast to every shard, which is exactly what the cache exists to avoid; a
minute's precision is what "last seen" needs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import or_, select, update

from botdb import errors
from botdb.models import PLATFORMS, User
from botdb.services._common import (
    MISSING,
    check_bool,
    check_datetime,
    check_id,
    check_str,
    iso,
    run_session,
    upsert,
    utc_column,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from botdb._protocols import ServiceDatabase

__all__ = ["UserRecord", "UserService"]

#: Fields ``get_or_create`` keeps in sync with the platform, and their longest text.
TRACKED: Final[dict[str, int]] = {
    "platform": 16,
    "username": 255,
    "display_name": 255,
    "first_name": 255,
    "last_name": 255,
    "language_code": 16,
    "is_bot": 0,
    "is_premium": 0,
    "is_active": 0,
}
_BOOLS: Final = frozenset({"is_bot", "is_premium", "is_active"})
_UPDATABLE: Final = frozenset(TRACKED) | {"last_seen"}
_COLUMNS: Final = tuple(User.__table__.c)
_NAMES: Final = tuple(column.name for column in _COLUMNS)
_SELECT: Final = f"SELECT {', '.join(_NAMES)} FROM users WHERE id = $1"


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    """A user row as the cache holds it (immutable: the same object is shared by callers)."""

    id: int
    platform: str
    username: str | None
    display_name: str | None
    first_name: str | None
    last_name: str | None
    language_code: str | None
    is_bot: bool
    is_premium: bool
    is_active: bool
    last_seen: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def name(self) -> str:
        """The best name to show: display name, full name, @username, or ``User<id>``."""
        full = " ".join(p for p in (self.first_name, self.last_name) if p)
        return self.display_name or full or self.username or f"User{self.id}"


def _fields_of(user: object) -> dict[str, Any]:
    """Tracked fields of a discord.py or Telegram user object, recognised by duck typing."""
    if isinstance(user, Mapping):
        return dict(user)
    get = getattr
    if hasattr(user, "first_name") and (
        hasattr(user, "language_code") or hasattr(user, "is_premium")
    ):  # aiogram / python-telegram-bot User
        first, last = get(user, "first_name", None), get(user, "last_name", None)
        return {
            "id": get(user, "id", None),
            "platform": "telegram",
            "username": get(user, "username", None),
            "display_name": " ".join(p for p in (first, last) if p) or None,
            "first_name": first,
            "last_name": last,
            "language_code": get(user, "language_code", None),
            "is_bot": bool(get(user, "is_bot", False)),
            "is_premium": bool(get(user, "is_premium", False)),
        }
    if hasattr(user, "discriminator") or hasattr(user, "global_name"):  # discord.py User/Member
        return {
            "id": get(user, "id", None),
            "platform": "discord",
            "username": get(user, "name", None),
            # global_name is account-wide; Member.display_name would be a per-guild nick.
            "display_name": get(user, "global_name", None),
            "is_bot": bool(get(user, "bot", False)),
        }
    raise errors.ArgumentError(
        f"cannot read a user from {type(user).__name__}: pass a discord.py User/Member, an "
        "aiogram or python-telegram-bot User, a mapping, or keyword fields"
    )


def _validate(fields: dict[str, Any], *, event: bool = True) -> dict[str, Any]:
    """Check every field (unknown names, types, lengths).

    For an ``event`` (get_or_create) ``is_active`` defaults to True: an event from a user
    means they are reachable.
    """
    fields = dict(fields)
    clean: dict[str, Any] = {"id": check_id("id", fields.pop("id", None))}
    unknown = set(fields) - set(TRACKED)
    if unknown:
        raise errors.ArgumentError(
            f"unknown user field(s) {sorted(unknown)}; known: {sorted(TRACKED)}"
        )
    for name, value in fields.items():
        if name in _BOOLS:
            clean[name] = check_bool(name, value)
        else:
            clean[name] = check_str(name, value, TRACKED[name], nullable=name != "platform")
    platform = clean.get("platform", "discord")
    if platform not in PLATFORMS:
        raise errors.DataError(f"platform must be one of {PLATFORMS}, got {platform!r}")
    if event:
        clean.setdefault("is_active", True)
    return clean


def _cached(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row as a JSON value for the cache; ``_seen`` is last_seen as a POSIX timestamp."""
    data = {column.name: row[column.name] for column in _COLUMNS}
    seen = data["last_seen"]
    data["_seen"] = seen.timestamp() if seen is not None else 0.0
    for name in ("last_seen", "created_at", "updated_at"):
        data[name] = iso(data[name])
    return data


def _record(data: Mapping[str, Any]) -> UserRecord:
    values = {column.name: data[column.name] for column in _COLUMNS}
    for name in ("last_seen", "created_at", "updated_at"):
        text = values[name]
        values[name] = dt.datetime.fromisoformat(text) if isinstance(text, str) else text
    return UserRecord(**values)


class UserService:
    """Users (``db.users``): ensure / get-or-create on every event, reads, updates,
    deactivation.

    Args:
        db: the Database (its session and cache are used).
        last_seen_interval: seconds between two writes of a user's ``last_seen``.

    Example::

        users = UserService(db)
        record, created = await users.get_or_create(message.author)   # discord.py
        record, created = await users.get_or_create(message.from_user)  # aiogram / PTB
        record = await users.ensure(id=42, username="ann", platform="telegram")  # record only
    """

    def __init__(self, db: ServiceDatabase, *, last_seen_interval: float = 60.0) -> None:
        if not last_seen_interval >= 0:
            raise errors.ConfigurationError("last_seen_interval must be >= 0 seconds")
        self.db = db
        self.last_seen_interval = last_seen_interval
        self._memo: dict[int, tuple[str, Any, UserRecord]] = {}

    @staticmethod
    def key(user_id: int) -> str:
        """The cache key of a user."""
        return f"user:{user_id}"

    def _typed(self, user_id: int, data: Any) -> UserRecord:
        memo = self._memo.get(user_id)
        if memo is not None and memo[1] is data:
            return memo[2]
        record = _record(data)
        if len(self._memo) >= self.db.settings.cache_max_size:
            self._memo.clear()  # bounded; entries are rebuilt from the cache on demand
        self._memo[user_id] = (self.key(user_id), data, record)
        return record

    async def get_or_create(self, user: object = None, /, **fields: Any) -> tuple[UserRecord, bool]:
        """The user's row, created or brought up to date from the platform's user object,
        and whether it was created: ``(record, created)``, like the repositories'
        ``get_or_create`` (a bot greets a new user when ``created`` is True).

        Args:
            user: a discord.py ``User``/``Member``, an aiogram/PTB ``User`` or a mapping;
                omit it to pass the fields as keywords.
            **fields: ``id``, ``platform``, ``username``, ``display_name``, ``first_name``,
                ``last_name``, ``language_code``, ``is_bot``, ``is_premium``, ``is_active``;
                they override what ``user`` gave.

        Returns:
            ``(record, created)``: the row after the call, and True only for the call that
            inserted it (decided by the INSERT itself, so two racing calls never both say
            True). When the cached row already matches the incoming fields (and last_seen is
            recent) no database or Redis call is made. :meth:`ensure` returns the record
            alone.

        Raises:
            ArgumentError: an unknown object or field, or a value of the wrong type.
            DataError: a value the column cannot hold (too long, id not positive).
        """
        incoming = _fields_of(user) if user is not None else {}
        incoming.update(fields)
        hit = self._hit(incoming)
        if hit is not None:
            return hit, False
        return await self._load_or_write(incoming)

    async def ensure(self, user: object = None, /, **fields: Any) -> UserRecord:
        """The user's row, created or brought up to date: :meth:`get_or_create` without
        ``created``, for the hot path of a handler that only needs the record.

        Takes the same arguments and raises the same errors; a cache hit makes no database
        or Redis call.
        """
        incoming = _fields_of(user) if user is not None else {}
        incoming.update(fields)
        hit = self._hit(incoming)
        if hit is not None:
            return hit
        return (await self._load_or_write(incoming))[0]

    async def get_or_create_user(self, user: object = None, /, **fields: Any) -> UserRecord:
        """:meth:`ensure` under the name of the service layer many bots already have
        (``user = await user_service.get_or_create_user(message.from_user)``): returns the
        record alone."""
        return await self.ensure(user, **fields)

    def _hit(self, incoming: Mapping[str, Any]) -> UserRecord | None:
        """The cached record when it matches ``incoming`` and last_seen is recent; no I/O."""
        uid = incoming.get("id")
        if type(uid) is int:
            memo = self._memo.get(uid)
            if memo is not None:
                data = self.db.cache.peek(memo[0], MISSING)
                if data is memo[1] and self._matches(data, incoming):
                    return memo[2]
            data = self.db.cache.peek(self.key(uid), MISSING)
            if data is not MISSING and data is not None and self._matches(data, incoming):
                return self._typed(uid, data)
        return None

    async def _load_or_write(self, incoming: dict[str, Any]) -> tuple[UserRecord, bool]:
        clean = _validate(incoming)
        uid = clean["id"]
        data = await self.db.cache.get_or_load(
            self.key(uid), lambda: self._load(uid), cache_none=False
        )
        if data is not None and self._matches(data, clean):
            return self._typed(uid, data), False
        return await self._write(clean)

    def _matches(self, data: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
        for name, value in incoming.items():
            if name != "id":
                cached = data.get(name, MISSING)
                # 1 == True: a bool field must get the very bool, as validation demands.
                if cached != value or (name in _BOOLS and value is not cached):
                    return False
        if incoming.get("is_active", True) is not data["is_active"]:
            return False
        seen: float = data["_seen"]
        return seen >= time.time() - self.last_seen_interval

    async def _load(self, user_id: int) -> dict[str, Any] | None:
        # The raw API: one indexed read, without an ORM session.
        row = await self.db.fetchrow(_SELECT, user_id)
        if row is None:
            return None
        data = {name: row[name] for name in _NAMES}
        for name in _BOOLS:
            data[name] = bool(data[name])
        for name in ("last_seen", "created_at", "updated_at"):
            data[name] = utc_column(self.db, data[name])
        return _cached(data)

    async def _write(self, clean: dict[str, Any]) -> tuple[UserRecord, bool]:
        now = dt.datetime.now(dt.UTC)
        threshold = now - dt.timedelta(seconds=self.last_seen_interval)
        table = User.__table__
        # platform defaults to "discord" for a new row only; an omitted field is never reset.
        # created_at is this call's own `now`: the row RETURNING it was inserted by this call
        # (an update leaves created_at alone), on both backends, in the one statement.
        values = {
            "platform": "discord",
            **clean,
            "last_seen": now,
            "created_at": now,
            "updated_at": now,
        }
        insert = upsert(self.db, table)  # type: ignore[arg-type]  # a Table
        changed = [
            table.c[name].is_distinct_from(insert.excluded[name]) for name in clean if name != "id"
        ]
        changed.append(table.c.last_seen.is_(None))
        changed.append(table.c.last_seen < threshold)
        statement = (
            insert.values(**values)
            .on_conflict_do_update(
                index_elements=["id"],
                set_={
                    **{name: insert.excluded[name] for name in clean if name != "id"},
                    "last_seen": insert.excluded.last_seen,
                    "updated_at": now,
                },
                where=or_(*changed),
            )
            .returning(*_COLUMNS)
        )
        uid = clean["id"]

        async def write(session: AsyncSession) -> tuple[dict[str, Any], bool]:
            row = (await session.execute(statement)).first()
            if row is not None:
                await self.db.invalidate(self.key(uid), within=session)
                return _cached(row._mapping), row.created_at == now
            # Nothing differed (another process wrote it first): read the row as it is.
            current = (await session.execute(select(*_COLUMNS).where(User.id == uid))).one()
            return _cached(current._mapping), False

        data, created = await run_session(self.db, write)
        return _record(data), created

    async def get(self, user_id: int) -> UserRecord:
        """The user's row (cached).

        Raises:
            NotFoundError: no user has this id.
        """
        record = await self.get_or_none(user_id)
        if record is None:
            raise errors.NotFoundError(f"no user with id {user_id}")
        return record

    async def get_or_none(self, user_id: int) -> UserRecord | None:
        """The user's row (cached), or None when there is none."""
        uid = check_id("user_id", user_id)
        data = self.db.cache.peek(self.key(uid), MISSING)
        if data is MISSING or data is None:
            data = await self.db.cache.get_or_load(
                self.key(uid), lambda: self._load(uid), cache_none=False
            )
        return None if data is None else self._typed(uid, data)

    async def update(self, user_id: int, **fields: Any) -> UserRecord:
        """Set fields of an existing user (``last_seen`` may be set too, as an aware datetime).

        Raises:
            NotFoundError: no user has this id (nothing is created).
            ArgumentError / DataError: a bad field or value; nothing is changed.
        """
        uid = check_id("user_id", user_id)
        unknown = set(fields) - _UPDATABLE
        if unknown or not fields:
            raise errors.ArgumentError(
                f"update() takes fields among {sorted(_UPDATABLE)}, got {sorted(fields)}"
            )
        seen = fields.pop("last_seen", MISSING)
        clean = _validate({"id": uid, **fields}, event=False)
        if seen is not MISSING:
            clean["last_seen"] = check_datetime("last_seen", seen)
        clean.pop("id")
        return await self._update(uid, clean)

    async def deactivate(self, user_id: int) -> UserRecord:
        """Mark a user inactive (e.g. they blocked the bot); their next event reactivates them.

        Raises:
            NotFoundError: no user has this id.
        """
        return await self._update(check_id("user_id", user_id), {"is_active": False})

    async def _update(self, uid: int, values: dict[str, Any]) -> UserRecord:
        statement = (
            update(User)
            .where(User.id == uid)
            .values(**values, updated_at=dt.datetime.now(dt.UTC))
            .returning(*_COLUMNS)
        )

        async def write(session: AsyncSession) -> dict[str, Any]:
            row = (await session.execute(statement)).first()
            if row is None:
                raise errors.NotFoundError(f"no user with id {uid}")
            await self.db.invalidate(self.key(uid), within=session)
            return _cached(row._mapping)

        return _record(await run_session(self.db, write))
