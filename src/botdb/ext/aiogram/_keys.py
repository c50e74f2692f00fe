"""How an aiogram ``StorageKey`` becomes SQL parameters, a lock name and an advisory-lock id.

Framework-free on purpose: a key is read by attribute, so this module imports nothing of
aiogram and can be tested alone.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Protocol

import orjson

from botdb import errors

__all__ = ["KEY_COLUMNS", "KEY_WHERE", "KeyParams", "advisory_id", "key_params", "lock_name"]

#: The primary-key columns of ``fsm_states``, in the order of :func:`key_params`.
KEY_COLUMNS: Final = (
    "bot_id",
    "guild_id",  # the chat id, named like every chat-scoped table's column
    "user_id",
    "has_thread",
    "thread_id",
    "has_business_connection",
    "business_connection_id",
    "destiny",
)
#: ``WHERE`` clause matching one key, parameters ``$1`` .. ``$8``.
KEY_WHERE: Final = " AND ".join(f"{name} = ${i}" for i, name in enumerate(KEY_COLUMNS, 1))

_INT64: Final = 1 << 63
_TEXT_MAX: Final = 255

KeyParams = tuple[int, int, int, bool, int, bool, str, str]


class _Key(Protocol):
    @property
    def bot_id(self) -> int: ...
    @property
    def chat_id(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def thread_id(self) -> int | None: ...
    @property
    def business_connection_id(self) -> str | None: ...
    @property
    def destiny(self) -> str: ...


def _int(name: str, value: Any) -> int:
    if type(value) is not int or not -_INT64 <= value < _INT64:
        raise errors.DataError(f"StorageKey.{name} must be a 64-bit int, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if type(value) is not str or len(value) > _TEXT_MAX:
        raise errors.DataError(
            f"StorageKey.{name} must be a str of at most {_TEXT_MAX} characters, got "
            f"{type(value).__name__} {str(value)[:40]!r}"
        )
    return value


def key_params(key: _Key) -> KeyParams:
    """The eight key values: optional parts become ``(present, value or 0/"")``.

    Raises:
        DataError: a part has the wrong type or does not fit its column.
    """
    thread = key.thread_id
    business = key.business_connection_id
    return (
        _int("bot_id", key.bot_id),
        _int("chat_id", key.chat_id),
        _int("user_id", key.user_id),
        thread is not None,
        0 if thread is None else _int("thread_id", thread),
        business is not None,
        "" if business is None else _text("business_connection_id", business),
        _text("destiny", key.destiny),
    )


def lock_name(params: KeyParams) -> str:
    """The canonical text of a key (a JSON array, so None, 0 and "" stay apart)."""
    bot, chat, user, has_thread, thread, has_business, business, destiny = params
    parts = [
        bot,
        chat,
        user,
        thread if has_thread else None,
        business if has_business else None,
        destiny,
    ]
    return orjson.dumps(parts).decode()


def advisory_id(name: str) -> int:
    """A signed 64-bit id for ``pg_advisory_lock``, hashed from the lock name.

    Two keys sharing an id (a 2**-64 chance) only serialise each other's events.
    """
    digest = hashlib.blake2b(b"botdb.fsm:" + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
