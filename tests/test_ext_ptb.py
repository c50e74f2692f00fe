"""botdb.ext.ptb: SQLPersistence under python-telegram-bot, on SQLite and PostgreSQL.

Unit level (each method, versions, refresh, drop, PersistenceInput, values that are not
JSON), then a real PTB ``Application`` with a stub network layer (``examples/ptb_bot.py``'s
``OfflineRequest``) processing real ``Update`` objects, across restarts and two OS processes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    PersistenceInput,
)

import botdb
from botdb import errors
from botdb.ext.ptb import SQLPersistence
from tests.helpers import MakeDB, child_env, load_example, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ptb_bot.py"
TOKEN = "123456:offline"


example = load_example(EXAMPLE, "botdb_example_ptb_bot")


async def rows(db: botdb.Database, kind: str, scope: str, namespace: str = "default") -> dict:
    """``{key JSON text: (value, version)}`` stored for one scope."""
    found = await db.fetch(
        "SELECT key, value, version FROM ptb_persistence"
        " WHERE namespace = $1 AND kind = $2 AND scope = $3",
        namespace,
        kind,
        scope,
    )
    return {key: (value, version) for key, value, version in found}


@pytest.fixture
async def other(make_db: MakeDB, db: botdb.Database) -> botdb.Database:
    """A second Database on the same store, as a second process of the bot would hold."""
    return await make_db()


# --- unit level: each method -----------------------------------------------------------------


async def test_user_chat_and_bot_data_round_trip_one_row_per_key(db: botdb.Database) -> None:
    p = SQLPersistence(db)
    await p.update_user_data(7, {"count": 2, "name": "Ada", "tags": ["a", {"b": None}]})
    await p.update_chat_data(-100, {"lang": "en", 5: 1.5, (1, "a"): "tuple key"})
    await p.update_bot_data({"started": True})

    assert set(await rows(db, "user", "7")) == {'"count"', '"name"', '"tags"'}
    # int and str keys stay distinct; tuple keys (of str and int) come back as tuples
    assert set(await rows(db, "chat", "-100")) == {'"lang"', "5", '[1,"a"]'}
    fresh = SQLPersistence(db)
    assert await fresh.get_user_data() == {
        7: {"count": 2, "name": "Ada", "tags": ["a", {"b": None}]}
    }
    assert await fresh.get_chat_data() == {-100: {"lang": "en", 5: 1.5, (1, "a"): "tuple key"}}
    assert await fresh.get_bot_data() == {"started": True}
    assert await fresh.get_callback_data() is None
    assert await fresh.get_conversations("nothing") == {}


async def test_each_write_bumps_the_version_of_changed_keys_only(db: botdb.Database) -> None:
    p = SQLPersistence(db)
    await p.update_user_data(1, {"a": 1, "b": 1})
    first = await rows(db, "user", "1")
    await p.update_user_data(1, {"a": 2, "b": 1})
    second = await rows(db, "user", "1")
    assert second['"a"'] == ("2", first['"a"'][1] + 1)
    assert second['"b"'] == first['"b"']  # unchanged: not rewritten
    await p.update_user_data(1, {"a": 2, "b": 1})
    assert await rows(db, "user", "1") == second  # nothing changed, nothing written


async def test_removed_key_is_deleted_and_recreated_above_its_old_version(
    db: botdb.Database,
) -> None:
    p = SQLPersistence(db)
    await p.update_user_data(1, {"a": 1, "b": 1})
    await p.update_user_data(1, {"a": 2})
    old_version = (await rows(db, "user", "1"))['"a"'][1]
    assert set(await rows(db, "user", "1")) == {'"a"'}
    await p.update_user_data(1, {})
    assert await rows(db, "user", "1") == {}
    await p.update_user_data(1, {"a": 3})
    assert (await rows(db, "user", "1"))['"a"'][1] > old_version


async def test_drop_deletes_only_that_user_or_chat(db: botdb.Database) -> None:
    p = SQLPersistence(db)
    await p.update_user_data(1, {"a": 1})
    await p.update_user_data(2, {"a": 2})
    await p.update_chat_data(1, {"a": 3})
    await p.drop_user_data(1)
    assert await SQLPersistence(db).get_user_data() == {2: {"a": 2}}
    await p.drop_chat_data(1)
    assert await SQLPersistence(db).get_chat_data() == {}
    await p.update_user_data(1, {"a": 5})  # writable again after the drop
    assert (await SQLPersistence(db).get_user_data())[1] == {"a": 5}


async def test_conversations_one_row_each_none_deletes(db: botdb.Database) -> None:
    p = SQLPersistence(db)
    await p.update_conversation("profile", (10, 42), 1)
    await p.update_conversation("profile", (11, 43), "waiting")
    await p.update_conversation("other", (10, 42), 0)
    await p.update_conversation("profile", (10, 42), 2)
    assert await SQLPersistence(db).get_conversations("profile") == {
        (10, 42): 2,
        (11, 43): "waiting",
    }
    await p.update_conversation("profile", (11, 43), None)
    assert await SQLPersistence(db).get_conversations("profile") == {(10, 42): 2}
    assert await SQLPersistence(db).get_conversations("other") == {(10, 42): 0}


async def test_callback_data_round_trip(db: botdb.Database) -> None:
    p = SQLPersistence(db)
    data = ([("kb2", 20.5, {"b1": "two"}), ("kb1", 10.0, {"b2": [1, 2]})], {"q1": "kb1"})
    await p.update_callback_data(data)
    loaded = await SQLPersistence(db).get_callback_data()
    assert loaded == ([("kb1", 10.0, {"b2": [1, 2]}), ("kb2", 20.5, {"b1": "two"})], {"q1": "kb1"})
    await p.update_callback_data(([("kb1", 30.0, {"b2": [1, 2]})], {}))
    assert await SQLPersistence(db).get_callback_data() == ([("kb1", 30.0, {"b2": [1, 2]})], {})


async def test_namespaces_keep_bots_apart(db: botdb.Database) -> None:
    await SQLPersistence(db, namespace="a").update_user_data(1, {"x": "a"})
    await SQLPersistence(db, namespace="b").update_user_data(1, {"x": "b"})
    assert await SQLPersistence(db, namespace="a").get_user_data() == {1: {"x": "a"}}
    assert await SQLPersistence(db, namespace="b").get_user_data() == {1: {"x": "b"}}


async def test_persistence_input_disabled_kinds_are_neither_read_nor_written(
    db: botdb.Database,
) -> None:
    await SQLPersistence(db).update_user_data(1, {"stored": 1})
    await SQLPersistence(db).update_bot_data({"stored": 1})
    off = PersistenceInput(user_data=False, chat_data=False, bot_data=False, callback_data=False)
    p = SQLPersistence(db, store_data=off)
    assert await p.get_user_data() == {}
    assert await p.get_bot_data() == {}
    assert await p.get_chat_data() == {}
    await p.update_user_data(2, {"x": 1})
    await p.update_chat_data(2, {"x": 1})
    await p.update_bot_data({"x": 1})
    await p.update_callback_data(([("kb", 1.0, {})], {}))
    memory = {"mine": 1}
    await p.refresh_user_data(1, memory)
    assert memory == {"mine": 1}
    await p.drop_user_data(1)
    count = await db.fetchval("SELECT count(*) FROM ptb_persistence")
    assert count == 2  # only the two rows written before, untouched


# --- refresh: newer stored versions in, unsaved local changes kept ---------------------------


async def test_refresh_takes_a_newer_stored_version(
    db: botdb.Database, other: botdb.Database
) -> None:
    mine, theirs = SQLPersistence(db), SQLPersistence(other)
    await mine.update_user_data(1, {"count": 1})
    memory = (await mine.get_user_data())[1]
    await theirs.get_user_data()
    await theirs.update_user_data(1, {"count": 5, "new": "x"})
    await mine.refresh_user_data(1, memory)
    assert memory == {"count": 5, "new": "x"}


async def test_refresh_never_clobbers_an_unsaved_local_change(
    db: botdb.Database, other: botdb.Database
) -> None:
    """PTB refreshes before every handler but saves every update_interval: count=2 must
    survive the refresh before the next /count, and another process's key still comes in."""
    mine, theirs = SQLPersistence(db), SQLPersistence(other)
    memory: dict[Any, Any] = {}
    await mine.refresh_user_data(1, memory)
    memory["count"] = 1
    await mine.update_user_data(1, dict(memory))
    memory["count"] = 2  # not saved yet
    memory["draft"] = "unsaved"  # a new key, not saved yet
    await mine.refresh_user_data(1, memory)
    assert memory == {"count": 2, "draft": "unsaved"}
    await theirs.get_user_data()
    await theirs.update_user_data(1, {"count": 1, "lang": "de"})  # same count, new key
    await mine.refresh_user_data(1, memory)
    assert memory == {"count": 2, "draft": "unsaved", "lang": "de"}
    await mine.update_user_data(1, dict(memory))
    assert await SQLPersistence(db).get_user_data() == {1: memory}


