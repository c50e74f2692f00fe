"""python-telegram-bot persistence in botdb's database: :class:`SQLPersistence`.

``pip install 'botdb[ptb]'`` (python-telegram-bot 21 or 22). Every key of ``user_data``,
``chat_data`` and ``bot_data``, every callback-data keyboard and every conversation state is
one row of ``ptb_persistence`` (see :mod:`botdb.models.persistence`), never one blob, with a
version that changes on every write. Create the table with ``await db.migrate()``.

Example:
    >>> db = botdb.connect("sqlite:///bot.db")
    >>> app = (
    ...     ApplicationBuilder()
    ...     .token(TOKEN)
    ...     .persistence(SQLPersistence(db, update_interval=5))
    ...     .post_shutdown(lambda app: db.close())
    ...     .build()
    ... )

See ``docs/ptb.md`` for what is and is not shared between processes.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from botdb import errors
from botdb._json_values import check_json, short

try:
    from telegram.ext import BasePersistence, PersistenceInput
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise errors.MissingDependencyError("python-telegram-bot", "ptb") from exc

if TYPE_CHECKING:
    from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

    from botdb.database import Database

__all__ = ["PersistenceInput", "SQLPersistence"]

TABLE: Final = "ptb_persistence"
#: Longest JSON text of a key (the ``key`` column is ``VARCHAR(255)``).
MAX_KEY_LENGTH: Final = 255
MAX_NAMESPACE_LENGTH: Final = 64

_USER: Final = "user"
_CHAT: Final = "chat"
_BOT: Final = "bot"
_CALLBACK: Final = "callback"
_CONVERSATION: Final = "conversation"
_KEYBOARDS: Final = "keyboards"
_QUERIES: Final = "queries"

_WHERE_SCOPE = "WHERE namespace = $1 AND kind = $2 AND scope = $3"
_SELECT_VERSIONS = f"SELECT key, version FROM {TABLE} {_WHERE_SCOPE}"
_SELECT_SCOPE = f"SELECT key, version, value, pickled FROM {TABLE} {_WHERE_SCOPE}"
_SELECT_KIND = (
    f"SELECT scope, key, version, value, pickled FROM {TABLE} WHERE namespace = $1 AND kind = $2"
)
_DELETE_SCOPE = f"DELETE FROM {TABLE} {_WHERE_SCOPE}"
# Only the version this process knows: a later write by another process is not undone.
_DELETE_KEY = f"DELETE FROM {TABLE} {_WHERE_SCOPE} AND key = $4 AND version = $5"
_DELETE_ANY_VERSION = f"DELETE FROM {TABLE} {_WHERE_SCOPE} AND key = $4"
_UPSERT = (
    f"INSERT INTO {TABLE} (namespace, kind, scope, key, value, pickled, version, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, {now})"
    " ON CONFLICT (namespace, kind, scope, key) DO UPDATE SET value = excluded.value,"
    f" pickled = excluded.pickled, version = {TABLE}.version + 1,"
    " updated_at = excluded.updated_at RETURNING version"
)
# The same text as botdb.models.types.utcnow on each backend (microseconds on SQLite).
_NOW = {"sqlite": "strftime('%Y-%m-%d %H:%M:%f000', 'now')", "postgresql": "CURRENT_TIMESTAMP"}

#: The stored form of one value: JSON text, or pickle bytes.
_Encoded = str | bytes
#: What this process last loaded or wrote for one key: (version, stored form).
_Known = tuple[int, _Encoded]

Data = dict[Any, Any]


def _first_version() -> int:
    """The version of a new row: the clock in microseconds, so that a key deleted and written
    again starts above every version it had before (updates add 1)."""
    return time.time_ns() // 1000


class SQLPersistence(BasePersistence[Data, Data, Data]):
    """A :class:`telegram.ext.BasePersistence` storing one row per key in botdb's database.

    Args:
        db: the :class:`~botdb.Database` (connected on first use if it is not yet; closing it
            stays the caller's job, e.g. in ``post_shutdown``).
        namespace: keeps several bots' data apart in one database (at most 64 characters).
        store_data: which kinds of data to store (:class:`telegram.ext.PersistenceInput`); a
            disabled kind is neither read nor written.
        update_interval: seconds between two saves by the ``Application`` (PTB's own loop).
        allow_pickle: store values that are not JSON (sets, tuples, dates, your own classes,
            Telegram objects) pickled. Off by default: such a value then raises
            :class:`~botdb.errors.DataError` naming its key, and a pickled row is not read.
            Unpickling runs code chosen by whoever can write the table: enable it only when
            nobody else can.

    Attributes:
        db: the Database; handlers reach it as ``context.application.persistence.db``.
        namespace: as given.
        allow_pickle: as given.

    Values are stored as JSON when they read back equal (dicts with str keys, lists, str,
    64-bit int, finite float, bool, None); dict keys of ``user_data``/``chat_data``/
    ``bot_data`` must be str, int or tuples of them.

    Across processes (several processes running one bot on one database):

    * ``update_*`` writes only the keys that changed since this process last loaded or wrote
      them (one row each, ``INSERT ... ON CONFLICT DO UPDATE``), and deletes only keys this
      process had seen and that nobody rewrote since, so two processes never lose each
      other's keys; two writes of the same key: the last one wins.
    * ``refresh_*`` (PTB calls it before each handler) takes a stored key only when another
      process wrote it after this one last loaded or wrote it (its version is not the one
      recorded here), and never over a local change not yet saved (PTB saves every
      ``update_interval`` seconds); keys deleted elsewhere go, unless changed here.
    * PTB reads conversation states once, at start, and never refreshes them: a
      :class:`~telegram.ext.ConversationHandler` must see all updates of its chats in one
      process (route each chat to one process), or states diverge.
    """

    def __init__(
        self,
        db: Database,
        *,
        namespace: str = "default",
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        allow_pickle: bool = False,
    ) -> None:
        if not isinstance(namespace, str) or not 0 < len(namespace) <= MAX_NAMESPACE_LENGTH:
            raise errors.ConfigurationError(
                f"namespace must be a non-empty str of at most {MAX_NAMESPACE_LENGTH} "
                f"characters, got {short(namespace)}"
            )
        if isinstance(update_interval, bool) or not isinstance(update_interval, int | float):
            raise errors.ConfigurationError(
                f"update_interval must be a number of seconds, got {short(update_interval)}"
            )
        if not update_interval > 0:
            raise errors.ConfigurationError(
                f"update_interval must be positive, got {update_interval!r}"
            )
        super().__init__(store_data=store_data, update_interval=update_interval)
        self.db = db
        self.namespace = namespace
        self.allow_pickle = allow_pickle
        self._known: dict[tuple[str, str], dict[str, _Known]] = {}
        # Counts finished writes; a refresh that saw one finish while it read changes nothing
        # (what it read may be older than that write).
        self._writes = 0
        self._upsert = ""

    def __repr__(self) -> str:
        return f"<SQLPersistence {self.namespace!r} on {self.db!r}>"

    # -- get_* (called once by Application.initialize) ------------------------------------------

    async def get_user_data(self) -> dict[int, Data]:
        """Every user's ``user_data`` of this namespace (empty when not stored)."""
        if not self.store_data.user_data:
            return {}
        return await self._load_kind(_USER)

    async def get_chat_data(self) -> dict[int, Data]:
        """Every chat's ``chat_data`` of this namespace (empty when not stored)."""
        if not self.store_data.chat_data:
            return {}
        return await self._load_kind(_CHAT)

    async def get_bot_data(self) -> Data:
        """The stored ``bot_data`` (empty when not stored)."""
        if not self.store_data.bot_data:
            return {}
        return await self._load_scope(_BOT, "")

    async def get_callback_data(self) -> CDCData | None:
        """The callback-data cache's keyboards and queries, or None if none is stored."""
        if not self.store_data.callback_data:
            return None
        keyboards = await self._load_scope(_CALLBACK, _KEYBOARDS)
        queries = await self._load_scope(_CALLBACK, _QUERIES)
        if not keyboards and not queries:
            return None
        entries = sorted(
            ((uuid, float(stamp), data) for uuid, (stamp, data) in keyboards.items()),
            key=lambda entry: entry[1],
        )
        return entries, {str(query): str(uuid) for query, uuid in queries.items()}

    async def get_conversations(self, name: str) -> ConversationDict:
        """The stored states of the conversation handler ``name``."""
        rows = await self._fetch(_SELECT_SCOPE, self.namespace, _CONVERSATION, name)
        where = f"conversation {name!r}"
        return {
            _conversation_key(_decode_key(key)): self._decode(where, key, value, blob)
            for key, _, value, blob in rows
        }

    # -- update_* (called by Application.update_persistence, every update_interval) -----------

    async def update_user_data(self, user_id: int, data: Data) -> None:
        """Write the keys of ``user_data[user_id]`` that changed; delete the removed ones."""
        if self.store_data.user_data:
            await self._update(_USER, _id_scope(user_id), data)

    async def update_chat_data(self, chat_id: int, data: Data) -> None:
        """Write the keys of ``chat_data[chat_id]`` that changed; delete the removed ones."""
        if self.store_data.chat_data:
            await self._update(_CHAT, _id_scope(chat_id), data)

    async def update_bot_data(self, data: Data) -> None:
        """Write the keys of ``bot_data`` that changed; delete the removed ones."""
        if self.store_data.bot_data:
            await self._update(_BOT, "", data)

    async def update_callback_data(self, data: CDCData) -> None:
        """Write the callback-data keyboards and queries that changed (one row each)."""
        if not self.store_data.callback_data:
            return
        entries, queries = data
        keyboards = {uuid: [stamp, buttons] for uuid, stamp, buttons in entries}
        await self._update(_CALLBACK, _KEYBOARDS, keyboards)
        await self._update(_CALLBACK, _QUERIES, dict(queries))

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Store the state of one conversation (``None`` deletes it)."""
        where = f"conversation {short(name, 40)}"
        if len(name) > MAX_KEY_LENGTH:
            raise errors.DataError(
                f"{where}: a persistent ConversationHandler's name is at most "
                f"{MAX_KEY_LENGTH} characters"
            )
        encoded_key = _encode_key(where, key)
        if new_state is None:
            await self._execute(
                _DELETE_ANY_VERSION, self.namespace, _CONVERSATION, name, encoded_key
            )
            return
        text, blob = self._encode(where, key, new_state)
        upsert = await self._upsert_sql()

        async def write(conn: Any) -> None:
            await conn.fetchval(
                upsert, self.namespace, _CONVERSATION, name, encoded_key, text, blob,
                _first_version(),
            )  # fmt: skip

        await self._transaction(write)

    # -- drop_* -------------------------------------------------------------------------------

    async def drop_user_data(self, user_id: int) -> None:
        """Delete every stored key of ``user_data[user_id]``."""
        if self.store_data.user_data:
            await self._drop(_USER, _id_scope(user_id))

    async def drop_chat_data(self, chat_id: int) -> None:
        """Delete every stored key of ``chat_data[chat_id]``."""
        if self.store_data.chat_data:
            await self._drop(_CHAT, _id_scope(chat_id))

    # -- refresh_* (called by PTB before each handler) ----------------------------------------

    async def refresh_user_data(self, user_id: int, user_data: Data) -> None:
        """Bring in keys of this user that another process wrote (see the class docstring)."""
        if self.store_data.user_data:
            await self._refresh(_USER, _id_scope(user_id), user_data)

    async def refresh_chat_data(self, chat_id: int, chat_data: Data) -> None:
        """Bring in keys of this chat that another process wrote (see the class docstring)."""
        if self.store_data.chat_data:
            await self._refresh(_CHAT, _id_scope(chat_id), chat_data)

    async def refresh_bot_data(self, bot_data: Data) -> None:
        """Bring in ``bot_data`` keys that another process wrote (see the class docstring)."""
        if self.store_data.bot_data:
            await self._refresh(_BOT, "", bot_data)

    async def flush(self) -> None:
        """Nothing is buffered here: every ``update_*`` call has written before it returned.

        PTB calls :meth:`~telegram.ext.Application.update_persistence` right before this in
        ``Application.shutdown``, which writes what changed since the last interval.
        """

    # -- the work -----------------------------------------------------------------------------

    async def _load_kind(self, kind: str) -> dict[int, Data]:
        rows = await self._fetch(_SELECT_KIND, self.namespace, kind)
        # The Application's memory of this kind starts over from what is stored.
        for stale in [scope for scope in self._known if scope[0] == kind]:
            del self._known[stale]
        result: dict[int, Data] = {}
        for scope, key, version, value, blob in rows:
            where = f"{kind}_data[{scope}]"
            decoded = self._decode(where, key, value, blob)
            result.setdefault(int(scope), {})[_decode_key(key)] = decoded
            self._known.setdefault((kind, scope), {})[key] = (version, _stored(value, blob))
        return result

    async def _refresh(self, kind: str, scope: str, data: MutableMapping[Any, Any]) -> None:
        """Bring into ``data`` the keys another process wrote or deleted since this process
        last loaded or wrote them; never over a local change not saved yet.

        Every write of this process records the version it made, so a stored version other
        than the recorded one was made by someone else, later (a row created again after a
        delete starts from the clock, above the versions it had). A write of this process
        that finishes while the refresh reads could make what was read look older than
        memory: the refresh then changes nothing, and the next one catches up.
        """
        writes_before = self._writes
        versions = dict(await self._fetch(_SELECT_VERSIONS, self.namespace, kind, scope))
        known = self._known.get((kind, scope), {})
        changed = any(known.get(key, (None,))[0] != version for key, version in versions.items())
        gone = [key for key in known if key not in versions]
        if not changed and not gone:
            return  # the usual case: one indexed SELECT of (key, version)
        rows = await self._fetch(_SELECT_SCOPE, self.namespace, kind, scope) if changed else []
        if self._writes != writes_before:
            return
        known = self._known.setdefault((kind, scope), {})
        where = _where(kind, scope)
        for key, version, value, blob in rows:
            entry = known.get(key)
            if entry is not None and entry[0] == version:
                continue
            local_key = _decode_key(key)
            stored = _stored(value, blob)
            if local_key in data:
                if entry is None:
                    # Set here and not saved yet (an unsaved change wins and is written next
                    # time), unless it is the very value the other process wrote.
                    if not self._dirty(data[local_key], (version, stored)):
                        known[key] = (version, stored)
                    continue
                if self._dirty(data[local_key], entry):
                    continue  # an unsaved local change: it wins, and is written next time
            data[local_key] = self._decode(where, key, value, blob)
            known[key] = (version, stored)
        present = {row[0] for row in rows} if changed else set(versions)
        for key in gone:
            if key in present:
                continue  # created again meanwhile: handled above
            local_key = _decode_key(key)
            entry = known.pop(key)
            if local_key in data and self._dirty(data[local_key], entry):
                known[key] = (0, entry[1])  # kept: the local change creates the row again
            else:
                data.pop(local_key, None)

    async def _load_scope(self, kind: str, scope: str) -> Data:
        rows = await self._fetch(_SELECT_SCOPE, self.namespace, kind, scope)
        known: dict[str, _Known] = {}
        self._known[(kind, scope)] = known  # the Application's memory starts over
        where = _where(kind, scope)
        data: Data = {}
        for key, version, value, blob in rows:
            data[_decode_key(key)] = self._decode(where, key, value, blob)
            known[key] = (version, _stored(value, blob))
        return data

    async def _update(self, kind: str, scope: str, data: Data) -> None:
        where = _where(kind, scope)
        known = self._known.get((kind, scope), {})
        # Each key is its own row: a key that cannot be stored is left as it was (its old
        # row, if any, stays) and reported after the others are written, since PTB does not
        # save this user or chat again until a new update marks it.
        refused: list[errors.DataError] = []
        upserts: list[tuple[str, str | None, bytes | None]] = []
        present: set[str] = set()
        for local_key, value in data.items():
            try:
                key = _encode_key(where, local_key)
                present.add(key)
                text, blob = self._encode(where, local_key, value)
            except errors.DataError as exc:
                refused.append(exc)
                continue
            entry = known.get(key)
            if entry is None or entry[1] != _stored(text, blob):
                upserts.append((key, text, blob))
        deletes = [(key, entry[0]) for key, entry in known.items() if key not in present]
        if upserts or deletes:
            await self._write(kind, scope, upserts, deletes)
        if refused:
            more = f" (and {len(refused) - 1} more key(s))" if len(refused) > 1 else ""
            raise errors.DataError(f"{refused[0].message}{more}; the other keys were saved")

    async def _write(
        self,
        kind: str,
        scope: str,
        upserts: list[tuple[str, str | None, bytes | None]],
        deletes: list[tuple[str, int]],
    ) -> None:
        # One order of keys in every process: two transactions writing the same keys then
        # wait for each other instead of deadlocking.
        upserts.sort()
        deletes.sort()
        upsert = await self._upsert_sql()
        namespace = self.namespace

        async def write(conn: Any) -> list[int]:
            versions = []
            for key, text, blob in upserts:
                versions.append(
                    await conn.fetchval(
                        upsert, namespace, kind, scope, key, text, blob, _first_version()
                    )
                )
            for key, version in deletes:
                await conn.execute(_DELETE_KEY, namespace, kind, scope, key, version)
            return versions

        versions = await self._transaction(write)
        known = self._known.setdefault((kind, scope), {})
        for (key, text, blob), version in zip(upserts, versions, strict=True):
            known[key] = (int(version), _stored(text, blob))
        for key, _ in deletes:
            known.pop(key, None)

    async def _drop(self, kind: str, scope: str) -> None:
        await self._execute(_DELETE_SCOPE, self.namespace, kind, scope)
        self._known.pop((kind, scope), None)

    def _dirty(self, value: Any, entry: _Known) -> bool:
        """Whether ``value`` differs from what was last loaded or written for its key."""
        try:
            text, blob = self._encode("", "", value)
        except errors.DataError:
            return True  # cannot be stored as it is: certainly not what was stored
        return _stored(text, blob) != entry[1]

    def _encode(self, where: str, key: Any, value: Any) -> tuple[str | None, bytes | None]:
        """JSON text when ``value`` reads back equal from it; else pickle bytes if allowed."""
        try:
            check_json(value, f"{where}[{short(key, 40)}]")
            text = orjson.dumps(value).decode()
        except errors.DataError as exc:
            reason = exc.message
        else:
            if orjson.loads(text) == value:
                return text, None
            reason = f"{where}[{short(key, 40)}] would not read back equal from JSON (a tuple?)"
        if not self.allow_pickle:
            raise errors.DataError(
                f"{reason}; store JSON values (dict with str keys, list, str, int, float, bool, "
                "None) or create SQLPersistence(..., allow_pickle=True)"
            )
        try:
            return None, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickling may raise anything; report it typed
            raise errors.DataError(
                f"{where}[{short(key, 40)}] is neither JSON nor picklable: {exc}"
            ) from exc

    def _decode(self, where: str, key: str, value: str | None, blob: bytes | None) -> Any:
        if value is not None:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise errors.DataError(
                    f"{where}[{short(key, 40)}]: the stored value is not valid JSON: {exc}"
                ) from exc
        if not self.allow_pickle:
            raise errors.DataError(
                f"{where}[{short(key, 40)}] is stored pickled, and this SQLPersistence does not "
                "unpickle (create it with allow_pickle=True if only your bot writes the table)"
            )
        try:
            return pickle.loads(bytes(blob or b""))  # noqa: S301 - opt-in, documented above
        except Exception as exc:  # unpickling may raise anything
            raise errors.DataError(
                f"{where}[{short(key, 40)}]: the stored value cannot be unpickled: {exc}"
            ) from exc

    # -- the database -------------------------------------------------------------------------

    async def _ready(self) -> None:
        await self.db.connect()  # idempotent: a cheap check once connected

    async def _upsert_sql(self) -> str:
        if not self._upsert:
            await self._ready()
            self._upsert = _UPSERT.format(now=_NOW[self.db.backend])
        return self._upsert

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        await self._ready()
        try:
            return list(await self.db.fetch(query, *args))
        except errors.UndefinedTableError as exc:
            raise _missing_table(exc) from exc

    async def _execute(self, query: str, *args: Any) -> None:
        await self._ready()
        try:
            await self.db.execute(query, *args)
        except errors.UndefinedTableError as exc:
            raise _missing_table(exc) from exc
        self._writes += 1

    async def _transaction(self, work: Any) -> Any:
        try:
            result = await self.db.run_in_transaction(work)
        except errors.UndefinedTableError as exc:
            raise _missing_table(exc) from exc
        self._writes += 1
        return result


def _missing_table(exc: errors.UndefinedTableError) -> errors.UndefinedTableError:
    return errors.UndefinedTableError(
        f"{exc.message} — the table {TABLE} is created by botdb's migrations: "
        "await db.migrate() (or `botdb migrate`) before starting the Application",
        sqlstate=exc.sqlstate,
        table=exc.table,
    )


def _id_scope(chat_or_user_id: int) -> str:
    if isinstance(chat_or_user_id, bool) or not isinstance(chat_or_user_id, int):
        raise errors.ArgumentError(
            f"a user or chat id must be an int, got {short(chat_or_user_id)}"
        )
    return str(chat_or_user_id)


def _where(kind: str, scope: str) -> str:
    return f"{kind}_data" if not scope else f"{kind}_data[{scope}]"


def _stored(value: str | None, blob: bytes | None) -> _Encoded:
    return value if value is not None else bytes(blob or b"")


def _encode_key(where: str, key: Any) -> str:
    """The JSON text of a dict key: str, int, or a tuple of them (conversation keys)."""
    parts: Iterable[Any] = key if type(key) is tuple else (key,)
    for part in parts:
        if type(part) not in (str, int):
            raise errors.DataError(
                f"{where} has a key {short(key, 40)} of type {type(part).__name__}: "
                "keys must be str or int (or a tuple of them for conversation keys)"
            )
    try:
        check_json(key, f"{where} key")
        text = orjson.dumps(list(key) if type(key) is tuple else key).decode()
    except (errors.DataError, orjson.JSONEncodeError) as exc:
        raise errors.DataError(f"{where} has a key that cannot be stored: {exc}") from exc
    if len(text) > MAX_KEY_LENGTH:
        raise errors.DataError(
            f"{where} has a key {short(key, 40)} longer than {MAX_KEY_LENGTH} characters as "
            "JSON: use shorter keys"
        )
    return text


def _decode_key(text: str) -> Any:
    key = orjson.loads(text)
    return tuple(key) if isinstance(key, list) else key


def _conversation_key(key: Any) -> tuple[int | str, ...]:
    return key if isinstance(key, tuple) else (key,)
