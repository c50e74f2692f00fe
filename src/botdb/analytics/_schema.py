"""The summary objects the stats read, on both backends under the same names and shapes.

Every summary keeps counts per UTC hour (``hour`` is the hour's start), so the stats of any
period read a few rows per hour instead of the raw messages:

=============================  ============================================================
``stats_message_hourly``       ``guild_id, hour, channel_id, user_id, is_bot`` ->
                               ``messages, first_at, last_at`` (``user_id`` 0: author unknown)
``stats_reaction_hourly``      ``guild_id, hour, channel_id, emoji_key`` ->
                               ``emoji_id, emoji_name, reactions`` (the hour and channel of
                               the message reacted to; per message and emoji the larger of the
                               live reactions and the imported count)
``stats_reaction_user_hourly`` ``guild_id, user_id, hour`` -> ``reactions`` (live reactions a
                               user gave, by the reaction's own time)
``stats_member_hourly``        ``guild_id, hour`` -> ``joins, leaves``
=============================  ============================================================

* PostgreSQL: materialized views, each with a unique index, so they refresh ``CONCURRENTLY``
  (readers are never blocked); they are as current as their last refresh.
* SQLite: tables kept by triggers on ``messages``, ``reactions``, ``reaction_counts`` and
  ``join_leave_logs``, exact at every commit whoever writes (the recorder, the importers, raw
  SQL). A row inserted costs a fixed number of key lookups and UPSERTs (a message: one);
  the larger-of-two rule for reactions keeps a per-message helper, ``stats_reaction_message``
  (SQLite only). Moving a message to another hour or channel, or deleting it, also moves its
  per-emoji reaction counts; a hard DELETE that removes a bucket's first or last message
  re-reads that one hour of that author in that channel to correct ``first_at``/``last_at``.

Not kept: a later SQLite migration that rebuilds ``messages`` (or the reaction and join/leave
tables) in batch mode drops their triggers and must call :func:`create_triggers` again; on
PostgreSQL a column the views read cannot change type while they exist (drop, alter, and
:func:`create` again). ``messages.guild_id`` of a message that has reactions cannot change
(the reactions' foreign key refuses it), so the triggers do not follow such a move.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, MetaData, inspect

__all__ = [
    "SOURCE_TABLES",
    "SUMMARIES",
    "create",
    "create_triggers",
    "drop",
    "install",
    "sqlite_objects",
]

#: The objects the stats queries read (tables on SQLite, materialized views on PostgreSQL).
SUMMARIES: Final = (
    "stats_message_hourly",
    "stats_reaction_hourly",
    "stats_reaction_user_hourly",
    "stats_member_hourly",
)
#: The SQLite-only helper that holds, per message and emoji, the live and imported counts.
_HELPER: Final = "stats_reaction_message"
#: The tables the summaries are computed from.
SOURCE_TABLES: Final = ("messages", "reactions", "reaction_counts", "join_leave_logs")


def _hour(value: str) -> str:
    """SQLite: the UTC hour ``value`` (a stored timestamp) falls in, in the stored format."""
    return f"strftime('%Y-%m-%d %H:00:00.000000', {value})"


# -- PostgreSQL: materialized views --------------------------------------------------------

_PG_HOUR = "date_trunc('hour', {col}, 'UTC')"

#: name -> (query, the unique index's columns, the columns of further indexes).
_PG_VIEWS: Final[dict[str, tuple[str, str, list[str]]]] = {
    "stats_message_hourly": (
        f"SELECT guild_id, {_PG_HOUR.format(col='created_at')} AS hour, channel_id, "
        "COALESCE(author_id, 0) AS user_id, is_bot, count(*) AS messages, "
        "min(created_at) AS first_at, max(created_at) AS last_at "
        "FROM messages GROUP BY 1, 2, 3, 4, 5",
        "guild_id, hour, channel_id, user_id, is_bot",
        ["guild_id, user_id, hour"],
    ),
    "stats_reaction_hourly": (
        "WITH per_source AS ("
        " SELECT guild_id, message_id, emoji_key, max(emoji_id) AS emoji_id,"
        " max(emoji_name) AS emoji_name, count(*) FILTER (WHERE removed_at IS NULL) AS n"
        " FROM reactions GROUP BY guild_id, message_id, emoji_key"
        " UNION ALL"
        " SELECT guild_id, message_id, emoji_key, emoji_id, emoji_name, count"
        " FROM reaction_counts"
        "), per_message AS ("
        " SELECT guild_id, message_id, emoji_key, max(emoji_id) AS emoji_id,"
        " max(emoji_name) AS emoji_name, max(n) AS n"
        " FROM per_source GROUP BY guild_id, message_id, emoji_key"
        ") "
        f"SELECT m.guild_id, {_PG_HOUR.format(col='m.created_at')} AS hour, m.channel_id, "
        "p.emoji_key, max(p.emoji_id) AS emoji_id, max(p.emoji_name) AS emoji_name, "
        "sum(p.n)::bigint AS reactions "
        "FROM per_message p JOIN messages m ON m.id = p.message_id AND m.guild_id = p.guild_id "
        "WHERE p.n > 0 GROUP BY 1, 2, 3, 4",
        "guild_id, hour, channel_id, emoji_key",
        [],
    ),
    "stats_reaction_user_hourly": (
        f"SELECT guild_id, user_id, {_PG_HOUR.format(col='created_at')} AS hour, "
        "count(*) AS reactions FROM reactions WHERE removed_at IS NULL GROUP BY 1, 2, 3",
        "guild_id, user_id, hour",
        [],
    ),
    "stats_member_hourly": (
        f"SELECT guild_id, {_PG_HOUR.format(col='occurred_at')} AS hour, "
        "count(*) FILTER (WHERE event = 'join') AS joins, "
        "count(*) FILTER (WHERE event = 'leave') AS leaves "
        "FROM join_leave_logs GROUP BY 1, 2",
        "guild_id, hour",
        [],
    ),
}


def _postgres_create() -> list[str]:
    statements: list[str] = []
    for name, (query, unique, plain) in _PG_VIEWS.items():
        statements.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} AS {query}")
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS ux_{name} ON {name} ({unique})")
        for columns in plain:
            suffix = "_".join(c.strip() for c in columns.split(","))
            statements.append(
                f"CREATE INDEX IF NOT EXISTS ix_{name}_{suffix} ON {name} ({columns})"
            )
    return statements


# -- SQLite: tables and triggers -----------------------------------------------------------

_SQLITE_TABLES: Final = {
    "stats_message_hourly": (
        "guild_id BIGINT NOT NULL, hour DATETIME NOT NULL, channel_id BIGINT NOT NULL, "
        "user_id BIGINT NOT NULL, is_bot BOOLEAN NOT NULL, messages INTEGER NOT NULL, "
        "first_at DATETIME NOT NULL, last_at DATETIME NOT NULL, "
        "PRIMARY KEY (guild_id, hour, channel_id, user_id, is_bot)"
    ),
    "stats_reaction_hourly": (
        "guild_id BIGINT NOT NULL, hour DATETIME NOT NULL, channel_id BIGINT NOT NULL, "
        "emoji_key VARCHAR(255) NOT NULL, emoji_id BIGINT, emoji_name VARCHAR(255) NOT NULL, "
        "reactions INTEGER NOT NULL, PRIMARY KEY (guild_id, hour, channel_id, emoji_key)"
    ),
    "stats_reaction_user_hourly": (
        "guild_id BIGINT NOT NULL, user_id BIGINT NOT NULL, hour DATETIME NOT NULL, "
        "reactions INTEGER NOT NULL, PRIMARY KEY (guild_id, user_id, hour)"
    ),
    "stats_member_hourly": (
        "guild_id BIGINT NOT NULL, hour DATETIME NOT NULL, joins INTEGER NOT NULL, "
        "leaves INTEGER NOT NULL, PRIMARY KEY (guild_id, hour)"
    ),
    _HELPER: (
        "guild_id BIGINT NOT NULL, message_id BIGINT NOT NULL, emoji_key VARCHAR(255) NOT NULL, "
        "emoji_id BIGINT, emoji_name VARCHAR(255) NOT NULL, live INTEGER NOT NULL, "
        "imported INTEGER NOT NULL, PRIMARY KEY (guild_id, message_id, emoji_key)"
    ),
}
#: One member's buckets, covering what the per-member stats read. Covering matters: with no
#: planner statistics SQLite prefers the primary key's ``guild_id = ?`` range over a plain
#: ``(guild_id, user_id, hour)`` index, and reads the whole guild (0.25-0.7 s for one member
#: of a 1M-message guild, against 0.1 ms here; all-time top members 1.1 s -> 75 ms).
_SQLITE_INDEXES: Final = {
    "ix_stats_message_hourly_guild_id_user_id_hour": (
        "stats_message_hourly (guild_id, user_id, hour, channel_id, messages, first_at, last_at)"
    ),
}

# A message counted in, or out of, its hourly bucket.
_MESSAGE_KEY = (
    "guild_id = {r}.guild_id AND hour = " + _hour("{r}.created_at") + " AND channel_id = "
    "{r}.channel_id AND user_id = COALESCE({r}.author_id, 0) AND is_bot = {r}.is_bot"
)
_MESSAGE_IN = (
    "INSERT INTO stats_message_hourly (guild_id, hour, channel_id, user_id, is_bot, messages, "
    "first_at, last_at) VALUES (NEW.guild_id, " + _hour("NEW.created_at") + ", NEW.channel_id, "
    "COALESCE(NEW.author_id, 0), NEW.is_bot, 1, NEW.created_at, NEW.created_at) "
    "ON CONFLICT (guild_id, hour, channel_id, user_id, is_bot) DO UPDATE SET "
    "messages = messages + 1, first_at = min(first_at, excluded.first_at), "
    "last_at = max(last_at, excluded.last_at);"
)
_MESSAGE_OUT = (
    "UPDATE stats_message_hourly SET messages = messages - 1 WHERE "
    + _MESSAGE_KEY.format(r="OLD")
    + ";\nDELETE FROM stats_message_hourly WHERE messages <= 0 AND "
    + _MESSAGE_KEY.format(r="OLD")
    + ";\nUPDATE stats_message_hourly SET "
    "first_at = (SELECT min(m.created_at) FROM messages m WHERE {same}), "
    "last_at = (SELECT max(m.created_at) FROM messages m WHERE {same}) "
    "WHERE (first_at = OLD.created_at OR last_at = OLD.created_at) AND "
    + _MESSAGE_KEY.format(r="OLD")
    + ";"
).replace(
    "{same}",
    "m.author_id IS OLD.author_id AND m.guild_id = OLD.guild_id "
    "AND m.channel_id = OLD.channel_id AND m.is_bot = OLD.is_bot "
    "AND m.created_at >= " + _hour("OLD.created_at") + " AND m.created_at < "
    "strftime('%Y-%m-%d %H:00:00.000000', OLD.created_at, '+1 hour')",
)


def _reaction_shift(r: str, live: str, imported: str, guard: str, *, adding: bool) -> str:
    """Apply a change of (``live``, ``imported``) to one message-emoji of row ``r``, and the
    change of its larger-of-two to the hourly bucket of the message it is on."""
    key = f"guild_id = {r}.guild_id AND message_id = {r}.message_id AND emoji_key = {r}.emoji_key"
    if adding:
        helper = (
            f"INSERT INTO {_HELPER} (guild_id, message_id, emoji_key, emoji_id, emoji_name, "
            f"live, imported) SELECT {r}.guild_id, {r}.message_id, {r}.emoji_key, {r}.emoji_id, "
            f"{r}.emoji_name, {live}, {imported} WHERE {guard} "
            "ON CONFLICT (guild_id, message_id, emoji_key) DO UPDATE SET "
            "live = live + excluded.live, imported = imported + excluded.imported, "
            "emoji_name = max(emoji_name, excluded.emoji_name);"
        )
    else:
        helper = (
            f"UPDATE {_HELPER} SET live = live + {live}, imported = imported + {imported} "
            f"WHERE {guard} AND {key};"
        )
    after = "max(h.live, h.imported)"
    before = f"max(h.live - ({live}), h.imported - ({imported}))"
    bucket = (
        "INSERT INTO stats_reaction_hourly (guild_id, hour, channel_id, emoji_key, emoji_id, "
        f"emoji_name, reactions) SELECT h.guild_id, {_hour('m.created_at')}, m.channel_id, "
        f"h.emoji_key, h.emoji_id, h.emoji_name, {after} - {before} FROM {_HELPER} h "
        "JOIN messages m ON m.id = h.message_id AND m.guild_id = h.guild_id "
        f"WHERE {guard} AND h.guild_id = {r}.guild_id AND h.message_id = {r}.message_id "
        f"AND h.emoji_key = {r}.emoji_key AND {after} <> {before} "
        "ON CONFLICT (guild_id, hour, channel_id, emoji_key) DO UPDATE SET "
        "reactions = reactions + excluded.reactions, "
        "emoji_name = max(emoji_name, excluded.emoji_name);"
    )
    if adding:
        return f"{helper}\n{bucket}"
    tidy = (
        f"DELETE FROM stats_reaction_hourly WHERE reactions = 0 AND guild_id = {r}.guild_id "
        f"AND emoji_key = {r}.emoji_key AND (hour, channel_id) IN (SELECT "
        f"{_hour('m.created_at')}, m.channel_id FROM messages m WHERE m.id = {r}.message_id "
        f"AND m.guild_id = {r}.guild_id);\n"
        f"DELETE FROM {_HELPER} WHERE live = 0 AND imported = 0 AND {key};"
    )
    return f"{helper}\n{bucket}\n{tidy}"


def _given(r: str, delta: int) -> str:
    """The live reaction ``r`` counted in (+1) or out (-1) of its user's hourly bucket."""
    if delta > 0:
        return (
            "INSERT INTO stats_reaction_user_hourly (guild_id, user_id, hour, reactions) "
            f"SELECT {r}.guild_id, {r}.user_id, {_hour(f'{r}.created_at')}, 1 "
            f"WHERE {r}.removed_at IS NULL ON CONFLICT (guild_id, user_id, hour) "
            "DO UPDATE SET reactions = reactions + 1;"
        )
    key = f"guild_id = {r}.guild_id AND user_id = {r}.user_id AND hour = {_hour(f'{r}.created_at')}"
    return (
        f"UPDATE stats_reaction_user_hourly SET reactions = reactions - 1 "
        f"WHERE {r}.removed_at IS NULL AND {key};\n"
        f"DELETE FROM stats_reaction_user_hourly WHERE reactions <= 0 AND {key};"
    )


