"""What the operations modules share: errors, progress, file names, manifests, checksums."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from botdb import errors
from botdb.errors import ConfigurationError
from botdb.models._search import SEARCH_TABLES

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = [
    "BackupError",
    "BackupResult",
    "BackupVerificationError",
    "Progress",
    "RestoreRefusedError",
    "RestoreResult",
    "backup_name",
    "database_label",
    "list_backups",
    "read_manifest",
    "sha256_file",
    "write_private",
]

#: ``progress(phase, done, total)``: called as long work advances; ``total`` None when unknown.
Progress = Callable[[str, int, int | None], None]

MANIFEST_SUFFIX = ".json"
MANIFEST_FORMAT = "botdb-backup"
_TIMESTAMP = "%Y%m%dT%H%M%S.%fZ"
_EXTENSIONS = ("db", "dump", "jsonl.gz")
#: The backup files each backend writes (retention never touches the other backend's).
BACKEND_EXTENSIONS = {"sqlite": ("db",), "postgresql": ("dump", "jsonl.gz")}
#: The newest manifest version this botdb understands.
MANIFEST_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Bookkeeping tables that do not make a database "non-empty" for ``restore``.
# botdb_meta holds the cursor secret (botdb.repository._pagination), not the bot's data;
# botdb_invalidations is the cache's invalidation log on SQLite (botdb.cache._sqlite_log);
# SEARCH_TABLES are SQLite's full-text index over messages (FTS5 keeps a row of its own there).
BOOKKEEPING_TABLES = (
    frozenset({"alembic_version", "botdb_meta", "botdb_invalidations"}) | SEARCH_TABLES
)


# Defined with every other error in botdb.errors; importable from here too.
BackupError = errors.BackupError
BackupVerificationError = errors.BackupVerificationError
RestoreRefusedError = errors.RestoreRefusedError


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup.

    Attributes:
        path: the backup file (``<database>-<UTC timestamp>.<ext>``).
        manifest: the JSON manifest beside it (sha256, size, backend, row counts, version).
        size: the file's size in bytes.
        sha256: the file's SHA-256, hex.
        rows: row count of each table, as of the moment the backup is consistent with.
        took: seconds the backup took.
        method: ``"sqlite"`` (backup API), ``"pg_dump"`` (custom format) or ``"logical"``.
        deleted: older backups removed by retention (``keep``), with their manifests.
    """

    path: Path
    manifest: Path
    size: int
    sha256: str
    rows: dict[str, int]
    took: float
    method: str
    deleted: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values."""
        return {
            "path": str(self.path),
            "manifest": str(self.manifest),
            "size": self.size,
            "sha256": self.sha256,
            "rows": self.rows,
            "took": round(self.took, 3),
            "method": self.method,
            "deleted": [str(p) for p in self.deleted],
        }


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A finished restore.

    Attributes:
        source: the backup file restored.
        target: the database restored into (URL with the password masked).
        rows: row count of each table after the restore (equal to the manifest's).
        took: seconds the restore took.
        method: how the data went in (``"sqlite"``, ``"pg_restore"`` or ``"logical"``).
    """

    source: Path
    target: str
    rows: dict[str, int]
    took: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values."""
        return {
            "source": str(self.source),
            "target": self.target,
            "rows": self.rows,
            "took": round(self.took, 3),
            "method": self.method,
        }


def database_label(db: OpsDatabase) -> str:
    """The database's name for backup files: the SQLite file's stem or the PostgreSQL
    database name, reduced to ``[A-Za-z0-9_.-]`` (never a host, user or password)."""
    url = db.settings.url
    if url.backend == "sqlite":
        raw = "memory" if url.is_memory else Path(url.path).stem
    else:
        raw = url.database
    label = _UNSAFE.sub("_", raw).strip("._-")
    return label or "database"


def sqlite_location(db: OpsDatabase) -> str:
    """The SQLite database's absolute path (``:memory:`` for an in-memory one)."""
    url = db.settings.url
    return ":memory:" if url.is_memory else os.path.abspath(url.path)  # a string operation


def backup_name(label: str, extension: str, now: dt.datetime | None = None) -> str:
    """``<label>-<UTC timestamp>.<extension>``, e.g. ``bot-20250101T120000.000000Z.db``."""
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    return f"{label}-{moment.astimezone(dt.UTC).strftime(_TIMESTAMP)}.{extension}"


