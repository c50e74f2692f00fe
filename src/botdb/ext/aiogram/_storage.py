"""``SQLStorage``: aiogram 3's FSM storage in the ``fsm_states`` table, on SQLite or PostgreSQL.

Every write is one ``INSERT ... ON CONFLICT (the whole key) DO UPDATE`` (never a read and
then an insert), so concurrent first writes of one key cannot raise a unique violation.
Clearing a part (``set_state(None)``, ``set_data({})``) is an ``UPDATE`` followed by a
``DELETE`` of the row if both parts are then empty, so finished conversations leave no rows.
``update_data`` merges in the database on PostgreSQL (``jsonb || jsonb``, one statement) and
inside one write transaction on SQLite, so it never loses another process's keys.

Expiry: a part written with a TTL gets an expiry time; reads treat an expired part as empty,
and :meth:`SQLStorage.purge_expired` deletes what has expired. The clock is this process's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

import botdb
from botdb import _json_values, errors
from botdb.ext.aiogram._keys import KEY_COLUMNS, KEY_WHERE, key_params

if TYPE_CHECKING:
    from botdb.engine.connection import Connection
    from botdb.ext.aiogram._isolation import SQLEventIsolation

__all__ = ["SQLStorage"]

_COLUMNS = ", ".join(KEY_COLUMNS)
_KEY_VALUES = ", ".join(f"${i}" for i in range(1, 9))
_UPSERT_STATE = (
    f"INSERT INTO fsm_states ({_COLUMNS}, state, state_expires_at, updated_at) "
    f"VALUES ({_KEY_VALUES}, $9, $10, $11) ON CONFLICT ({_COLUMNS}) DO UPDATE SET "
    "state = excluded.state, state_expires_at = excluded.state_expires_at, "
    "updated_at = excluded.updated_at"
)
_CLEAR = "UPDATE fsm_states SET {part} = NULL, {part}_expires_at = NULL, updated_at = $9 WHERE "
_DROP_EMPTY = (
    f"DELETE FROM fsm_states WHERE {KEY_WHERE} "
    "AND (state IS NULL OR state_expires_at <= $9) AND (data IS NULL OR data_expires_at <= $9)"
)
_GET = "SELECT CASE WHEN {part}_expires_at IS NULL OR {part}_expires_at > $9 THEN {part} END "
_GET_FROM = f"FROM fsm_states WHERE {KEY_WHERE}"


def _upsert_data(postgres: bool, *, merge: bool) -> str:
    value = "$9::jsonb" if postgres else "$9"
    new = "excluded.data"
    if merge:  # PostgreSQL only: dict.update semantics, the stored row merged under its lock
        new = (
            "CASE WHEN fsm_states.data IS NULL OR fsm_states.data_expires_at <= $11 "
            "THEN excluded.data ELSE fsm_states.data || excluded.data END"
        )
    returning = " RETURNING data" if merge else ""
    return (
        f"INSERT INTO fsm_states ({_COLUMNS}, data, data_expires_at, updated_at) "
        f"VALUES ({_KEY_VALUES}, {value}, $10, $11) ON CONFLICT ({_COLUMNS}) DO UPDATE SET "
        f"data = {new}, data_expires_at = excluded.data_expires_at, "
        f"updated_at = excluded.updated_at{returning}"
    )


def _seconds(name: str, ttl: float | dt.timedelta | None) -> dt.timedelta | None:
    if ttl is None:
        return None
    if isinstance(ttl, dt.timedelta):
        value = ttl
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        value = dt.timedelta(seconds=ttl)
    else:
        raise errors.ConfigurationError(f"{name} must be seconds or a timedelta, got {ttl!r}")
    if value <= dt.timedelta(0):
        raise errors.ConfigurationError(f"{name} must be positive, got {ttl!r}")
    return value


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _default_dumps(data: Mapping[str, Any]) -> str:
    return _json_values.dumps(data, "FSM data").decode()


class SQLStorage(BaseStorage):
    """aiogram's FSM storage in botdb's database (table ``fsm_states``).

    Args:
        db: a connected :class:`botdb.Database` whose schema is migrated (``await
            db.migrate()``). It stays the caller's: :meth:`close` does not close it.
        state_ttl: seconds (or a timedelta) after which a state set now reads as None.
        data_ttl: likewise for data, which then reads as ``{}``.
        json_dumps: turns the data dict into JSON text (default: strict JSON that reads back
            equal; anything else raises :class:`~botdb.errors.DataError`).
        json_loads: reads JSON text back (default: :func:`json.loads`).
        clock: returns the current aware datetime (default: the system clock in UTC); a test
            can move time with it.

    Example::

        db = await botdb.connect("sqlite:///bot.db")
        await db.migrate()
        storage = SQLStorage(db, state_ttl=3600)
        dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())
    """

    def __init__(
        self,
        db: botdb.Database,
        *,
        state_ttl: float | dt.timedelta | None = None,
        data_ttl: float | dt.timedelta | None = None,
        json_dumps: Callable[[Any], str] = _default_dumps,
        json_loads: Callable[[str], Any] = json.loads,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.db = db
        self.state_ttl = _seconds("state_ttl", state_ttl)
        self.data_ttl = _seconds("data_ttl", data_ttl)
        self.json_dumps = json_dumps
        self.json_loads = json_loads
        self.clock = clock
        self._owns_db = False
        postgres = db.backend == "postgresql"
        self._upsert_data = _upsert_data(postgres, merge=False)
        self._merge_data = _upsert_data(postgres, merge=True) if postgres else None

    @classmethod
    async def from_url(cls, url: str, *, migrate: bool = True, **kwargs: Any) -> Self:
        """A storage on a Database of its own at ``url``, closed by :meth:`close`.

        Args:
            url: the database URL (``sqlite:///bot.db``, ``postgresql://...``).
            migrate: bring the schema up to date first (``db.migrate()``).
            **kwargs: :class:`SQLStorage` options.
        """
        db = await botdb.connect(url)
        try:
            if migrate:
                await db.migrate()
            storage = cls(db, **kwargs)
        except BaseException:
            await db.close()
            raise
        storage._owns_db = True
        return storage

    def create_isolation(self, **kwargs: Any) -> SQLEventIsolation:
        """An event isolation that serialises each key's updates across processes; see
        :class:`~botdb.ext.aiogram.SQLEventIsolation` for the options."""
        from botdb.ext.aiogram._isolation import SQLEventIsolation

        return SQLEventIsolation(self.db, **kwargs)

    async def close(self) -> None:
        """Close the Database if this storage opened it (:meth:`from_url`); else nothing."""
        if self._owns_db:
            await self.db.close()

    # -- state --------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise errors.ConfigurationError("the storage's clock returned a naive datetime")
        return now

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        """Set the key's state (a ``State``, its name, or None to clear it)."""
        value = state.state if isinstance(state, State) else state
        params = key_params(key)
        now = self._now()
        if value is None:
            await self._clear("state", params, now)
            return
        if not isinstance(value, str):
            raise errors.DataError(f"a state must be a State, str or None, got {value!r}")
        expires = None if self.state_ttl is None else now + self.state_ttl
        await self.db.execute(_UPSERT_STATE, *params, value, expires, now)

    async def get_state(self, key: StorageKey) -> str | None:
        """The key's state, or None (never set, cleared or expired)."""
        query = _GET.format(part="state") + _GET_FROM
        value = await self.db.fetchval(query, *key_params(key), self._now())
        return None if value is None else str(value)

    # -- data ---------------------------------------------------------------------------------

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        """Replace the key's data (``{}`` clears it).

        Raises:
            DataNotDictLikeError: ``data`` is not a dict (as aiogram's own storages raise).
            DataError: the data cannot be stored as JSON.
        """
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        params = key_params(key)
        now = self._now()
        if not data:
            await self._clear("data", params, now)
            return
        text = self.json_dumps(data)
        expires = None if self.data_ttl is None else now + self.data_ttl
        await self.db.execute(self._upsert_data, *params, text, expires, now)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        """The key's data: a new dict each call; ``{}`` when none is stored or it expired."""
        query = _GET.format(part="data") + _GET_FROM
        value = await self.db.fetchval(query, *key_params(key), self._now())
        return self._loaded(value)

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``data`` into the key's data (like ``dict.update``) and return the result.

        The merge happens in the database (PostgreSQL) or in one write transaction (SQLite),
        so concurrent updates of different fields of one key are all kept.

        Raises:
            DataNotDictLikeError: ``data`` is not a mapping.
        """
        if not isinstance(data, Mapping):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        if not data:
            return await self.get_data(key)
        params = key_params(key)
        patch = dict(data)
        if self._merge_data is not None:
            now = self._now()
            text = self.json_dumps(patch)
            expires = None if self.data_ttl is None else now + self.data_ttl
            stored = await self.db.fetchval(self._merge_data, *params, text, expires, now)
            return self._loaded(stored)
        return await self.db.run_in_transaction(self._merge_sqlite, params, patch)

    async def _merge_sqlite(
        self, conn: Connection, params: tuple[Any, ...], patch: dict[str, Any]
    ) -> dict[str, Any]:
        # botdb's SQLite transactions begin IMMEDIATE: the write lock is held before this
        # read, so two processes cannot both read the old data and each keep only their keys.
        now = self._now()
        query = _GET.format(part="data") + _GET_FROM
        current = self._loaded(await conn.fetchval(query, *params, now))
        current.update(patch)
        expires = None if self.data_ttl is None else now + self.data_ttl
        await conn.execute(self._upsert_data, *params, self.json_dumps(current), expires, now)
        return current

    def _loaded(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, bytes | bytearray | memoryview):
            value = bytes(value).decode()
        loaded = self.json_loads(value) if isinstance(value, str) else value
        if not isinstance(loaded, dict):
            raise errors.DataError(
                f"fsm_states.data holds a {type(loaded).__name__}, not a JSON object"
            )
        return loaded

    # -- clearing and expiry ------------------------------------------------------------------

    async def _clear(self, part: str, params: tuple[Any, ...], now: dt.datetime) -> None:
        # UPDATE, then DELETE if both parts are empty: of two processes clearing the two
        # parts at once, the later DELETE sees both cleared, so no empty row is left.
        await self.db.execute(_CLEAR.format(part=part) + KEY_WHERE, *params, now)
        await self.db.execute(_DROP_EMPTY, *params, now)

    async def purge_expired(self) -> int:
        """Clear every expired state and data and delete the rows left empty, and expired
        isolation leases. Returns the number of ``fsm_states`` rows deleted."""
        now = self._now()
        statuses = await self.db.execute_in_transaction(
            [
                (
                    "UPDATE fsm_states SET state = NULL, state_expires_at = NULL "
                    "WHERE state_expires_at <= $1",
                    [now],
                ),
                (
                    "UPDATE fsm_states SET data = NULL, data_expires_at = NULL "
                    "WHERE data_expires_at <= $1",
                    [now],
                ),
                ("DELETE FROM fsm_states WHERE state IS NULL AND data IS NULL", []),
                ("DELETE FROM fsm_locks WHERE expires_at <= $1", [now]),
            ]
        )
        return _count(statuses[2])


def _count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