def _member(r: str, sign: str) -> str:
    joins = f"{sign}({r}.event = 'join')"
    leaves = f"{sign}({r}.event = 'leave')"
    if sign == "+":
        return (
            "INSERT INTO stats_member_hourly (guild_id, hour, joins, leaves) VALUES "
            f"({r}.guild_id, {_hour(f'{r}.occurred_at')}, {joins}, {leaves}) "
            "ON CONFLICT (guild_id, hour) DO UPDATE SET joins = joins + excluded.joins, "
            "leaves = leaves + excluded.leaves;"
        )
    key = f"guild_id = {r}.guild_id AND hour = {_hour(f'{r}.occurred_at')}"
    return (
        f"UPDATE stats_member_hourly SET joins = joins {joins}, leaves = leaves {leaves} "
        f"WHERE {key};\n"
        f"DELETE FROM stats_member_hourly WHERE joins <= 0 AND leaves <= 0 AND {key};"
    )


def _move_message_reactions(r: str, sign: str, guard: str) -> str:
    """Every reaction contribution of message ``r`` added to (``+``) or taken from (``-``)
    the bucket of ``r``'s hour and channel."""
    return (
        "INSERT INTO stats_reaction_hourly (guild_id, hour, channel_id, emoji_key, emoji_id, "
        f"emoji_name, reactions) SELECT h.guild_id, {_hour(f'{r}.created_at')}, "
        f"{r}.channel_id, h.emoji_key, h.emoji_id, h.emoji_name, "
        f"{sign}max(h.live, h.imported) FROM {_HELPER} h WHERE {guard} AND "
        f"h.guild_id = {r}.guild_id AND h.message_id = {r}.id AND max(h.live, h.imported) > 0 "
        "ON CONFLICT (guild_id, hour, channel_id, emoji_key) DO UPDATE SET "
        "reactions = reactions + excluded.reactions;"
        + (
            ""
            if sign == "+"
            else (
                f"\nDELETE FROM stats_reaction_hourly WHERE reactions = 0 AND "
                f"guild_id = {r}.guild_id AND channel_id = {r}.channel_id AND "
                f"hour = {_hour(f'{r}.created_at')};"
            )
        )
    )


