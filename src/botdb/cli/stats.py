"""``botdb stats --guild ID``: a guild's activity (the same calls as ``db.stats.*``)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from botdb import errors
from botdb.cli._app import JsonOption, UrlOption, app, console, emit_json, run
from botdb.cli.ops import with_json_errors
from botdb.database import connect

__all__ = ["parse_moment", "stats_command"]

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_moment(text: str | None, name: str) -> datetime | None:
    """``--since``/``--until``: an ISO date (midnight UTC) or an ISO datetime with an offset.

    Raises:
        DataError: not ISO 8601, or a datetime without an offset (ambiguous).
    """
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise errors.DataError(
            f"--{name} {text!r} is not an ISO date or datetime (2026-11-01, 2026-11-01T12:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise errors.DataError(f"--{name} {text!r} has no UTC offset: add Z or +HH:MM")
    return moment


def _parse_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise errors.DataError(f"--guild {text!r} is not an integer id") from None


@app.command("stats")
def stats_command(
    guild: Annotated[str, typer.Option("--guild", "-g", help="The guild (or chat) id.")],
    since: Annotated[
        str | None,
        typer.Option(help="Start (inclusive): 2026-11-01 (UTC) or 2026-11-01T12:00+02:00."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="End (exclusive), like --since.")] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of the heatmap.")] = "UTC",
    limit: Annotated[int, typer.Option(help="Rows in each top list.")] = 10,
    include_bots: Annotated[
        bool, typer.Option("--include-bots", help="Count bots' messages too.")
    ] = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Refresh the summaries first (PostgreSQL's views)."),
    ] = False,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """A guild's activity for a period: messages, members, joins and leaves, reactions per
    day; top members, channels and emoji; messages by weekday and hour.

    Periods are rounded down to the hour. On PostgreSQL the figures are those of the last
    refresh (pass --refresh); on SQLite they are always current.
    """

    async def main() -> dict[str, Any]:
        guild_id = _parse_id(guild)
        start = parse_moment(since, "since")
        end = parse_moment(until, "until")
        async with connect(url) as db:
            try:
                if refresh:
                    await db.stats.refresh()
                period: dict[str, Any] = {"since": start, "until": end}
                return {
                    "guild_id": guild_id,
                    "since": start,
                    "until": end,
                    "daily": [
                        asdict(d)
                        for d in await db.stats.daily(guild_id, **period, include_bots=include_bots)
                    ],
                    "top_members": [
                        asdict(m)
                        for m in await db.stats.top_members(
                            guild_id, **period, limit=limit, include_bots=include_bots
                        )
                    ],
                    "top_channels": [
                        asdict(c)
                        for c in await db.stats.top_channels(
                            guild_id, **period, limit=limit, include_bots=include_bots
                        )
                    ],
                    "top_emoji": [
                        asdict(e) for e in await db.stats.top_emoji(guild_id, **period, limit=limit)
                    ],
                    "heatmap": await db.stats.heatmap(
                        guild_id, **period, tz=tz, include_bots=include_bots
                    ),
                }
            except errors.UndefinedTableError as exc:
                raise errors.UndefinedTableError(
                    f"{exc} (the stats summaries are missing: run `botdb migrate upgrade`)"
                ) from exc

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
        return
    _print(report, tz)


def _print(report: dict[str, Any], tz: str) -> None:
    daily = report["daily"]
    totals = {
        key: sum(d[key] for d in daily) for key in ("messages", "joins", "leaves", "reactions")
    }
    span = f"{daily[0]['day']} .. {daily[-1]['day']}" if daily else "no activity"
    console.print(
        f"guild {report['guild_id']}: {span} — {totals['messages']} messages, "
        f"{totals['reactions']} reactions, {totals['joins']} joins, {totals['leaves']} leaves",
        highlight=False,
    )
    days = Table(title="per day (UTC)")
    for column in ("day", "messages", "active members", "joins", "leaves", "reactions"):
        days.add_column(column, justify="right")
    for d in daily:
        days.add_row(
            str(d["day"]),
            *(str(d[k]) for k in ("messages", "active_members", "joins", "leaves", "reactions")),
        )
    console.print(days)
    members = Table(title="top members")
    for column in ("user", "name", "messages", "last active"):
        members.add_column(column)
    for m in report["top_members"]:
        members.add_row(
            str(m["user_id"]),
            m["name"] or "",
            str(m["messages"]),
            f"{m['last_active']:%Y-%m-%d %H:%M}",
        )
    console.print(members)
    channels = Table(title="top channels")
    for column in ("channel", "name", "messages"):
        channels.add_column(column)
    for c in report["top_channels"]:
        channels.add_row(str(c["channel_id"]), c["name"] or "", str(c["messages"]))
    console.print(channels)
    emoji = Table(title="top emoji")
    for column in ("emoji", "count"):
        emoji.add_column(column)
    for e in report["top_emoji"]:
        emoji.add_row(e["emoji_name"], str(e["count"]))
    console.print(emoji)
    heat = Table(title=f"messages by weekday and hour ({tz})")
    heat.add_column("")
    for hour in range(24):
        heat.add_column(f"{hour:02d}", justify="right")
    for weekday, counts in zip(_WEEKDAYS, report["heatmap"], strict=True):
        heat.add_row(weekday, *(str(n) if n else "·" for n in counts))
    console.print(heat)
