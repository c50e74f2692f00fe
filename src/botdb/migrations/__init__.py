"""botdb's schema migrations: Alembic, packaged and driven from code (no alembic.ini).

The built-in tables' revisions ship in ``versions/`` (branch ``botdb``); your own revisions
live in your own directory (branch ``app``), migrated beside them. See ``docs/migrations.md``.

Example:
    >>> from botdb.migrations import Migrator
    >>> migrator = Migrator(db, script_locations=["migrations"])
    >>> await migrator.upgrade()
    >>> await migrator.check()          # [] when every model change has its migration
"""

from __future__ import annotations

from botdb.migrations._env import BUILTIN_BRANCH, VERSION_TABLE
from botdb.migrations._migrator import BUILTIN_VERSIONS, SCRIPT_LOCATION, MigrationError, Migrator

__all__ = [
    "BUILTIN_BRANCH",
    "BUILTIN_VERSIONS",
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "MigrationError",
    "Migrator",
]
