"""Operations on a bot's database: init, info, backup/restore, optimize, integrity.

Every function takes a connected :class:`~botdb.Database`; the ``botdb`` command is a thin
layer over them (see ``docs/operations.md``).

Example:
    >>> from pathlib import Path
    >>> from botdb import ops
    >>> async with botdb.connect("sqlite:///bot.db") as db:
    ...     info = await ops.database_info(db)
    ...     result = await ops.backup(db, Path("backups"), keep=7)
    ...     report = await ops.optimize(db)
"""

from __future__ import annotations

from botdb.ops._common import (
    BackupError,
    BackupResult,
    BackupVerificationError,
    Progress,
    RestoreRefusedError,
    RestoreResult,
    list_backups,
)
from botdb.ops.backup import backup, restore
from botdb.ops.info import database_info, init, table_info
from botdb.ops.maintenance import (
    MESSAGE_TABLES,
    analyze,
    integrity,
    maintain_indexes,
    optimize,
    refresh_materialized_views,
)
from botdb.ops.partitions import ensure_partitions, partition_messages, retention

__all__ = [
    "MESSAGE_TABLES",
    "BackupError",
    "BackupResult",
    "BackupVerificationError",
    "Progress",
    "RestoreRefusedError",
    "RestoreResult",
    "analyze",
    "backup",
    "database_info",
    "ensure_partitions",
    "init",
    "integrity",
    "list_backups",
    "maintain_indexes",
    "optimize",
    "partition_messages",
    "refresh_materialized_views",
    "restore",
    "retention",
    "table_info",
]
