"""What ``env.py`` does: configure Alembic on the connection botdb hands it, and run.

botdb never lets Alembic open a connection or an engine of its own. :class:`~botdb.migrations.
Migrator` puts the connection (already inside a transaction) and an :class:`EnvOptions` into
``config.attributes``; the packaged ``env.py`` calls :func:`run_env`, which reads them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from botdb.errors import ConfigurationError

#: PostgreSQL's full-text index on messages (``botdb.models._search.PG_INDEX``).
SEARCH_INDEX = "ix_messages_content_search"

__all__ = [
    "BUILTIN_BRANCH",
    "CONNECTION_KEY",
    "OPTIONS_KEY",
    "VERSION_TABLE",
    "EnvOptions",
    "run_env",
]

#: The branch label of the built-in schema's revisions.
BUILTIN_BRANCH = "botdb"
#: The one version table every branch records its applied heads in (see docs/migrations.md).
VERSION_TABLE = "botdb_alembic_version"
#: ``config.attributes`` key of the SQLAlchemy Connection Alembic runs on.
CONNECTION_KEY = "connection"
#: ``config.attributes`` key of the :class:`EnvOptions`.
OPTIONS_KEY = "botdb.options"


@dataclass(frozen=True, slots=True)
class EnvOptions:
    """What one Alembic run compares and how.

    Attributes:
        metadata: the models' metadata (autogenerate compares the database against it).
        tables: names of the tables autogenerate may look at; every other table, in the
            metadata or in the database, is ignored (this keeps the built-in branch to the
            built-in tables and a user's branch to the user's tables).
        on_version_apply: called by Alembic after each revision is applied or reverted.
    """

    metadata: MetaData
    tables: frozenset[str]
    on_version_apply: Callable[..., None] | None = None

    def include_name(self, name: str | None, type_: str, parent_names: Any) -> bool:
        """Reflect only the tables in scope (the rest of the database is not ours to diff), and
        not the full-text index, which DDL listeners make beside the model (no ``Index``)."""
        if type_ == "table":
            return name in self.tables
        if type_ == "index":
            return name != SEARCH_INDEX
        return True

    def include_object(
        self, obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        """Compare only tables in scope, and the columns, indexes and constraints on them."""
        if type_ == "table":
            return name in self.tables
        if type_ == "foreign_key_constraint" and reflected and name and name[-1].isdigit():
            # PostgreSQL's per-partition copies of a foreign key to a partitioned table (botdb
            # partition messages), named after it with a number: not the model's.
            stem = name.rstrip("0123456789")
            siblings = {fk.name for fk in getattr(obj.table, "foreign_key_constraints", ())}
            if stem in siblings:
                return False
        table = getattr(obj, "table", None)
        if table is None:
            return True
        return str(table.name) in self.tables


def run_env(context: EnvironmentContext) -> None:
    """Configure ``context`` on botdb's connection and run the migrations (called by env.py).

    Raises:
        ConfigurationError: when run by the plain ``alembic`` command instead of botdb.
    """
    attributes = context.config.attributes
    connection = attributes.get(CONNECTION_KEY)
    options = attributes.get(OPTIONS_KEY)
    if not isinstance(connection, Connection) or not isinstance(options, EnvOptions):
        raise ConfigurationError(
            "botdb's migrations run through botdb itself: use `botdb migrate ...` or "
            "botdb.migrations.Migrator, not the alembic command"
        )
    on_sqlite = connection.dialect.name == "sqlite"
    include_name: Callable[..., bool] = options.include_name
    include_object: Callable[..., bool] = options.include_object
    extra: dict[str, Any] = {}
    if options.on_version_apply is not None:
        extra["on_version_apply"] = options.on_version_apply
    context.configure(
        connection=connection,
        target_metadata=options.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=on_sqlite,
        compare_type=True,
        include_name=include_name,
        include_object=include_object,
        # botdb's SQLite connections BEGIN explicitly, so DDL is transactional there too.
        transactional_ddl=True,
        **extra,
    )
    with context.begin_transaction():
        context.run_migrations()