async def test_refresh_of_a_key_changed_on_both_sides_keeps_the_local_one(
    db: botdb.Database, other: botdb.Database
) -> None:
    mine, theirs = SQLPersistence(db), SQLPersistence(other)
    await mine.update_chat_data(5, {"k": "old"})
    await theirs.get_chat_data()
    memory = {"k": "mine"}  # changed locally, unsaved
    await theirs.update_chat_data(5, {"k": "theirs"})
    await mine.refresh_chat_data(5, memory)
    assert memory == {"k": "mine"}
    await mine.update_chat_data(5, memory)  # the last write wins
    assert (await SQLPersistence(db).get_chat_data())[5] == {"k": "mine"}


async def test_refresh_drops_a_key_deleted_elsewhere_unless_changed_here(
    db: botdb.Database, other: botdb.Database
) -> None:
    mine, theirs = SQLPersistence(db), SQLPersistence(other)
    await mine.update_bot_data({"gone": 1, "edited": 1, "kept": 1})
    memory = await mine.get_bot_data()
    await theirs.get_bot_data()
    await theirs.update_bot_data({"kept": 1})
    memory["edited"] = 2
    await mine.refresh_bot_data(memory)
    assert memory == {"edited": 2, "kept": 1}
    await mine.update_bot_data(memory)
    assert await SQLPersistence(db).get_bot_data() == {"edited": 2, "kept": 1}


