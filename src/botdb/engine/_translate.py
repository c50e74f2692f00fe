"""The one place where driver errors become botdb errors.

PostgreSQL errors are classified by SQLSTATE, SQLite errors by their (extended) result code.
SQLite reports "no such table", "no such column" and syntax errors all as plain SQLITE_ERROR;
for those three the message prefix, which the SQLite library writes in fixed English (it is not
localised), refines :class:`~botdb.errors.QueryError` into the specific subclass and supplies
the table/column name. Every other decision uses codes only.

Hostile values are the drivers' errors too: a Python int beyond 64 bits (``OverflowError``
from sqlite3), a str with a lone surrogate (``UnicodeEncodeError``) and a parameter nested so
deep that encoding it, or asyncpg's message about it, recurses past the limit
(``RecursionError``) all become :class:`~botdb.errors.DataError`. Translating them here, where
the driver raised them, keeps every statement's happy path free of a per-parameter check.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import sqlite3
from typing import Any, NoReturn

import sqlalchemy.exc

from botdb import errors

__all__ = ["raise_translated", "translate_error"]

# SQLSTATE (exact) -> class. Classes (first two characters) are handled below.
_SQLSTATE: dict[str, type[errors.BotDBError]] = {
    "23505": errors.UniqueViolationError,
    "23503": errors.ForeignKeyViolationError,
    "23502": errors.NotNullViolationError,
    "23514": errors.CheckViolationError,
    "40P01": errors.DeadlockError,
    "40001": errors.SerializationError,
    "57014": errors.QueryTimeoutError,
    "57P01": errors.ConnectionLostError,  # admin_shutdown, pg_terminate_backend
    "57P02": errors.ConnectionLostError,  # crash_shutdown
    "57P03": errors.ConnectionFailedError,  # cannot_connect_now: server starting up
    "53300": errors.ConnectionFailedError,  # too_many_connections
    "08001": errors.ConnectionFailedError,  # sqlclient_unable_to_establish_sqlconnection
    "08004": errors.ConnectionFailedError,  # sqlserver_rejected_establishment_of_sqlconnection
    "28P01": errors.AuthenticationError,
    "28000": errors.AuthenticationError,
    "3D000": errors.ConfigurationError,  # the database named in the URL does not exist
    "42601": errors.SQLSyntaxError,
    "42P01": errors.UndefinedTableError,
    "42703": errors.UndefinedColumnError,
    "42P02": errors.ArgumentError,  # undefined_parameter
    "08P01": errors.ArgumentError,  # protocol_violation: e.g. wrong bind count via pgbouncer
    "25006": errors.ReadOnlyError,  # read_only_sql_transaction (also: any write on a replica)
    # feature_not_supported: what Citus refuses on a distributed schema (a unique key without
    # the distribution column, a multi-shard FOR UPDATE), and PostgreSQL's own few cases.
    "0A000": errors.NotSupportedError,
}
_SQLSTATE_CLASS: dict[str, type[errors.BotDBError]] = {
    "23": errors.IntegrityError,
    "08": errors.ConnectionLostError,
    "22": errors.DataError,
    "42": errors.QueryError,
    "40": errors.SerializationError,
}

_NO_ROUTE = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}

# SQLite extended result codes -> class (https://www.sqlite.org/rescode.html).
_SQLITE_EXTENDED: dict[int, type[errors.BotDBError]] = {
    2067: errors.UniqueViolationError,  # SQLITE_CONSTRAINT_UNIQUE
    1555: errors.UniqueViolationError,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: errors.ForeignKeyViolationError,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: errors.NotNullViolationError,  # SQLITE_CONSTRAINT_NOTNULL
    275: errors.CheckViolationError,  # SQLITE_CONSTRAINT_CHECK
}
_SQLITE_PRIMARY: dict[int, type[errors.BotDBError]] = {
    1: errors.QueryError,  # SQLITE_ERROR, refined below
    5: errors.DatabaseBusyError,  # SQLITE_BUSY (and BUSY_SNAPSHOT/RECOVERY/TIMEOUT)
    6: errors.DatabaseBusyError,  # SQLITE_LOCKED
    9: errors.QueryTimeoutError,  # SQLITE_INTERRUPT: botdb interrupts only on timeout
    18: errors.DataError,  # SQLITE_TOOBIG
    19: errors.IntegrityError,  # SQLITE_CONSTRAINT (other kinds)
    20: errors.DataError,  # SQLITE_MISMATCH
    25: errors.ArgumentError,  # SQLITE_RANGE: bind index out of range
}
_SQLITE_ERROR_REFINE = (
    (re.compile(r"no such table: (?:\w+\.)?(\w+)"), errors.UndefinedTableError, "table"),
    (re.compile(r"no such column: (?:\w+\.)?(\w+)"), errors.UndefinedColumnError, "column"),
    (re.compile(r"table \S+ has no column named (\w+)"), errors.UndefinedColumnError, "column"),
    (re.compile(r"syntax error|incomplete input|unrecognized token"), errors.SQLSyntaxError, ""),
)
# "UNIQUE constraint failed: users.name" -> table "users", column "name"
_SQLITE_CONSTRAINT_TARGET = re.compile(r"constraint failed: (\w+)\.(\w+)")


def translate_error(exc: BaseException, *, closed: bool = False) -> BaseException:
    """Return the botdb error for a driver exception, or ``exc`` itself if it is unknown.

    The caller raises the result ``from exc``. ``closed`` says the connection the statement
    ran on is closed now: whatever the driver raised, the connection was lost.
    """
    if isinstance(exc, errors.BotDBError):
        return exc
    if closed:
        return errors.ConnectionLostError(f"the connection to the database was lost: {exc}")
    exc = _unwrap_sqlalchemy(exc)
    if isinstance(exc, errors.BotDBError):
        return exc
    if isinstance(exc, _HOSTILE_VALUE):
        return _from_hostile_value(exc)
    if isinstance(exc, sqlite3.Error):
        return _from_sqlite(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return errors.QueryTimeoutError("the statement ran past its timeout and was cancelled")
    sqlstate = getattr(exc, "sqlstate", None)
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        return _from_asyncpg(exc, sqlstate)
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        if isinstance(exc, ConnectionRefusedError | socket.gaierror) or exc.errno in _NO_ROUTE:
            return errors.ConnectionFailedError(f"could not connect to the database server: {exc}")
        # Any other socket error may have struck mid-statement: the outcome is unknown.
        return errors.ConnectionLostError(f"the connection to the database failed: {exc}")
    return exc


_HOSTILE_VALUE = (OverflowError, UnicodeEncodeError, RecursionError)


def _from_hostile_value(exc: BaseException) -> errors.DataError:
    if isinstance(exc, OverflowError):
        return errors.DataError(f"a query argument is out of range: {exc}")
    if isinstance(exc, UnicodeEncodeError):
        return errors.DataError(
            f"a query argument is not valid Unicode text (a lone surrogate at position "
            f"{exc.start}): {exc.reason}"
        )
    return errors.DataError("a query argument is nested too deeply to be encoded")


def raise_translated(exc: BaseException, *, closed: bool = False) -> NoReturn:
    """Raise the botdb error for ``exc`` (chained), or ``exc`` itself when it is unknown."""
    error = translate_error(exc, closed=closed)
    if error is exc:
        raise exc
    raise error from exc


def _unwrap_sqlalchemy(exc: BaseException) -> BaseException:
    """SQLAlchemy wraps driver errors (``DBAPIError.orig``), its asyncpg adapter twice."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # the pool's checkout timed out
        return errors.QueryTimeoutError(
            "no database connection became free in time "
            f"(raise pool_max_size or pool_acquire_timeout): {exc}"
        )
    orig = getattr(exc, "orig", None)
    if orig is not None and type(exc).__module__.startswith("sqlalchemy"):
        exc = orig
    if type(exc).__module__.startswith("sqlalchemy") and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _from_asyncpg(exc: BaseException, sqlstate: str | None) -> BaseException:
    import asyncpg

    fields: dict[str, Any] = {
        "sqlstate": sqlstate,
        "table": getattr(exc, "table_name", None),
        "constraint": getattr(exc, "constraint_name", None),
        "column": getattr(exc, "column_name", None),
    }
    message = str(exc)
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError):
        return errors.ConnectionLostError(f"the connection to PostgreSQL was lost: {message}")
    if isinstance(exc, asyncpg.exceptions.InternalClientError | asyncpg.exceptions.ProtocolError):
        # The client's protocol state broke, typically after the server terminated the
        # backend while the connection sat idle (the next BEGIN or COMMIT then meets the
        # termination message): the connection is unusable, so this is a lost connection.
        return errors.ConnectionLostError(f"the connection to PostgreSQL broke: {message}")
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return errors.ConfigurationError(message)
    if isinstance(exc, asyncpg.InterfaceError):
        # Raised by asyncpg itself before anything is sent: an argument of the wrong type
        # (its client-side DataError) or the wrong number of arguments. botdb checks for a
        # closed connection before every call, so that InterfaceError does not reach here.
        return errors.ArgumentError(message)
    if isinstance(exc, asyncpg.exceptions.DataError) and isinstance(exc.__cause__, TypeError):
        # asyncpg could not encode an argument of a type the column does not take; it raises
        # this before anything is sent (a value out of range has OverflowError as its cause).
        return errors.ArgumentError(message)
    if sqlstate:
        cls = _SQLSTATE.get(sqlstate) or _SQLSTATE_CLASS.get(sqlstate[:2]) or errors.DatabaseError
        return cls(message, **fields)
    return exc


def _from_sqlite(exc: sqlite3.Error) -> BaseException:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    name: str | None = getattr(exc, "sqlite_errorname", None)
    message = str(exc)
    sqlstate = f"sqlite:{name}" if name else None
    if code is None:
        # ProgrammingError / InterfaceError raised by the sqlite3 module before SQLite ran:
        # wrong number of bindings, an argument type it cannot bind, a closed connection.
        if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            return errors.ArgumentError(message)
        return errors.DatabaseError(message)
    cls = _SQLITE_EXTENDED.get(code) or _SQLITE_PRIMARY.get(code & 0xFF) or errors.DatabaseError
    table = column = None
    if cls is errors.QueryError:
        for pattern, refined, field in _SQLITE_ERROR_REFINE:
            match = pattern.search(message)
            if match:
                cls = refined
                if field == "table":
                    table = match.group(1)
                elif field == "column":
                    column = match.group(1)
                break
    elif issubclass(cls, errors.IntegrityError):
        match = _SQLITE_CONSTRAINT_TARGET.search(message)
        if match:
            table, column = match.group(1), match.group(2)
    elif cls is errors.QueryTimeoutError:
        message = "the statement ran past its timeout and was interrupted"
    return cls(message, sqlstate=sqlstate, table=table, column=column)