_MESSAGE_MOVED = (
    "OLD.guild_id IS NOT NEW.guild_id OR OLD.channel_id IS NOT NEW.channel_id OR "
    "OLD.author_id IS NOT NEW.author_id OR OLD.created_at IS NOT NEW.created_at OR "
    "OLD.is_bot IS NOT NEW.is_bot"
)
_HOUR_OR_CHANNEL_MOVED = (
    f"({_hour('OLD.created_at')} IS NOT {_hour('NEW.created_at')} "
    "OR OLD.channel_id IS NOT NEW.channel_id)"
)
_REACTION_CHANGED = (
    "OLD.removed_at IS NOT NEW.removed_at OR OLD.created_at IS NOT NEW.created_at OR "
    "OLD.message_id IS NOT NEW.message_id OR OLD.guild_id IS NOT NEW.guild_id OR "
    "OLD.emoji_key IS NOT NEW.emoji_key OR OLD.user_id IS NOT NEW.user_id"
)
_COUNT_CHANGED = (
    "OLD.count IS NOT NEW.count OR OLD.message_id IS NOT NEW.message_id OR "
    "OLD.guild_id IS NOT NEW.guild_id OR OLD.emoji_key IS NOT NEW.emoji_key"
)

#: name -> (timing and event, WHEN condition or None, body).
_SQLITE_TRIGGERS: Final = {
    "stats_messages_insert": ("AFTER INSERT ON messages", None, _MESSAGE_IN),
    "stats_messages_update": (
        "AFTER UPDATE OF guild_id, channel_id, author_id, created_at, is_bot ON messages",
        _MESSAGE_MOVED,
        "\n".join(
            [
                _MESSAGE_OUT,
                _MESSAGE_IN,
                _move_message_reactions("OLD", "-", _HOUR_OR_CHANNEL_MOVED),
                _move_message_reactions("NEW", "+", _HOUR_OR_CHANNEL_MOVED),
            ]
        ),
    ),
    # Before the row goes (and before the foreign keys cascade to its reactions): take the
    # message's reaction contributions out while its hour and channel can still be read.
    "stats_messages_before_delete": (
        "BEFORE DELETE ON messages",
        None,
        _move_message_reactions("OLD", "-", "1")
        + f"\nDELETE FROM {_HELPER} WHERE guild_id = OLD.guild_id AND message_id = OLD.id;",
    ),
    "stats_messages_delete": ("AFTER DELETE ON messages", None, _MESSAGE_OUT),
    "stats_reactions_insert": (
        "AFTER INSERT ON reactions",
        None,
        _reaction_shift("NEW", "1", "0", "NEW.removed_at IS NULL", adding=True)
        + "\n"
        + _given("NEW", +1),
    ),
    "stats_reactions_update": (
        "AFTER UPDATE ON reactions",
        _REACTION_CHANGED,
        "\n".join(
            [
                _reaction_shift("OLD", "-1", "0", "OLD.removed_at IS NULL", adding=False),
                _given("OLD", -1),
                _reaction_shift("NEW", "1", "0", "NEW.removed_at IS NULL", adding=True),
                _given("NEW", +1),
            ]
        ),
    ),
    "stats_reactions_delete": (
        "AFTER DELETE ON reactions",
        None,
        _reaction_shift("OLD", "-1", "0", "OLD.removed_at IS NULL", adding=False)
        + "\n"
        + _given("OLD", -1),
    ),
    "stats_reaction_counts_insert": (
        "AFTER INSERT ON reaction_counts",
        None,
        _reaction_shift("NEW", "0", "NEW.count", "1", adding=True),
    ),
    "stats_reaction_counts_update": (
        "AFTER UPDATE ON reaction_counts",
        _COUNT_CHANGED,
        _reaction_shift("OLD", "0", "-OLD.count", "1", adding=False)
        + "\n"
        + _reaction_shift("NEW", "0", "NEW.count", "1", adding=True),
    ),
    "stats_reaction_counts_delete": (
        "AFTER DELETE ON reaction_counts",
        None,
        _reaction_shift("OLD", "0", "-OLD.count", "1", adding=False),
    ),
    "stats_join_leave_logs_insert": ("AFTER INSERT ON join_leave_logs", None, _member("NEW", "+")),
    "stats_join_leave_logs_update": (
        "AFTER UPDATE ON join_leave_logs",
        "OLD.guild_id IS NOT NEW.guild_id OR OLD.event IS NOT NEW.event OR "
        "OLD.occurred_at IS NOT NEW.occurred_at",
        _member("OLD", "-") + "\n" + _member("NEW", "+"),
    ),
    "stats_join_leave_logs_delete": ("AFTER DELETE ON join_leave_logs", None, _member("OLD", "-")),
}