async def test_refresh_sees_a_key_deleted_and_created_again_elsewhere(
    db: botdb.Database, other: botdb.Database
) -> None:
    mine, theirs = SQLPersistence(db), SQLPersistence(other)
    await mine.update_chat_data(2, {"k": "first"})
    memory = (await mine.get_chat_data())[2]
    await theirs.get_chat_data()
    await theirs.update_chat_data(2, {})
    await theirs.update_chat_data(2, {"k": "second"})
    await mine.refresh_chat_data(2, memory)
    assert memory == {"k": "second"}


class WritesWhileRefreshing(SQLPersistence):
    """Runs ``during`` right after a refresh has read the stored values (a save of this
    process finishing while a handler's refresh reads: PTB runs both concurrently)."""

    during: Any = None

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        rows = await super()._fetch(query, *args)
        if self.during is not None and "value" in query.split("FROM")[0]:
            during, self.during = self.during, None
            await during()
        return rows


async def test_a_save_finishing_during_a_refresh_is_not_undone_by_it(
    db: botdb.Database, other: botdb.Database
) -> None:
    mine, theirs = WritesWhileRefreshing(db), SQLPersistence(other)
    await mine.update_user_data(1, {"k": 1})
    await theirs.get_user_data()
    await theirs.update_user_data(1, {"k": 1, "x": "new"})  # makes the refresh read values
    memory = {"k": 2}
    mine.during = lambda: mine.update_user_data(1, dict(memory))  # k=2 saved meanwhile
    await mine.refresh_user_data(1, memory)
    assert memory == {"k": 2}  # what the refresh read (k=1) is older than the save
    await mine.refresh_user_data(1, memory)
    assert memory == {"k": 2, "x": "new"}  # the next refresh catches up


