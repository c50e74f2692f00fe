"""A real aiogram Dispatcher on botdb, offline: examples/aiogram_bot.py fed real Updates.

The Bot's HTTP session is the example's ``OfflineSession`` (a stand-in for Telegram's API
answering getMe/sendMessage); everything else is real: aiogram's Dispatcher, FSM middleware
and filters, and botdb's SQLStorage, isolation and DatabaseMiddleware on the real servers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import Chat, Message, Update
from sqlalchemy.ext.asyncio import AsyncSession

import botdb
from botdb.ext.aiogram import DatabaseMiddleware, SQLStorage
from botdb.models import KeyValue
from tests.helpers import MakeDB, child_env, load_example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aiogram_bot.py"
ANN = 1001


example = load_example(EXAMPLE, "aiogram_bot_example")


@pytest.fixture
async def db(make_db: MakeDB, builtin_tables: None) -> botdb.Database:
    return await make_db(create_tables=True)


class Running:
    """One bot process's Dispatcher and Bot on a Database; ``send`` feeds a text update."""

    def __init__(self, db: botdb.Database, dp: Dispatcher) -> None:
        self.db = db
        self.dp = dp
        self.session = example.OfflineSession()
        self.bot = Bot("4242:offline", session=self.session)
        self.started = False

    async def startup(self) -> None:
        """What ``start_polling`` does first: emit startup (the reminders' worker starts)."""
        await self.dp.emit_startup(bot=self.bot, **self.dp.workflow_data)
        self.started = True

    async def send(self, text: str, user_id: int = ANN) -> Any:
        return await self.dp.feed_update(self.bot, example.text_update(text, user_id=user_id))

    def replies(self) -> list[str]:
        return [text for _, text in self.session.sent]

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.dp.emit_shutdown(bot=self.bot, **self.dp.workflow_data)
        await self.dp.fsm.close()
        await self.bot.session.close()


