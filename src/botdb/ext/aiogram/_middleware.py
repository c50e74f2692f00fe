"""``DatabaseMiddleware``: the database, a per-update ORM session and the user in handlers.

A per-update session middleware and the user service in one middleware: the handler's ``data`` gets
``db``, ``session`` (committed after the handler returns, rolled back and the error re-raised
if it raises) and ``db_user`` (the :class:`~botdb.services.users.UserRecord` of the update's
sender, from ``db.users.get_or_create``: served from the cache, written only when the
sender's fields changed) with ``db_user_created`` (True on the update that created the user).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

if TYPE_CHECKING:
    import botdb

__all__ = ["DatabaseMiddleware"]

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DatabaseMiddleware(BaseMiddleware):
    """Injects ``db``, ``session`` and ``db_user`` into aiogram handlers.

    Args:
        db: the connected Database (stays the caller's).
        session: open one ORM session per update as ``data["session"]``.
        user: put the sender's user row in ``data["db_user"]`` (None when the update has no
            sender, e.g. a channel post) and whether this update created it in
            ``data["db_user_created"]``.

    Register it as an outer middleware of the updates, so that every handler (and the
    filters) sees the same session::

        dp.update.outer_middleware(DatabaseMiddleware(db))

        @router.message(Command("me"))
        async def me(message: Message, db_user: UserRecord, session: AsyncSession) -> None:
            await message.answer(f"Hello, {db_user.name}")
    """

    def __init__(self, db: botdb.Database, *, session: bool = True, user: bool = True) -> None:
        self.db = db
        self.session = session
        self.user = user

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Run ``handler`` with the database, the session and the user in ``data``."""
        db = self.db
        data["db"] = db
        if self.user:
            sender = data.get("event_from_user") or getattr(event, "from_user", None)
            if sender is None:
                data["db_user"], data["db_user_created"] = None, False
            else:
                data["db_user"], data["db_user_created"] = await db.users.get_or_create(sender)
        if not self.session:
            return await handler(event, data)
        async with db.session() as session:
            data["session"] = session
            return await handler(event, data)