async def test_two_persistences_writing_different_keys_of_one_chat_keep_both(
    db: botdb.Database, other: botdb.Database
) -> None:
    """Both loaded before either wrote: a blob persistence would lose one of the writes."""
    a, b = SQLPersistence(db), SQLPersistence(other)
    await a.update_chat_data(9, {"shared": 0})
    chats_a, chats_b = await a.get_chat_data(), await b.get_chat_data()
    chats_a[9]["from_a"] = 1
    chats_b[9]["from_b"] = 2
    await a.update_chat_data(9, chats_a[9])
    await b.update_chat_data(9, chats_b[9])
    assert (await SQLPersistence(db).get_chat_data())[9] == {"shared": 0, "from_a": 1, "from_b": 2}


async def test_a_stale_delete_does_not_undo_a_newer_write(
    db: botdb.Database, other: botdb.Database
) -> None:
    a, b = SQLPersistence(db), SQLPersistence(other)
    await a.update_user_data(3, {"k": 1})
    await b.get_user_data()
    await b.update_user_data(3, {"k": 2})  # newer than what a knows
    await a.update_user_data(3, {})  # a removes k, on its old knowledge
    assert (await SQLPersistence(db).get_user_data())[3] == {"k": 2}


_SCOPES = iter(range(1_000_000, 2_000_000))
_OPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.sampled_from(["set", "set", "del", "save", "refresh"]),
        st.integers(0, 1),
        st.integers(0, 9),
    ),
    min_size=8,
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
async def test_two_processes_interleaved_never_lose_their_own_keys(
    db: botdb.Database, other: botdb.Database, ops: list[tuple[int, str, int, int]]
) -> None:
    """Any interleaving of two processes setting, deleting, saving and refreshing their own
    keys of one chat: a refresh never takes back a process's own change, and after a last
    save and refresh by both, the database and both memories hold exactly the latest values."""
    chat = next(_SCOPES)
    persistences = [SQLPersistence(db), SQLPersistence(other)]
    memories: list[dict[Any, Any]] = [{}, {}]
    latest: dict[str, int] = {}
    for who, action, index, value in ops:
        p, memory, key = persistences[who], memories[who], f"p{who}_k{index}"
        if action == "set":
            memory[key] = latest[key] = value
        elif action == "del":
            memory.pop(key, None)
            latest.pop(key, None)
        elif action == "save":
            await p.update_chat_data(chat, dict(memory))
        else:
            await p.refresh_chat_data(chat, memory)
        own = {k: v for k, v in latest.items() if k.startswith(f"p{who}_")}
        assert {k: v for k, v in memory.items() if k.startswith(f"p{who}_")} == own
    for who in (0, 1):
        await persistences[who].update_chat_data(chat, dict(memories[who]))
    for who in (0, 1):
        await persistences[who].refresh_chat_data(chat, memories[who])
        assert memories[who] == latest
    assert (await SQLPersistence(db).get_chat_data()).get(chat, {}) == latest


# --- values that are not JSON, keys, bad input -----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{1, 2}, (1, 2), float("nan"), {"nested": {1: "int key"}}, 2**70],
    ids=["set", "tuple", "nan", "int-key-inside", "huge-int"],
)
async def test_non_json_value_raises_naming_the_key_and_the_other_keys_are_saved(
    db: botdb.Database, value: Any
) -> None:
    """PTB does not save a user again until an update marks it: the storable keys must not
    wait for the bad one. The bad key's old row stays as it was."""
    p = SQLPersistence(db)
    await p.update_user_data(8, {"bad": "old"})
    with pytest.raises(errors.DataError, match=r"user_data\[8\]\['bad'\].*allow_pickle"):
        await p.update_user_data(8, {"fine": 1, "bad": value})
    assert await SQLPersistence(db).get_user_data() == {8: {"fine": 1, "bad": "old"}}


