"""Generated chat exports, in the DiscordChatExporter and Telegram Desktop JSON formats.

For demos, tests and measurements: the same ``seed`` always gives the same file, and a file
of any size is written message by message (a million messages need no more memory than ten).
The content is made up (word salad, made-up names); the shape is the real formats', with
replies, edits, pins, attachments, mentions, reactions (with and without their users), member
joins and a thread or forum topic, and an activity pattern over hours and weekdays.

From a shell (for a demo or a Makefile)::

    python -m botdb.importers.samples discord general.json --messages 10000 --seed 1

Example:
    >>> from botdb.importers.samples import write_discord_export
    >>> path = write_discord_export("general.json", messages=10_000, seed=1)
    >>> report = await db.import_discord(path)
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = ["main", "write_discord_export", "write_telegram_export"]

_SENTENCES = (
    "the bot is up again anyone seen the new patch raid tonight at nine who wants to join "
    "map vote gg well played thanks for the help i think it works now lol brb coffee first "
    "check the pinned message ping me later see you tomorrow nice screenshot what a game"
)
_WORDS = tuple(_SENTENCES.split())
_EMOJI = ("\U0001f44d", "\u2764\ufe0f", "\U0001f602", "\U0001f525", "\U0001f389", "\U0001f440")
_NAMES = ("ash", "bea", "cy", "dee", "eli", "fox", "gus", "hal", "ivy", "jo", "kit", "lu", "max")
#: Relative activity per hour of the day (UTC): quiet nights, busy evenings.
_HOURLY = (2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 6, 6, 7, 8, 10, 12, 12, 10, 7, 4)
_DISCORD_EPOCH_MS = 1420070400000


def _rng(seed: int) -> random.Random:
    # Made-up sample data, not anything secret: a seeded PRNG keeps files reproducible.
    return random.Random(seed)  # noqa: S311


def _times(rng: random.Random, start: datetime, count: int, per_day: int) -> Iterator[datetime]:
    """``count`` increasing times from ``start``, denser in the evening and at weekends."""
    now = start
    mean_gap = 86400 / max(per_day, 1)
    peak = max(_HOURLY)
    for _ in range(count):
        while True:
            now += timedelta(seconds=rng.expovariate(1 / mean_gap) * 0.5 + 0.2)
            weight = _HOURLY[now.hour] / peak * (1.3 if now.weekday() >= 5 else 1.0)
            if rng.random() < weight:
                break
        yield now


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 14)))


def _dce_time(at: datetime) -> str:
    """UTC with seven fractional digits, as DiscordChatExporter writes it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")


def _snowflake(at: datetime, sequence: int) -> int:
    millis = int(at.timestamp() * 1000) - _DISCORD_EPOCH_MS
    return (millis << 22) | (sequence & 0x3FFFFF)


class _ArrayWriter:
    """Writes ``{"head"..., "key": [item, item, ...], "tail"...}`` one item at a time."""

    def __init__(self, out: IO[bytes], head: dict[str, Any], key: str) -> None:
        self._out = out
        self._first = True
        prefix = orjson.dumps(head, option=orjson.OPT_INDENT_2)[:-2]  # drop "\n}"
        out.write(prefix + (b",\n" if head else b"") + b'  "' + key.encode() + b'": [\n')

    def item(self, value: dict[str, Any]) -> None:
        if not self._first:
            self._out.write(b",\n")
        self._first = False
        self._out.write(b"    " + orjson.dumps(value))

    def close(self, tail: dict[str, Any]) -> None:
        self._out.write(b"\n  ]")
        for key, value in tail.items():
            self._out.write(b',\n  "' + key.encode() + b'": ' + orjson.dumps(value))
        self._out.write(b"\n}\n")


# -- DiscordChatExporter ----------------------------------------------------------------------


def write_discord_export(
    path: str | os.PathLike[str],
    *,
    messages: int = 1000,
    users: int = 40,
    seed: int = 0,
    guild_id: int = 811000000000000001,
    channel_id: int = 811000000000000010,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    per_day: int = 400,
) -> Path:
    """Write a DiscordChatExporter JSON export of one text channel (current format).

    Returns the path. About 1 KB per message.
    """
    rng = _rng(seed)
    people: list[dict[str, Any]] = [
        {
            "id": str(700000000000000000 + i),
            "name": f"{rng.choice(_NAMES)}{i}",
            "discriminator": "0000",
            "nickname": f"{rng.choice(_NAMES).title()} {i}",
            "color": None,
            "isBot": i == 0,
            "roles": [],
            "avatarUrl": f"https://cdn.discordapp.com/embed/avatars/{i % 5}.png",
        }
        for i in range(max(users, 2))
    ]
    head = {
        "guild": {"id": str(guild_id), "name": "Sample Guild", "iconUrl": None},
        "channel": {
            "id": str(channel_id),
            "type": "GuildTextChat",
            "categoryId": str(channel_id - 1),
            "category": "Text Channels",
            "name": "general",
            "topic": "generated sample",
        },
        "dateRange": {"after": None, "before": None},
        "exportedAt": "2025-01-01T00:00:00.0000000+00:00",
    }
    target = Path(path)
    ids: list[int] = []
    with target.open("wb") as out:
        writer = _ArrayWriter(out, head, "messages")
        for index, at in enumerate(_times(rng, start, messages, per_day)):
            message_id = _snowflake(at, index)
            author = rng.choice(people) if index % 50 else people[1 + index % (len(people) - 1)]
            kind = "GuildMemberJoin" if index % 50 == 0 else "Default"
            message: dict[str, Any] = {
                "id": str(message_id),
                "type": kind,
                "timestamp": _dce_time(at),
                "timestampEdited": None,
                "callEndedTimestamp": None,
                "isPinned": rng.random() < 0.002,
                "content": "Joined the server." if kind != "Default" else _text(rng),
                "author": author,
                "attachments": [],
                "embeds": [],
                "stickers": [],
                "reactions": [],
                "mentions": [],
                "inlineEmojis": [],
            }
            if kind == "Default" and ids and rng.random() < 0.15:
                message["type"] = "Reply"
                message["reference"] = {
                    "type": "Default",
                    "messageId": str(rng.choice(ids[-50:])),
                    "channelId": str(channel_id),
                    "guildId": str(guild_id),
                }
            if rng.random() < 0.05:
                edited = at + timedelta(seconds=rng.randint(5, 600))
                message["timestampEdited"] = _dce_time(edited)
            if rng.random() < 0.05:
                name = f"img_{index}.png"
                message["attachments"].append(
                    {
                        "id": str(message_id + 1),
                        "url": f"https://cdn.discordapp.com/attachments/{channel_id}/{name}",
                        "fileName": name,
                        "fileSizeBytes": rng.randint(1000, 900000),
                    }
                )
            if rng.random() < 0.05:
                mentioned = rng.choice(people)
                message["mentions"].append(mentioned)
                message["content"] += f" @{mentioned['name']}"
            if rng.random() < 0.12:
                for emoji in rng.sample(_EMOJI, rng.randint(1, 3)):
                    reactors = rng.sample(people, rng.randint(1, min(4, len(people))))
                    message["reactions"].append(
                        {
                            "emoji": {"id": "", "name": emoji, "code": "", "isAnimated": False},
                            "count": len(reactors),
                            "users": reactors if rng.random() < 0.5 else [],
                        }
                    )
            ids.append(message_id)
            del ids[:-100]
            writer.item(message)
        writer.close({"messageCount": messages})
    return target