def list_backups(
    out_dir: Path, label: str, extensions: tuple[str, ...] = _EXTENSIONS
) -> list[tuple[dt.datetime, Path]]:
    """The backups of ``label`` in ``out_dir`` (files ending in one of ``extensions``),
    newest first (manifests not included)."""
    pattern_ext = "|".join(map(re.escape, extensions))
    pattern = re.compile(rf"{re.escape(label)}-(\d{{8}}T\d{{6}}\.\d{{6}}Z)\.({pattern_ext})")
    found: list[tuple[dt.datetime, Path]] = []
    for entry in out_dir.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file():
            moment = dt.datetime.strptime(match.group(1), _TIMESTAMP).replace(tzinfo=dt.UTC)
            found.append((moment, entry))
    found.sort(key=lambda item: item[0], reverse=True)
    return found


def apply_retention(
    out_dir: Path, label: str, keep: int, extensions: tuple[str, ...] = _EXTENSIONS
) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``label`` (files ending in one of
    ``extensions``) and their manifests."""
    deleted: list[Path] = []
    for _, path in list_backups(out_dir, label, extensions)[keep:]:
        for victim in (path, manifest_path(path)):
            try:
                victim.unlink()
            except FileNotFoundError:
                continue
            deleted.append(victim)
    return deleted


def manifest_path(path: Path) -> Path:
    """Where the manifest of backup ``path`` lives: ``<file>.json``."""
    return path.with_name(path.name + MANIFEST_SUFFIX)


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB blocks. Blocking: run in a thread."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


#: A new file of our own: never an existing file, never through a symlink planted in its place.
_CREATE_NEW = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)


def create_private(path: Path) -> None:
    """Create an empty file readable by its owner only (0600); fail if it exists (also as a
    symlink: its target is never opened)."""
    fd = os.open(path, _CREATE_NEW, 0o600)
    os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) through a temporary file renamed into place."""
    write_replacing(path, data, mode=0o600)


def write_replacing(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` (with ``mode``) through a temporary file renamed into place:
    readers see the old file or the new one, never a part.

    The temporary file has a random name and is created exclusively (``O_EXCL|O_NOFOLLOW``):
    a file or symlink planted under that name makes this fail instead of being written through.
    """
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    fd = os.open(temp, _CREATE_NEW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_out_dir(out_dir: Path) -> Path:
    """Create the backup directory (0700) if needed; it must be a directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"the backup directory is a file: {out_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the backup directory {out_dir}: {exc}") from exc
    return out_dir


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check the manifest beside backup ``path``. Blocking: run in a thread.

    Raises:
        BackupError: the backup file or its manifest is missing or not a botdb manifest.
    """
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    where = manifest_path(path)
    try:
        manifest = orjson.loads(where.read_bytes())
    except FileNotFoundError as exc:
        raise BackupError(
            f"the manifest {where.name} is missing beside {path.name}: "
            "the backup cannot be verified"
        ) from exc
    except orjson.JSONDecodeError as exc:
        raise BackupVerificationError(f"the manifest {where} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot read the manifest {where}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{where} is not a botdb backup manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BackupVerificationError(f"the manifest {where} has no valid 'version'")
    if version > MANIFEST_VERSION:
        raise BackupError(
            f"{path.name} was made by a newer botdb ({manifest.get('botdb_version')!r}, "
            f"manifest version {version}): upgrade botdb to restore it; nothing was restored"
        )
    for key, kind in (("sha256", str), ("size", int), ("backend", str), ("method", str)):
        if not isinstance(manifest.get(key), kind):
            raise BackupVerificationError(f"the manifest {where} has no valid {key!r}")
    rows = manifest.get("rows")
    if not isinstance(rows, dict) or not all(isinstance(v, int) for v in rows.values()):
        raise BackupVerificationError(f"the manifest {where} has no valid 'rows'")
    return manifest


def verify_checksum(path: Path, manifest: dict[str, Any]) -> None:
    """Compare the file with its manifest's size and SHA-256. Blocking: run in a thread.

    Raises:
        BackupVerificationError: the file is truncated, extended or corrupted.
    """
    digest, size = sha256_file(path)
    if size != manifest["size"]:
        raise BackupVerificationError(
            f"{path.name} is {size} bytes but its manifest says {manifest['size']}: "
            "the file is truncated or damaged; nothing was restored"
        )
    if digest != manifest["sha256"]:
        raise BackupVerificationError(
            f"the SHA-256 of {path.name} does not match its manifest: the file is corrupted; "
            "nothing was restored"
        )


def compare_rows(expected: dict[str, int], actual: dict[str, int], where: str) -> None:
    """Raise :class:`BackupVerificationError` unless both row-count maps are equal."""
    if expected == actual:
        return
    diffs = [
        f"{name}: expected {expected.get(name)}, found {actual.get(name)}"
        for name in sorted(set(expected) | set(actual))
        if expected.get(name) != actual.get(name)
    ]
    raise BackupVerificationError(f"row counts differ in {where}: " + "; ".join(diffs[:10]))


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
