"""The generic mapping: a small spec file says where the records are and where they go.

A spec (TOML, or JSON with the same keys)::

    records = "data.items"        # dotted path to an object or array; "" = the top level
    table = "kv_store"            # a table of botdb.models.Base.metadata, or of the database
    key = ["namespace", "scope", "key"]   # natural key; default: the primary key

    [fields]                      # column = where its value comes from
    namespace = { value = "legacy" }      # a constant
    scope = "$key"                # the record's key in its container ("$value": the record)
    key = "name"                  # a dotted path inside the record
    value = { from = "payload", type = "json" }
    expires_at = { from = "expires", type = "datetime", default = "" }

``type`` is one of ``str``, ``int``, ``float``, ``bool``, ``datetime`` (ISO 8601 text or a
Unix timestamp; naive times are UTC) and ``json``; without it the column's type decides. A
field without ``default`` is required: a record without it is reported as bad.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Column, Table, TypeDecorator, UniqueConstraint

from botdb._json_values import short
from botdb.errors import ConfigurationError
from botdb.importers._formats import Format, TableRule

__all__ = ["GenericFormat", "parse_spec"]

_TYPES = ("str", "int", "float", "bool", "datetime", "json")
_MISSING = object()


@dataclass(frozen=True)
class FieldRule:
    column: str
    source: str | None  # None: a constant
    type: str
    default: Any = _MISSING
    constant: Any = None


@dataclass
class GenericFormat(Format):
    """A format described by a spec (see the module docstring)."""

    name: str = "generic"
    table: Table | None = None
    path: tuple[str, ...] = ()
    fields: list[FieldRule] = field(default_factory=list)

    def parse(self, key: str, value: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for rule in self.fields:
            if rule.source is None:
                raw = rule.constant
            else:
                raw = _lookup(key, value, rule.source)
                if raw is _MISSING:
                    if rule.default is _MISSING:
                        raise ValueError(f"{rule.source!r} is missing")
                    raw = rule.default
            try:
                row[rule.column] = _coerce(raw, rule.type)
            except (TypeError, ValueError, OverflowError) as exc:  # e.g. float(10**400)
                raise ValueError(f"{rule.column}: {exc}") from None
        return row

    def rows(self, record: Any) -> dict[str, list[dict[str, Any]]]:
        assert self.table is not None
        return {self.table.name: [record]}


def _lookup(key: str, value: Any, source: str) -> Any:
    if source == "$key":
        return key
    if source == "$value":
        return value
    current = value
    for part in source.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _coerce(value: Any, kind: str) -> Any:
    if value is None or kind == "json":
        return value
    if kind == "str":
        if isinstance(value, dict | list):
            raise ValueError(f"expected text, got {type(value).__name__}")
        return str(value)
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {short(value)}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {short(value)}")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {short(value)}")
    # datetime
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected a date and time, got {short(value)}")
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _column_kind(column: Column[Any]) -> str:
    type_: Any = column.type
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, JSON):
        return "json"
    try:
        python = type_.python_type
    except NotImplementedError:
        return "json"
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("datetime", dt.datetime)):
        if issubclass(python, cls):
            return kind
    if issubclass(python, dict | list):
        return "json"
    return "str"


def parse_spec(spec: Mapping[str, Any], tables: Mapping[str, Table]) -> GenericFormat:
    """Check a spec against the known tables and build its format.

    Raises:
        ConfigurationError: an unknown table or column, a bad type, an unusable key, a
            required column left unmapped.
    """
    if not isinstance(spec, Mapping):
        raise ConfigurationError("the spec must be a table/object")
    unknown = set(spec) - {"records", "table", "key", "fields"}
    if unknown:
        raise ConfigurationError(f"unknown spec setting(s): {', '.join(sorted(unknown))}")
    name = spec.get("table")
    if not isinstance(name, str) or name not in tables:
        raise ConfigurationError(f"the spec names an unknown table: {name!r}")
    table = tables[name]
    records = spec.get("records", "")
    if not isinstance(records, str):
        raise ConfigurationError("'records' must be a dotted path (text)")
    mapping = spec.get("fields")
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigurationError("the spec needs a [fields] table mapping columns to sources")
    rules: list[FieldRule] = []
    for column_name, source in mapping.items():
        if column_name not in table.columns:
            raise ConfigurationError(f"the spec names an unknown column: {name}.{column_name}")
        column = table.columns[column_name]
        if column.computed is not None:
            raise ConfigurationError(f"{name}.{column_name} is computed by the database")
        rules.append(_field_rule(column, source))
    mapped = {rule.column for rule in rules}
    for column in table.columns:
        required = (
            not column.nullable
            and column.default is None
            and column.server_default is None
            and column.computed is None
            and not (column.primary_key and column.autoincrement is True)
        )
        if required and column.name not in mapped:
            raise ConfigurationError(f"{name}.{column.name} is required but not in [fields]")
    key = tuple(spec.get("key") or [c.name for c in table.primary_key.columns])
    if not all(isinstance(k, str) for k in key) or not set(key) <= mapped:
        raise ConfigurationError(f"every key column must be mapped in [fields]: {list(key)}")
    uniques = [{c.name for c in table.primary_key.columns}] + [
        {c.name for c in constraint.columns}
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    if set(key) not in uniques:
        raise ConfigurationError(f"{list(key)} is not the primary key or unique in {name}")
    update = tuple(sorted(mapped - set(key)))
    return GenericFormat(
        table=table,
        path=tuple(p for p in records.split(".") if p),
        fields=rules,
        rules={name: TableRule(key, update)},
        primary=name,
    )


def _field_rule(column: Column[Any], source: Any) -> FieldRule:
    kind = _column_kind(column)
    if isinstance(source, str):
        return FieldRule(column.name, source, kind)
    if not isinstance(source, Mapping):
        raise ConfigurationError(f"[fields] {column.name}: expected a path or a table")
    unknown = set(source) - {"from", "value", "type", "default"}
    if unknown:
        raise ConfigurationError(f"[fields] {column.name}: unknown key(s) {sorted(unknown)}")
    kind = source.get("type", kind)
    if kind not in _TYPES:
        raise ConfigurationError(f"[fields] {column.name}: type must be one of {_TYPES}")
    if "value" in source:
        return FieldRule(column.name, None, kind, constant=source["value"])
    origin = source.get("from")
    if not isinstance(origin, str):
        raise ConfigurationError(f"[fields] {column.name}: needs 'from' (a path) or 'value'")
    return FieldRule(column.name, origin, kind, source.get("default", _MISSING))