@pytest.fixture
async def start_bot(make_db: MakeDB) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start the example bot on a new Database object each call (a process restart)."""
    running: list[Running] = []

    async def start(**settings: Any) -> Running:
        db = await make_db(create_tables=True, **settings)
        bot = Running(db, example.build_dispatcher(db, lease=5.0))
        running.append(bot)
        return bot

    yield start
    for bot in running:
        await bot.stop()


async def test_a_form_survives_a_restart(start_bot: Callable[..., Awaitable[Running]]) -> None:
    first = await start_bot()
    await first.send("/start")
    await first.send("Ann")
    assert first.replies() == ["Hello, Ann! What is your name?", "How old are you?"]
    await first.stop()
    await first.db.close()

    second = await start_bot()  # new Dispatcher, new Database, the same store
    await second.send("33")
    await second.send("/profile")
    assert second.replies() == ["Saved: Ann, 33.", "Profile: Ann, 33."]
    user = await second.db.users.get(ANN)
    assert user is not None
    assert (user.first_name, user.platform) == ("Ann", "telegram")


async def test_two_counts_in_a_row_count_to_two(
    start_bot: Callable[..., Awaitable[Running]],
) -> None:
    bot = await start_bot()
    await bot.send("/count")
    await bot.send("/count")
    assert bot.replies() == ["Count: 1", "Count: 2"]


async def test_a_burst_of_counts_from_one_user_loses_none(
    start_bot: Callable[..., Awaitable[Running]],
) -> None:
    """Updates handled as concurrent tasks (as polling does): the isolation runs them one by
    one, so each read-modify-write of the count sees the previous one."""
    bot = await start_bot()
    await asyncio.wait_for(asyncio.gather(*(bot.send("/count") for _ in range(12))), 60)
    assert sorted(bot.replies(), key=lambda r: int(r.split()[-1])) == [
        f"Count: {n}" for n in range(1, 13)
    ]


async def test_users_do_not_share_state(start_bot: Callable[..., Awaitable[Running]]) -> None:
    bot = await start_bot()
    await bot.send("/start", user_id=1)
    await bot.send("/count", user_id=2)
    await bot.send("Bob", user_id=1)
    await bot.send("/count", user_id=2)
    assert bot.replies()[1:] == ["Count: 1", "How old are you?", "Count: 2"]


async def test_a_reminder_set_with_remind_is_sent_by_the_worker_started_on_startup(
    start_bot: Callable[..., Awaitable[Running]],
) -> None:
    bot = await start_bot()
    await bot.startup()
    assert bot.db.scheduler.running
    await bot.send("/remind 1s tea is ready")
    (reply,) = bot.replies()
    assert reply.startswith("Reminder #1 set for ")
    sent = await bot.session.wait_sent(2)  # the worker sends it about a second later
    assert sent[1] == (ANN, "⏰ tea is ready")
    await bot.stop()  # shutdown stops the worker, once the run it sent is written
    assert not bot.db.scheduler.running
    reminder = await bot.db.reminders.get(1)
    assert reminder is not None
    assert reminder.sent_at is not None
    assert await bot.db.reminders.list_for(ANN) == []
    assert len(bot.session.sent) == 2  # sent once


async def test_reminders_are_listed_and_cancelled_per_user(
    start_bot: Callable[..., Awaitable[Running]],
) -> None:
    bot = await start_bot()
    await bot.send("/remind 2h stretch")
    await bot.send("/remind 10m take the cake out")
    await bot.send("/remind 1d call mum", user_id=2)
    await bot.send("/reminders")
    mine = bot.replies()[-1].splitlines()
    assert [line.split(" UTC: ")[1] for line in mine] == ["take the cake out", "stretch"]
    assert [line.split()[0] for line in mine] == ["#2", "#1"]
    await bot.send("/forget 3")  # user 2's
    assert bot.replies()[-1] == "You have no reminder #3."
    await bot.send("/forget #2")
    assert bot.replies()[-1] == "Reminder #2 cancelled: take the cake out"
    await bot.send("/reminders")
    assert bot.replies()[-1].endswith(" UTC: stretch")
    jobs = await bot.db.scheduler.jobs(kind="reminder", state="scheduled")
    assert sorted(j.payload["reminder_id"] for j in jobs) == [1, 3]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/remind", "Usage: /remind 10m take the cake out (s, m, h, d or w)"),
        ("/remind 10m", "Usage: /remind 10m take the cake out (s, m, h, d or w)"),
        ("/remind soon tea", "Cannot set that reminder: not a duration: 'soon'"),
        ("/remind 400d tea", "Cannot set that reminder: '400d' is longer than the maximum"),
        ("/forget", "Usage: /forget ID (see /reminders)"),
    ],
)
async def test_bad_reminder_commands_are_answered_and_change_nothing(
    start_bot: Callable[..., Awaitable[Running]], text: str, reply: str
) -> None:
    bot = await start_bot()
    await bot.send(text)
    assert bot.replies()[-1].startswith(reply)
    assert await bot.db.fetchval("SELECT count(*) FROM user_reminders") == 0
    assert await bot.db.fetchval("SELECT count(*) FROM scheduled_jobs") == 0


async def test_offline_mode_stays_for_a_reminder_due_soon(db_url: str) -> None:
    replies = await example.run_offline(db_url, ["/remind 1s tea", "/remind 1h stretch"])
    assert replies[0].startswith("Reminder #1 set for ")
    assert replies[1].startswith("Reminder #2 set for ")
    assert replies[2:] == ["⏰ tea"]  # waited for; the one an hour away is not


CHILD = """
import asyncio, importlib.util, sys
import botdb
from aiogram import Bot

spec = importlib.util.spec_from_file_location("example", sys.argv[1])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


async def main(url, rounds):
    session = example.OfflineSession()
    async with botdb.connect(url) as db:
        dp = example.build_dispatcher(db)
        bot = Bot("4242:offline", session=session)
        await db.execute("INSERT INTO ready (n) VALUES (1)")
        while await db.fetchval("SELECT count(*) FROM ready") < 2:
            await asyncio.sleep(0.01)  # both processes send their updates together
        await asyncio.gather(
            *(dp.feed_update(bot, example.text_update("/count")) for _ in range(rounds))
        )
        await dp.fsm.close()
        await bot.session.close()
    print(len(session.sent), flush=True)