async def test_allow_pickle_stores_and_reads_back_non_json_values(db: botdb.Database) -> None:
    p = SQLPersistence(db, allow_pickle=True)
    await p.update_user_data(8, {"set": {1, 2}, "tuple": (1, 2), "json": [1]})
    stored = await db.fetch(
        "SELECT key, value IS NULL, pickled IS NULL FROM ptb_persistence ORDER BY key"
    )
    assert [tuple(row) for row in stored] == [
        ('"json"', False, True),
        ('"set"', True, False),
        ('"tuple"', True, False),
    ]
    assert await SQLPersistence(db, allow_pickle=True).get_user_data() == {
        8: {"set": {1, 2}, "tuple": (1, 2), "json": [1]}
    }
    with pytest.raises(errors.DataError, match=r"stored pickled.*allow_pickle=True"):
        await SQLPersistence(db).get_user_data()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (1.5, "of type float"),
        (None, "of type NoneType"),
        (True, "of type bool"),
        ((1, ("nested",)), "of type tuple"),
        ("k" * 300, "longer than 255"),
    ],
)
async def test_bad_keys_raise_and_the_other_keys_are_saved(
    db: botdb.Database, key: Any, message: str
) -> None:
    p = SQLPersistence(db)
    with pytest.raises(errors.DataError, match=message):
        await p.update_chat_data(1, {"fine": 1, key: 1, "also bad": {2}})
    assert set(await rows(db, "chat", "1")) == {'"fine"'}


async def test_conversation_name_longer_than_the_column_is_refused(db: botdb.Database) -> None:
    with pytest.raises(errors.DataError, match="at most 255"):
        await SQLPersistence(db).update_conversation("c" * 256, (1, 2), 1)
    assert await db.fetchval("SELECT count(*) FROM ptb_persistence") == 0


@pytest.mark.parametrize(
    "options",
    [{"namespace": ""}, {"namespace": "n" * 65}, {"update_interval": 0}, {"update_interval": "5"}],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigurationError):
        SQLPersistence(botdb.connect("sqlite:///:memory:"), **options)


async def test_missing_table_names_the_migration(make_db: MakeDB) -> None:
    db = await make_db()  # no tables
    with pytest.raises(errors.UndefinedTableError, match=r"db\.migrate\(\)"):
        await SQLPersistence(db).get_user_data()


async def test_a_disconnected_database_is_connected_on_first_use(db_url: str, db: Any) -> None:
    later = botdb.connect(db_url)
    try:
        assert await SQLPersistence(later).get_user_data() == {}
    finally:
        await later.close()


# --- a real PTB Application ------------------------------------------------------------------


class Bot:
    """One Application of the example bot on a Database of its own, fed real Updates."""

    def __init__(self, url: str, update_id: int = 0) -> None:
        self.db = botdb.connect(url)
        self.request = example.OfflineRequest()
        self.app = example.build_application(self.db, TOKEN, request=self.request)
        self.update_id = update_id

    async def __aenter__(self) -> Bot:
        await self.app.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.app.post_stop is not None:  # what run_polling does after stop()
            await self.app.post_stop(self.app)
        await self.app.shutdown()  # saves (update_persistence) and flushes
        await self.db.close()

    async def post_init(self) -> None:
        """What ``run_polling`` does after ``initialize``: the reminders' worker starts."""
        assert self.app.post_init is not None
        await self.app.post_init(self.app)

    async def send(self, user_id: int, text: str) -> str:
        """Process a text message from ``user_id``; return the bot's reply."""
        self.update_id += 1
        sent = len(self.request.sent)
        payload = example.text_update(self.update_id, user_id, text)
        await self.app.process_update(Update.de_json(payload, self.app.bot))
        assert len(self.request.sent) == sent + 1, f"no reply to {text!r}"
        return str(self.request.sent[-1]["text"])


@pytest.fixture
def store(db: botdb.Database, db_url: str) -> str:
    """The URL of this test's database, with the built-in tables, for Applications."""
    return db_url


async def test_two_counts_in_a_row_count_to_two(store: str) -> None:
    async with Bot(store) as bot:
        assert await bot.send(42, "/count") == "count: 1"
        assert await bot.send(42, "/count") == "count: 2"
        assert await bot.send(43, "/count") == "count: 1"


