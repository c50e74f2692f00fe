"""An aiogram 3 bot on botdb: a two-step form (FSM), a /count command, the user's profile.

The FSM state lives in the database (``SQLStorage``), so a form half filled in survives a
restart; ``storage.create_isolation()`` handles one user's updates one at a time even across
several processes on one database, so two quick /count never lose an increment;
``DatabaseMiddleware`` hands each handler ``db``, a per-update ORM ``session`` (committed
after the handler) and the sender's ``db_user`` row.

Run it:

* against Telegram: ``BOT_TOKEN=123:abc python examples/aiogram_bot.py [DATABASE_URL]``
  (``DATABASE_URL`` defaults to ``sqlite:///aiogram_bot.db``);
* offline, with sample updates and a stand-in for Telegram's HTTP API that prints the
  replies: ``python examples/aiogram_bot.py --offline [DATABASE_URL] [TEXT ...]`` (it stays
  for reminders due within 10 s: ``--offline sqlite:///x.db "/remind 2s tea"``).

Commands: ``/start`` (the form: name, then age), ``/cancel``, ``/count``, ``/profile``, and
reminders through ``db.reminders``: ``/remind 10m text`` ("90s", "2h", "1d", "1h30m"),
``/reminders`` (yours, soonest first) and ``/forget ID``. The reminders live in the database
and are sent by ``db.scheduler``'s worker, started on the Dispatcher's startup and stopped on
its shutdown: a restart forgets none, and of several processes on one database one sends each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import os
import sys
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.base import BaseSession
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, Message, Update, User
from sqlalchemy.ext.asyncio import AsyncSession

import botdb
from botdb.errors import BotDBError
from botdb.ext.aiogram import DatabaseMiddleware, SQLStorage
from botdb.models import KeyValue
from botdb.services import DueReminder, parse_duration
from botdb.services.users import UserRecord


class Form(StatesGroup):
    name = State()
    age = State()


async def start(message: Message, state: FSMContext, db_user: UserRecord) -> None:
    await state.set_state(Form.name)
    await message.answer(f"Hello, {db_user.name}! What is your name?")


async def cancel(message: Message, state: FSMContext) -> None:
    await state.set_state(None)
    await message.answer("Cancelled.")


async def got_name(message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    await state.set_state(Form.age)
    await message.answer("How old are you?")


async def got_age(message: Message, state: FSMContext, session: AsyncSession) -> None:
    text = message.text or ""
    if not text.isdigit():
        await message.answer("Please send your age as a number.")
        return
    data = await state.update_data(age=int(text))
    await state.set_state(None)
    assert message.from_user is not None
    # Written in the update's session: committed after this handler returns.
    await session.merge(
        KeyValue(
            namespace="profiles",
            scope=f"user:{message.from_user.id}",
            key="profile",
            value={"name": data["name"], "age": data["age"]},
        )
    )
    await message.answer(f"Saved: {data['name']}, {data['age']}.")


async def profile(message: Message, session: AsyncSession) -> None:
    assert message.from_user is not None
    row = await session.get(KeyValue, ("profiles", f"user:{message.from_user.id}", "profile"))
    if row is None:
        await message.answer("No profile yet: /start")
    else:
        await message.answer(f"Profile: {row.value['name']}, {row.value['age']}.")


async def count(message: Message, state: FSMContext) -> None:
    # Read, then write: safe because the event isolation runs one update of this user at a
    # time, in every process.
    total = int(await state.get_value("count", 0)) + 1
    await state.update_data(count=total)
    await message.answer(f"Count: {total}")


# -- reminders: db.reminders keeps them, the scheduler's worker sends them -----------------------


async def remind(message: Message, command: CommandObject, db: botdb.Database) -> None:
    """``/remind 10m take the cake out``: one reminder, in this chat, after the delay."""
    assert message.from_user is not None
    when, _, text = (command.args or "").strip().partition(" ")
    if not when or not text.strip():
        await message.answer("Usage: /remind 10m take the cake out (s, m, h, d or w)")
        return
    try:
        reminder = await db.reminders.remind(
            message.from_user.id,
            text.strip(),
            delay=parse_duration(when),
            channel_id=message.chat.id,
        )
    except BotDBError as exc:  # DataError: not a duration, too long, text too long
        await message.answer(f"Cannot set that reminder: {exc}")
        return
    await message.answer(f"Reminder #{reminder.id} set for {reminder.due_at:%Y-%m-%d %H:%M} UTC.")


async def reminders(message: Message, db: botdb.Database) -> None:
    """``/reminders``: the sender's reminders still to come."""
    assert message.from_user is not None
    upcoming = await db.reminders.list_for(message.from_user.id)
    if not upcoming:
        await message.answer("No reminders. Set one with /remind 10m text")
        return
    lines = [f"#{r.id} {r.due_at:%Y-%m-%d %H:%M} UTC: {r.content}" for r in upcoming]
    await message.answer("\n".join(lines))


