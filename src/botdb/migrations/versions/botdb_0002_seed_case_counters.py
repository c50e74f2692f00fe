"""Seed the case counters of guilds whose moderation cases were written without one.

A versioned data migration (the ``up``/``down`` pair of a bot's hand-written migrations, done
in the database and in the schema's own history). Cases imported from an older bot, or inserted with
raw SQL, leave ``guild_case_counters`` empty for their guild, and the next case would then be
numbered 1 again and collide with ``uq_moderation_cases_guild_id_case_number``. The upgrade
gives each such guild a counter at its highest case number.

The downgrade removes exactly the counters this revision added: it records them in
``kv_store`` (namespace ``botdb.migrations``, key = this revision), and removes a counter only
if it still holds the seeded number. A counter that has handed out numbers since is kept,
since removing it would make the next case number collide.

Revision ID: botdb_0002
Revises: botdb_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "botdb_0002"
down_revision: str | Sequence[str] | None = "botdb_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lightweight tables: a data migration must not import the models, which will have moved on
# by the time someone runs this revision.
counters = sa.table(
    "guild_case_counters",
    sa.column("guild_id", sa.BigInteger()),
    sa.column("last_case_number", sa.Integer()),
)
cases = sa.table(
    "moderation_cases",
    sa.column("guild_id", sa.BigInteger()),
    sa.column("case_number", sa.Integer()),
)
kv_store = sa.table(
    "kv_store",
    sa.column("namespace", sa.String()),
    sa.column("scope", sa.String()),
    sa.column("key", sa.String()),
    sa.column("value", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)
RECORD = {"namespace": "botdb.migrations", "scope": "global", "key": revision}


def _record_filter() -> sa.ColumnElement[bool]:
    return sa.and_(*(kv_store.c[name] == value for name, value in RECORD.items()))


def upgrade() -> None:
    """Give every guild that has cases but no counter a counter at its highest case."""
    conn = op.get_bind()
    has_counter = sa.exists().where(counters.c.guild_id == cases.c.guild_id)
    missing = conn.execute(
        sa.select(cases.c.guild_id, sa.func.max(cases.c.case_number))
        .where(~has_counter)
        .group_by(cases.c.guild_id)
        .order_by(cases.c.guild_id)
    ).all()
    if not missing:
        return
    conn.execute(
        counters.insert(),
        [{"guild_id": guild_id, "last_case_number": number} for guild_id, number in missing],
    )
    seeded = [[guild_id, number] for guild_id, number in missing]
    conn.execute(kv_store.insert().values(**RECORD, value={"seeded": seeded}))


def downgrade() -> None:
    """Remove the counters the upgrade added, unless they have been used since."""
    conn = op.get_bind()
    value = conn.execute(sa.select(kv_store.c.value).where(_record_filter())).scalar()
    if value is None:
        return
    for guild_id, number in value["seeded"]:
        conn.execute(
            counters.delete().where(
                counters.c.guild_id == guild_id, counters.c.last_case_number == number
            )
        )
    conn.execute(kv_store.delete().where(_record_filter()))
