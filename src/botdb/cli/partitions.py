"""``botdb partition messages`` and ``botdb retention``: partitioned messages on PostgreSQL
and removing old messages (see :mod:`botdb.ops.partitions`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

import botdb
from botdb.cli._app import JsonOption, UrlOption, app, console, emit_json, run
from botdb.cli.ops import _progress, with_json_errors
from botdb.ops import partitions

__all__ = ["partition_app", "partition_messages_command", "retention_command"]

partition_app = typer.Typer(
    name="partition",
    help="PostgreSQL: range-partition tables (opt-in; retention then drops whole partitions).",
    no_args_is_help=True,
)
app.add_typer(partition_app)


@partition_app.command("messages")
def partition_messages_command(
    url: UrlOption = None,
    by: Annotated[
        str, typer.Option("--by", help="Partition key: id (snowflake range) or created_at.")
    ] = "id",
    interval: Annotated[
        str, typer.Option("--interval", help="One partition per month or week.")
    ] = "month",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows copied per transaction.")
    ] = 10_000,
    json_output: JsonOption = False,
) -> None:
    """Make messages, attachments, mentions, reactions and reaction_counts range-partitioned
    by message id, copying the rows online in batches (PostgreSQL only)."""

    async def main() -> dict[str, Any]:
        async with botdb.connect(url, sqlite_create=False) as db:
            with _progress(not json_output) as progress:
                return await partitions.partition_messages(
                    db, by=by, interval=interval, batch_size=batch_size, progress=progress
                )

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
    elif report["converted"]:
        console.print(
            f"[green]partitioned[/] messages by {report['by']} per {report['interval']} in "
            f"{report['took']} s: {len(report['partitions'])} partitions, "
            f"{sum(report['rows'].values())} rows copied"
        )
    else:
        console.print(f"messages is already partitioned ({len(report['partitions'])} partitions)")


@app.command("retention")
def retention_command(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age bound: 90d, 12h, 2w, 30m or 45s.")
    ],
    url: UrlOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove messages (and their children) older than --older-than: whole partitions dropped
    when partitioned, else deleted in batches."""

    async def main() -> dict[str, Any]:
        age = partitions.parse_age(older_than)  # bad input fails before connecting
        async with botdb.connect(url, sqlite_create=False) as db:
            return await partitions.retention(db, age, dry_run=dry_run)

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    if report["mode"] == "partitions":
        console.print(
            f"{verb} {len(report['dropped'])} partitions older than {report['cutoff']} "
            f"in {report['took']} s"
        )
        for name in report["dropped"]:
            console.print(f"  {name}")
    else:
        console.print(
            f"{verb} {report['deleted']} messages older than {report['cutoff']} "
            f"(not partitioned: deleted in batches) in {report['took']} s"
        )
