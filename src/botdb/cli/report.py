"""``botdb report GUILD_ID``: write a guild's activity as one self-contained HTML page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

import botdb
from botdb import errors
from botdb.analytics.report import ReportFile, time_zone, write_report
from botdb.cli._app import JsonOption, UrlOption, app, console, emit_json, run
from botdb.cli.ops import with_json_errors

__all__ = ["parse_when", "report_command"]


@app.command("report")
def report_command(
    guild_id: Annotated[
        int,
        typer.Argument(
            help="The guild, or Telegram chat, to report on. A negative chat id goes last, "
            "after '--': botdb report --out chat.html -- -1001234567890",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The HTML file to write (an existing one is replaced)."),
    ] = Path("report.html"),
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="First day (YYYY-MM-DD, in --tz) or an ISO time with its UTC offset.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Last day (YYYY-MM-DD, included) or an ISO time with its UTC offset (excluded). "
            "Default: today.",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, help="Days covered when --since is not given.")
    ] = 30,
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of the days and hours shown (IANA name).")
    ] = "UTC",
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Rows in each top-members/channels/emoji list.")
    ] = 10,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh/--no-refresh",
            help="Bring the stats up to date first (PostgreSQL's summary views).",
        ),
    ] = True,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write an HTML page of a guild's activity: messages per day, an hour × weekday heatmap,
    top members and channels, reactions and emoji, joins and leaves.

    One file that works offline and on a phone; a guild without activity gets a page saying so.
    """

    async def main() -> ReportFile:
        start = None if since is None else parse_when("--since", since, tz)
        end = None if until is None else parse_when("--until", until, tz, end_of_day=True)
        async with botdb.connect(url, sqlite_create=False) as db:
            return await write_report(
                db,
                out,
                guild_id,
                since=start,
                until=end,
                days=days,
                tz=tz,
                limit=limit,
                refresh=refresh,
            )

    written = run(with_json_errors(main, json_output))
    data = written.data
    if json_output:
        emit_json(
            {
                "ok": True,
                "path": str(written.path),
                "bytes": written.size,
                "guild_id": data.guild_id,
                "guild_name": data.guild_name,
                "since": data.since.isoformat(),
                "until": data.until.isoformat(),
                "tz": data.tz,
                "has_data": data.has_data,
            }
        )
        return
    name = data.guild_name or f"guild {data.guild_id}"
    console.print(
        f"[green]wrote[/] {written.path} ({written.size / 1e6:.1f} MB): {name}", highlight=False
    )
    if not data.has_data:
        console.print("[yellow]note:[/] no activity in this period; the page says so")


def parse_when(option: str, text: str, tz: str, *, end_of_day: bool = False) -> dt.datetime:
    """A command-line time: ``YYYY-MM-DD`` is that day's midnight in ``tz`` (the next day's
    with ``end_of_day``, so that the day is included); an ISO time needs its UTC offset.

    Raises:
        DataError: the text is no date or time, or a time without an offset.
    """
    zone = time_zone(tz)
    text = text.strip()
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end_of_day:
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), zone)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise errors.DataError(
            f"{option} {text!r} is not a date (YYYY-MM-DD) or an ISO time"
        ) from None
    if when.tzinfo is None:
        raise errors.DataError(
            f"{option} {text!r} has no UTC offset: add one (2024-05-01T12:00+02:00, or Z for "
            "UTC) or give a date"
        )
    return when
