"""``attach``/``detach``: ``bot.db`` opened in ``setup_hook`` and closed when the bot closes.

discord.py's maintainers tell bot authors to create their pool once, in ``setup_hook``, not in
``on_ready`` (which runs again after every reconnect; discord.py #9512). ``attach`` is meant
for ``setup_hook`` (``await bot.load_extension("botdb.ext.discord")`` calls it); called again
for the same bot it returns the Database already attached rather than opening a second pool.

Closing: ``attach`` wraps the bot's ``close`` (on the instance, so a subclass's own ``close``
still runs). ``commands.Bot.close`` unloads the extensions and removes the cogs first and
then closes the gateway connection; only after that, with no event left to arrive, are the
event handlers still running awaited (up to ``drain_timeout`` seconds), and then the Database
is closed, which flushes the recorder. So an event dispatched before ``close()`` is in the
database when ``close()`` returns, and every cog's ``cog_unload`` can still use ``bot.db``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from discord.ext import commands

from botdb import errors
from botdb.database import Database, connect
from botdb.ext.discord._listeners import RecorderCog, event_names

__all__ = ["attach", "detach"]

log = logging.getLogger("botdb.ext.discord")

_STATE = "_botdb_discord_state"
#: discord.py names the task of each event handler it schedules ``discord.py: on_<event>``.
_HANDLER_TASK = "discord.py: on_"


@dataclass(eq=False)
class _Attachment:
    db: Database
    close_db: bool
    drain_timeout: float
    original_close: Callable[[], Awaitable[None]]
    recorder: RecorderCog | None = None
    closing: bool = False
    shutdown: asyncio.Task[None] | None = None
    #: Tasks that called ``bot.close()`` (a ``!shutdown`` command's handler): not waited for.
    closers: set[asyncio.Task[Any]] = field(default_factory=set)


def _state(bot: commands.Bot) -> _Attachment | None:
    state: _Attachment | None = bot.__dict__.get(_STATE)
    return state


async def attach(
    bot: commands.Bot,
    db: Database | None = None,
    *,
    url: str | None = None,
    record: bool | Iterable[str] = False,
    close: bool = True,
    drain_timeout: float = 5.0,
    **options: Any,
) -> Database:
    """Connect a Database and make it ``bot.db``; call it in ``setup_hook``.

    Args:
        bot: the ``commands.Bot`` (or ``AutoShardedBot``).
        db: a Database to use (connected here if it is not); default: a new one built by
            :func:`botdb.connect` from ``url`` and ``options``, or from botdb's settings in
            the environment (``BOTDB_DATABASE_URL``, ``DATABASE_URL``…) when both are omitted.
        url: the database URL (not together with ``db``).
        record: record chat events into ``db.recorder``: True for all of
            :data:`~botdb.ext.discord.RECORDED_EVENTS`, or a set of event names.
        close: close the Database (flushing the recorder) when the bot closes or the
            extension is unloaded.
        drain_timeout: seconds ``bot.close()`` waits for running event handlers before it
            closes the Database.
        **options: :class:`~botdb.config.Settings` fields for a new Database.

    Returns:
        The Database, also ``bot.db``. Calling ``attach`` again for the same bot returns the
        same Database (adding the recorder when ``record`` asks for it) and opens nothing.

    Raises:
        ConfigurationError: ``db`` and ``url``/``options`` together, another object already
            at ``bot.db``, a different Database than the one attached, an unknown event
            name, a negative ``drain_timeout``, or the URL/settings are invalid.
        BotDBError: the database cannot be reached (nothing is attached then).
    """
    if not drain_timeout >= 0:
        raise errors.ConfigurationError("drain_timeout must be >= 0 seconds")
    events = event_names(record)  # an unknown event name fails before anything is opened
    state = _state(bot)
    if state is not None:
        if db is not None and db is not state.db:
            raise errors.ConfigurationError("a different Database is already attached to the bot")
        if events:
            await _start_recording(bot, state, events)
        return state.db
    if db is not None and (url is not None or options):
        raise errors.ConfigurationError("pass either db or url/options to attach(), not both")
    existing = getattr(bot, "db", None)
    if existing is not None:
        if db is None and isinstance(existing, Database):
            db = existing  # the bot author built it themselves: adopt it
        elif existing is not db:
            raise errors.ConfigurationError(
                f"bot.db is already set (to {type(existing).__name__}); remove it or pass it "
                "as attach(bot, db=bot.db)"
            )
    if bot.is_ready():
        log.warning(
            "botdb.ext.discord.attach() called after the bot is ready: attach in setup_hook, "
            "not in on_ready (which runs again on every reconnect)"
        )
    if db is None:
        db = connect(url, **options)
    await db.connect()
    state = _Attachment(
        db=db,
        close_db=close,
        drain_timeout=drain_timeout,
        original_close=bot.close,
    )
    bot.__dict__[_STATE] = state
    bot.db = db  # type: ignore[attr-defined]  # the attribute bot authors expect
    # Instance attribute: Client.run and `async with bot` call bot.close(), and find it here.
    bot.close = _closer(bot, state)  # type: ignore[method-assign]
    try:
        if events:
            await _start_recording(bot, state, events)
    except BaseException:
        await detach(bot)
        raise
    return db


async def _start_recording(bot: commands.Bot, state: _Attachment, events: frozenset[str]) -> None:
    """Record ``events`` too (the recorder's cog is replaced by one listening to all)."""
    if state.recorder is not None:
        if events <= state.recorder.events:
            return
        events |= state.recorder.events
        if bot.get_cog(state.recorder.qualified_name) is state.recorder:
            await bot.remove_cog(state.recorder.qualified_name)
    cog = RecorderCog(bot, events)
    await bot.add_cog(cog, override=True)
    state.recorder = cog


def _closer(bot: commands.Bot, state: _Attachment) -> Callable[[], Coroutine[Any, Any, None]]:
    async def close() -> None:
        state.closing = True
        caller = asyncio.current_task()
        if caller is not None:
            state.closers.add(caller)  # it waits for the close: never wait for it in turn
        try:
            await state.original_close()
        finally:
            if state.shutdown is None:
                state.shutdown = asyncio.create_task(_shutdown(bot, state), name="botdb-close")
            await asyncio.shield(state.shutdown)

    close.__doc__ = "Close the bot, then wait for its event handlers and close ``bot.db``."
    return close


async def _shutdown(bot: commands.Bot, state: _Attachment) -> None:
    try:
        await _drain(bot, state.drain_timeout, state.closers)
    finally:
        _forget(bot, state)
        if state.close_db:
            await state.db.close()


def _handler_of(task: asyncio.Task[Any], bot: commands.Bot) -> bool:
    """Whether ``task`` runs one of ``bot``'s event handlers (another client's in the same
    loop is not waited for)."""
    if not task.get_name().startswith(_HANDLER_TASK):
        return False
    # The task runs Client._run_event(...): its frame's ``self`` is the client. A task not
    # started yet has its frame too; only a finished one has none (and is not pending).
    frame = getattr(task.get_coro(), "cr_frame", None)
    owner = frame.f_locals.get("self", bot) if frame is not None else bot
    return owner is bot


async def _drain(
    bot: commands.Bot, timeout: float, waiting: set[asyncio.Task[Any]] | None = None
) -> None:
    """Wait (up to ``timeout`` seconds) for the event handlers discord.py is running for
    ``bot``, and for those they dispatch in turn (a command's completion event); never for
    the current task or the tasks in ``waiting`` (which wait for this one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = asyncio.current_task()
    while True:
        skip = {current, *(waiting or ())}
        pending = {
            task
            for task in asyncio.all_tasks()
            if task not in skip and not task.done() and _handler_of(task, bot)
        }
        remaining = deadline - loop.time()
        if not pending:
            return
        if remaining <= 0:
            log.warning(
                "closing the database while %d event handler(s) still run: %s",
                len(pending),
                ", ".join(sorted(task.get_name() for task in pending)),
            )
            return
        await asyncio.wait(pending, timeout=remaining)


def _forget(bot: commands.Bot, state: _Attachment) -> None:
    if bot.__dict__.get(_STATE) is state:
        del bot.__dict__[_STATE]
    if bot.__dict__.get("close") is not None:
        del bot.__dict__["close"]  # the class's close again
    if bot.__dict__.get("db") is state.db:
        del bot.__dict__["db"]


async def detach(bot: commands.Bot, *, close: bool | None = None) -> None:
    """Undo :func:`attach`: remove the recorder's cog, restore ``bot.close``, drop
    ``bot.db`` and close the Database (unless ``close`` is False, or ``attach`` was told
    ``close=False``) once the event handlers already running have finished (up to
    ``drain_timeout``). Nothing happens for a bot without an attached Database."""
    state = _state(bot)
    if state is None:
        return
    if state.recorder is not None and bot.get_cog(state.recorder.qualified_name) is state.recorder:
        await bot.remove_cog(state.recorder.qualified_name)
    _forget(bot, state)
    if state.close_db if close is None else close:
        # Handlers already dispatched (a message being recorded) finish first.
        await _drain(bot, state.drain_timeout)
        await state.db.close()


def is_closing(bot: commands.Bot) -> bool:
    """Whether the bot's ``close()`` is running (an extension's teardown then leaves the
    Database to it)."""
    state = _state(bot)
    return state is not None and state.closing


async def stop_recording(bot: commands.Bot) -> None:
    """Remove the recorder's cog that :func:`attach` added (events already recorded are
    still written); ``bot.db`` stays."""
    state = _state(bot)
    if state is None or state.recorder is None:
        return
    cog, state.recorder = state.recorder, None
    if bot.get_cog(cog.qualified_name) is cog:
        await bot.remove_cog(cog.qualified_name)