async def test_a_running_application_saves_every_update_interval(
    store: str, db: botdb.Database
) -> None:
    """Application.start runs PTB's own save loop: with a short update_interval the count
    reaches the database while the bot runs, before any shutdown."""
    bot_db, request = botdb.connect(store), example.OfflineRequest()
    app = example.build_application(bot_db, TOKEN, request=request, update_interval=0.05)
    async with app:
        await app.start()
        try:
            for update_id in (1, 2):
                payload = example.text_update(update_id, 42, "/count")
                await app.update_queue.put(Update.de_json(payload, app.bot))

            async def saved() -> bool:
                return (await rows(db, "user", "42")).get('"count"', (None,))[0] == "2"

            await wait_until(saved, what="count 2 saved by the Application's own loop")
        finally:
            await app.stop()
    await bot_db.close()
    assert [message["text"] for message in request.sent] == ["count: 1", "count: 2"]


async def test_conversation_and_user_data_survive_a_restart(store: str) -> None:
    async with Bot(store) as bot:
        assert await bot.send(42, "/count") == "count: 1"
        assert await bot.send(42, "/start") == "What is your name?"
        assert await bot.send(42, "Ada") == "Your favourite colour?"
        last = bot.update_id
    async with Bot(store, last) as bot:  # a new Application and a new Database
        assert await bot.send(42, "Blue") == "Thanks Ada, Blue."
        assert await bot.send(42, "/count") == "count: 2"
    async with botdb.connect(store) as db:
        assert await SQLPersistence(db).get_conversations("profile") == {}  # ended: deleted
        assert (await SQLPersistence(db).get_user_data())[42] == {
            "count": 2,
            "name": "Ada",
            "colour": "Blue",
        }


async def test_application_drop_user_data_deletes_the_rows(store: str, db: botdb.Database) -> None:
    async with Bot(store) as bot:
        assert await bot.send(42, "/count") == "count: 1"
        assert await bot.send(43, "/count") == "count: 1"
        await bot.app.update_persistence()
        assert set(await rows(db, "user", "42")) == {'"count"'}
        bot.app.drop_user_data(42)
        await bot.app.update_persistence()
        assert await rows(db, "user", "42") == {}
    assert set(await rows(db, "user", "43")) == {'"count"'}


async def test_a_reminder_set_with_remind_is_sent_by_the_worker_started_in_post_init(
    store: str,
) -> None:
    async with Bot(store) as bot:
        await bot.post_init()
        assert bot.db.scheduler.running
        assert (await bot.send(42, "/remind 1s tea is ready")).startswith("Reminder #1 set for ")
        sent = await bot.request.wait_sent(2)  # the worker sends it about a second later
        assert (sent[1]["chat_id"], sent[1]["text"]) == (42, "⏰ tea is ready")
        assert bot.app.post_stop is not None
        await bot.app.post_stop(bot.app)  # waits for the run it sent to be written
        assert not bot.db.scheduler.running
        assert await bot.send(42, "/reminders") == "No reminders. Set one with /remind 10m text"
        reminder = await bot.db.reminders.get(1)
        assert reminder is not None
        assert reminder.sent_at is not None
        assert len(bot.request.sent) == 3  # the reminder went out once


async def test_a_reminder_set_before_a_restart_is_sent_after_it(store: str) -> None:
    async with Bot(store) as bot:  # no worker in this process
        assert (await bot.send(42, "/remind 1s stretch")).startswith("Reminder #1 set")
    async with Bot(store, bot.update_id) as later:  # a new Application and a new Database
        await later.post_init()
        (sent,) = await later.request.wait_sent(1)
        assert (sent["chat_id"], sent["text"]) == (42, "⏰ stretch")


