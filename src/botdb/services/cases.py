"""Moderation cases with per-guild case numbers that never repeat and never skip.

``create`` runs two statements in one transaction::

    INSERT INTO guild_case_counters (guild_id, last_case_number)
    SELECT :g, coalesce(max(case_number), 0) + 1 FROM moderation_cases WHERE guild_id = :g
    ON CONFLICT (guild_id) DO UPDATE
        SET last_case_number = guild_case_counters.last_case_number + 1
    RETURNING last_case_number;
    INSERT INTO moderation_cases (..., case_number, ...) VALUES (..., :number, ...) RETURNING *;

The counter row stays locked until COMMIT (PostgreSQL row lock; SQLite's single writer), so
concurrent cases in one guild — from tasks or from other processes — get consecutive numbers,
and a case whose transaction rolls back gives its number back. A guild whose cases were
imported without a counter row continues after its highest case number.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ColumnElement, bindparam, func, literal_column, select, update

from botdb import errors
from botdb.models import CASE_ACTIONS, GuildCaseCounter, ModerationCase
from botdb.services._common import (
    check_bool,
    check_datetime,
    check_guild_id,
    check_id,
    check_int,
    ensure_guild,
    run_session,
    upsert,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from botdb._protocols import ServiceDatabase

__all__ = ["CaseService"]

_MAX_REASON = 4000


def _action(value: object) -> str:
    if not isinstance(value, str):
        raise errors.ArgumentError(f"action must be a str, got {type(value).__name__}")
    if value not in CASE_ACTIONS:
        raise errors.DataError(f"unknown action {value!r}; one of {', '.join(CASE_ACTIONS)}")
    return value


def _reason(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.ArgumentError(f"reason must be a str, got {type(value).__name__}")
    if len(value) > _MAX_REASON or "\x00" in value:
        raise errors.DataError(f"reason must be at most {_MAX_REASON} characters, without NUL")
    return value


def _limit(value: object) -> int:
    return check_int("limit", value, low=1, high=1000)


class CaseService:
    """Moderation cases (``db.cases``). Not cached: cases are read on commands, not on events.

    Example::

        case = await cases.create(guild.id, member.id, ctx.author.id, "ban", reason="spam")
        await ctx.send(f"Case #{case.case_number}")
    """

    def __init__(self, db: ServiceDatabase) -> None:
        self.db = db

    async def create(
        self,
        guild_id: int,
        user_id: int,
        moderator_id: int,
        action: str,
        reason: str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> ModerationCase:
        """Record a case with the guild's next case number (1, 2, 3... with no gap).

        Raises:
            ArgumentError: a value of the wrong type.
            DataError: an unknown action, a naive or past ``expires_at``, a reason too long.
            Nothing is written (and no number used) when either is raised.
        """
        gid = check_guild_id(guild_id)
        values: dict[str, Any] = {
            "guild_id": gid,
            "user_id": check_id("user_id", user_id),
            "moderator_id": check_id("moderator_id", moderator_id),
            "action": _action(action),
            "reason": _reason(reason),
            "expires_at": check_datetime("expires_at", expires_at),
        }
        if values["expires_at"] is not None and values["expires_at"] <= dt.datetime.now(dt.UTC):
            raise errors.DataError("expires_at is in the past")
        insert = upsert(self.db, GuildCaseCounter.__table__)  # type: ignore[arg-type]  # Table
        counter = GuildCaseCounter.__table__.c.last_case_number
        # INSERT ... SELECT rather than a subquery in VALUES: Citus refuses subqueries in
        # INSERT ... VALUES. One parameter, the guild (used twice), and the numbers inline:
        # Citus runs the SELECT on the guild's shard and loses the types of other parameters.
        guild = bindparam("guild_id", gid, BigInteger)
        one: ColumnElement[int] = literal_column("1")
        first = select(
            guild, func.coalesce(func.max(ModerationCase.case_number), literal_column("0")) + one
        ).where(ModerationCase.guild_id == guild)
        allocate = (
            insert.from_select(["guild_id", "last_case_number"], first)
            .on_conflict_do_update(
                index_elements=["guild_id"], set_={"last_case_number": counter + one}
            )
            .returning(counter)
        )

        async def write(session: AsyncSession) -> ModerationCase:
            await ensure_guild(self.db, session, gid)
            number = (await session.execute(allocate)).scalar_one()
            case = ModerationCase(case_number=number, **values)
            session.add(case)
            await session.flush()
            return case

        return await run_session(self.db, write)

    async def get(self, guild_id: int, number: int) -> ModerationCase:
        """Case ``number`` of the guild.

        Raises:
            NotFoundError: the guild has no such case.
        """
        case = await self.get_or_none(guild_id, number)
        if case is None:
            raise errors.NotFoundError(f"guild {guild_id} has no case #{number}")
        return case

    async def get_or_none(self, guild_id: int, number: int) -> ModerationCase | None:
        """Case ``number`` of the guild, or None."""
        gid, num = check_guild_id(guild_id), check_int("number", number, low=1)
        statement = select(ModerationCase).where(
            ModerationCase.guild_id == gid, ModerationCase.case_number == num
        )

        async def read(session: AsyncSession) -> ModerationCase | None:
            return (await session.scalars(statement)).one_or_none()

        return await run_session(self.db, read, readonly=True)

    async def list_for_user(
        self,
        guild_id: int,
        user_id: int,
        *,
        active_only: bool = False,
        limit: int = 50,
    ) -> list[ModerationCase]:
        """The user's cases in the guild, newest first."""
        statement = select(ModerationCase).where(
            ModerationCase.guild_id == check_guild_id(guild_id),
            ModerationCase.user_id == check_id("user_id", user_id),
        )
        if check_bool("active_only", active_only):
            statement = statement.where(ModerationCase.is_active.is_(True))
        statement = statement.order_by(ModerationCase.case_number.desc()).limit(_limit(limit))
        return await self._list(statement)

    async def list_for_guild(
        self, guild_id: int, *, action: str | None = None, limit: int = 50
    ) -> list[ModerationCase]:
        """The guild's cases (of one ``action`` if given), newest first."""
        statement = select(ModerationCase).where(
            ModerationCase.guild_id == check_guild_id(guild_id)
        )
        if action is not None:
            statement = statement.where(ModerationCase.action == _action(action))
        statement = statement.order_by(ModerationCase.case_number.desc()).limit(_limit(limit))
        return await self._list(statement)

    async def expired(
        self, *, now: dt.datetime | None = None, limit: int = 100
    ) -> list[ModerationCase]:
        """Active cases whose ``expires_at`` has passed (tempbans to lift), oldest first."""
        moment = check_datetime("now", now) or dt.datetime.now(dt.UTC)
        statement = (
            select(ModerationCase)
            .where(
                ModerationCase.is_active.is_(True),
                ModerationCase.expires_at.is_not(None),
                ModerationCase.expires_at <= moment,
            )
            .order_by(ModerationCase.expires_at)
            .limit(_limit(limit))
        )
        return await self._list(statement)

    async def _list(self, statement: Any) -> list[ModerationCase]:
        async def read(session: AsyncSession) -> list[ModerationCase]:
            return list((await session.scalars(statement)).all())

        return await run_session(self.db, read, readonly=True)

    async def close(self, guild_id: int, number: int) -> ModerationCase:
        """Mark a case inactive (a lifted ban, a pardoned warning); returns it.

        Raises:
            NotFoundError: the guild has no such case.
        """
        return await self._update(guild_id, number, is_active=False)

    #: The same as :meth:`close`.
    deactivate = close

    async def set_reason(self, guild_id: int, number: int, reason: str | None) -> ModerationCase:
        """Change a case's reason; returns the case.

        Raises:
            NotFoundError: the guild has no such case.
        """
        return await self._update(guild_id, number, reason=_reason(reason))

    async def _update(self, guild_id: int, number: int, **values: Any) -> ModerationCase:
        gid, num = check_guild_id(guild_id), check_int("number", number, low=1)
        statement = (
            update(ModerationCase)
            .where(ModerationCase.guild_id == gid, ModerationCase.case_number == num)
            .values(**values, updated_at=dt.datetime.now(dt.UTC))
            .returning(ModerationCase)
        )

        async def write(session: AsyncSession) -> ModerationCase:
            case = (await session.scalars(statement)).one_or_none()
            if case is None:
                raise errors.NotFoundError(f"guild {gid} has no case #{num}")
            return case

        return await run_session(self.db, write)
