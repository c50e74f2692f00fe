"""Namespaced key/value store, also the storage of scoped settings.

``namespace`` is the feature (``"gallery"``, ``"settings"``, a cog name), ``scope`` what the
value belongs to, written as ``"global"``, ``"guild:<id>"``, ``"channel:<id>"``,
``"user:<id>"`` or ``"member:<guild id>:<user id>"``. The primary key
``(namespace, scope, key)`` serves lookups of one key, and prefix scans of a namespace or of
a namespace and scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, builtin_info
from botdb.models.types import JSON_TYPE, utcnow

__all__ = ["KeyValue"]


class KeyValue(Base):
    """One JSON value under ``(namespace, scope, key)``; ``expires_at`` NULL means never."""

    __tablename__ = "kv_store"
    __table_args__ = (
        Index("ix_kv_store_expires_at", "expires_at"),
        {"info": builtin_info()},
    )

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON_TYPE)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(server_default=utcnow(), onupdate=utcnow())
