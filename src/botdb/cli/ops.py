"""``botdb init | health | info | backup | restore | optimize | integrity``.

Each command is a thin layer over :mod:`botdb.ops` (or ``Database.health_check``). Exit
codes (see :mod:`botdb.cli._app`): 3 the database is unreachable; 4 ``health`` found it
unhealthy, ``integrity``/``optimize`` found problems, or a backup failed verification
(corrupted or truncated file); 5 ``restore`` refused a non-empty target without ``--yes``.
``health`` exits 0 on ``degraded`` (slow but answering) and prints a warning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import botdb
from botdb import errors, ops
from botdb.cli._app import (
    EXIT_CHECK_FAILED,
    EXIT_UNAVAILABLE,
    JsonOption,
    UrlOption,
    app,
    console,
    emit_json,
    run,
)

__all__ = [
    "backup_command",
    "health_command",
    "info_command",
    "init_command",
    "integrity_command",
    "optimize_command",
    "restore_command",
    "with_json_errors",
]

T = TypeVar("T")


def with_json_errors(main: Callable[[], Awaitable[T]], enabled: bool) -> Callable[[], Awaitable[T]]:
    """Wrap a command's async main so that, with ``--json``, a botdb error still prints one
    JSON document on stdout (``{"ok": false, "error": ..., "message": ...}``) before
    :func:`~botdb.cli._app.run` maps it to its exit code and message on stderr."""

    async def wrapped() -> T:
        try:
            return await main()
        except errors.BotDBError as exc:
            if enabled:
                emit_json({"ok": False, "error": type(exc).__name__, "message": str(exc)})
            raise

    return wrapped


@contextmanager
def _progress(enabled: bool) -> Iterator[ops.Progress | None]:
    """A rich progress display on stderr, fed by the ops ``progress(phase, done, total)``."""
    if not enabled:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                for task in tasks.values():  # a new phase: the earlier ones are over
                    bar.update(task, total=1, completed=1)
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _checks_failed(message: str) -> None:
    console.print(f"[bold red]{message}[/]", highlight=False)
    raise typer.Exit(EXIT_CHECK_FAILED)


def _print_mapping(title: str, data: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in data.items():
        table.add_row(str(key), str(value))
    console.print(table)


@app.command("init")
def init_command(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Create (or connect to) the database and bring its schema up to date."""

    async def main() -> dict[str, Any]:
        async with botdb.connect(url) as db:
            return await ops.init(db)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
        return
    console.print(f"[green]ready:[/] {report['backend']} database at {report['location']}")
    console.print(f"schema: {report['schema']} ({report['tables']} tables)")
    if report["note"]:
        console.print(f"[yellow]note:[/] {report['note']}")


