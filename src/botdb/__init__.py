"""botdb: the database layer for Discord and Telegram bots.

One :class:`Database` gives a bot raw SQL in asyncpg's style on SQLite and PostgreSQL,
transactions with retries, ORM sessions, health checks and statistics::

    import botdb

    async with botdb.connect("sqlite:///bot.db") as db:
        await db.execute("INSERT INTO notes (body) VALUES ($1)", "hello")
        row = await db.fetchrow("SELECT body FROM notes WHERE id = $1", 1)
"""

from __future__ import annotations

from botdb._version import __version__
from botdb.config import DatabaseURL, Settings
from botdb.database import Database, connect
from botdb.engine.connection import Connection, PreparedStatement
from botdb.engine.record import Record
from botdb.engine.retry import RetryPolicy
from botdb.errors import (
    ArgumentError,
    AuthenticationError,
    BackupError,
    BackupVerificationError,
    BotDBError,
    CheckViolationError,
    ConfigurationError,
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseBusyError,
    DatabaseError,
    DataError,
    DeadlockError,
    DistributionError,
    ForeignKeyViolationError,
    IntegrityError,
    InterfaceError,
    MigrationError,
    MissingDependencyError,
    NotFoundError,
    NotNullViolationError,
    NotSupportedError,
    PartitioningError,
    QueryError,
    QueryTimeoutError,
    ReadOnlyError,
    RestoreRefusedError,
    SchedulingError,
    SerializationError,
    SpoolError,
    SQLSyntaxError,
    TargetNotEmptyError,
    TransientError,
    UndefinedColumnError,
    UndefinedTableError,
    UniqueViolationError,
    UnknownJobKindError,
    UnportableSchemaError,
    UnsupportedSQLError,
    VerificationError,
)
from botdb.repository import KeysetPage, Page, Repository

__all__ = [
    "ArgumentError",
    "AuthenticationError",
    "BackupError",
    "BackupVerificationError",
    "BotDBError",
    "CheckViolationError",
    "ConfigurationError",
    "Connection",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DataError",
    "Database",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseURL",
    "DeadlockError",
    "DistributionError",
    "ForeignKeyViolationError",
    "IntegrityError",
    "InterfaceError",
    "KeysetPage",
    "MigrationError",
    "MissingDependencyError",
    "NotFoundError",
    "NotNullViolationError",
    "NotSupportedError",
    "Page",
    "PartitioningError",
    "PreparedStatement",
    "QueryError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "Record",
    "Repository",
    "RestoreRefusedError",
    "RetryPolicy",
    "SQLSyntaxError",
    "SchedulingError",
    "SerializationError",
    "Settings",
    "SpoolError",
    "TargetNotEmptyError",
    "TransientError",
    "UndefinedColumnError",
    "UndefinedTableError",
    "UniqueViolationError",
    "UnknownJobKindError",
    "UnportableSchemaError",
    "UnsupportedSQLError",
    "VerificationError",
    "__version__",
    "connect",
]
