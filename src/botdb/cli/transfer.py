"""``botdb transfer SOURCE_URL TARGET_URL``: copy a database to another backend, verified."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

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
    UnportableSchemaError,
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
    skip_unportable: Annotated[
        bool,
        typer.Option(
            "--skip-unportable",
            help="Leave out views, materialized views, functions and triggers (listed).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Copy every table between SQLite and PostgreSQL, resumably, then verify the copy.

    Re-run the same command after an interruption: it continues after the last committed
    batch. A source that is not a botdb database is copied with its own schema, its types
    mapped for the target's backend. A new SQLite target is written to ``<path>.partial``
    and renamed when verified. Exit codes: 1 an error, 3 a database is unreachable, 4
    verification failed, 5 refused: the target is not empty (pass --yes) or part of the
    schema cannot move (listed; views, functions, triggers: pass --skip-unportable).
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
                    source_url,
                    target_url,
                    yes=yes,
                    batch_size=batch_size,
                    progress=progress,
                    skip_unportable=skip_unportable,
                )
            except UnportableSchemaError as exc:
                if json_output:
                    emit_json(
                        {
                            "ok": False,
                            "error": type(exc).__name__,
                            "message": str(exc),
                            "problems": exc.problems,
                        }
                    )
                # One line whatever the terminal's width: a script greps it.
                typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
                raise typer.Exit(EXIT_REFUSED) from None
            except TargetNotEmptyError as exc:
                if json_output:
                    emit_json({"ok": False, "error": type(exc).__name__, "message": str(exc)})
                fail(str(exc), EXIT_REFUSED)
            except VerificationError as exc:
                if json_output and isinstance(exc.report, TransferReport):
                    emit_json(exc.report.to_dict())
                fail(str(exc), EXIT_CHECK_FAILED)
            except errors.BotDBError:
                raise
            except (SQLAlchemyError, OSError, ValueError) as exc:  # never a traceback
                first = " ".join(str(exc).split("\n", 1)[0].split())
                typer.echo(f"error: {type(exc).__name__}: {first}", err=True)
                raise typer.Exit(1) from None

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
    for skipped in report.skipped:
        console.print(f"skipped: {skipped}", highlight=False)
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
    skip_unportable: bool = False,
) -> TransferReport:
    """Open both databases, run :func:`~botdb.ops.transfer.transfer`, close them.

    The source is opened with ``sqlite_create=False``: a mistyped SQLite path is refused,
    never created as a new empty database to copy from. A SQLite target that does not exist
    yet is written as ``<path>.partial`` and renamed to ``<path>`` once verified: a refused
    or failed transfer leaves no file at ``<path>``; the partial file is removed too, except
    after an interruption or a lost connection, when it is kept so the same command resumes.
    """
    if not source_url.strip() or not target_url.strip():
        # An empty URL would otherwise mean "the environment's database".
        raise errors.ConfigurationError("a database URL is required")
    source = botdb.connect(source_url, sqlite_create=False)
    target = botdb.connect(target_url)
    final: Path | None = None
    partial: Path | None = None
    turl = target.settings.url
    if turl.backend == "sqlite" and not turl.is_memory:
        final = Path(await asyncio.to_thread(os.path.abspath, turl.path))
        if not await asyncio.to_thread(final.exists):
            partial = final.with_name(final.name + ".partial")
            target = botdb.connect(f"sqlite:///{partial}")
    url = source.settings.url
    if (
        url.backend == "sqlite"
        and not url.is_memory
        and not await asyncio.to_thread(Path(url.path).is_file)
    ):
        raise errors.ConfigurationError(f"the source database does not exist: {url.path}")
    try:
        async with source, target:
            report = await transfer(
                source,
                target,
                yes=yes,
                batch_size=batch_size,
                progress=progress,
                skip_unportable=skip_unportable,
            )
    except (errors.TransientError, KeyboardInterrupt, asyncio.CancelledError):
        raise  # the partial file stays: the same command resumes from it
    except BaseException:
        if partial is not None:
            await asyncio.to_thread(_remove_sqlite_files, partial)
        raise
    if partial is not None and final is not None:
        await asyncio.to_thread(partial.replace, final)
        report.target = f"sqlite:///{final}"
    return report


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