asyncio.run(main(sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow
async def test_two_bot_processes_do_not_lose_each_others_counts(
    db: botdb.Database, db_url: str, tmp_path: Path
) -> None:
    """Two processes, each handling 15 /count updates of the same user at once, on one
    database: the count ends at 30."""
    await db.execute("CREATE TABLE ready (n INT)")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rounds = 15
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(EXAMPLE),
            db_url,
            str(rounds),
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        for _ in range(2)
    ]
    try:
        outputs = [await asyncio.wait_for(child.communicate(), 120) for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0, 0]
    assert [out.decode().split() for out, _ in outputs] == [[str(rounds)], [str(rounds)]]
    key = StorageKey(bot_id=4242, chat_id=ANN, user_id=ANN)
    assert await SQLStorage(db).get_data(key) == {"count": 2 * rounds}


@pytest.mark.slow
def test_the_example_runs_offline_as_a_script(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--offline", url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Hello, Ann! What is your name?",
        "How old are you?",
        "Saved: Ann, 33.",
        "Profile: Ann, 33.",
        "Count: 1",
        "Count: 2",
    ]


def test_the_example_without_a_token_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="set BOT_TOKEN"):
        example.main(["sqlite:///:memory:"])


# -- DatabaseMiddleware ------------------------------------------------------------------------


def dispatcher_with(router: Router, middleware: DatabaseMiddleware) -> Dispatcher:
    dp = Dispatcher()
    dp.update.outer_middleware(middleware)
    dp.include_router(router)
    return dp


async def test_the_session_commits_after_the_handler_and_rolls_back_on_error(
    db: botdb.Database,
) -> None:
    router = Router()
    seen: dict[str, Any] = {}

    async def write(message: Message, session: AsyncSession, **data: Any) -> None:
        seen.update(data, session=session)
        value = {"text": message.text}
        session.add(KeyValue(namespace="t", scope="global", key=message.text or "", value=value))
        if message.text == "/fail":
            raise RuntimeError("the handler failed")

    router.message.register(write, Command("ok", "fail"))
    dp = dispatcher_with(router, DatabaseMiddleware(db))
    bot = Bot("4242:offline", session=example.OfflineSession())
    await dp.feed_update(bot, example.text_update("/ok"))
    assert seen["db"] is db
    assert seen["db_user"].id == ANN
    with pytest.raises(RuntimeError, match="the handler failed"):
        await dp.feed_update(bot, example.text_update("/fail"))
    assert [r["key"] for r in await db.fetch("SELECT key FROM kv_store WHERE namespace = 't'")] == [
        "/ok"
    ]
    await bot.session.close()


async def test_the_middleware_injects_only_what_it_is_asked_for(db: botdb.Database) -> None:
    router = Router()
    seen: list[set[str]] = []

    async def handler(event: Any, **data: Any) -> None:
        seen.append({k for k in ("db", "session", "db_user") if k in data})
        if "db_user" in data:
            seen.append({"user" if data["db_user"] is not None else "no user"})

    router.message.register(handler)
    router.channel_post.register(handler)
    bot = Bot("4242:offline", session=example.OfflineSession())
    bare = dispatcher_with(router, DatabaseMiddleware(db, session=False, user=False))
    await bare.feed_update(bot, example.text_update("hi"))
    assert seen == [{"db"}]
    assert await db.fetchval("SELECT count(*) FROM users") == 0

    seen.clear()
    router2 = Router()
    router2.message.register(handler)
    router2.channel_post.register(handler)
    full = dispatcher_with(router2, DatabaseMiddleware(db))
    post = Update(
        update_id=1,
        channel_post=Message(
            message_id=1,
            date=dt.datetime.now(dt.UTC),
            chat=Chat(id=-100123, type="channel"),
            text="news",
        ),
    )
    await full.feed_update(bot, post)
    assert seen == [{"db", "session", "db_user"}, {"no user"}]
    await bot.session.close()
