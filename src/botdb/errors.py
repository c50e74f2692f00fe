"""Every error botdb raises.

Driver errors (asyncpg, sqlite3, SQLAlchemy) are translated to these classes at one boundary,
:func:`botdb.engine._translate.translate_error`, by SQLSTATE or SQLite extended result code,
never by message text. The driver's exception stays reachable as ``__cause__``.

::

    BotDBError
    ├── ConfigurationError            bad URL, unknown option, invalid setting
    ├── MissingDependencyError        an optional extra is not installed (also an ImportError)
    ├── AuthenticationError           the server refused the credentials
    ├── TransientError                worth retrying; botdb retries these itself
    │   ├── ConnectionFailedError     no connection could be made (down, refused, unreachable)
    │   ├── ConnectionLostError       an open connection dropped (server restart, terminate)
    │   ├── DeadlockError
    │   ├── SerializationError
    │   └── DatabaseBusyError         SQLite BUSY/LOCKED: another connection holds the lock
    ├── QueryTimeoutError             a statement ran past its timeout (not retried)
    ├── IntegrityError                never retried
    │   ├── UniqueViolationError
    │   ├── ForeignKeyViolationError
    │   ├── NotNullViolationError
    │   └── CheckViolationError
    ├── QueryError                    the statement itself is wrong
    │   ├── SQLSyntaxError
    │   ├── UndefinedTableError
    │   ├── UndefinedColumnError
    │   ├── ArgumentError             wrong number or type of query arguments
    │   ├── UnsupportedSQLError       a PostgreSQL construct SQLite cannot run
    │   └── NotSupportedError         the server cannot run it (SQLSTATE 0A000; Citus's refusals)
    ├── DataError                     a value the column cannot hold (out of range, bad text)
    ├── NotFoundError                 ``get_one`` found nothing
    ├── MigrationError                a migration command failed; the schema is unchanged
    ├── TargetNotEmptyError           restore/transfer would overwrite data: pass yes=True
    ├── VerificationError             counts or checksums differ after a copy; ``report``
    ├── BackupError                   a backup or restore could not be made
    │   ├── BackupVerificationError   (also a VerificationError) corrupt or truncated backup
    │   └── RestoreRefusedError       (also a TargetNotEmptyError) the target holds data
    ├── DistributionError             ``botdb distribute`` refused: not Citus, not at head...
    ├── UnportableSchemaError         a transfer cannot move a column, view, function...
    ├── SpoolError                    the recorder's spool file cannot be written or read
    ├── SchedulingError               a job asked of db.scheduler is invalid; nothing written
    │   └── UnknownJobKindError       no handler or register_kind() for the job's kind
    ├── InterfaceError                the API was misused: a closed connection, concurrent use
    │   └── ReadOnlyError             a write in a read-only session or transaction
    └── DatabaseError                 any other error the server reported with a code
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "AuthenticationError",
    "BackupError",
    "BackupVerificationError",
    "BotDBError",
    "CheckViolationError",
    "ConfigurationError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DataError",
    "DatabaseBusyError",
    "DatabaseError",
    "DeadlockError",
    "DistributionError",
    "ForeignKeyViolationError",
    "IntegrityError",
    "InterfaceError",
    "MigrationError",
    "MissingDependencyError",
    "NotFoundError",
    "NotNullViolationError",
    "NotSupportedError",
    "PartitioningError",
    "QueryError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "RestoreRefusedError",
    "SQLSyntaxError",
    "SchedulingError",
    "SerializationError",
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
]


class BotDBError(Exception):
    """Root of every botdb error.

    Attributes:
        sqlstate: the PostgreSQL SQLSTATE, or ``"sqlite:<extended code name>"`` on SQLite, when
            the error came from the database.
        table: the table the server named, when it named one.
        constraint: the constraint the server named, when it named one.
        column: the column the server named, when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        table: str | None = None,
        constraint: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.table = table
        self.constraint = constraint
        self.column = column


class ConfigurationError(BotDBError):
    """A URL, option or setting is invalid; the message says which and why."""


