"""The core every repository method shares: running a unit of work, typed errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

from sqlalchemy import CursorResult, Select, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from botdb import errors
from botdb._json_values import short
from botdb.engine._translate import raise_translated
from botdb.engine.retry import RetryPolicy
from botdb.repository._fastget import FastGet
from botdb.repository._model import Filters, ModelInfo, OrderBy
from botdb.repository._pagination import CursorCodec

if TYPE_CHECKING:
    from botdb.database import Database

__all__ = ["MAX_PAGE", "RepositoryBase", "check_int", "describe", "raise_typed", "rowcount"]

T = TypeVar("T")
R = TypeVar("R")

#: The largest page ``paginate`` / ``find_page`` return.
MAX_PAGE = 1000


def raise_typed(exc: Exception) -> NoReturn:
    """Typed errors for what SQLAlchemy raised; a value a column type refused -> ArgumentError."""
    if (
        isinstance(exc, sa_exc.StatementError)
        and not isinstance(exc, sa_exc.DBAPIError)
        and isinstance(exc.orig, TypeError | ValueError)
    ):
        raise errors.ArgumentError(f"a value cannot be bound: {exc.orig}") from exc
    raise_translated(exc)


def _retryable(exc: BaseException, *, read_only: bool) -> bool:
    # A whole unit of work re-runs; a lost connection may have committed a write (in doubt).
    if isinstance(exc, errors.ConnectionLostError):
        return read_only and not exc.in_doubt
    return isinstance(exc, errors.TransientError)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise errors.ArgumentError(f"{name} must be {bounds}, got {value}")
    return value


def describe(filters: Filters) -> str:
    if isinstance(filters, Mapping):
        return ", ".join(f"{k}={short(v)}" for k, v in filters.items())
    clauses: list[Any] = list(filters) if isinstance(filters, list | tuple) else [filters]
    parts = []
    for clause in clauses:
        try:
            parts.append(str(clause.compile(compile_kwargs={"literal_binds": True})))
        except Exception:  # a description only: fall back to the bound form
            parts.append(str(clause))
    return " AND ".join(parts)


def rowcount(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount)


class RepositoryBase(Generic[T]):
    """State and plumbing of :class:`~botdb.repository.Repository` (see there)."""

    def __init__(self, db: Database, model: type[T], *, cursor_secret: bytes | None = None) -> None:
        self.db = db
        self.model = model
        self._info = ModelInfo(model)
        if cursor_secret is None and db.settings.cursor_secret:
            cursor_secret = db.settings.cursor_secret.encode()
        self._cursors = CursorCodec(self._info, cursor_secret, db)
        self._fast: FastGet | None = None

    def __repr__(self) -> str:
        return f"<Repository {self._info.name}>"

    # -- running -----------------------------------------------------------------------------

    async def _run(
        self,
        session: AsyncSession | None,
        work: Callable[[AsyncSession], Awaitable[R]],
        *,
        read_only: bool = False,
    ) -> R:
        if session is not None:
            try:
                return await work(session)
            except Exception as exc:
                raise_typed(exc)
        try:
            return await self._own(work)
        except errors.TransientError as exc:
            settings = self.db.settings
            if settings.retry_attempts <= 1 or not _retryable(exc, read_only=read_only):
                raise
            await asyncio.sleep(settings.retry_initial_delay)
            policy = RetryPolicy(
                attempts=settings.retry_attempts - 1,
                initial_delay=settings.retry_initial_delay * 2,
                max_delay=settings.retry_max_delay,
                jitter=settings.retry_jitter,
            )
            return await policy.call(
                partial(self._own, work), retryable=partial(_retryable, read_only=read_only)
            )

    async def _own(self, work: Callable[[AsyncSession], Awaitable[R]]) -> R:
        async with self.db.session() as session:
            try:
                return await work(session)
            except Exception as exc:
                raise_typed(exc)

    def _select(
        self,
        filters: Filters,
        include_deleted: bool,
        order_by: OrderBy = None,
        options: Sequence[ORMOption] | None = None,
    ) -> Select[T]:
        info = self._info
        statement = select(self.model).where(*info.where(filters), *info.live(include_deleted))
        ordering = info.order(order_by)
        if ordering:
            statement = statement.order_by(*ordering)
        if options:
            statement = statement.options(*options)
        return statement

    def _sync(self, session: AsyncSession | None) -> dict[str, Any]:
        # In the caller's session, objects it holds are kept in step; a new session has none.
        return {} if session is not None else {"synchronize_session": False}
