"""A real discord.py ``commands.Bot`` run offline: gateway payloads fed to its own parsers,
and a stub HTTP layer answering login and ``send``.

Nothing of discord.py is mocked above its HTTP ``request``: login runs ``setup_hook``
(where botdb's extension is loaded), gateway payloads go through ``ConnectionState``'s
parsers (building ``Message``/``Member``/raw event objects and dispatching them) and
commands run through ``process_commands``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import discord
from discord.ext import commands

BOT_ID = 900_000_000_000_000_001
OWNER_ID = 300_000_000_000_000_001
EPOCH_MS = 1_420_070_400_000
#: 2026-01-01T00:00:00Z; message ids are snowflakes of times after it.
BASE_MS = 1_767_225_600_000


def snowflake(offset_ms: int, increment: int = 0) -> int:
    """A Discord id for ``BASE_MS + offset_ms`` (the id tells its creation time)."""
    return ((BASE_MS + offset_ms - EPOCH_MS) << 22) | increment


def at(offset_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp((BASE_MS + offset_ms) / 1000, dt.UTC)


def user(
    uid: int, name: str, *, bot: bool = False, global_name: str | None = None
) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": name,
        "discriminator": "0",
        "global_name": global_name if global_name is not None else name.title(),
        "avatar": None,
        "bot": bot,
    }


def member(
    uid: int,
    name: str,
    *,
    nick: str | None = None,
    roles: tuple[int, ...] = (),
    joined_ms: int = 0,
    guild_id: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user": user(uid, name),
        "nick": nick,
        "roles": [str(r) for r in roles],
        "joined_at": at(joined_ms).isoformat(),
        "deaf": False,
        "mute": False,
        "flags": 0,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    return data


def channel(cid: int, name: str, *, kind: int = 0, parent_id: int | None = None) -> dict[str, Any]:
    return {
        "id": str(cid),
        "type": kind,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "parent_id": str(parent_id) if parent_id else None,
    }


def thread(tid: int, name: str, guild_id: int, parent_id: int) -> dict[str, Any]:
    return {
        "id": str(tid),
        "type": 11,
        "name": name,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(OWNER_ID),
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": at(0).isoformat(),
            "locked": False,
        },
    }


def role(rid: int, name: str, *, permissions: int = 0) -> dict[str, Any]:
    return {
        "id": str(rid),
        "name": name,
        "permissions": str(permissions),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": True,
    }


def guild(
    gid: int,
    name: str,
    *,
    channels: list[dict[str, Any]],
    members: list[dict[str, Any]] = (),  # type: ignore[assignment]
    roles: list[dict[str, Any]] = (),  # type: ignore[assignment]
    threads: list[dict[str, Any]] = (),  # type: ignore[assignment]
    owner_id: int = OWNER_ID,
) -> dict[str, Any]:
    return {
        "id": str(gid),
        "name": name,
        "icon": None,
        "owner_id": str(owner_id),
        "roles": [role(gid, "@everyone"), *roles],
        "channels": channels,
        "threads": list(threads),
        "members": list(members),
        "member_count": len(members),
        "emojis": [],
        "stickers": [],
        "features": [],
        "large": False,
        "joined_at": at(0).isoformat(),
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_flags": 0,
        "nsfw_level": 0,
        "voice_states": [],
        "presences": [],
    }


def message(
    mid: int,
    channel_id: int,
    author: dict[str, Any],
    content: str,
    *,
    guild_id: int | None = None,
    edited_ms: int | None = None,
    nick: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    created = discord.utils.snowflake_time(mid)
    data: dict[str, Any] = {
        "id": str(mid),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": created.isoformat(),
        "edited_timestamp": at(edited_ms).isoformat() if edited_ms is not None else None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["member"] = {
            "nick": nick,
            "roles": [],
            "joined_at": at(0).isoformat(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
    data.update(fields)
    return data


def reaction(
    mid: int, channel_id: int, user_id: int, emoji: str, *, guild_id: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_id": str(user_id),
        "channel_id": str(channel_id),
        "message_id": str(mid),
        "emoji": {"id": None, "name": emoji},
        "type": 0,
        "burst": False,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    return data


class Gateway:
    """Drives ``bot`` offline: ``await gw.login()``, ``gw.feed(EVENT, payload)``,
    ``await gw.invoke(payload)`` for a message that runs a command; ``gw.sent`` holds the
    contents the bot sent."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.sent: list[tuple[int, str]] = []
        self._sent_changed = asyncio.Condition()
        self._ids = itertools.count(1)
        bot.http.request = self.request  # type: ignore[method-assign]
        #: Set when discord.py closes its HTTP session, the last step of ``Client.close``.
        self.http_closed = asyncio.Event()
        close_http = bot.http.close

        async def close() -> None:
            await close_http()
            self.http_closed.set()

        bot.http.close = close  # type: ignore[method-assign]

    async def request(self, route: discord.http.Route, **kwargs: Any) -> Any:
        if route.method == "GET" and route.path == "/users/@me":
            return user(BOT_ID, "botdb-bot", bot=True)
        if route.method == "GET" and route.path == "/oauth2/applications/@me":
            return {
                "id": str(BOT_ID),
                "name": "botdb-bot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user(OWNER_ID, "owner"),
                "verify_key": "0",
                "flags": 0,
            }
        if route.method == "POST" and route.path == "/channels/{channel_id}/messages":
            channel_id = int(route.channel_id)  # type: ignore[arg-type]
            content = kwargs["json"]["content"]
            async with self._sent_changed:
                self.sent.append((channel_id, content))
                self._sent_changed.notify_all()
            mid = snowflake(60_000, next(self._ids))
            return message(mid, channel_id, user(BOT_ID, "botdb-bot", bot=True), content)
        raise AssertionError(f"unexpected HTTP call {route.method} {route.path}")

    async def wait_sent(self, count: int, timeout: float = 30.0) -> list[tuple[int, str]]:
        """Wait until the bot has sent ``count`` messages in all (e.g. one sent by a
        background worker, not by a command); returns them."""
        async with self._sent_changed:
            await asyncio.wait_for(
                self._sent_changed.wait_for(lambda: len(self.sent) >= count), timeout
            )
        return self.sent[:count]

    async def login(self) -> None:
        """The real ``Client.login`` (``setup_hook`` included) against the stub."""
        await self.bot.login("offline-token")

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every event handler discord.py has scheduled (and those they schedule)
        has finished: the listeners' tasks themselves are awaited, nothing is slept on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            pending = [
                task
                for task in asyncio.all_tasks()
                if task.get_name().startswith("discord.py: on_") and not task.done()
            ]
            if not pending:
                return
            if loop.time() >= deadline:
                raise TimeoutError(f"event handlers still running: {pending}")
            await asyncio.wait(pending, timeout=deadline - loop.time())

    def feed(self, event: str, payload: dict[str, Any]) -> None:
        """One gateway dispatch, through discord.py's own parser for ``event``."""
        self.bot._connection.parsers[event](payload)

    async def invoke(
        self, payload: dict[str, Any], *, timeout: float = 30.0
    ) -> commands.Context[Any]:
        """Feed a MESSAGE_CREATE that runs a command; return its context once it completed.

        Raises the command's error if it failed (a check, a converter, the callback).
        """
        mid = int(payload["id"])

        def ours(ctx: commands.Context[Any], *rest: Any) -> bool:
            return ctx.message.id == mid

        done = asyncio.ensure_future(self.bot.wait_for("command_completion", check=ours))
        failed = asyncio.ensure_future(self.bot.wait_for("command_error", check=ours))
        self.feed("MESSAGE_CREATE", payload)
        try:
            finished, _ = await asyncio.wait(
                {done, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in (done, failed):
                future.cancel()
        if failed in finished:
            _, error = failed.result()
            raise error
        if done not in finished:
            raise TimeoutError(f"command of message {mid} did not finish")
        ctx: commands.Context[Any] = done.result()
        return ctx


def slash_command(
    iid: int,
    name: str,
    options: dict[str, int | str],
    *,
    user_member: dict[str, Any],
    guild_id: int,
    channel_id: int,
) -> dict[str, Any]:
    """An INTERACTION_CREATE of a slash command in a guild (options: integers and strings)."""
    invoker = dict(user_member, permissions="0")
    return {
        "id": str(iid),
        "application_id": str(BOT_ID),
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "guild_id": str(guild_id),
        "channel_id": str(channel_id),
        "channel": {"id": str(channel_id), "type": 0, "guild_id": str(guild_id)},
        "member": invoker,
        "data": {
            "id": "1",
            "name": name,
            "type": 1,
            "options": [
                {"name": key, "type": 4 if isinstance(value, int) else 3, "value": value}
                for key, value in options.items()
            ],
        },
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": "0",
        "entitlements": [],
        "attachment_size_limit": 8_388_608,
    }
