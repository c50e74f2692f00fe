"""``botdb import-json FILE``: import a legacy JSON store, validated, backed up and verified."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from botdb import errors, ops
from botdb.cli._app import EXIT_ERROR, JsonOption, UrlOption, app, console, emit_json, fail, run
from botdb.cli.ops import with_json_errors
from botdb.database import Database, connect
from botdb.importers import FORMATS, ImportReport, ImportValidationError, import_json
from botdb.importers.json_store import IN_CODE

__all__ = ["import_json_command"]


@app.command("import-json")
def import_json_command(
    file: Annotated[Path, typer.Argument(help="The JSON store to import (only read).")],
    format: Annotated[
        str,
        typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    ] = "auto",
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="TOML/JSON mapping spec for the generic format."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; write nothing.")
    ] = False,
    backup_dir: Annotated[
        Path | None,
        typer.Option("--backup-dir", help="Where the backup copy goes (default: next to FILE)."),
    ] = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init", help="Create the database and its schema first if needed (`botdb init`)."
        ),
    ] = False,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import a reminder-bot or member JSON store (or any, with --spec) in one transaction.

    Every record is validated first: if one is bad, the list of bad records is shown and
    nothing is imported. Re-running is safe: unchanged rows are left alone. The database
    must have been initialised (`botdb init`), or pass --init; without it a missing SQLite
    file is never created.
    """
    if init and dry_run:
        fail("--dry-run writes nothing, so it cannot --init: run `botdb init` first")

    async def main() -> ImportReport:
        db = connect(url, sqlite_create=init)
        if not init and _missing_sqlite_file(db):
            raise errors.ConfigurationError(
                f"the SQLite database {db.settings.url.path} does not exist: "
                "run `botdb init` first, or pass --init; nothing was created"
            )
        async with db:
            if init:
                await ops.init(db)
            with (
                console.status("importing...", spinner="dots") if not json_output else nullcontext()
            ):
                try:
                    return await import_json(
                        db,
                        file,
                        format=format,
                        spec=spec,
                        dry_run=dry_run,
                        backup_dir=backup_dir,
                    )
                except errors.UndefinedTableError as exc:
                    if json_output:
                        emit_json({"ok": False, "error": type(exc).__name__, "message": str(exc)})
                    message = str(exc).replace(IN_CODE, ", or pass --init")
                    fail(f"{type(exc).__name__}: {message}", EXIT_ERROR)
                except ImportValidationError as exc:
                    if json_output:
                        emit_json(exc.report.to_dict())
                    else:
                        _print_problems(exc)
                    fail(str(exc).split(":")[0], EXIT_ERROR)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report.to_dict())
        return
    table = Table(title=f"{report.path} ({report.format}{', dry run' if report.dry_run else ''})")
    for column in ("table", "inserted", "updated", "unchanged"):
        table.add_column(column)
    for name, counts in report.tables.items():
        table.add_row(name, str(counts.inserted), str(counts.updated), str(counts.unchanged))
    console.print(table)
    if report.backup:
        console.print(f"backup: {report.backup}", highlight=False)
    verb = "would import" if report.dry_run else "imported and verified"
    console.print(f"[green]{verb}[/] {report.records} records in {report.seconds:.1f}s")


def _missing_sqlite_file(db: Database) -> bool:
    path = db.settings.url.path
    return db.backend == "sqlite" and path not in ("", ":memory:") and not Path(path).is_file()


def _print_problems(exc: ImportValidationError) -> None:
    table = Table(title=f"{exc.report.problem_count} bad record(s)")
    table.add_column("key")
    table.add_column("reason")
    for problem in exc.problems[:50]:
        table.add_row(problem.key, problem.reason)
    console.print(table)