async def forget(message: Message, command: CommandObject, db: botdb.Database) -> None:
    """``/forget 3``: cancel the sender's reminder #3 (nobody else's)."""
    assert message.from_user is not None
    arg = (command.args or "").strip().lstrip("#")
    if not arg.isdigit():
        await message.answer("Usage: /forget ID (see /reminders)")
        return
    try:
        gone = await db.reminders.cancel(int(arg), user_id=message.from_user.id)
    except BotDBError:  # NotFoundError: no such reminder of this user
        await message.answer(f"You have no reminder #{arg}.")
        return
    await message.answer(f"Reminder #{gone.id} cancelled: {gone.content}")


def install_reminders(dp: Dispatcher, db: botdb.Database) -> None:
    """Send due reminders with the bot and run the scheduler's worker while the Dispatcher
    runs (``start_polling`` emits startup with the bot, and shutdown when it stops)."""

    async def on_startup(bot: Bot) -> None:
        @db.reminders.on_reminder
        async def send(due: DueReminder) -> None:
            # Only the sending: the service reads the reminder, skips a cancelled one and
            # marks it sent (or keeps the error, and the scheduler retries).
            await bot.send_message(due.reminder.channel_id, f"⏰ {due.reminder.content}")

        await db.scheduler.start()

    async def on_shutdown() -> None:
        await db.scheduler.stop()

    dp.startup.register(on_startup)
    dp.shutdown.register(on_shutdown)


def build_router() -> Router:
    """The bot's handlers (a new Router each call: a Router joins one Dispatcher only)."""
    router = Router(name="example")
    router.message.register(start, CommandStart())
    router.message.register(cancel, Command("cancel"))
    router.message.register(count, Command("count"))
    router.message.register(profile, Command("profile"))
    router.message.register(remind, Command("remind"))
    router.message.register(reminders, Command("reminders"))
    router.message.register(forget, Command("forget"))
    router.message.register(got_name, Form.name, F.text)
    router.message.register(got_age, Form.age, F.text)
    return router


def build_dispatcher(db: botdb.Database, *, lease: float = 30.0) -> Dispatcher:
    """The bot's Dispatcher: FSM in ``db``, cross-process isolation, the middleware, and
    the reminders' worker on startup."""
    storage = SQLStorage(db)
    dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation(lease=lease))
    dp.update.outer_middleware(DatabaseMiddleware(db))
    dp.include_router(build_router())
    install_reminders(dp, db)
    return dp


# -- offline mode: Telegram's HTTP API answered locally ----------------------------------------


