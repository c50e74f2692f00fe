"""A python-telegram-bot bot whose state lives in botdb (``pip install 'botdb[ptb]'``).

* ``/count`` counts per user (``context.user_data["count"]``);
* ``/start`` runs a persistent :class:`~telegram.ext.ConversationHandler` (name, then colour);
  ``/cancel`` leaves it. A restart resumes the conversation where it was.
* reminders through ``db.reminders``: ``/remind 10m text`` ("90s", "2h", "1d", "1h30m"),
  ``/reminders`` (yours, soonest first), ``/forget ID``. They live in the database and
  ``db.scheduler``'s worker sends them: started in ``post_init``, stopped in ``post_stop``.

Run it:

* against Telegram: ``BOT_TOKEN=123:abc python examples/ptb_bot.py [DATABASE_URL]``
  (default ``sqlite:///ptb_bot.db``);
* offline: ``python examples/ptb_bot.py --offline [DATABASE_URL]`` feeds a few scripted
  updates through the same Application with a stub network layer (no token, no network),
  restarts it in the middle, and prints the bot's replies.

Several processes may run this bot on one PostgreSQL database: each user's and chat's keys
are separate rows, so none loses another's writes; route each chat to one process for the
conversation (see ``docs/ptb.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram import Chat, Message, Update, User
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest, RequestData

import botdb
from botdb.errors import BotDBError
from botdb.ext.ptb import SQLPersistence
from botdb.services import DueReminder, parse_duration

NAME, COLOUR = range(2)
BOT_USER = {"id": 1, "is_bot": True, "first_name": "botdb", "username": "botdb_example_bot"}


async def count(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/count``: one more for this user."""
    assert context.user_data is not None
    assert update.effective_message is not None
    context.user_data["count"] = context.user_data.get("count", 0) + 1
    await update.effective_message.reply_text(f"count: {context.user_data['count']}")


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """``/start``: the conversation's first step."""
    assert update.effective_message is not None
    await update.effective_message.reply_text("What is your name?")
    return NAME


async def got_name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert context.user_data is not None
    assert update.effective_message is not None
    context.user_data["name"] = update.effective_message.text
    await update.effective_message.reply_text("Your favourite colour?")
    return COLOUR


async def got_colour(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert context.user_data is not None
    assert update.effective_message is not None
    context.user_data["colour"] = update.effective_message.text
    name = context.user_data.get("name")
    await update.effective_message.reply_text(f"Thanks {name}, {context.user_data['colour']}.")
    return ConversationHandler.END


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.effective_message is not None
    await update.effective_message.reply_text("Cancelled.")
    return ConversationHandler.END


# -- reminders: db.reminders keeps them, the scheduler's worker sends them -----------------------


def sender(update: Update) -> tuple[Message, User, Chat]:
    """The message of a command update, who sent it and in which chat."""
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    assert message is not None
    assert user is not None
    assert chat is not None
    return message, user, chat


def reminder_commands(db: botdb.Database) -> list[CommandHandler[Any, None]]:
    """``/remind``, ``/reminders`` and ``/forget`` on ``db.reminders``."""

    async def remind(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/remind 10m take the cake out``: one reminder, in this chat, after the delay."""
        message, user, chat = sender(update)
        args = context.args or []
        if len(args) < 2:
            await message.reply_text("Usage: /remind 10m take the cake out (s, m, h, d or w)")
            return
        try:
            delay = parse_duration(args[0])
            reminder = await db.reminders.remind(
                user.id, " ".join(args[1:]), delay=delay, channel_id=chat.id
            )
        except BotDBError as exc:  # DataError: not a duration, too long, text too long
            await message.reply_text(f"Cannot set that reminder: {exc}")
            return
        await message.reply_text(
            f"Reminder #{reminder.id} set for {reminder.due_at:%Y-%m-%d %H:%M} UTC."
        )

    async def reminders(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/reminders``: the sender's reminders still to come."""
        message, user, _ = sender(update)
        upcoming = await db.reminders.list_for(user.id)
        if not upcoming:
            await message.reply_text("No reminders. Set one with /remind 10m text")
            return
        lines = [f"#{r.id} {r.due_at:%Y-%m-%d %H:%M} UTC: {r.content}" for r in upcoming]
        await message.reply_text("\n".join(lines))

    async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/forget 3``: cancel the sender's reminder #3 (nobody else's)."""
        message, user, _ = sender(update)
        arg = (context.args or [""])[0].lstrip("#")
        if not arg.isdigit():
            await message.reply_text("Usage: /forget ID (see /reminders)")
            return
        try:
            gone = await db.reminders.cancel(int(arg), user_id=user.id)
        except BotDBError:  # NotFoundError: no such reminder of this user
            await message.reply_text(f"You have no reminder #{arg}.")
            return
        await message.reply_text(f"Reminder #{gone.id} cancelled: {gone.content}")

    return [
        CommandHandler("remind", remind),
        CommandHandler("reminders", reminders),
        CommandHandler("forget", forget),
    ]


def reminder_hooks(
    db: botdb.Database,
) -> tuple[
    Callable[[Application[Any, Any, Any, Any, Any, Any]], Coroutine[Any, Any, None]],
    Callable[[Application[Any, Any, Any, Any, Any, Any]], Coroutine[Any, Any, None]],
]:
    """``post_init`` (send reminders with the app's bot, start the worker) and ``post_stop``
    (stop it) for the Application."""

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        @db.reminders.on_reminder
        async def send(due: DueReminder) -> None:
            # Only the sending: the service reads the reminder, skips a cancelled one and
            # marks it sent (or keeps the error, and the scheduler retries).
            await app.bot.send_message(due.reminder.channel_id, f"⏰ {due.reminder.content}")

        await db.scheduler.start()

    async def post_stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await db.scheduler.stop()

    return post_init, post_stop


def build_application(
    db: botdb.Database,
    token: str,
    *,
    request: BaseRequest | None = None,
    namespace: str = "default",
    update_interval: float = 60,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot: its handlers, with :class:`SQLPersistence` on ``db``, and the reminders'
    worker from ``post_init`` (``run_polling`` calls it after ``initialize``) to ``post_stop``.

    ``request`` replaces PTB's HTTP layer (a stub for offline runs and tests).
    """
    persistence = SQLPersistence(db, namespace=namespace, update_interval=update_interval)
    post_init, post_stop = reminder_hooks(db)
    builder = (
        ApplicationBuilder()
        .token(token)
        .persistence(persistence)
        .post_init(post_init)
        .post_stop(post_stop)
    )
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    app = builder.build()
    words = filters.TEXT & ~filters.COMMAND
    app.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                NAME: [MessageHandler(words, got_name)],
                COLOUR: [MessageHandler(words, got_colour)],
            },
            fallbacks=[CommandHandler("cancel", cancel)],
            name="profile",
            persistent=True,
        )
    )
    app.add_handler(CommandHandler("count", count))
    app.add_handlers(reminder_commands(db))
    return app


