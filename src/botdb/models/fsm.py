"""Finite-state-machine storage of chat frameworks (aiogram's FSM): one row per key.

The key is aiogram's whole ``StorageKey``: bot, chat, user, thread, business connection and
destiny; the chat id is stored in ``guild_id``, as in every chat-scoped table. A thread id or
business connection id may be absent (``None``), which must stay distinct from ``0`` /
``""``; SQL unique keys treat NULLs as distinct (and SQLite has no ``NULLS NOT DISTINCT``),
so each optional part is stored as a NOT NULL value plus a flag saying whether it is present:
``(has_thread, thread_id)`` is ``(False, 0)`` for ``None`` and ``(True, 0)`` for ``0``. The
primary key then covers every part, and one ``INSERT ... ON CONFLICT (primary key) DO
UPDATE`` upserts a row atomically on both backends.

``fsm_locks`` holds the leases by which several processes sharing one SQLite file serialise
the events of a key (PostgreSQL uses advisory locks instead and leaves the table empty).

The tables are framework-free: nothing here imports aiogram.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, builtin_info
from botdb.models.types import JSON_TYPE, utcnow

__all__ = ["FSMLock", "FSMState"]


class FSMState(Base):
    """The state and data of one FSM key; an expiry column per part (NULL: never)."""

    __tablename__ = "fsm_states"
    __table_args__ = (
        CheckConstraint("has_thread OR thread_id = 0", name="thread_id_absent"),
        CheckConstraint(
            "has_business_connection OR business_connection_id = ''",
            name="business_connection_id_absent",
        ),
        {"info": builtin_info()},
    )

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: The chat id, named like the chat column of every chat-scoped table.
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    has_thread: Mapped[bool] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    has_business_connection: Mapped[bool] = mapped_column(primary_key=True)
    business_connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    destiny: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(Text, default=None)
    data: Mapped[Any] = mapped_column(JSON_TYPE, nullable=True, default=None)
    state_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    data_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(server_default=utcnow(), onupdate=utcnow())


class FSMLock(Base):
    """A lease on one FSM key, held by ``holder`` until ``expires_at`` unless renewed."""

    __tablename__ = "fsm_locks"
    __table_args__ = ({"info": builtin_info()},)

    lock_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()