async def test_reminders_are_listed_and_cancelled_per_user(store: str) -> None:
    async with Bot(store) as bot:
        await bot.send(42, "/remind 2h stretch")
        await bot.send(42, "/remind 10m take the cake out")
        await bot.send(43, "/remind 1d call mum")
        mine = (await bot.send(42, "/reminders")).splitlines()
        assert [line.split(" UTC: ")[1] for line in mine] == ["take the cake out", "stretch"]
        assert [line.split()[0] for line in mine] == ["#2", "#1"]
        assert await bot.send(42, "/forget 3") == "You have no reminder #3."
        assert await bot.send(42, "/forget #2") == "Reminder #2 cancelled: take the cake out"
        assert (await bot.send(42, "/reminders")).endswith(" UTC: stretch")
        jobs = await bot.db.scheduler.jobs(kind="reminder", state="scheduled")
        assert sorted(job.payload["reminder_id"] for job in jobs) == [1, 3]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/remind", "Usage: /remind 10m take the cake out (s, m, h, d or w)"),
        ("/remind 10m", "Usage: /remind 10m take the cake out (s, m, h, d or w)"),
        ("/remind soon tea", "Cannot set that reminder: not a duration: 'soon'"),
        ("/remind 0s tea", "Cannot set that reminder: a duration must be more than zero"),
        ("/forget x", "Usage: /forget ID (see /reminders)"),
    ],
)
async def test_bad_reminder_commands_are_answered_and_change_nothing(
    store: str, db: botdb.Database, text: str, reply: str
) -> None:
    async with Bot(store) as bot:
        assert (await bot.send(42, text)).startswith(reply)
    assert await db.fetchval("SELECT count(*) FROM user_reminders") == 0
    assert await db.fetchval("SELECT count(*) FROM scheduled_jobs") == 0


def test_the_example_without_a_token_says_what_to_set() -> None:
    env = {k: v for k, v in child_env().items() if k != "BOT_TOKEN"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 1
    assert "set BOT_TOKEN" in out.stderr


async def test_the_offline_example_runs(db_url: str) -> None:
    """``python examples/ptb_bot.py --offline URL`` migrates an empty database, then runs
    the scripted updates with a restart in the middle."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--offline",
        db_url,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert out.decode().splitlines() == [
        "count: 1",
        "count: 2",
        "What is your name?",
        "Your favourite colour?",
        "Thanks Ada, Blue.",
        "count: 3",
    ]


async def test_arbitrary_callback_data_resolves_after_a_restart(store: str) -> None:
    """A button's callback data (a dict, kept by PTB's callback-data cache) is saved as rows
    and still resolves when the button is pressed after a restart."""
    pytest.importorskip("cachetools", reason="python-telegram-bot[callback-data] not installed")
    picked: list[Any] = []

    async def menu(update: Update, context: Any) -> None:
        keyboard = [[InlineKeyboardButton("seven", callback_data={"item": 7, "tags": ["a"]})]]
        await update.effective_message.reply_text(
            "pick", reply_markup=InlineKeyboardMarkup(keyboard)
        )

    async def pressed(update: Update, context: Any) -> None:
        picked.append(update.callback_query.data)

    def build(db: botdb.Database, request: Any) -> Any:
        persistence = SQLPersistence(db)
        app = (
            ApplicationBuilder()
            .token(TOKEN)
            .request(request)
            .get_updates_request(request)
            .persistence(persistence)
            .arbitrary_callback_data(True)
            .build()
        )
        app.add_handler(CommandHandler("menu", menu))
        app.add_handler(CallbackQueryHandler(pressed))
        return app

    db, request = botdb.connect(store), example.OfflineRequest()
    async with build(db, request) as app:
        await app.process_update(Update.de_json(example.text_update(1, 42, "/menu"), app.bot))
    await db.close()
    sent = request.sent[-1]
    button = sent["reply_markup"]["inline_keyboard"][0][0]
    async with botdb.connect(store) as check:
        loaded = await SQLPersistence(check).get_callback_data()
    assert loaded is not None
    assert [list(buttons.values()) for _, _, buttons in loaded[0]] == [[{"item": 7, "tags": ["a"]}]]

    db, request = botdb.connect(store), example.OfflineRequest()
    async with build(db, request) as app:  # a new Application and Database
        message = {
            "message_id": 1001,
            "date": 0,
            "chat": {"id": 42, "type": "private"},
            "from": example.BOT_USER,
            "text": "pick",
            "reply_markup": sent["reply_markup"],
        }
        payload = {
            "update_id": 2,
            "callback_query": {
                "id": "cq1",
                "from": {"id": 42, "is_bot": False, "first_name": "u"},
                "chat_instance": "ci",
                "data": button["callback_data"],
                "message": message,
            },
        }
        update = Update.de_json(payload, app.bot)
        app.bot.insert_callback_data(update)  # what polling and webhooks do for each update
        await app.process_update(update)
    await db.close()
    assert picked == [{"item": 7, "tags": ["a"]}]


async def test_a_value_that_is_not_json_reaches_the_error_handlers_the_rest_is_saved(
    store: str,
) -> None:
    errors_seen: list[BaseException] = []

    async def remember(update: object, context: Any) -> None:
        errors_seen.append(context.error)

    async with Bot(store) as bot:
        bot.app.add_error_handler(remember)
        assert await bot.send(42, "/count") == "count: 1"
        bot.app.user_data[42]["when"] = {1, 2}  # a set: not JSON, pickling not enabled
        await bot.app.update_persistence()
        assert len(errors_seen) == 1
        assert isinstance(errors_seen[0], errors.DataError)
        assert "user_data[42]['when']" in str(errors_seen[0])
        del bot.app.user_data[42]["when"]
    async with botdb.connect(store) as db:
        assert await SQLPersistence(db).get_user_data() == {42: {"count": 1}}


CHILD = """
import asyncio, sys
from telegram import Update
from tests.test_ext_ptb import Bot

