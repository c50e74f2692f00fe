"""The batch writer: a list of events -> rows, inside the caller's transaction, idempotently.

:func:`write_events` is what the recorder runs once per batch (in a transaction of its own)
and what the importers run many times inside one transaction (an atomic import). Every write
is an upsert on the table's natural key, so writing the same batch again (a retried batch, a
replayed spool, a re-import) leaves the same rows.

How a batch is written:

1. every event is checked (:mod:`botdb.recorder._validate`): a bad one raises
   :class:`~botdb.errors.DataError` before anything is sent;
2. the events are folded per key in arrival order (:mod:`botdb.recorder._fold`), so each
   table gets one row per key;
3. each table is written with one set-based statement (:mod:`botdb.recorder._rows`): on
   PostgreSQL ``INSERT … SELECT … ON CONFLICT`` from ``unnest`` arrays, or for large batches
   from a temporary staging table filled by ``COPY``; on SQLite one prepared
   ``INSERT … ON CONFLICT`` over all the rows (``executemany``). Messages are inserted with
   ``DO NOTHING``; the few that already existed (a partial row, a retried batch) are read
   back, merged in Python and updated.

The whole call runs in a savepoint (or a transaction of its own when the caller has none), so
a failing batch leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from botdb._json_values import dumps
from botdb.engine.connection import Connection
from botdb.errors import DataError
from botdb.recorder import _events as ev
from botdb.recorder._fold import (
    MESSAGE_COLUMNS,
    PLAIN_MESSAGE_COLUMNS,
    Batch,
    as_plan,
    fold,
    fresh_children,
    fresh_row,
    member_active,
    merge_message,
)
from botdb.recorder._rows import COPY_MIN_ROWS, RowWriter, WriteCounts, is_postgres, json_text
from botdb.recorder._validate import validate_events

__all__ = ["COPY_MIN_ROWS", "WriteCounts", "write_events"]

#: Keys per ``IN (...)`` list when stored rows are read back on SQLite.
_CHUNK = 400


class _SomeStored(Exception):
    """Some messages of the batch were already stored: take the merging path."""


async def write_events(
    conn: Connection,
    events: Sequence[ev.Event],
    *,
    platform: str = "discord",
    validate: bool = True,
) -> WriteCounts:
    """Write ``events`` (in arrival order) as rows, atomically and idempotently.

    Runs inside ``conn``'s transaction (as a savepoint) or in a transaction of its own. Rows
    referred to but missing (a guild, channel, thread, user; a message an edit, deletion or
    reaction refers to) are created bare; ``*Info`` events fill in their non-None fields.

    Args:
        conn: a connection from ``db.acquire()`` or ``db.transaction()``.
        events: the batch; any mix of :data:`~botdb.recorder.Event` kinds.
        platform: ``"discord"`` or ``"telegram"``: the platform of bare guild and user rows,
            and whether a message id carries its creation time (Discord snowflakes).
        validate: check the events first (False only for events already checked, as the
            recorder's ``record()`` does).

    Returns:
        Rows written per table.

    Raises:
        DataError: an event is invalid (naive datetime, wrong type, unknown mention target,
            negative count...); the message names it and nothing is written.
        BotDBError: whatever the database raised (typed), after rolling the batch back.

    Example:
        >>> async with db.transaction() as conn:
        ...     counts = await write_events(conn, [MessageCreated(...), ReactionAdded(...)])
    """
    if platform not in ("discord", "telegram"):
        raise DataError(f"platform {platform!r} is not one of discord, telegram")
    if validate:
        validate_events(events)
    counts = WriteCounts()
    if not events:
        return counts
    batch = fold(events, platform)
    writer = _Writer(conn, is_postgres(conn), platform, counts)
    async with conn.transaction():
        await writer.write(batch)
    return counts


# -- table specifications ---------------------------------------------------------------------


def _keep_newer(table: str, column: str) -> str:
    """The later of the stored and the incoming value (NULL counts as older)."""
    old, new = f"{table}.{column}", f"excluded.{column}"
    return (
        f"CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
        f"WHEN {new} > {old} THEN {new} ELSE {old} END"
    )


# A reaction row holds its newest addition (created_at) and, when removed, its newest removal
# (removed_at). A row known only from a removal has created_at = removed_at: its addition is
# not known yet, so that time yields to a real addition's. The newest event decides whether
# it is removed (the stored row's newest is COALESCE(removed_at, created_at)); on a tie the
# incoming, later-arrived one wins.
_NEWER_EVENT = (
    "COALESCE(excluded.removed_at, excluded.created_at) >= "
    "COALESCE(reactions.removed_at, reactions.created_at)"
)
_REACTION_REMOVED_AT = (
    f"CASE WHEN {_NEWER_EVENT} THEN excluded.removed_at ELSE reactions.removed_at END"
)
_IN_ONLY_REMOVED = "excluded.created_at = excluded.removed_at"
_STORED_ONLY_REMOVED = "reactions.created_at = reactions.removed_at"
_REACTION_CREATED_AT = (
    f"CASE WHEN {_IN_ONLY_REMOVED} AND {_STORED_ONLY_REMOVED} THEN {_REACTION_REMOVED_AT} "
    f"WHEN {_IN_ONLY_REMOVED} THEN reactions.created_at "
    f"WHEN {_STORED_ONLY_REMOVED} THEN excluded.created_at "
    "WHEN excluded.created_at > reactions.created_at THEN excluded.created_at "
    "ELSE reactions.created_at END"
)


def _coalesce_new(table: str, columns: Iterable[str]) -> str:
    return ", ".join(f"{c} = COALESCE(excluded.{c}, {table}.{c})" for c in columns)


# -- the writer -------------------------------------------------------------------------------


class _Writer:
    """Writes one folded batch on one connection."""

    def __init__(self, conn: Connection, postgres: bool, platform: str, counts: WriteCounts):
        self.conn = conn
        self.postgres = postgres
        self.platform = platform
        self.counts = counts
        self.rows = RowWriter(conn, postgres, counts)
        self.now = self.rows.now

    async def _keyed_by_guild(self, table: str) -> bool:
        """Whether ``table``'s primary key is ``(id, guild_id)``, as ``botdb distribute``
        leaves it on Citus, rather than ``(id)``. Read from the catalog each time it matters
        (a batch carrying channel details): the database may be distributed while the bot
        runs."""
        if not self.postgres:
            return False
        width = await self.conn.fetchval(
            "SELECT cardinality(conkey) FROM pg_constraint "
            "WHERE conrelid = to_regclass($1) AND contype = 'p'",
            table,
        )
        return bool(width == 2)

    async def write(self, batch: Batch) -> None:
        await self._entities(batch)
        await self._messages(batch)
        await self._reactions(batch)
        await self._members(batch)
        await self._commands(batch)

    # -- guilds, users, channels, threads, roles ------------------------------------------

    async def _entities(self, batch: Batch) -> None:
        now = self.now
        await self.rows.upsert(
            "guilds",
            ("id", "platform", "name", "chat_type"),
            [(g.id, g.platform, g.name, g.chat_type) for g in batch.guilds.values()],
            "ON CONFLICT (id) DO UPDATE SET platform = excluded.platform, "
            f"{_coalesce_new('guilds', ('name', 'chat_type'))}, updated_at = {now}",
        )
        await self.rows.upsert(
            "guilds",
            ("id", "platform"),
            [(guild_id, self.platform) for guild_id in sorted(batch.bare_guilds)],
            "ON CONFLICT (id) DO NOTHING",
        )
        user_fields = ("username", "display_name", "first_name", "last_name")
        await self.rows.upsert(
            "users",
            ("id", "platform", *user_fields, "is_bot"),
            [
                (
                    u.id,
                    u.platform,
                    u.username,
                    u.display_name,
                    u.first_name,
                    u.last_name,
                    False if u.is_bot is None else u.is_bot,
                )
                for u in batch.users.values()
                if u.is_bot is not None
            ],
            "ON CONFLICT (id) DO UPDATE SET platform = excluded.platform, "
            f"{_coalesce_new('users', user_fields)}, is_bot = excluded.is_bot, "
            f"updated_at = {now}",
        )
        await self.rows.upsert(
            "users",
            ("id", "platform", *user_fields),
            [
                (u.id, u.platform, u.username, u.display_name, u.first_name, u.last_name)
                for u in batch.users.values()
                if u.is_bot is None
            ],
            "ON CONFLICT (id) DO UPDATE SET platform = excluded.platform, "
            f"{_coalesce_new('users', user_fields)}, updated_at = {now}",
        )
        await self.rows.upsert(
            "users",
            ("id", "platform"),
            [(user_id, self.platform) for user_id in sorted(batch.bare_users)],
            "ON CONFLICT (id) DO NOTHING",
        )
        await self.rows.upsert(
            "channels",
            ("id", "guild_id"),
            [(cid, gid) for cid, gid in sorted(batch.bare_channels.items())],
            # No conflict target: the key is (id) or, once distributed by guild (Citus),
            # (id, guild_id); the primary key is the only unique key either way.
            "ON CONFLICT DO NOTHING",
        )
        channel_fields = ("name", "parent_id")
        target = "ON CONFLICT (id) DO UPDATE SET guild_id = excluded.guild_id, "
        if batch.channels and await self._keyed_by_guild("channels"):
            # The distribution column cannot change: a channel stays in its guild's shard.
            target = "ON CONFLICT (id, guild_id) DO UPDATE SET "
        for typed in (True, False):
            columns = ("id", "guild_id", *channel_fields, *(("type",) if typed else ()))
            await self.rows.upsert(
                "channels",
                columns,
                [
                    (c.id, c.guild_id, c.name, c.parent_id, *((c.type,) if typed else ()))
                    for c in batch.channels.values()
                    if (c.type is not None) == typed
                ],
                target
                + f"{_coalesce_new('channels', channel_fields)}, "
                + ("type = excluded.type, " if typed else "")
                + f"updated_at = {now}",
            )
        await self.rows.upsert(
            "threads",
            ("id", "guild_id", "parent_id"),
            [(tid, gid, parent) for (tid, gid), parent in sorted(batch.bare_threads.items())],
            "ON CONFLICT (id, guild_id) DO NOTHING",
        )
        await self.rows.upsert(
            "threads",
            ("id", "guild_id", "parent_id", "name"),
            [(t.id, t.guild_id, t.parent_id, t.name) for t in batch.threads.values()],
            "ON CONFLICT (id, guild_id) DO UPDATE SET parent_id = excluded.parent_id, "
            f"{_coalesce_new('threads', ('name',))}, updated_at = {now}",
        )
        await self.rows.upsert(
            "roles",
            ("id", "guild_id", "name"),
            [(rid, gid, "") for rid, gid in sorted(batch.bare_roles.items())],
            "ON CONFLICT DO NOTHING",  # (id), or (id, guild_id) once distributed
        )

    # -- messages, attachments, mentions --------------------------------------------------

    async def _messages(self, batch: Batch) -> None:
        if not batch.messages:
            return
        plans = batch.messages
        replaced_attachments: dict[tuple[int, int], tuple[ev.AttachmentInfo, ...]] = {}
        replaced_mentions: dict[tuple[int, int], tuple[ev.MentionInfo, ...]] = {}
        columns = MESSAGE_COLUMNS
        platform = self.platform
        fresh = {key: fresh_row(value, platform) for key, value in plans.items()}
        if self.postgres:
            inserted = await self._insert_messages(list(fresh.values()), returning=True)
            new_keys = {(r[0], r[1]) for r in inserted}
            stored = await self._stored_messages([key for key in plans if key not in new_keys])
        else:
            stored = {}
            try:
                # Most batches hold only new messages: insert them all in a savepoint, and
                # only when some already existed (fewer rows inserted) undo it and read the
                # stored ones first. Reading first every time costs ~20% of the batch.
                async with self.conn.transaction():
                    written = self.counts.get("messages", 0)
                    await self._insert_messages(list(fresh.values()), returning=False)
                    if self.counts.get("messages", 0) - written != len(fresh):
                        self.counts["messages"] = written
                        raise _SomeStored
            except _SomeStored:
                stored = await self._stored_messages(list(plans))
                await self._insert_messages(
                    [row for key, row in fresh.items() if key not in stored], returning=False
                )
        for key, value in plans.items():
            if key in stored:
                continue
            attachments: tuple[ev.AttachmentInfo, ...] | None
            mentions: tuple[ev.MentionInfo, ...] | None
            if isinstance(value, ev.MessageCreated):  # no tuple per message on the hot path
                attachments, mentions = value.attachments, value.mentions
            else:
                attachments, mentions = fresh_children(value, platform)
            if attachments:
                replaced_attachments[key] = attachments
            if mentions:
                replaced_mentions[key] = mentions
        updates: list[tuple[Any, ...]] = []
        clear_attachments: list[tuple[Any, ...]] = []
        clear_mentions: list[tuple[Any, ...]] = []
        for key, existing in stored.items():
            row, attachments, mentions = merge_message(existing, as_plan(plans[key]), platform)
            if row != existing:
                updates.append(tuple(row[c] for c in columns[2:]) + key)
            if attachments is not None:
                clear_attachments.append((*key, len(attachments)))
                replaced_attachments[key] = attachments
            if mentions is not None:
                clear_mentions.append(key)
                replaced_mentions[key] = mentions
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns[2:], 1))
        n = len(columns) - 2
        extra = f"${columns.index('extra') - 1}"
        if self.postgres:
            assignments = assignments.replace(f"extra = {extra}", f"extra = {extra}::jsonb")
        await self.rows.execute_many(
            "messages",
            f"UPDATE messages SET {assignments} WHERE id = ${n + 1} AND guild_id = ${n + 2}",
            [_message_update_values(row) for row in updates],
        )
        await self.rows.execute_many(
            "attachments",
            "DELETE FROM attachments WHERE message_id = $1 AND guild_id = $2 AND position >= $3",
            clear_attachments,
        )
        await self.rows.execute_many(
            "mentions",
            "DELETE FROM mentions WHERE message_id = $1 AND guild_id = $2",
            clear_mentions,
        )
        await self._children(replaced_attachments, replaced_mentions)

    async def _insert_messages(self, rows: list[list[Any]], *, returning: bool) -> list[Any]:
        """Insert new message rows (plain ones narrow, the rest with every column)."""
        plain = len(PLAIN_MESSAGE_COLUMNS)
        found: list[Any] = []
        for columns, group in (
            (PLAIN_MESSAGE_COLUMNS, [row for row in rows if len(row) == plain]),
            (MESSAGE_COLUMNS, [row for row in rows if len(row) != plain]),
        ):
            found += await self.rows.upsert(
                "messages",
                columns,
                group,
                "ON CONFLICT (id, guild_id) DO NOTHING",
                returning="id, guild_id" if returning else None,
            )
        return found

    async def _stored_messages(
        self, keys: list[tuple[int, int]]
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """The stored rows of these messages (locked on PostgreSQL), as Python values."""
        found: dict[tuple[int, int], dict[str, Any]] = {}
        if not keys:
            return found
        names = ", ".join(MESSAGE_COLUMNS)
        if self.postgres:
            # One statement per guild: distributed by guild (Citus), a locking read must name
            # one guild (a multi-shard FOR UPDATE is refused). This is the rare path (a batch
            # retried, partial rows), so the extra round trips of a many-guild batch are cheap.
            ids: dict[int, list[int]] = {}
            for message_id, guild_id in keys:
                ids.setdefault(guild_id, []).append(message_id)
            rows = []
            for guild_id, message_ids in ids.items():
                rows.extend(
                    await self.conn.fetch(
                        f"SELECT {names} FROM messages WHERE guild_id = $1 "
                        "AND id = ANY($2::bigint[]) FOR UPDATE",
                        guild_id,
                        message_ids,
                    )
                )
        else:
            rows = []
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ", ".join(f"${i}" for i in range(1, len(chunk) + 1))
                rows.extend(
                    await self.conn.fetch(
                        f"SELECT {names} FROM messages WHERE id IN ({marks})",
                        *[k[0] for k in chunk],
                    )
                )
        wanted = set(keys)
        for record in rows:
            row = _python_row(record)
            key = (row["id"], row["guild_id"])
            if key in wanted:
                found[key] = row
        return found

    async def _children(
        self,
        attachments: dict[tuple[int, int], tuple[ev.AttachmentInfo, ...]],
        mentions: dict[tuple[int, int], tuple[ev.MentionInfo, ...]],
    ) -> None:
        columns = (
            "message_id",
            "guild_id",
            "position",
            "external_id",
            "file_id",
            "filename",
            "url",
            "content_type",
            "size",
            "width",
            "height",
        )
        rows = [
            (
                message_id,
                guild_id,
                a.position,
                a.external_id,
                a.file_id,
                a.filename,
                a.url,
                a.content_type,
                a.size,
                a.width,
                a.height,
            )
            for (message_id, guild_id), items in attachments.items()
            for a in {a.position: a for a in items}.values()
        ]
        updated = ", ".join(f"{c} = excluded.{c}" for c in columns[3:])
        await self.rows.upsert(
            "attachments",
            columns,
            rows,
            f"ON CONFLICT (message_id, guild_id, position) DO UPDATE SET {updated}",
        )
        mention_rows = sorted(
            {
                (message_id, guild_id, m.target_type, m.target_id)
                for (message_id, guild_id), items in mentions.items()
                for m in items
            }
        )
        await self.rows.upsert(
            "mentions",
            ("message_id", "guild_id", "target_type", "target_id"),
            mention_rows,
            "ON CONFLICT DO NOTHING",
        )

    # -- reactions ------------------------------------------------------------------------

    async def _reactions(self, batch: Batch) -> None:
        clears = [(at, message_id, guild_id, key) for message_id, guild_id, key, at in batch.clears]
        await self.rows.execute_many(
            "reactions",
            "UPDATE reactions SET removed_at = $1 WHERE message_id = $2 AND guild_id = $3 "
            "AND removed_at IS NULL AND created_at <= $1",
            [c[:3] for c in clears if c[3] is None],
        )
        await self.rows.execute_many(
            "reactions",
            "UPDATE reactions SET removed_at = $1 WHERE message_id = $2 AND guild_id = $3 "
            "AND emoji_key = $4 AND removed_at IS NULL AND created_at <= $1",
            [c for c in clears if c[3] is not None],
        )
        rows = []
        for (message_id, guild_id, _key, user_id), plan in batch.reactions.items():
            created_at, removed_at = plan.row_times()
            rows.append(
                (
                    message_id,
                    guild_id,
                    plan.channel_id,
                    user_id,
                    plan.emoji_id,
                    plan.emoji_name,
                    plan.animated,
                    created_at,
                    removed_at,
                )
            )
        await self.rows.upsert(
            "reactions",
            (
                "message_id",
                "guild_id",
                "channel_id",
                "user_id",
                "emoji_id",
                "emoji_name",
                "animated",
                "created_at",
                "removed_at",
            ),
            rows,
            "ON CONFLICT (message_id, guild_id, emoji_key, user_id) DO UPDATE SET "
            "channel_id = excluded.channel_id, emoji_name = excluded.emoji_name, "
            "animated = excluded.animated, "
            f"created_at = {_REACTION_CREATED_AT}, removed_at = {_REACTION_REMOVED_AT}",
        )
        await self.rows.upsert(
            "reaction_counts",
            (
                "message_id",
                "guild_id",
                "emoji_key",
                "channel_id",
                "emoji_id",
                "emoji_name",
                "animated",
                "count",
            ),
            [
                (
                    key[0],
                    key[1],
                    key[2],
                    c.channel_id,
                    c.emoji_id,
                    c.emoji_name,
                    c.animated,
                    c.count,
                )
                for key, c in batch.reaction_counts.items()
            ],
            "ON CONFLICT (message_id, guild_id, emoji_key) DO UPDATE SET "
            "channel_id = excluded.channel_id, emoji_id = excluded.emoji_id, "
            "emoji_name = excluded.emoji_name, animated = excluded.animated, "
            "count = excluded.count",
        )

    # -- members, join/leave logs, commands -----------------------------------------------

    async def _members(self, batch: Batch) -> None:
        presence_rows = []
        profile_rows = []
        for (guild_id, user_id), plan in batch.members.items():
            nick = plan.nick[1] if plan.nick is not None else None
            if plan.presence:
                presence_rows.append(
                    (
                        guild_id,
                        user_id,
                        nick,
                        plan.joined_at,
                        plan.left_at,
                        member_active(plan.joined_at, plan.left_at),
                    )
                )
            else:
                profile_rows.append((guild_id, user_id, nick))
        joined = _keep_newer("members", "joined_at")
        left = _keep_newer("members", "left_at")
        await self.rows.upsert(
            "members",
            ("guild_id", "user_id", "nick", "joined_at", "left_at", "is_active"),
            presence_rows,
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET "
            "nick = COALESCE(excluded.nick, members.nick), "
            f"joined_at = {joined}, left_at = {left}, "
            f"is_active = CASE WHEN ({left}) IS NULL THEN true WHEN ({joined}) IS NULL "
            f"THEN false WHEN ({joined}) >= ({left}) THEN true ELSE false END, "
            f"updated_at = {self.now}",
        )
        await self.rows.upsert(
            "members",
            ("guild_id", "user_id", "nick"),
            profile_rows,
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET "
            f"nick = COALESCE(excluded.nick, members.nick), updated_at = {self.now}",
        )
        with_roles = [(key, plan.roles[1]) for key, plan in batch.members.items() if plan.roles]
        await self.rows.execute_many(
            "member_roles",
            "DELETE FROM member_roles WHERE guild_id = $1 AND user_id = $2",
            [key for key, _roles in with_roles],
        )
        await self.rows.upsert(
            "member_roles",
            ("guild_id", "user_id", "role_id"),
            [(g, u, role) for (g, u), roles in with_roles for role in roles],
            "ON CONFLICT DO NOTHING",
        )
        await self.rows.upsert(
            "join_leave_logs",
            ("guild_id", "user_id", "event", "occurred_at"),
            sorted(batch.join_leave),
            "ON CONFLICT (guild_id, user_id, event, occurred_at) DO NOTHING",
        )

    async def _commands(self, batch: Batch) -> None:
        rows = [
            (
                c.user_id,
                c.command,
                c.started_at,
                c.guild_id,
                c.channel_id,
                dumps(c.args, "args").decode(),
                c.duration_ms,
                c.success,
                c.error,
            )
            for c in batch.commands.values()
        ]
        await self.rows.upsert(
            "command_history",
            (
                "user_id",
                "command",
                "started_at",
                "guild_id",
                "channel_id",
                "args",
                "duration_ms",
                "success",
                "error",
            ),
            rows,
            "ON CONFLICT (user_id, command, started_at) DO UPDATE SET args = excluded.args, "
            + _coalesce_new(
                "command_history", ("guild_id", "channel_id", "duration_ms", "success", "error")
            ),
        )


# -- values to and from the drivers -----------------------------------------------------------


def _message_update_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    index = MESSAGE_COLUMNS.index("extra") - 2
    return (*row[:index], json_text(row[index]), *row[index + 1 :])


_DATETIMES = {"created_at", "edited_at", "deleted_at"}
_BOOLS = {"deleted", "is_bot", "pinned", "partial"}


def _python_row(record: Any) -> dict[str, Any]:
    """A stored message row with the values the writer builds (aware datetimes, bools, dicts)."""
    row = dict(zip(MESSAGE_COLUMNS, tuple(record), strict=True))
    for name in _DATETIMES:
        value = row[name]
        if isinstance(value, str):
            row[name] = datetime.fromisoformat(value).replace(tzinfo=UTC)
    for name in _BOOLS:
        row[name] = bool(row[name])
    extra = row["extra"]
    if isinstance(extra, str | bytes):
        row["extra"] = orjson.loads(extra)
    return row
