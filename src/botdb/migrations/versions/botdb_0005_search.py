"""Full-text search over messages, and indexes that keep every message page one index range.

* Search: on SQLite an FTS5 external-content table ``messages_fts`` over ``messages`` with the
  three triggers that keep it in step; on PostgreSQL a GIN index on
  ``to_tsvector('simple', content)`` with ASCII punctuation turned into spaces. Existing
  messages are indexed by the upgrade (FTS5 ``rebuild``; building the GIN index).
* Paging: each filter bots page messages by (guild, channel, author, thread) gets an index
  that goes on with the page order (``id`` or ``created_at``) and the rest of the key, so a
  keyset page never sorts the rows of a whole guild. Mentions by target and reactions by user
  or guild likewise. The descending indexes of earlier revisions become ascending ones (both
  backends scan them backwards).

The statements are written out here, not imported from the models, which will have moved on
by the time someone runs this revision.

Revision ID: botdb_0005
Revises: botdb_0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "botdb_0005"
down_revision: str | Sequence[str] | None = "botdb_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.column("deleted") == sa.false()
_IN_THREAD = sa.column("thread_id").is_not(None)

#: name -> (table, columns, WHERE of a partial index or None), after this revision.
_NEW: dict[str, tuple[str, list[str], sa.ColumnElement[bool] | None]] = {
    "ix_messages_guild_id_id": ("messages", ["guild_id", "id"], None),
    "ix_messages_guild_id_created_at": ("messages", ["guild_id", "created_at", "id"], None),
    "ix_messages_channel_id_id": ("messages", ["channel_id", "id", "guild_id"], None),
    "ix_messages_channel_id_created_at": (
        "messages",
        ["channel_id", "created_at", "id", "guild_id"],
        None,
    ),
    "ix_messages_author_id_id": ("messages", ["author_id", "id", "guild_id"], None),
    "ix_messages_author_id_created_at": (
        "messages",
        ["author_id", "created_at", "id", "guild_id"],
        None,
    ),
    "ix_messages_live_channel_id_created_at": (
        "messages",
        ["channel_id", "created_at", "id", "guild_id"],
        _LIVE,
    ),
    "ix_messages_thread_id_id": ("messages", ["thread_id", "guild_id", "id"], _IN_THREAD),
    "ix_messages_thread_id_created_at": (
        "messages",
        ["thread_id", "guild_id", "created_at", "id"],
        _IN_THREAD,
    ),
    "ix_mentions_target_id_message_id": (
        "mentions",
        ["target_id", "message_id", "guild_id", "target_type"],
        None,
    ),
    "ix_reactions_user_id_created_at": ("reactions", ["user_id", "created_at", "id"], None),
    "ix_reactions_user_id_id": ("reactions", ["user_id", "id"], None),
    "ix_reactions_guild_id_id": ("reactions", ["guild_id", "id"], None),
}

_DESC: sa.ColumnElement[object] = sa.literal_column("created_at DESC")
#: The same, before this revision.
_OLD: dict[str, tuple[str, list[str | sa.ColumnElement[object]], sa.ColumnElement[bool] | None]] = {
    "ix_messages_channel_id_created_at": ("messages", ["channel_id", _DESC], None),
    "ix_messages_author_id_created_at": ("messages", ["author_id", _DESC], None),
    "ix_messages_guild_id_created_at": ("messages", ["guild_id", _DESC], None),
    "ix_messages_live_channel_id_created_at": ("messages", ["channel_id", _DESC], _LIVE),
    "ix_messages_thread_id_guild_id_created_at": (
        "messages",
        ["thread_id", "guild_id", "created_at"],
        _IN_THREAD,
    ),
    "ix_mentions_target_id_target_type": ("mentions", ["target_id", "target_type"], None),
    "ix_reactions_user_id_created_at": ("reactions", ["user_id", "created_at"], None),
}

_FTS_CREATE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, "
    "content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages "
    "WHEN old.content IS NOT new.content BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content); END",
    # Index the messages already there.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
_FTS_DROP = [
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TABLE IF EXISTS messages_fts",
]
_GIN = (
    "CREATE INDEX IF NOT EXISTS ix_messages_content_search ON messages USING gin "
    "(to_tsvector('simple'::regconfig, translate(content, "
    "'!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~'::text, '                                '::text)))"
)


def _create(
    indexes: dict[str, tuple[str, list[str], sa.ColumnElement[bool] | None]]
    | dict[str, tuple[str, list[str | sa.ColumnElement[object]], sa.ColumnElement[bool] | None]],
) -> None:
    for name, (table, columns, where) in indexes.items():
        op.create_index(name, table, list(columns), sqlite_where=where, postgresql_where=where)


def _drop(indexes: dict[str, tuple[str, object, object]]) -> None:
    for name, (table, _, _) in indexes.items():
        op.drop_index(name, table_name=table)


def upgrade() -> None:
    """Apply this revision."""
    _drop(dict(_OLD))
    _create(_NEW)
    if op.get_bind().dialect.name == "sqlite":
        for statement in _FTS_CREATE:
            op.execute(statement)
    else:
        op.execute(_GIN)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "sqlite":
        for statement in _FTS_DROP:
            op.execute(statement)
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_content_search")
    _drop(dict(_NEW))
    _create(_OLD)
