"""``botdb import discord FILE…`` and ``botdb import telegram FILE``: chat-export history."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from botdb import errors
from botdb.cli._app import JsonOption, UrlOption, app, console, emit_json, run
from botdb.cli.ops import with_json_errors
from botdb.database import Database, connect
from botdb.importers import ChatImportReport, import_discord, import_telegram

__all__ = ["import_app", "import_discord_command", "import_telegram_command"]

import_app = typer.Typer(
    name="import",
    help="Import chat history from DiscordChatExporter or Telegram Desktop JSON exports.",
    no_args_is_help=True,
)
app.add_typer(import_app)

BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Events handed to the writer at a time.")
]
TimezoneOption = Annotated[
    str,
    typer.Option(
        "--timezone",
        help="Zone of times written without an offset (old Telegram exports): e.g. Europe/Berlin.",
    ),
]

_COUNTS = (
    "guilds",
    "channels",
    "threads",
    "users",
    "messages",
    "edited",
    "attachments",
    "mentions",
    "reactions",
    "reaction_counts",
    "joins",
    "leaves",
    "commands",
    "unresolved",
)


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.ConfigurationError(f"unknown time zone {name!r}") from exc


@contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr by bytes read, fed from the reading thread."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("import", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _run_import(
    url: str | None,
    json_output: bool,
    work: Callable[[Database, Callable[[int, int], None] | None], Coroutine[Any, Any, Any]],
) -> None:
    async def main() -> ChatImportReport:
        # Never create a missing SQLite file: it would have no tables (`botdb init` first).
        async with connect(url, sqlite_create=False) as db:
            with _bar(not json_output and console.is_terminal) as progress:
                report: ChatImportReport = await work(db, progress)
                return report

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json({"ok": True, **report.to_dict()})
        return
    table = Table(title=f"{report.platform} import: {len(report.files)} file(s)")
    table.add_column("rows")
    table.add_column("count", justify="right")
    for name in _COUNTS:
        table.add_row(name, str(getattr(report, name)))
    for reason, count in report.skipped.items():
        table.add_row(f"skipped: {reason}", str(count))
    console.print(table)
    console.print(
        f"[green]imported[/] {report.messages} messages in {report.seconds:.1f}s "
        "(one transaction; importing again changes nothing)",
        highlight=False,
    )


@import_app.command("discord")
def import_discord_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="DiscordChatExporter JSON files: channels, threads, DMs (only read)."),
    ],
    batch_size: BatchOption = 20000,
    timezone: TimezoneOption = "UTC",
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import DiscordChatExporter JSON exports, all files in one transaction.

    Thread files are linked to their parent channel. A bad file (truncated, malformed, not
    a DiscordChatExporter export) is named with the position, and nothing is imported.
    """

    async def work(db: Database, progress: Callable[[int, int], None] | None) -> Any:
        return await import_discord(
            db, *files, batch_size=batch_size, progress=progress, naive_tz=_zone(timezone)
        )

    _run_import(url, json_output, work)


@import_app.command("telegram")
def import_telegram_command(
    file: Annotated[
        Path, typer.Argument(help="Telegram Desktop result.json: one chat or a whole account.")
    ],
    batch_size: BatchOption = 20000,
    timezone: TimezoneOption = "UTC",
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import a Telegram Desktop JSON export in one transaction, with Bot API chat ids.

    A bad file (truncated, malformed, not a Telegram Desktop export) is named with the
    position, and nothing is imported.
    """

    async def work(db: Database, progress: Callable[[int, int], None] | None) -> Any:
        return await import_telegram(
            db, file, batch_size=batch_size, progress=progress, naive_tz=_zone(timezone)
        )

    _run_import(url, json_output, work)
