"""What a :class:`~botdb.repository.Repository` knows about its model, worked out once.

``ModelInfo`` reads the mapper and the table when the repository is built (no database needed):
the primary key, the column attributes, the unique keys (for ``get_or_create`` and ``upsert``),
soft delete, and which Python types each column accepts. It also turns the repository's
``filters`` / ``order_by`` / id arguments into SQLAlchemy clauses, checking every name and
value *before* anything is sent, so a typo or a wrong type raises a typed error and changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Float,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.orm import ColumnProperty, Mapper, configure_mappers
from sqlalchemy.sql.elements import ClauseElement, UnaryExpression
from sqlalchemy.sql.operators import desc_op
from sqlalchemy.types import Integer, TypeDecorator, TypeEngine

from botdb._json_values import INT64_MAX, INT64_MIN, short
from botdb.errors import ArgumentError, ConfigurationError, DataError, UndefinedColumnError

__all__ = ["Filters", "ModelInfo", "OrderBy", "OrderKey"]

#: What ``filters=`` accepts: one SQLAlchemy boolean expression, a list of them (ANDed), or a
#: mapping of column attribute names to values (``None`` -> IS NULL, a list/tuple/set -> IN).
Filters = ColumnElement[bool] | Sequence[ColumnElement[bool]] | Mapping[str, Any] | None
#: What ``order_by=`` accepts: a column name (``"-created_at"`` for descending), a column or
#: ordering expression, or a sequence of those.
OrderBy = str | ColumnElement[Any] | Any | Sequence[str | ColumnElement[Any] | Any] | None
#: One keyset-pagination key: (attribute name, descending).
OrderKey = tuple[str, bool]


def _accepted_types(type_: TypeEngine[Any]) -> tuple[type, ...] | None:
    """The Python types a column accepts, or None when botdb does not check it."""
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, Enum):
        return None  # enum members or strings: SQLAlchemy checks them itself
    if isinstance(type_, Boolean):
        return (bool,)
    if isinstance(type_, Integer):
        return (int,)
    if isinstance(type_, String):
        return (str,)
    if isinstance(type_, Numeric | Float):  # Float is no Numeric subclass in SQLAlchemy 2.1
        return (int, float, decimal.Decimal)
    if isinstance(type_, DateTime):
        return (dt.datetime,)
    if isinstance(type_, Date):
        return (dt.date,)
    return None


def _is_partial(index: Index) -> bool:
    return any(
        options.get("where") is not None
        for options in index.dialect_options.values()
        if "where" in options
    )


class ModelInfo:
    """Introspection of one mapped class, shared by every call of its repository."""

    def __init__(self, model: type[Any]) -> None:
        mapper: Mapper[Any] | None = inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper):
            raise ArgumentError(f"{model!r} is not a mapped class (derive it from botdb Base)")
        configure_mappers()
        table = mapper.local_table
        if not isinstance(table, Table):
            raise ArgumentError(f"{model.__name__} is not mapped to a table")
        self.model = model
        self.name: str = model.__name__
        self.mapper = mapper
        self.table: Table = table
        #: attribute name -> mapped attribute (``Model.col``), for every column attribute
        self.attrs: dict[str, Any] = {}
        #: attribute name -> table column
        self.columns: dict[str, Column[Any]] = {}
        self._by_column: dict[Any, str] = {}
        simple = mapper.inherits is None and mapper.polymorphic_on is None
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if (
                len(prop.columns) != 1
                or not isinstance(column, Column)
                or column.table is not table
                or prop.deferred
            ):
                simple = False
            if isinstance(column, Column):
                self.attrs[prop.key] = getattr(model, prop.key)
                self.columns[prop.key] = column
                self._by_column[column] = prop.key
        #: True when every table column is one plain attribute: rows can be built directly.
        self.simple = simple and len(self.columns) == len(table.columns)
        self.pk_keys: tuple[str, ...] = tuple(self._key_of(c) for c in mapper.primary_key)
        self.pk_attrs = tuple(self.attrs[k] for k in self.pk_keys)
        self.accepts: dict[str, tuple[type, ...] | None] = {
            key: _accepted_types(column.type) for key, column in self.columns.items()
        }
        self.unique_keys: list[frozenset[str]] = self._unique_keys()
        self.relationships = frozenset(mapper.relationships.keys())
        self.soft_delete = bool(getattr(model, "__soft_delete__", False))
        if self.soft_delete:
            for helper in ("not_deleted", "soft_delete_values"):
                if not callable(getattr(model, helper, None)):
                    raise ConfigurationError(
                        f"{self.name} sets __soft_delete__ but has no {helper}(): "
                        "derive it from botdb.models.SoftDeleteMixin"
                    )

    def _key_of(self, column: ColumnElement[Any]) -> str:
        key = self._by_column.get(column)
        if key is None:
            prop = self.mapper.get_property_by_column(column)
            assert isinstance(prop, ColumnProperty)
            key = prop.key
        return str(key)

    def _unique_keys(self) -> list[frozenset[str]]:
        keys: list[frozenset[str]] = []
        for constraint in self.table.constraints:
            if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint):
                names = frozenset(self._by_column.get(c, c.key) for c in constraint.columns)
                if names:
                    keys.append(names)
        keys.extend(
            frozenset(self._by_column.get(c, c.key) for c in index.columns)
            for index in self.table.indexes
            if index.unique
            and not _is_partial(index)
            and all(isinstance(e, Column) for e in index.expressions)
        )
        return keys

    # -- names and values --------------------------------------------------------------------

    def column(self, key: str) -> Any:
        """The mapped attribute ``Model.<key>``; UndefinedColumnError naming it if unknown."""
        try:
            return self.attrs[key]
        except KeyError:
            raise UndefinedColumnError(
                f"{self.name} has no column {key!r} (columns: {', '.join(self.attrs)})",
                table=self.table.name,
                column=key,
            ) from None

    def check_value(self, key: str, value: Any) -> None:
        """Raise ArgumentError when ``value`` cannot go into column ``key`` (a wrong type), or
        DataError when no column of that type can hold it on every backend: an int beyond 64
        bits, a float NaN (SQLite would store NULL; PostgreSQL's raw API keeps it)."""
        accepted = self.accepts.get(key)
        if value is None or accepted is None:
            return
        if isinstance(value, accepted):
            kind = type(value)
            number: Any = value
            if (kind is int and not INT64_MIN <= number <= INT64_MAX) or (
                kind is float and value != value
            ):
                raise DataError(
                    f"{self.name}.{key} cannot hold {short(value, 40)}: "
                    + (
                        "NaN is not stored alike by every backend"
                        if kind is float
                        else "it does not fit in 64 bits"
                    ),
                    table=self.table.name,
                    column=key,
                )
            return
        raise ArgumentError(
            f"{self.name}.{key} takes {' or '.join(t.__name__ for t in accepted)}, "
            f"not {type(value).__name__} ({short(value, 40)})",
            table=self.table.name,
            column=key,
        )

    def check_values(self, values: Mapping[str, Any], *, allow_relationships: bool = False) -> None:
        """Check every name and value of a write (UndefinedColumnError / ArgumentError)."""
        for key, value in values.items():
            if key in self.columns:
                self.check_value(key, value)
            elif not (allow_relationships and key in self.relationships):
                self.column(key)

    def identity(self, ident: Any) -> tuple[Any, ...]:
        """The primary key values, in key order, of a scalar / tuple / mapping id."""
        keys = self.pk_keys
        if isinstance(ident, Mapping):
            unknown = set(ident) - set(keys)
            if unknown or len(ident) != len(keys):
                raise ArgumentError(
                    f"{self.name}'s id is {{{', '.join(keys)}}}, got keys {sorted(ident)}"
                )
            values = tuple(ident[k] for k in keys)
        elif isinstance(ident, tuple | list):
            if len(ident) != len(keys):
                raise ArgumentError(
                    f"{self.name}'s id has {len(keys)} part(s) ({', '.join(keys)}), "
                    f"got {len(ident)}"
                )
            values = tuple(ident)
        elif len(keys) == 1:
            values = (ident,)
        else:
            raise ArgumentError(
                f"{self.name} has a composite key ({', '.join(keys)}): pass a tuple or a dict"
            )
        for key, value in zip(keys, values, strict=True):
            if value is None:
                raise ArgumentError(f"{self.name}.{key} (part of the id) cannot be None")
            self.check_value(key, value)
        return values

    def id_text(self, values: Sequence[Any]) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in zip(self.pk_keys, values, strict=True))

    def id_clauses(self, values: Sequence[Any]) -> list[ColumnElement[bool]]:
        return [attr == value for attr, value in zip(self.pk_attrs, values, strict=True)]

    def live(self, include_deleted: bool) -> list[ColumnElement[bool]]:
        """The soft-delete filter (empty for other models or with ``include_deleted``)."""
        if self.soft_delete and not include_deleted:
            return [self.model.not_deleted()]
        return []

    def soft_delete_values(self, now: dt.datetime) -> dict[str, Any]:
        values: dict[str, Any] = self.model.soft_delete_values(now)
        return values

    def restore_values(self) -> dict[str, Any]:
        """What undoes :meth:`soft_delete_values`: the model's ``restore_values()`` if it has
        one, else False for each boolean flag and None for the rest."""
        custom = getattr(self.model, "restore_values", None)
        if callable(custom):
            values: dict[str, Any] = custom()
            return values
        marks = self.soft_delete_values(dt.datetime.now(dt.UTC))
        return {k: False if self.accepts.get(k) == (bool,) else None for k in marks}

    def unique_key_for(self, keys: Iterable[str]) -> frozenset[str] | None:
        wanted = frozenset(keys)
        return wanted if wanted in self.unique_keys else None

    # -- filters and ordering ----------------------------------------------------------------

    def where(self, filters: Filters) -> list[ColumnElement[bool]]:
        """The WHERE clauses of a ``filters`` argument (checked, nothing sent)."""
        if filters is None:
            return []
        if isinstance(filters, Mapping):
            clauses: list[ColumnElement[bool]] = []
            for key, value in filters.items():
                attr = self.column(key)
                if value is None:
                    clauses.append(attr.is_(None))
                elif isinstance(value, list | tuple | set | frozenset) and self.accepts.get(key):
                    for item in value:
                        self.check_value(key, item)
                    clauses.append(attr.in_(list(value)))
                else:
                    self.check_value(key, value)
                    clauses.append(attr == value)
            return clauses
        if isinstance(filters, ClauseElement) or hasattr(filters, "__clause_element__"):
            return [cast("ColumnElement[bool]", filters)]
        if isinstance(filters, list | tuple):
            for clause in filters:
                if not (isinstance(clause, ClauseElement) or hasattr(clause, "__clause_element__")):
                    raise ArgumentError(
                        f"filters must be SQLAlchemy expressions, got {type(clause).__name__}"
                    )
            return list(filters)
        raise ArgumentError(
            "filters must be an expression (Model.col == value), a list of them, or a dict "
            f"of column values; got {type(filters).__name__}"
        )

    def order(self, order_by: OrderBy) -> list[Any]:
        """ORDER BY clauses from names (``"-col"`` descending) or expressions."""
        if order_by is None:
            return []
        items = list(order_by) if isinstance(order_by, list | tuple) else [order_by]
        clauses: list[Any] = []
        for item in items:
            if isinstance(item, str):
                key, descending = (item[1:], True) if item.startswith("-") else (item, False)
                attr = self.column(key)
                clauses.append(attr.desc() if descending else attr.asc())
            elif isinstance(item, ClauseElement) or hasattr(item, "__clause_element__"):
                clauses.append(item)
            else:
                raise ArgumentError(
                    f"order_by takes column names or expressions, got {type(item).__name__}"
                )
        return clauses

    def keyset_order(self, order_by: OrderBy) -> list[OrderKey]:
        """The keys of a keyset page: the given NOT NULL columns, then the primary key."""
        items = list(order_by) if isinstance(order_by, list | tuple) else [order_by]
        keys: list[OrderKey] = []
        for item in items:
            if isinstance(item, str):
                key, descending = (item[1:], True) if item.startswith("-") else (item, False)
                self.column(key)
            else:
                descending = False
                element: Any = item
                if hasattr(element, "__clause_element__"):
                    element = element.__clause_element__()
                if isinstance(element, UnaryExpression) and element.modifier is not None:
                    descending = element.modifier is desc_op
                    element = element.element
                found = self._by_column.get(element)
                if found is None:
                    raise ArgumentError(
                        f"find_page orders by columns of {self.name} only (names or "
                        f"Model.col / Model.col.desc()), got {item!r}"
                    )
                key = found
            if self.columns[key].nullable and key not in self.pk_keys:
                raise ArgumentError(
                    f"find_page cannot order by {self.name}.{key}: it is nullable, and NULLs "
                    "have no place in a keyset; order by NOT NULL columns"
                )
            if key not in (k for k, _ in keys):
                keys.append((key, descending))
        last_desc = keys[-1][1] if keys else False
        for key in self.pk_keys:
            if key not in (k for k, _ in keys):
                keys.append((key, last_desc))
        return keys


def value_converter(info: ModelInfo, key: str) -> Callable[[Any], Any]:
    """Turn a cursor's JSON value back into the column's Python type (ArgumentError if not)."""
    accepted = info.accepts.get(key)

    def convert(value: Any) -> Any:
        if accepted == (dt.datetime,) and isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        elif accepted == (dt.date,) and isinstance(value, str):
            value = dt.date.fromisoformat(value)
        elif accepted is not None and decimal.Decimal in accepted and isinstance(value, str):
            value = decimal.Decimal(value)
        if value is None:
            raise ArgumentError("the cursor holds a NULL key")
        info.check_value(key, value)
        return value

    return convert