# Filling the tables from rows already there (the same answers the triggers keep).
_SQLITE_BACKFILL: Final = (
    "INSERT INTO stats_message_hourly (guild_id, hour, channel_id, user_id, is_bot, messages, "
    f"first_at, last_at) SELECT guild_id, {_hour('created_at')}, channel_id, "
    "COALESCE(author_id, 0), is_bot, count(*), min(created_at), max(created_at) "
    "FROM messages GROUP BY 1, 2, 3, 4, 5",
    f"INSERT INTO {_HELPER} (guild_id, message_id, emoji_key, emoji_id, emoji_name, live, "
    "imported) SELECT guild_id, message_id, emoji_key, max(emoji_id), max(emoji_name), "
    "sum(live), sum(imported) FROM ("
    " SELECT guild_id, message_id, emoji_key, emoji_id, emoji_name,"
    " removed_at IS NULL AS live, 0 AS imported FROM reactions"
    " UNION ALL"
    " SELECT guild_id, message_id, emoji_key, emoji_id, emoji_name, 0, count"
    " FROM reaction_counts"
    ") GROUP BY 1, 2, 3 HAVING sum(live) > 0 OR sum(imported) > 0",
    "INSERT INTO stats_reaction_hourly (guild_id, hour, channel_id, emoji_key, emoji_id, "
    f"emoji_name, reactions) SELECT m.guild_id, {_hour('m.created_at')}, m.channel_id, "
    "h.emoji_key, max(h.emoji_id), max(h.emoji_name), sum(max(h.live, h.imported)) "
    f"FROM {_HELPER} h JOIN messages m ON m.id = h.message_id AND m.guild_id = h.guild_id "
    "WHERE max(h.live, h.imported) > 0 GROUP BY 1, 2, 3, 4",
    "INSERT INTO stats_reaction_user_hourly (guild_id, user_id, hour, reactions) "
    f"SELECT guild_id, user_id, {_hour('created_at')}, count(*) FROM reactions "
    "WHERE removed_at IS NULL GROUP BY 1, 2, 3",
    "INSERT INTO stats_member_hourly (guild_id, hour, joins, leaves) "
    f"SELECT guild_id, {_hour('occurred_at')}, sum(event = 'join'), sum(event = 'leave') "
    "FROM join_leave_logs GROUP BY 1, 2",
)