# -- Telegram Desktop -------------------------------------------------------------------------


def _telegram_messages(
    rng: random.Random, count: int, users: list[tuple[int, str]], start: datetime, per_day: int
) -> Iterator[dict[str, Any]]:
    topic = None
    for index, at in enumerate(_times(rng, start, count, per_day)):
        message_id = index + 1
        stamp = {
            "date": at.strftime("%Y-%m-%dT%H:%M:%S"),
            "date_unixtime": str(int(at.timestamp())),
        }
        user_id, name = rng.choice(users)
        if index == 1:
            topic = message_id
            yield {
                "id": message_id,
                "type": "service",
                **stamp,
                "actor": name,
                "actor_id": f"user{user_id}",
                "action": "topic_created",
                "title": "Sample topic",
                "text": "",
                "text_entities": [],
            }
            continue
        if index % 60 == 0:
            yield {
                "id": message_id,
                "type": "service",
                **stamp,
                "actor": name,
                "actor_id": f"user{user_id}",
                "action": "join_group_by_link",
                "inviter": "Group",
                "text": "",
                "text_entities": [],
            }
            continue
        text = _text(rng)
        message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            **stamp,
            "from": name,
            "from_id": f"user{user_id}",
            "text": text,
            "text_entities": [{"type": "plain", "text": text}],
        }
        if topic is not None and rng.random() < 0.1:
            message["reply_to_message_id"] = topic
        elif index > 2 and rng.random() < 0.1:
            message["reply_to_message_id"] = rng.randint(max(3, index - 40), index)
        if rng.random() < 0.04:
            edited = at + timedelta(seconds=rng.randint(5, 600))
            message["edited"] = edited.strftime("%Y-%m-%dT%H:%M:%S")
            message["edited_unixtime"] = str(int(edited.timestamp()))
        if rng.random() < 0.04:
            message["photo"] = f"photos/photo_{message_id}.jpg"
            message["width"], message["height"] = 1280, 960
        if rng.random() < 0.1:
            recent_user, recent_name = rng.choice(users)
            message["reactions"] = [
                {
                    "type": "emoji",
                    "count": rng.randint(1, 6),
                    "emoji": rng.choice(_EMOJI),
                    "recent": [
                        {
                            "from": recent_name,
                            "from_id": f"user{recent_user}",
                            "date": stamp["date"],
                        }
                    ],
                }
            ]
        yield message


def write_telegram_export(
    path: str | os.PathLike[str],
    *,
    messages: int = 1000,
    users: int = 40,
    seed: int = 0,
    chat_id: int = 1700000001,
    chat_type: str = "private_supergroup",
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    per_day: int = 400,
) -> Path:
    """Write a Telegram Desktop single-chat ``result.json`` (a forum supergroup by default).

    Returns the path. About 500 bytes per message.
    """
    rng = _rng(seed)
    people = [(500000 + i, f"{rng.choice(_NAMES).title()} {i}") for i in range(max(users, 2))]
    target = Path(path)
    with target.open("wb") as out:
        writer = _ArrayWriter(
            out, {"name": "Sample Chat", "type": chat_type, "id": chat_id}, "messages"
        )
        for message in _telegram_messages(rng, messages, people, start, per_day):
            writer.item(message)
        writer.close({})
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m botdb.importers.samples discord|telegram FILE [options]`` (see ``--help``)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m botdb.importers.samples",
        description="Write a generated chat export (made-up content, the real format).",
    )
    parser.add_argument("format", choices=("discord", "telegram"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-day", type=int, default=400, help="messages per day")
    args = parser.parse_args(argv)
    write = write_discord_export if args.format == "discord" else write_telegram_export
    write(args.file, messages=args.messages, users=args.users, seed=args.seed, per_day=args.per_day)


if __name__ == "__main__":
    main()
