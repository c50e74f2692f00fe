"""Pages: numbered (``Page``) and keyset (``KeysetPage``) with signed, opaque cursors.

A keyset cursor is ``urlsafe_base64(hmac_sha256(key, payload)[:16] + payload)`` where the
payload is the JSON (orjson) of ``[ordering, [last row's key values]]``. The signature makes
a garbled or edited cursor fail cleanly with :class:`~botdb.errors.ArgumentError` before any
query runs; the ordering inside it makes a cursor issued for another ``order_by`` fail the same
way. The values are bound as parameters, never spliced into SQL.

The key of a table is ``hmac_sha256(secret, "botdb-cursor-v2\\0" + table)``. The secret is
random and belongs to the database, so nothing a user can see (a URL, a password guess)
derives it, and every process on the same database accepts the others' cursors:

1. the repository's own ``cursor_secret=``, else
2. the ``cursor_secret`` setting (``BOTDB_CURSOR_SECRET``), else
3. 32 random bytes generated on the first ``find_page`` and kept in the database, in the small
   table ``botdb_meta (key, value)`` (created then with ``CREATE TABLE IF NOT EXISTS``; the
   first process to insert it wins). It is read once per Database and then kept in memory:
   paging adds no query. A database user without CREATE rights, or a read replica, needs
   the setting. ``botdb transfer`` does not copy it: cursors of the old database are refused
   by the new one (a user pages again from the start).

Cursors of botdb before this scheme (keyed by the URL) are refused like tampered ones.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import decimal
import hashlib
import hmac
import math
import secrets
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson
from sqlalchemy import ColumnElement, and_, literal, or_, tuple_

from botdb.errors import ArgumentError, DataError, UndefinedTableError, UniqueViolationError
from botdb.repository._model import ModelInfo, OrderKey, value_converter

__all__ = ["META_TABLE", "CursorCodec", "KeysetPage", "Page", "keyset_where", "unpinned"]

T = TypeVar("T")

_SIGNATURE_BYTES = 16
_MAX_CURSOR = 4096
#: botdb's own key/value table (not a model: created on first need, see the module docstring).
META_TABLE = "botdb_meta"
_SECRET_NAME = "cursor_secret"  # noqa: S105 - the row's name, not a secret
_CREATE_META = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"
)
_INSERT_SECRET = (
    f"INSERT INTO {META_TABLE} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
)
_SELECT_SECRET = f"SELECT value FROM {META_TABLE} WHERE key = $1"


class RawSQL(Protocol):
    """What the stored secret needs of a Database: its raw SQL API."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any: ...


# Database -> its stored secret, read once per Database (weak: a closed Database goes away).
_SECRETS: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


async def stored_secret(db: RawSQL) -> bytes:
    """The database's random cursor secret: generated and stored on first use, then cached."""
    secret = _SECRETS.get(db)
    if secret is not None:
        return secret
    value = None
    with contextlib.suppress(UndefinedTableError):
        value = await db.fetchval(_SELECT_SECRET, _SECRET_NAME)
    if value is None:
        # PostgreSQL: a concurrent CREATE TABLE IF NOT EXISTS may collide on the catalog.
        with contextlib.suppress(UniqueViolationError):
            await db.execute(_CREATE_META)
        # The first process to insert wins; everyone reads the winner's secret.
        await db.execute(_INSERT_SECRET, _SECRET_NAME, secrets.token_hex(32))
        value = await db.fetchval(_SELECT_SECRET, _SECRET_NAME)
    try:
        secret = bytes.fromhex(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{META_TABLE} holds no usable {_SECRET_NAME}") from exc
    _SECRETS[db] = secret
    return secret


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of :meth:`~botdb.repository.Repository.paginate`.

    Attributes:
        items: the rows of this page (detached model instances).
        total: how many rows match the filters, over all pages.
        page: this page's number, from 1.
        per_page: the page size asked for.
    """

    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages there are (0 when nothing matches)."""
        return math.ceil(self.total / self.per_page)

    @property
    def has_next(self) -> bool:
        """Whether a page follows this one."""
        return self.page < self.pages

    @property
    def has_prev(self) -> bool:
        """Whether a page precedes this one."""
        return self.page > 1


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[T]):
    """One page of :meth:`~botdb.repository.Repository.find_page`.

    Attributes:
        items: the rows of this page, in the requested order.
        next_cursor: pass it as ``after=`` for the next page; None on the last page.
    """

    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        """Whether another page follows."""
        return self.next_cursor is not None


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot put a {type(value).__name__} into a cursor")