# -- offline: a stub network layer and scripted updates --------------------------------------


class OfflineRequest(BaseRequest):
    """PTB's network layer answered locally: ``getMe``, ``sendMessage`` (kept in ``sent``),
    ``getUpdates`` (nothing), everything else ``True``. No network."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._message_id = 1000
        self._changed = asyncio.Condition()

    async def wait_sent(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages were sent in all (a reminder sent by the worker);
        returns them."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= count), timeout)
        return self.sent[:count]

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data is not None else {}
        result: Any = True
        if endpoint == "getMe":
            result = BOT_USER
        elif endpoint == "getUpdates":
            result = []
        elif endpoint == "sendMessage":
            self._message_id += 1
            async with self._changed:
                self.sent.append(dict(params))
                self._changed.notify_all()
            result = {
                "message_id": self._message_id,
                "date": 0,
                "chat": {"id": params["chat_id"], "type": "private"},
                "from": BOT_USER,
                "text": params["text"],
            }
            if "reply_markup" in params:
                result["reply_markup"] = params["reply_markup"]
        return 200, json.dumps({"ok": True, "result": result}).encode()


def text_update(
    update_id: int, user_id: int, text: str, *, chat_id: int | None = None
) -> dict[str, Any]:
    """The JSON of an incoming text message (a command when it starts with ``/``)."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": 0,
        "chat": {"id": user_id if chat_id is None else chat_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
        "text": text,
    }
    if text.startswith("/"):
        length = len(text.split()[0])
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"update_id": update_id, "message": message}


async def offline(url: str) -> list[str]:
    """Feed scripted updates through the bot, restarting it halfway; return its replies."""
    async with botdb.connect(url) as db:
        await db.migrate()
    script = [["/count", "/count", "/start", "Ada"], ["Blue", "/count"]]
    replies: list[str] = []
    update_id = 0
    for updates in script:  # two runs: a restart between them, on a new Database
        db = botdb.connect(url)
        request = OfflineRequest()
        app = build_application(db, "123456:offline", request=request)
        async with app:  # initialize (loads the persistence) ... shutdown (saves it)
            for text in updates:
                update_id += 1
                await app.process_update(Update.de_json(text_update(update_id, 42, text), app.bot))
        await db.close()
        replies += [message["text"] for message in request.sent]
    return replies


def main() -> None:
    """``--offline`` runs the scripted demo; otherwise the bot polls Telegram."""
    args = sys.argv[1:]
    if args[:1] == ["--offline"]:
        url = args[1] if len(args) > 1 else f"sqlite:///{Path(tempfile.mkdtemp()) / 'ptb.db'}"
        for reply in asyncio.run(offline(url)):
            print(reply)
        return
    token = os.environ.get("BOT_TOKEN")
    if not token:
        sys.exit("set BOT_TOKEN (or run with --offline)")
    url = args[0] if args else "sqlite:///ptb_bot.db"

    async def migrate() -> None:
        async with botdb.connect(url) as db:
            await db.migrate()

    asyncio.run(migrate())
    # The Database the bot uses is connected by SQLPersistence inside run_polling's event
    # loop (a pool belongs to one loop) and closed on shutdown.
    db = botdb.connect(url)

    async def close_db(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await db.close()

    app = build_application(db, token, update_interval=5)
    app.post_shutdown = close_db
    app.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
