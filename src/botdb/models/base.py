"""The declarative ``Base`` every botdb model and every user model derives from, and its mixins.

Users add their own tables to the same ``Base``, so their foreign keys to built-in tables
resolve and one ``Base.metadata`` (and one Alembic history) describes the whole database::

    from sqlalchemy import BigInteger, ForeignKey, String
    from sqlalchemy.orm import Mapped, mapped_column
    from botdb.models import Base, TimestampMixin

    class GalleryChannel(TimestampMixin, Base):
        __tablename__ = "gallery_channels"
        channel_id: Mapped[int] = mapped_column(
            BigInteger, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
        )
        guild_id: Mapped[int] = mapped_column(
            BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), index=True
        )
        label: Mapped[str] = mapped_column(String(100))

Built-in tables carry ``info={"botdb_builtin": True}``; :func:`builtin_tables` lists them in
foreign-key dependency order (parents first), which is the order to create, copy or import.
"""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, MetaData, Table, inspect
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from botdb.models.types import JSON_TYPE, UTCDateTime, utcnow

__all__ = [
    "BUILTIN_INFO_KEY",
    "NAMING_CONVENTION",
    "Base",
    "SoftDeleteMixin",
    "TimestampMixin",
    "builtin_info",
    "builtin_tables",
    "is_builtin",
]

#: Constraint and index names that are stable on both backends (Alembic batch mode on SQLite
#: can only drop or alter a constraint that has a name).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Key of ``Table.info`` that marks a table shipped by botdb.
BUILTIN_INFO_KEY = "botdb_builtin"


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of the built-in models and of users' own models.

    Type map: ``datetime`` -> :class:`~botdb.models.types.UTCDateTime` (``timestamptz`` on
    PostgreSQL), ``dict[str, Any]`` / ``list[Any]`` / ``list[str]`` -> JSON (``JSONB`` on
    PostgreSQL). Chat ids are declared ``BigInteger`` explicitly on each column. Server defaults
    are fetched in the INSERT/UPDATE itself (``eager_defaults``), so no attribute is left
    expired after a flush (an expired attribute would need a lazy load, which async forbids).
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON_TYPE,
        list[Any]: JSON_TYPE,
        list[str]: JSON_TYPE,
    }
    # A read-only mapping: subclasses that set their own __mapper_args__ should merge it in.
    __mapper_args__: Any = MappingProxyType({"eager_defaults": True})

    def __repr__(self) -> str:
        """Show the class and its primary key only, without loading anything."""
        state = inspect(self)
        mapper = state.mapper
        parts: list[str] = []
        identity = state.identity
        for index, column in enumerate(mapper.primary_key):
            key = mapper.get_property_by_column(column).key
            if key in state.dict:
                value = state.dict[key]
            elif identity is not None:
                value = identity[index]
            else:
                value = None
            parts.append(f"{key}={value!r}")
        return f"<{type(self).__name__} {' '.join(parts)}>"


def builtin_info() -> dict[str, Any]:
    """The ``Table.info`` of a built-in table (a fresh dict each call)."""
    return {BUILTIN_INFO_KEY: True}


def is_builtin(table: Table) -> bool:
    """Whether ``table`` is one of the tables botdb ships (as opposed to a user's table)."""
    return table.info.get(BUILTIN_INFO_KEY) is True


def builtin_tables(metadata: MetaData | None = None) -> list[Table]:
    """The built-in tables in foreign-key dependency order, parents first.

    Args:
        metadata: the metadata to look in; ``Base.metadata`` by default.

    Returns:
        Every table marked built-in, ordered so that creating (or copying rows into) them in
        this order never references a table not yet created.
    """
    import botdb.models  # noqa: F401 - registers every built-in model on Base.metadata

    source = Base.metadata if metadata is None else metadata
    return [table for table in source.sorted_tables if is_builtin(table)]


class TimestampMixin:
    """``created_at`` and ``updated_at``, both set by the database and never NULL.

    ``updated_at`` is refreshed by the ORM on every UPDATE it emits; raw SQL updates must set
    it themselves (``updated_at = CURRENT_TIMESTAMP``).
    """

    created_at: Mapped[datetime] = mapped_column(
        server_default=utcnow(), nullable=False, sort_order=900
    )
    updated_at: Mapped[datetime] = mapped_column(
        server_default=utcnow(), onupdate=utcnow(), nullable=False, sort_order=901
    )


class SoftDeleteMixin:
    """A nullable ``deleted_at``; a row with a value is deleted but kept.

    Repositories check ``__soft_delete__``: they filter with :meth:`not_deleted` and, to
    delete, UPDATE the row with :meth:`soft_delete_values` instead of issuing a DELETE.
    """

    __soft_delete__: ClassVar[bool] = True

    deleted_at: Mapped[datetime | None] = mapped_column(default=None, sort_order=902)

    @hybrid_property
    def is_deleted(self) -> bool:
        """Whether the row is soft-deleted (usable in queries: ``Model.is_deleted.is_(False)``)."""
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)

    @classmethod
    def not_deleted(cls) -> ColumnElement[bool]:
        """The WHERE clause that keeps live rows (written so partial indexes match it)."""
        return cls.deleted_at.is_(None)

    @classmethod
    def soft_delete_values(cls, now: datetime) -> dict[str, Any]:
        """Column values that mark a row deleted at ``now`` (for an UPDATE)."""
        return {"deleted_at": now}
