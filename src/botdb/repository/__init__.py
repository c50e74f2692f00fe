"""``Repository[T]``: the per-table controller a bot would write (get, find, create, update,
upsert, delete, paginate), ready-made for any mapped model.

Every method is a coroutine and takes ``session=``. Without it the method is its own unit of
work (``async with db.session()``: committed when it returns, rolled back if it raises, retried
on a transient failure that cannot have applied anything). With it, the method runs in the
caller's session and commits nothing; errors are still typed, and the caller rolls back.

Objects returned outside a caller's session are *detached*: every column is loaded (the
sessions use ``expire_on_commit=False``), nothing lazy-loads afterwards; pass ``options=``
(``selectinload(...)``) for relationships, or ``session.add()`` / ``merge()`` them into a
session to change them through the unit of work.

Example:
    >>> users = db.repo(User)
    >>> user, created = await users.get_or_create(id=42, defaults={"username": "ana"})
    >>> await users.update_by_id(42, username="ana_b")
    >>> page = await users.find_page(limit=50)
    >>> more = await users.find_page(after=page.next_cursor, limit=50)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import delete, insert, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from botdb import errors
from botdb.repository._base import describe, rowcount
from botdb.repository._model import Filters, OrderBy
from botdb.repository._pagination import KeysetPage, Page
from botdb.repository._read import ReadMethods
from botdb.repository._write import (
    bulk_update_statements,
    conflict_key,
    dedupe,
    insert_for,
    upsert_set,
)

if TYPE_CHECKING:
    from botdb.repository._messages import MessageRepository, SearchHit

__all__ = [
    "Filters",
    "KeysetPage",
    "MessageRepository",
    "OrderBy",
    "Page",
    "Repository",
    "SearchHit",
]


def __getattr__(name: str) -> Any:
    # The messages' repository maps the built-in models: imported on first use, so that
    # ``import botdb`` does not load them.
    if name in ("MessageRepository", "SearchHit"):
        from botdb.repository import _messages

        return getattr(_messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


T = TypeVar("T")

_GET_OR_CREATE_TRIES = 5


class Repository(ReadMethods[T]):
    """Queries and writes for one model: built-in (``db.repo(Guild)``) or your own.

    Args:
        db: the Database to run on.
        model: a mapped class (derive it from :class:`botdb.models.Base`).
        cursor_secret: the secret that signs :meth:`find_page` cursors (with a key per table).
            Default: the ``cursor_secret`` setting, else a random secret generated once and
            stored in the database (table ``botdb_meta``), so every shard process accepts
            the others' cursors and nothing a user sees (URL, password) reveals the key.
    """

    # -- writes ------------------------------------------------------------------------------

    async def create(self, *, session: AsyncSession | None = None, **values: Any) -> T:
        """Insert one row and return it with every column loaded (server defaults included).

        Raises:
            UndefinedColumnError: a keyword is not a column (nothing is sent).
            ArgumentError: a value of the wrong type for its column (nothing is sent).
            UniqueViolationError, ForeignKeyViolationError, ...: the database refused it.
        """
        info = self._info
        info.check_values(values, allow_relationships=True)

        async def work(s: AsyncSession) -> T:
            obj = cast(Any, self.model)(**values)
            s.add(obj)
            try:
                await s.flush()
            except BaseException:
                if obj in s:
                    s.expunge(obj)
                raise
            unloaded = [k for k in info.columns if k in cast(Any, obj)._sa_instance_state.unloaded]
            if unloaded:
                await s.refresh(obj, attribute_names=unloaded)
            return cast(T, obj)

        return await self._run(session, work)

    async def create_many(
        self, rows: Sequence[Mapping[str, Any]], *, session: AsyncSession | None = None
    ) -> list[T]:
        """Insert many rows in one multi-row ``INSERT ... RETURNING`` (batched by SQLAlchemy's
        insertmanyvalues) and return the new objects, in the order of ``rows``, fully loaded.

        All rows are inserted or none (one transaction).
        """
        items = [dict(row) for row in rows]
        for row in items:
            self._info.check_values(row)
        if not items:
            return []
        statement = insert(self.model).returning(self.model, sort_by_parameter_order=True)

        async def work(s: AsyncSession) -> list[T]:
            return list((await s.scalars(statement, items)).all())

        return await self._run(session, work)

    async def update_by_id(
        self,
        id: Any,  # as bots' controllers name it (positional-only)
        /,
        *,
        include_deleted: bool = False,
        session: AsyncSession | None = None,
        **values: Any,
    ) -> T:
        """Set columns of one row; return the updated row (``onupdate`` columns refreshed).

        Raises:
            NotFoundError: no (live) row has this key; nothing changed.
        """
        info = self._info
        ident = info.identity(id)
        if not values:
            raise errors.ArgumentError("update_by_id needs at least one column value")
        info.check_values(values)
        statement = (
            update(self.model)
            .where(*info.id_clauses(ident), *info.live(include_deleted))
            .values(**values)
            .returning(self.model)
        )
        options = {"populate_existing": True, **self._sync(session)}

        async def work(s: AsyncSession) -> T | None:
            return (await s.scalars(statement, execution_options=options)).first()

        obj = await self._run(session, work)
        if obj is None:
            raise errors.NotFoundError(
                f"no {info.name} with {info.id_text(ident)}", table=info.table.name
            )
        return obj

    async def update_where(
        self,
        filters: Filters,
        /,
        *,
        include_deleted: bool = False,
        session: AsyncSession | None = None,
        **values: Any,
    ) -> int:
        """Set columns on every row matching ``filters``; return how many rows changed.

        ``filters`` is required (pass ``sqlalchemy.true()`` to mean every row).
        """
        info = self._info
        if filters is None:
            raise errors.ArgumentError("update_where needs filters (sqlalchemy.true() for all)")
        if not values:
            raise errors.ArgumentError("update_where needs at least one column value")
        info.check_values(values)
        statement = (
            update(self.model)
            .where(*info.where(filters), *info.live(include_deleted))
            .values(**values)
        )
        options = self._sync(session)

        async def work(s: AsyncSession) -> int:
            return rowcount(await s.execute(statement, execution_options=options))

        return await self._run(session, work)

    async def bulk_update(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        include_deleted: bool = False,
        session: AsyncSession | None = None,
    ) -> int:
        """Update many rows, each dict holding the primary key and the columns to set.

        Returns the number of rows the database changed: keys that match no (live) row are
        not counted. One statement per group of rows setting the same columns; if a key
        appears twice, the last dict wins. Objects a caller's session already holds are not
        refreshed (``session.expire_all()`` if you keep using them).
        """
        statements = list(bulk_update_statements(self._info, rows, include_deleted=include_deleted))

        async def work(s: AsyncSession) -> int:
            total = 0
            for statement in statements:
                total += rowcount(await s.execute(statement))
            return total

        return await self._run(session, work) if statements else 0

    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        conflict_columns: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
        session: AsyncSession | None = None,
    ) -> T:
        """Insert a row, or update the existing one, in one ``INSERT ... ON CONFLICT DO UPDATE``.

        Args:
            values: the row (column name -> value); must include the conflict columns.
            conflict_columns: a unique key (default: the primary key).
            update_columns: what to overwrite on conflict (default: every given non-key
                column). ``onupdate`` columns are refreshed; a soft-deleted row is restored.
        """
        info = self._info
        values = dict(values)
        info.check_values(values)
        conflict = conflict_key(info, conflict_columns, what="upsert")
        missing = [key for key in conflict if key not in values]
        if missing:
            raise errors.ArgumentError(f"upsert values lack the conflict columns {missing}")
        base = insert_for(self.db.backend, self.model)
        set_ = upsert_set(info, base, set(values), conflict, update_columns)
        statement = (
            base.values(**values)
            .on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=[info.columns[k] for k in conflict], set_=set_
            )
            .returning(self.model)
        )

        async def work(s: AsyncSession) -> T:
            result = await s.scalars(statement, execution_options={"populate_existing": True})
            return cast(T, result.one())

        return await self._run(session, work)

    async def upsert_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        conflict_columns: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
        session: AsyncSession | None = None,
    ) -> int:
        """:meth:`upsert` for many rows; returns how many rows were inserted or updated.

        One ``INSERT ... ON CONFLICT DO UPDATE`` per group of rows carrying the same columns
        (batched by SQLAlchemy into multi-row statements); a key given twice: the last wins.
        """
        info = self._info
        conflict = conflict_key(info, conflict_columns, what="upsert_many")
        groups = dedupe(info, rows, conflict, what="upsert_many")
        batches = []
        for columns, by_key in groups.items():
            base = insert_for(self.db.backend, info.table)
            set_ = upsert_set(info, base, set(columns), conflict, update_columns)
            statement = base.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=[info.columns[k] for k in conflict], set_=set_
            ).returning(*(info.columns[k] for k in conflict))
            params = [{info.columns[k].key: v for k, v in row.items()} for row in by_key.values()]
            batches.append((statement, params))

        async def work(s: AsyncSession) -> int:
            total = 0
            for statement, params in batches:
                total += len((await s.execute(statement, params)).all())
            return total

        return await self._run(session, work) if batches else 0

    async def get_or_create(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        session: AsyncSession | None = None,
        **lookup: Any,
    ) -> tuple[T, bool]:
        """The row matching ``lookup``, created with ``defaults`` if missing: ``(obj, created)``.

        Race-free across tasks and processes: a SELECT (the common case: the row exists),
        then ``INSERT ... ON CONFLICT (lookup) DO NOTHING RETURNING``, whose conflict check is
        the arbiter: when another task or process won, nothing is inserted and the next
        SELECT returns its row. ``lookup`` must be exactly a primary key or unique constraint
        (else ArgumentError, nothing sent). A soft-deleted match is restored and returned
        with ``created=False``.
        """
        info = self._info
        if not lookup:
            raise errors.ArgumentError("get_or_create needs lookup columns (e.g. id=...)")
        defaults = dict(defaults or {})
        info.check_values(lookup)
        info.check_values(defaults)
        conflict = conflict_key(info, list(lookup), what="get_or_create")
        base = insert_for(self.db.backend, self.model)
        inserting = (
            base.values(**{**defaults, **lookup})
            .on_conflict_do_nothing(  # type: ignore[attr-defined]
                index_elements=[info.columns[k] for k in conflict]
            )
            .returning(self.model)
        )
        match = [info.attrs[k] == v for k, v in lookup.items()]
        finding = select(self.model).where(*match).execution_options(populate_existing=True)
        restoring = None
        if info.soft_delete:
            restoring = (
                update(self.model)
                .where(*match, not_(self.model.not_deleted()))  # type: ignore[attr-defined]
                .values(**info.restore_values())
                .returning(self.model)
            )

        fresh_snapshot = session is None and self.db.backend == "sqlite"

        async def existing(s: AsyncSession) -> T | None:
            found = (await s.scalars(finding)).first()
            if found is not None and restoring is not None:
                options = {"populate_existing": True, **self._sync(session)}
                restored = (await s.scalars(restoring, execution_options=options)).first()
                found = restored if restored is not None else found
            return found

        async def work(s: AsyncSession) -> tuple[T, bool]:
            for _ in range(_GET_OR_CREATE_TRIES):
                found = await existing(s)
                if found is not None:
                    return found, False
                if fresh_snapshot:
                    # SQLite (WAL) cannot turn a read transaction whose snapshot is stale into
                    # a write one (SQLITE_BUSY_SNAPSHOT, no busy wait): end the read first.
                    await s.commit()
                created = (await s.scalars(inserting)).first()
                if created is not None:
                    return created, True
                # Another task or process inserted it between our SELECT and INSERT.
            raise errors.SerializationError(
                f"{info.name} matching {describe(lookup)} kept being deleted and re-created"
            )

        return await self._run(session, work)

    async def delete_by_id(
        self,
        id: Any,  # as bots' controllers name it (positional-only)
        /,
        *,
        hard: bool = False,
        session: AsyncSession | None = None,
    ) -> int:
        """Delete one row; return how many rows were deleted (0 or 1).

        A soft-delete model's row is marked deleted (``soft_delete_values``) unless
        ``hard=True``; an already soft-deleted row counts 0 then.
        """
        info = self._info
        return await self._delete(info.id_clauses(info.identity(id)), hard, session)

    async def delete_where(
        self, filters: Filters, /, *, hard: bool = False, session: AsyncSession | None = None
    ) -> int:
        """Delete (or soft-delete) every row matching ``filters``; return how many."""
        if filters is None:
            raise errors.ArgumentError("delete_where needs filters (sqlalchemy.true() for all)")
        return await self._delete(self._info.where(filters), hard, session)

    async def _delete(self, where: list[Any], hard: bool, session: AsyncSession | None) -> int:
        info = self._info
        statement: Any
        if info.soft_delete and not hard:
            now = dt.datetime.now(dt.UTC)
            statement = (
                update(self.model)
                .where(*where, *info.live(False))
                .values(**info.soft_delete_values(now))
            )
        else:
            statement = delete(self.model).where(*where)
        options = self._sync(session)

        async def work(s: AsyncSession) -> int:
            return rowcount(await s.execute(statement, execution_options=options))

        return await self._run(session, work)

    async def restore_by_id(
        self,
        id: Any,  # as bots' controllers name it (positional-only)
        /,
        *,
        session: AsyncSession | None = None,
    ) -> T:
        """Undo a soft delete; return the row (as it is, if it was not deleted).

        Raises:
            ArgumentError: the model has no soft delete.
            NotFoundError: no row, deleted or not, has this key.
        """
        info = self._info
        if not info.soft_delete:
            raise errors.ArgumentError(f"{info.name} has no soft delete (__soft_delete__)")
        ident = info.identity(id)
        where = info.id_clauses(ident)
        restoring = (
            update(self.model)
            .where(*where, not_(self.model.not_deleted()))  # type: ignore[attr-defined]
            .values(**info.restore_values())
            .returning(self.model)
        )
        finding = select(self.model).where(*where)
        options = {"populate_existing": True, **self._sync(session)}

        async def work(s: AsyncSession) -> T | None:
            restored = (await s.scalars(restoring, execution_options=options)).first()
            return restored if restored is not None else (await s.scalars(finding)).first()

        obj = await self._run(session, work)
        if obj is None:
            raise errors.NotFoundError(
                f"no {info.name} with {info.id_text(ident)}", table=info.table.name
            )
        return obj
