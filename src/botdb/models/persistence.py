"""Rows of framework persistence: python-telegram-bot's ``user_data``, ``chat_data``,
``bot_data``, callback data and conversation states (see :mod:`botdb.ext.ptb`).

One row per key, never one blob: ``user_data[42]["count"]`` is the row
``(namespace, "user", "42", '"count"')``, so a write of one key never rewrites (or loses)
another, and two processes writing different keys of one chat both keep their writes.

* ``namespace`` lets several bots share one database.
* ``kind`` is ``user``, ``chat``, ``bot``, ``callback`` or ``conversation``.
* ``scope`` is what the data belongs to: the user or chat id in decimal, the conversation
  handler's name, ``""`` for bot data, ``keyboards`` or ``queries`` for callback data.
* ``key`` is the JSON text of the dict key (``'"count"'``, ``'5'``, a conversation key
  ``'[123,456]'``), so str and int keys stay distinct.
* ``value`` is the JSON text of the value; ``pickled`` holds it instead when the value is not
  JSON and the persistence was told to pickle such values. Exactly one of the two is set.
* ``version`` changes on every write (``+1`` on update; a new row starts from the writer's
  clock in microseconds, so a key deleted and created again never goes back to an old
  version). A process compares it with the version it last loaded or wrote.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, builtin_info
from botdb.models.types import utcnow

__all__ = ["PERSISTENCE_KINDS", "PersistenceEntry"]

#: The kinds of data a persistence row holds.
PERSISTENCE_KINDS = ("user", "chat", "bot", "callback", "conversation")


class PersistenceEntry(Base):
    """One key of a bot framework's persisted data (see the module docstring)."""

    __tablename__ = "ptb_persistence"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('user', 'chat', 'bot', 'callback', 'conversation')", name="kind_known"
        ),
        CheckConstraint(
            "(value IS NULL AND pickled IS NOT NULL) OR (value IS NOT NULL AND pickled IS NULL)",
            name="one_value",
        ),
        {"info": builtin_info()},
    )

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, default=None)
    pickled: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=utcnow(), onupdate=utcnow())