def _trigger_sql(name: str) -> str:
    timing, when, body = _SQLITE_TRIGGERS[name]
    condition = f" WHEN {when}" if when else ""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} {timing} FOR EACH ROW{condition}\nBEGIN\n{body}\nEND"
    )


def sqlite_objects() -> dict[str, list[str]]:
    """The SQLite summary objects by kind (``table``, ``index``, ``trigger``)."""
    return {
        "table": [*SUMMARIES, _HELPER],
        "index": list(_SQLITE_INDEXES),
        "trigger": list(_SQLITE_TRIGGERS),
    }


def create_triggers(conn: Connection) -> None:
    """(Re)create the SQLite triggers that keep the summary tables (after a batch rebuild)."""
    for name in _SQLITE_TRIGGERS:
        conn.exec_driver_sql(_trigger_sql(name))


def create(conn: Connection) -> None:
    """Create the summary objects on ``conn`` and fill them from the rows already there.

    Idempotent: objects that exist are left as they are (and not filled again).
    """
    if conn.dialect.name == "postgresql":
        # A materialized view is filled when it is made (WITH DATA, the default).
        for statement in _postgres_create():
            conn.exec_driver_sql(statement)
        return
    missing = [name for name in _SQLITE_TABLES if not _sqlite_has(conn, "table", name)]
    for name in missing:
        conn.exec_driver_sql(f"CREATE TABLE {name} ({_SQLITE_TABLES[name]}) WITHOUT ROWID")
    for name, target in _SQLITE_INDEXES.items():
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
    if len(missing) == len(_SQLITE_TABLES):
        for statement in _SQLITE_BACKFILL:
            conn.exec_driver_sql(statement)
    elif missing:
        # Some tables were dropped by hand: rebuild all of them from the raw rows.
        for name in _SQLITE_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {name}")
        for statement in _SQLITE_BACKFILL:
            conn.exec_driver_sql(statement)
    create_triggers(conn)


def drop(conn: Connection) -> None:
    """Drop every summary object (and, on SQLite, the triggers that keep them)."""
    if conn.dialect.name == "postgresql":
        for name in reversed(SUMMARIES):
            conn.exec_driver_sql(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
        return
    for name in _SQLITE_TRIGGERS:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    for name in _SQLITE_TABLES:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def install(conn: Connection, metadata: MetaData) -> None:
    """Create the summary objects when ``metadata`` holds every table they are made from
    and the database has them (what ``Database.create_tables`` calls after ``create_all``)."""
    if not all(name in metadata.tables for name in SOURCE_TABLES):
        return
    existing = set(inspect(conn).get_table_names())
    if all(name in existing for name in SOURCE_TABLES):
        create(conn)


def _sqlite_has(conn: Connection, kind: str, name: str) -> bool:
    row = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)
    ).first()
    return row is not None