class OfflineSession(BaseSession):
    """Stands in for Telegram's HTTP API: answers ``getMe`` and ``sendMessage`` locally and
    keeps every message sent in :attr:`sent` as ``(chat id, text)``."""

    def __init__(self, bot_id: int = 4242) -> None:
        super().__init__()
        self.bot_id = bot_id
        self.sent: list[tuple[int, str]] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        name = method.__api_method__
        if name == "getMe":
            me = User(id=self.bot_id, is_bot=True, first_name="Example", username="example_bot")
            return me  # type: ignore[return-value]  # getMe returns a User
        if name == "sendMessage":
            chat_id = int(getattr(method, "chat_id"))  # noqa: B009 - typed per method
            text = str(getattr(method, "text"))  # noqa: B009
            async with self._changed:
                self.sent.append((chat_id, text))
                self._changed.notify_all()
            answer = Message(
                message_id=next(self._ids),
                date=dt.datetime.now(dt.UTC),
                chat=Chat(id=chat_id, type="private"),
                text=text,
            )
            return answer  # type: ignore[return-value]  # sendMessage returns a Message
        raise NotImplementedError(f"the offline session does not answer {name}")

    async def wait_sent(self, count: int, timeout: float = 30.0) -> list[tuple[int, str]]:
        """Wait until ``count`` messages were sent in all (a reminder sent by the worker);
        returns them."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= count), timeout)
        return self.sent[:count]

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the offline session downloads nothing")
        yield b""  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        """Nothing to close."""


#: Offline, reminders due within this many seconds are waited for.
OFFLINE_WAIT = 10.0

_update_ids = itertools.count(int(dt.datetime.now(dt.UTC).timestamp()) % 1_000_000 * 1000)


def text_update(text: str, *, user_id: int = 1001, first_name: str = "Ann") -> Update:
    """A Telegram update: ``text`` sent by a user in their private chat with the bot."""
    return Update(
        update_id=next(_update_ids),
        message=Message(
            message_id=next(_update_ids),
            date=dt.datetime.now(dt.UTC),
            chat=Chat(id=user_id, type="private"),
            from_user=User(id=user_id, is_bot=False, first_name=first_name),
            text=text,
        ),
    )


async def wait_for_reminders(db: botdb.Database, session: OfflineSession, user_id: int) -> None:
    """Stay while ``user_id`` has reminders due within :data:`OFFLINE_WAIT` seconds ("/remind
    2s tea"), for the worker to send them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OFFLINE_WAIT + 5
    while loop.time() < deadline:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=OFFLINE_WAIT)
        if not any(r.due_at <= soon for r in await db.reminders.list_for(user_id)):
            return
        with contextlib.suppress(TimeoutError):  # look again after each send, or each second
            await session.wait_sent(len(session.sent) + 1, timeout=1.0)


async def run_offline(
    url: str, texts: Sequence[str], *, user_id: int = 1001, repeat: int = 1
) -> list[str]:
    """Feed ``texts`` (``repeat`` times) to the bot as one user's messages; return the
    replies. The database at ``url`` is migrated first."""
    session = OfflineSession()
    async with botdb.connect(url) as db:
        await db.migrate()
        dp = build_dispatcher(db)
        bot = Bot("4242:offline", session=session)
        await dp.emit_startup(bot=bot)  # as start_polling does: the reminders' worker
        try:
            for _ in range(repeat):
                for text in texts:
                    await dp.feed_update(bot, text_update(text, user_id=user_id))
            await wait_for_reminders(db, session, user_id)
        finally:
            await dp.emit_shutdown(bot=bot)
            await dp.fsm.close()
            await bot.session.close()
    return [text for _, text in session.sent]


async def run_polling(url: str, token: str) -> None:
    """Run the bot against Telegram until interrupted."""
    async with botdb.connect(url) as db:
        await db.migrate()
        dp = build_dispatcher(db)
        bot = Bot(token)
        # Emits startup (the reminders' worker starts) and, when stopped, shutdown; closes
        # the storage and isolation.
        await dp.start_polling(bot)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="sqlite:///aiogram_bot.db")
    parser.add_argument("texts", nargs="*", help="offline: the messages to send")
    parser.add_argument("--offline", action="store_true", help="no Telegram: sample updates")
    parser.add_argument("--user-id", type=int, default=1001, help="offline: the sender's id")
    parser.add_argument("--repeat", type=int, default=1, help="offline: send the texts n times")
    args = parser.parse_args(argv)
    if args.offline:
        texts = args.texts or ["/start", "Ann", "33", "/profile", "/count", "/count"]
        for reply in asyncio.run(
            run_offline(args.url, texts, user_id=args.user_id, repeat=args.repeat)
        ):
            print(reply)
        return
    token = os.environ.get("BOT_TOKEN")
    if not token:
        sys.exit("set BOT_TOKEN (or pass --offline to try it without Telegram)")
    asyncio.run(run_polling(args.url, token))


if __name__ == "__main__":
    main()
