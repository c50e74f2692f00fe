"""``botdb transfer SOURCE_URL TARGET_URL``: copy a database to another backend, verified."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

import botdb
from botdb import errors
from botdb.cli._app import (
    EXIT_CHECK_FAILED,
    EXIT_REFUSED,
    JsonOption,
    app,
    console,
    emit_json,
    fail,
    run,
)
from botdb.cli.ops import with_json_errors
from botdb.ops.transfer import (
    ProgressCallback,
    TargetNotEmptyError,
    TransferReport,
    VerificationError,
    transfer,
)

__all__ = ["transfer_command"]


@app.command("transfer")
def transfer_command(
    source_url: Annotated[str, typer.Argument(help="The database to copy from (never written).")],
    target_url: Annotated[str, typer.Argument(help="The database to copy into.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Replace the rows of a non-empty target.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per batch and per transaction.")
    ] = 5000,
    json_output: JsonOption = False,
) -> None:
    """Copy every table between SQLite and PostgreSQL, resumably, then verify the copy.

    Re-run the same command after an interruption: it continues after the last committed
    batch. Exit codes: 3 a database is unreachable, 4 verification failed, 5 the target is
    not empty (pass --yes).
    """
    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=json_output,
    )
    tasks: dict[str, TaskID] = {}

    def progress(table: str, done: int, total: int) -> None:
        if table not in tasks:
            tasks[table] = bars.add_task(table, total=max(total, done))
        bars.update(tasks[table], completed=done, total=max(total, done))

    async def main() -> TransferReport:
        with bars:
            try:
                return await _transfer_urls(
                    source_url, target_url, yes=yes, batch_size=batch_size, progress=progress
                )
            except TargetNotEmptyError as exc:
                if json_output:
                    emit_json({"ok": False, "error": type(exc).__name__, "message": str(exc)})
                fail(str(exc), EXIT_REFUSED)
            except VerificationError as exc:
                if json_output and isinstance(exc.report, TransferReport):
                    emit_json(exc.report.to_dict())
                fail(str(exc), EXIT_CHECK_FAILED)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report.to_dict())
        return
    table = Table(title=f"{report.source} -> {report.target}")
    for column in ("table", "rows", "checksum", "ok"):
        table.add_column(column)
    for entry in report.tables:
        table.add_row(
            entry.name,
            str(entry.target_rows),
            entry.target_checksum[:16],
            "[green]yes[/]" if entry.ok else "[red]NO[/]",
        )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(
        f"[green]verified[/]: {len(report.tables)} tables, "
        f"{sum(t.target_rows for t in report.tables)} rows in {report.seconds:.1f}s"
    )


async def _transfer_urls(
    source_url: str,
    target_url: str,
    *,
    yes: bool,
    batch_size: int,
    progress: ProgressCallback,
) -> TransferReport:
    """Open both databases, run :func:`~botdb.ops.transfer.transfer`, close them.

    The source is opened with ``sqlite_create=False``: a mistyped SQLite path is refused,
    never created as a new empty database to copy from.
    """
    if not source_url.strip() or not target_url.strip():
        # An empty URL would otherwise mean "the environment's database".
        raise errors.ConfigurationError("a database URL is required")
    source = botdb.connect(source_url, sqlite_create=False)
    target = botdb.connect(target_url)
    url = source.settings.url
    if (
        url.backend == "sqlite"
        and not url.is_memory
        and not await asyncio.to_thread(Path(url.path).is_file)
    ):
        raise errors.ConfigurationError(f"the source database does not exist: {url.path}")
    async with source, target:
        return await transfer(source, target, yes=yes, batch_size=batch_size, progress=progress)
