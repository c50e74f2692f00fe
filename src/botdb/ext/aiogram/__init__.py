"""botdb inside aiogram 3: FSM storage, cross-process event isolation, a database middleware.

Install with ``pip install 'botdb[aiogram]'``. Importing this module without aiogram raises
:class:`~botdb.errors.MissingDependencyError`.

* :class:`SQLStorage` — aiogram's ``BaseStorage`` in the ``fsm_states`` table (SQLite or
  PostgreSQL), keyed on the whole ``StorageKey``, with atomic upserts and optional TTLs.
* :class:`SQLEventIsolation` (``storage.create_isolation()``) — serialises each key's updates
  across processes: PostgreSQL advisory locks, or self-expiring leases on SQLite.
* :class:`DatabaseMiddleware` — ``db``, a per-update ORM ``session`` and the sender's
  ``db_user`` in every handler.

Example::

    import botdb
    from aiogram import Bot, Dispatcher
    from botdb.ext.aiogram import DatabaseMiddleware, SQLStorage

    async def main() -> None:
        async with botdb.connect("sqlite:///bot.db") as db:
            await db.migrate()
            storage = SQLStorage(db)
            dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())
            dp.update.outer_middleware(DatabaseMiddleware(db))
            await dp.start_polling(Bot(token))

See ``docs/aiogram.md``.
"""

from __future__ import annotations

try:
    import aiogram  # noqa: F401 - checks that the extra is installed
except ImportError as exc:  # pragma: no cover - the dev environment has aiogram
    from botdb.errors import MissingDependencyError

    raise MissingDependencyError("aiogram", "aiogram") from exc

from botdb.ext.aiogram._isolation import SQLEventIsolation
from botdb.ext.aiogram._middleware import DatabaseMiddleware
from botdb.ext.aiogram._storage import SQLStorage

__all__ = ["DatabaseMiddleware", "SQLEventIsolation", "SQLStorage"]