class CursorCodec:
    """Signs and checks the cursors of one repository (the key includes the table name).

    ``secret`` None means the database's stored secret; :meth:`load` must have run (once)
    before :meth:`encode` or :meth:`decode`.
    """

    __slots__ = ("_db", "_info", "_key", "_secret")

    def __init__(self, info: ModelInfo, secret: bytes | None, db: RawSQL) -> None:
        self._info = info
        self._db = db
        self._secret = secret
        self._key: bytes | None = None if secret is None else self._derive(secret)

    def _derive(self, secret: bytes) -> bytes:
        table = self._info.table.name.encode()
        return hmac.new(secret, b"botdb-cursor-v2\0" + table, hashlib.sha256).digest()

    async def load(self) -> None:
        """Derive the key from the database's stored secret, the first time only."""
        if self._key is None:
            self._key = self._derive(await stored_secret(self._db))

    def _sign(self, payload: bytes) -> bytes:
        assert self._key is not None, "CursorCodec.load() first"
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, keys: Sequence[OrderKey], values: Sequence[Any]) -> str:
        """The cursor that resumes after a row whose key values are ``values``."""
        return self.encode_tagged(_ordering(keys), values)

    def encode_tagged(self, tag: str, values: Sequence[Any]) -> str:
        """A cursor holding ``values`` for a listing named ``tag`` (an ordering, a search)."""
        payload = orjson.dumps([tag, list(values)], default=_json_default)
        token = base64.urlsafe_b64encode(self._sign(payload) + payload)
        return token.rstrip(b"=").decode("ascii")

    def _open(self, cursor: str) -> tuple[Any, Any]:
        """The (tag, values) signed inside ``cursor``; ArgumentError when it is not ours."""
        if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
            raise ArgumentError("invalid cursor: not a cursor returned by find_page")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ArgumentError("invalid cursor: not a cursor returned by find_page") from exc
        signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
        if len(signature) != _SIGNATURE_BYTES or not hmac.compare_digest(
            signature, self._sign(payload)
        ):
            raise ArgumentError("invalid cursor: its signature does not match (tampered?)")
        try:
            tag, values = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise ArgumentError("invalid cursor: unreadable payload") from exc
        return tag, values

    def decode_tagged(self, cursor: str, tag: str, size: int) -> list[Any]:
        """The ``size`` values of a cursor made by :meth:`encode_tagged` with the same ``tag``
        (unconverted JSON values); ArgumentError for any other cursor."""
        found, values = self._open(cursor)
        if found != tag or not isinstance(values, list) or len(values) != size:
            raise ArgumentError("invalid cursor: it was issued for another listing")
        return values

    def decode(self, cursor: str, keys: Sequence[OrderKey]) -> list[Any]:
        """The key values inside ``cursor``; ArgumentError when it is not one of ours."""
        ordering, values = self._open(cursor)
        if ordering != _ordering(keys) or not isinstance(values, list):
            raise ArgumentError(
                f"this cursor was issued for order_by={ordering!r}, "
                f"not {_ordering(keys)!r}: keep the same order_by while paging"
            )
        if len(values) != len(keys):
            raise ArgumentError("invalid cursor: wrong number of key values")
        try:
            return [
                value_converter(self._info, key)(value)
                for (key, _), value in zip(keys, values, strict=True)
            ]
        except ValueError as exc:
            raise ArgumentError(f"invalid cursor: {exc}") from exc


def _ordering(keys: Sequence[OrderKey]) -> str:
    return ",".join(("-" if descending else "") + key for key, descending in keys)


def keyset_where(
    info: ModelInfo, keys: Sequence[OrderKey], values: Sequence[Any]
) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order ``keys``.

    One row-value comparison when every key has the same direction (an index on the keys
    serves it), else the expanded ``a > x OR (a = x AND b < y) ...``.
    """
    attrs = [info.attrs[key] for key, _ in keys]
    bound = [
        literal(value, type_=info.columns[key].type)
        for (key, _), value in zip(keys, values, strict=True)
    ]
    directions = {descending for _, descending in keys}
    if len(directions) == 1:
        descending = directions.pop()
        left: Any
        right: Any
        if len(attrs) == 1:
            left, right = attrs[0], bound[0]
        else:
            left, right = tuple_(*attrs), tuple_(*bound)
        clause: ColumnElement[bool] = left < right if descending else left > right
        return clause
    branches = []
    for i, (attr, (_, descending)) in enumerate(zip(attrs, keys, strict=True)):
        equal = [attrs[j] == bound[j] for j in range(i)]
        step = attr < bound[i] if descending else attr > bound[i]
        branches.append(and_(*equal, step))
    return or_(*branches)


def unpinned(keys: Sequence[OrderKey], filters: object) -> list[OrderKey]:
    """``keys`` without those an equality filter (``filters={"guild_id": g}``) pins.

    A pinned column is the same on every row, so leaving it out of ORDER BY and of the keyset
    comparison changes no page, and lets the index that starts with the filter serve the rest
    of the order: ``guild_id=g`` paged by the key ``(id, guild_id)`` walks ``(guild_id, id)``
    instead of sorting the whole guild. Only the mapping form of ``filters`` is looked at; when
    every key is pinned (at most one row) the keys stay as they are.
    """
    if not isinstance(filters, Mapping):
        return list(keys)
    pinned = {
        key
        for key, value in filters.items()
        if value is not None and not isinstance(value, list | tuple | set | frozenset)
    }
    rest = [key for key in keys if key[0] not in pinned]
    return rest or list(keys)