@app.command("health")
def health_command(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Check that the database answers. Exit 4 when unhealthy, 3 when unreachable; a
    degraded (slow) database exits 0 with a warning."""

    async def main() -> tuple[dict[str, Any], int]:
        db = botdb.connect(url, sqlite_create=False)
        try:
            await db.connect()
        except (errors.ConnectionFailedError, errors.AuthenticationError) as exc:
            report = {
                "status": "unhealthy",
                "database_available": False,
                "backend": db.backend,
                "url": db.url,
                "errors": [f"{type(exc).__name__}: {exc}"],
            }
            return report, EXIT_UNAVAILABLE
        try:
            report = await db.health_check()
        finally:
            await db.close()
        return report, EXIT_CHECK_FAILED if report["status"] == "unhealthy" else 0

    report, code = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
    else:
        colour = {"healthy": "green", "degraded": "yellow"}.get(report["status"], "red")
        console.print(f"[bold {colour}]{report['status']}[/] {report['url']}", highlight=False)
        if report.get("latency_ms") is not None:
            console.print(f"latency: {report['latency_ms']} ms")
        for error in report["errors"]:
            console.print(f"  - {error}", highlight=False)
    if report["status"] == "degraded":
        console.print("[yellow]warning:[/] the database is degraded (slow answers)")
    if code:
        raise typer.Exit(code)


@app.command("info")
def info_command(
    url: UrlOption = None,
    tables: Annotated[
        bool,
        typer.Option("--tables", help="Also list every table (--json always lists them)."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Where the database is, its size, version, settings, pending migrations and (--json,
    or --tables) every table with its rows, size and indexes."""

    async def main() -> dict[str, Any]:
        async with botdb.connect(url, sqlite_create=False) as db:
            return await ops.database_info(db, tables=tables or json_output)

    info = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(info)
        return
    summary = {k: v for k, v in info.items() if k not in ("tables", "pragmas", "settings")}
    _print_mapping("database", summary)
    _print_mapping(
        "pragmas" if "pragmas" in info else "settings",
        info.get("pragmas", {}) or info.get("settings", {}),
    )
    if tables:
        table = Table(
            "table", "rows", "size (bytes)", "indexes", title="tables", title_justify="left"
        )
        for entry in info["tables"]:
            table.add_row(
                entry["name"],
                str(entry["rows"]),
                str(entry["size_bytes"]),
                ", ".join(entry["indexes"]),
            )
        console.print(table)


@app.command("backup")
def backup_command(
    url: UrlOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Backup directory.")] = Path("backups"),
    keep: Annotated[
        int | None, typer.Option("--keep", min=1, help="Keep only the newest N backups.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="auto | pg_dump | logical (PostgreSQL).")
    ] = "auto",
    json_output: JsonOption = False,
) -> None:
    """Back up the database online into DIR, with a checksum manifest (mode 0600)."""

    async def main() -> ops.BackupResult:
        async with botdb.connect(url, sqlite_create=False) as db:
            with _progress(not json_output) as progress:
                # run() maps BackupVerificationError (a VerificationError) to exit 4.
                return await ops.backup(db, out, keep=keep, method=method, progress=progress)

    result = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(result.as_dict())
        return
    console.print(f"[green]backup:[/] {result.path} ({result.size} bytes, {result.took:.2f} s)")
    console.print(f"sha256: {result.sha256}; rows: {sum(result.rows.values())}")
    for path in result.deleted:
        console.print(f"deleted (retention): {path}")


@app.command("restore")
def restore_command(
    file: Annotated[Path, typer.Argument(help="A backup file made by `botdb backup`.")],
    url: UrlOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replace a non-empty target.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore a backup: checksum verified first, restored into a scratch copy, checked,
    then swapped in. Exit 5 when the target holds data and --yes is not given."""

    async def main() -> ops.RestoreResult:
        async with botdb.connect(url) as db:
            with _progress(not json_output) as progress:
                # run() maps RestoreRefusedError (TargetNotEmptyError) to exit 5 and
                # BackupVerificationError (VerificationError) to exit 4.
                return await ops.restore(db, file, yes=yes, progress=progress)

    result = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(result.as_dict())
        return
    console.print(f"[green]restored[/] {result.source} into {result.target}", highlight=False)
    console.print(f"rows: {sum(result.rows.values())} in {len(result.rows)} tables")


@app.command("optimize")
def optimize_command(
    url: UrlOption = None,
    bloat_ratio: Annotated[
        float, typer.Option("--bloat-ratio", help="PostgreSQL: reindex above this ratio.")
    ] = 2.0,
    json_output: JsonOption = False,
) -> None:
    """ANALYZE, VACUUM, rebuild bloated indexes, refresh views, then check integrity."""

    async def main() -> dict[str, Any]:
        async with botdb.connect(url, sqlite_create=False) as db:
            with _progress(not json_output) as progress:
                return await ops.optimize(db, reindex_bloat_ratio=bloat_ratio, progress=progress)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
    else:
        console.print(
            f"[green]optimized[/] in {report['took']} s: "
            f"{report['size_before']} -> {report['size_after']} bytes"
        )
        for name in report.get("indexes", {}).get("reindexed", []):
            console.print(f"reindexed: {name['index']} (ratio {name['ratio']})")
    if not report["integrity"]["ok"]:
        _checks_failed(f"integrity problems: {report['integrity']}")


@app.command("integrity")
def integrity_command(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Check integrity (SQLite integrity_check and foreign_key_check; PostgreSQL invalid
    indexes and NOT VALID constraints). Exit 4 when a problem is found."""

    async def main() -> dict[str, Any]:
        async with botdb.connect(url, sqlite_create=False) as db:
            return await ops.integrity(db)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
    elif report["ok"]:
        console.print("[green]ok[/]")
    if not report["ok"]:
        _checks_failed(f"integrity problems: {report}" if not json_output else "integrity problems")
