"""The ORM/Core path's error boundary and connection reset, as SQLAlchemy engine events.

Whoever uses ``db.session()``, ``db.engine`` or a repository goes through SQLAlchemy, not
through botdb's driver connections, so the same two promises are kept here:

* ``handle_error`` turns every driver error into the botdb error the raw API would raise
  (classified by SQLSTATE / SQLite code, chained to the original), and marks a connection
  whose link broke as disconnected, so SQLAlchemy closes it instead of pooling it;
* a statement that may leave session state (``needs_reset``) marks its pooled connection,
  and the pool's ``reset`` event undoes that state before the connection is reused;
* on a read-only session's connections (execution option ``READ_ONLY``) a statement that may
  write or lock is refused with :class:`~botdb.errors.ReadOnlyError` before it is sent, so a
  session meant for a replica never sends a write anywhere, on either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from botdb import errors
from botdb.engine._translate import translate_error
from botdb.engine.replicas import replica_safe
from botdb.engine.sql import RESETS, WRITES, statement_kind, statement_traits

__all__ = ["DIRTY", "READ_ONLY", "WROTE", "install_events"]

#: Key in a pooled connection's ``info``: a statement may have left session state on it.
DIRTY = "botdb.dirty"
#: Key in a pooled connection's ``info``: a statement that may write ran since the connection
#: was checked out (cleared whenever it goes back to the pool).
WROTE = "botdb.wrote"
#: Execution option of a read-only session's engine: its statements may only read.
READ_ONLY = "botdb_read_only"
# Statements a read-only session may run besides reads, all of which a hot standby accepts
# too: transaction control (SQLite's engine sends its own BEGIN) and settings of its own
# transaction (the search's ``SET LOCAL``).
_READ_ONLY_EXTRA = frozenset(
    ("BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "RESET")
)


def install_events(engine: AsyncEngine, *, reset: Callable[[Any], Any]) -> None:
    """Install botdb's error boundary and reset-on-return on ``engine``.

    Args:
        reset: called with the driver connection (asyncpg ``Connection`` or
            ``sqlite3.Connection``) of a dirty pooled connection; may return an awaitable.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "handle_error", retval=True)
    def _typed_error(context: ExceptionContext) -> BaseException | None:
        if context.is_pre_ping:
            return None  # SQLAlchemy's pre-ping reads its own exception to decide
        return boundary_error(context)

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _track_state(
        conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        traits = statement_traits(statement)
        if conn.get_execution_options().get(READ_ONLY) and not read_only_safe(statement, traits):
            raise errors.ReadOnlyError(
                "a read-only session cannot run a statement that writes or locks: "
                f"{statement[:120]}"
            )
        if traits:
            info = conn.connection.info
            if traits & RESETS:
                info[DIRTY] = True
            if traits & WRITES:
                info[WROTE] = True

    @event.listens_for(sync_engine.pool, "reset")
    def _reset_state(dbapi_connection: Any, record: Any, state: Any) -> None:
        if record is None:
            return
        record.info.pop(WROTE, None)
        if not record.info.pop(DIRTY, False):
            return
        if state.terminate_only or not state.asyncio_safe:
            return
        driver = dbapi_connection.driver_connection
        if hasattr(driver, "_conn"):  # aiosqlite: the sqlite3 connection underneath
            driver = driver._conn
        outcome = reset(driver)
        if outcome is not None:
            await_only(outcome)


def read_only_safe(statement: str, traits: int) -> bool:
    """Whether a read-only session may run ``statement``: it only reads and locks nothing
    (what a replica may run), or it sets something for its own transaction."""
    if traits & WRITES:
        return statement_kind(statement) in _READ_ONLY_EXTRA
    return replica_safe(statement)


def boundary_error(context: ExceptionContext) -> BaseException | None:
    """The botdb error for a failure inside SQLAlchemy, or None to keep SQLAlchemy's own."""
    original = context.original_exception
    if isinstance(original, errors.BotDBError):
        return original  # raised by botdb's own column types while binding a value
    error = translate_error(original)
    if error is original:
        if isinstance(original, TypeError | ValueError) and context.sqlalchemy_exception:
            # A value a column type or the driver refused while binding parameters.
            return errors.ArgumentError(f"a value cannot be bound: {original}")
        return None
    if isinstance(error, errors.ConnectionLostError | errors.ConnectionFailedError):
        context.is_disconnect = True
        # One broken connection says nothing of the others in the pool.
        context.invalidate_pool_on_disconnect = False
    return error
