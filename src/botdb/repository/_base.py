"""The core every repository method shares: running a unit of work, typed errors, retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sqlalchemy import CursorResult, Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from botdb import errors
from botdb._json_values import short
from botdb.repository._fastget import FastGet
from botdb.repository._model import Filters, ModelInfo, OrderBy
from botdb.repository._pagination import CursorCodec

if TYPE_CHECKING:
    from botdb._protocols import RepositoryDatabase

__all__ = ["MAX_PAGE", "RepositoryBase", "check_int", "describe", "rowcount"]

T = TypeVar("T")
R = TypeVar("R")

#: The largest page ``paginate`` / ``find_page`` return.
MAX_PAGE = 1000


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

    def __init__(
        self, db: RepositoryDatabase, model: type[T], *, cursor_secret: bytes | None = None
    ) -> None:
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
        readonly: bool = False,
    ) -> R:
        """Run ``work`` in the caller's session, or as its own unit of work (retried by the
        Database's retry runner). Errors are typed at the engine's boundary.

        ``readonly``: ``work`` only reads; on its own it runs in a read-only session, which
        goes to a read replica when the routing allows (and to the primary if that fails)."""
        if session is not None:
            return await work(session)
        return await self.db.run_in_session(work, readonly=readonly)

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