async def main(url, index):
    async with Bot(url, update_id=index * 1000) as bot:
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
        for round in range(ROUNDS):
            # this process's own users
            for user in (index * 100 + 1, index * 100 + 2):
                await bot.send(user, "/count")
            # the same chat, a key of this process's own
            payload = {
                "update_id": bot.update_id + 500, "message": {
                    "message_id": 1, "date": 0, "chat": {"id": -5, "type": "group"},
                    "from": {"id": index, "is_bot": False, "first_name": "x"},
                    "text": "/count",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
            bot.app.chat_data[-5][f"from_{index}"] = round + 1
            bot.app.bot_data[f"bot_{index}"] = round + 1
            await bot.app.process_update(Update.de_json(payload, bot.app.bot))
            await bot.app.update_persistence()
    print("done", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.slow
async def test_two_processes_on_one_database_lose_nothing(store: str, tmp_path: Path) -> None:
    """Two OS processes, each an Application on its own Database, on one PostgreSQL (or one
    SQLite file): both load the same (empty) state, then update their own users, the same
    chat's different keys and bot_data's different keys, saving after each round."""
    rounds = 15
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("ROUNDS", str(rounds)))
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            store,
            str(index),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            cwd=ROOT,
        )
        for index in (1, 2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line.strip() == b"ready"
        for child in children:  # both have loaded before either writes
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        for child in children:
            out, _ = await asyncio.wait_for(child.communicate(), 120)
            assert child.returncode == 0
            assert out.strip() == b"done"
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    async with botdb.connect(store) as db:
        p = SQLPersistence(db)
        users = await p.get_user_data()
        for user in (101, 102, 201, 202):
            assert users[user] == {"count": rounds}
        assert users[1] == {"count": rounds}  # each process's chat sender
        assert users[2] == {"count": rounds}
        assert (await p.get_chat_data())[-5] == {"from_1": rounds, "from_2": rounds}
        assert await p.get_bot_data() == {"bot_1": rounds, "bot_2": rounds}


# --- light imports and the missing extra -----------------------------------------------------


def test_import_botdb_does_not_import_telegram() -> None:
    code = "import sys, botdb\nprint('telegram' in sys.modules, 'botdb.ext.ptb' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env()
    )
    assert out.stdout.split() == ["False", "False"]


def test_missing_ptb_raises_missing_dependency_naming_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['telegram'] = None  # as if python-telegram-bot were not installed\n"
        "sys.modules['telegram.ext'] = None\n"
        "import botdb\n"
        "try:\n"
        "    import botdb.ext.ptb\n"
        "except botdb.MissingDependencyError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env()
    )
    assert "MissingDependencyError" in out.stdout
    assert "pip install 'botdb[ptb]'" in out.stdout