class MissingDependencyError(BotDBError, ImportError):
    """An optional dependency is missing; the message names the pip extra that installs it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'botdb[{extra}]'"
        )
        self.package = package
        self.extra = extra


class AuthenticationError(BotDBError):
    """The server refused the user name or password. Not retried: it will not fix itself."""


class TransientError(BotDBError):
    """A failure that may succeed when tried again; botdb retries these with backoff."""


class ConnectionFailedError(TransientError):
    """No connection could be made: the server is down, refusing, or unreachable."""


class ConnectionLostError(TransientError):
    """An open connection dropped while in use.

    Attributes:
        in_doubt: True when the connection dropped while a write or a COMMIT was in flight, so
            the server may or may not have applied it. botdb never retries an in-doubt write.
    """

    in_doubt: bool = False


class DeadlockError(TransientError):
    """The server broke a deadlock by aborting this transaction."""


class SerializationError(TransientError):
    """A serializable or repeatable-read transaction conflicted with another one."""


class DatabaseBusyError(TransientError):
    """SQLite: another connection held the lock for longer than ``busy_timeout``."""


class QueryTimeoutError(BotDBError):
    """A statement ran longer than its timeout and was cancelled. Not retried."""


class IntegrityError(BotDBError):
    """A constraint rejected the write. Never retried: the same write would fail again."""


class UniqueViolationError(IntegrityError):
    """A row with the same unique key exists."""


class ForeignKeyViolationError(IntegrityError):
    """A referenced row is missing, or a referencing row still exists."""


class NotNullViolationError(IntegrityError):
    """A NOT NULL column was given no value."""


class CheckViolationError(IntegrityError):
    """A CHECK constraint rejected the row."""


class QueryError(BotDBError):
    """The statement itself is wrong: syntax, unknown names, arguments, unsupported SQL."""


class SQLSyntaxError(QueryError):
    """The SQL does not parse."""


class UndefinedTableError(QueryError):
    """The statement names a table that does not exist."""


class UndefinedColumnError(QueryError):
    """The statement names a column that does not exist."""


class ArgumentError(QueryError):
    """The query was given the wrong number or the wrong types of arguments."""


class UnsupportedSQLError(QueryError):
    """A PostgreSQL construct that botdb cannot run on SQLite; ``construct`` names it."""

    def __init__(self, construct: str, hint: str = "") -> None:
        message = f"{construct} is not supported on SQLite"
        super().__init__(f"{message}: {hint}" if hint else message)
        self.construct = construct


class NotSupportedError(QueryError):
    """The server does not support the statement (SQLSTATE 0A000), e.g. on a Citus cluster a
    unique constraint without the distribution column, or a multi-shard ``FOR UPDATE``."""


class DataError(BotDBError):
    """A value the column cannot hold: out of range, invalid text representation, bad JSON."""


class NotFoundError(BotDBError):
    """``get_one`` (or another ``*_one``) found no row."""


class MigrationError(BotDBError):
    """A migration command failed: unknown revision, a downgrade past base, a revision whose
    SQL failed, or a database that is not up to date. The database is left unchanged; the
    underlying error (a botdb error when the database raised it) is ``__cause__``."""


class TargetNotEmptyError(BotDBError):
    """A restore, transfer or import would overwrite existing data; nothing was changed.

    Pass ``yes=True`` (``--yes`` on the command line) to allow it.

    Attributes:
        reason: what is in the way, without the way out (``"sqlite:///bot.db is not
            empty"``); None when the raiser gave only a message.
        allow: what passing ``yes`` would do (``"to replace its content"``).
    """

    def __init__(
        self, message: str | None = None, *, reason: str | None = None, allow: str = "to allow it"
    ) -> None:
        self.reason = reason
        self.allow = allow
        super().__init__(message if message is not None else self.advice("yes=True"))

    def advice(self, option: str) -> str:
        """The message with the way out spelled ``option``: the library says ``yes=True``,
        the command line ``--yes``."""
        if self.reason is None:
            return str(self)
        return f"{self.reason}: pass {option} {self.allow}; nothing was changed"


class VerificationError(BotDBError):
    """A backup, restore or transfer did not verify: row counts or checksums differ.

    Attributes:
        report: the operation's report, which says what differs (None when there is none).
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class BackupError(BotDBError):
    """A backup or restore could not be made: a tool failed, or the file is not a backup."""


class BackupVerificationError(BackupError, VerificationError):
    """A backup failed verification (checksum, size, integrity check or row counts).

    Nothing was changed: a restore checks everything before it touches the target.
    """


class RestoreRefusedError(BackupError, TargetNotEmptyError):
    """The restore target holds data and ``yes=True`` (``--yes``) was not given."""


class PartitioningError(BotDBError):
    """Partitioning the messages could not be done: the backend is SQLite (partitioning is
    PostgreSQL's), the ids are not snowflakes, or another object is in the way; nothing was
    changed. The message says which."""


class DistributionError(BotDBError):
    """Distributing the schema on Citus could not be done: the backend is SQLite, the server
    is not a Citus coordinator with workers, migrations are pending, messages are partitioned,
    a table has no placement, or a key cannot take the distribution column; nothing was
    changed. The message says which."""


class UnportableSchemaError(BotDBError):
    """A transfer was refused before anything was written: part of the source's schema has
    no equivalent on the target's backend.

    Attributes:
        problems: one ``"table.column: reason"`` (or ``"view name: reason"``) per problem.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class SpoolError(BotDBError):
    """The recorder's spool file could not be written or read (a full disk, permissions);
    the events stay in memory."""


class SchedulingError(BotDBError, ValueError):
    """A job given to ``db.scheduler`` is invalid (a naive datetime, an invalid cron expression
    or time zone, conflicting or missing times) or cannot be changed as asked; nothing was
    written."""


class UnknownJobKindError(SchedulingError):
    """The job's ``kind`` has no handler and was not declared with ``register_kind()``."""


class InterfaceError(BotDBError):
    """The API was used wrongly: a connection used after its block ended, or by two tasks."""


class ReadOnlyError(InterfaceError):
    """A write (or a locking read) in a read-only session or transaction: refused before it
    was sent (``db.session(readonly=True)``), or by the server (SQLSTATE 25006)."""


class DatabaseError(BotDBError):
    """Any other error the database reported with a code; ``sqlstate`` says which."""


def aborted_transaction() -> DatabaseError:
    """The error for a COMMIT of a transaction the database had already rolled back."""
    return DatabaseError(
        "the transaction was aborted by an earlier error and has been rolled back; "
        "nothing in it was committed",
        sqlstate="25P02",
    )
