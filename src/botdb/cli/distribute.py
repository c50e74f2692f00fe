"""``botdb distribute``: make the schema distributed on a Citus coordinator (see
:mod:`botdb.ops.distribution`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

import botdb
from botdb.cli._app import JsonOption, UrlOption, app, console, emit_json, run
from botdb.cli.ops import _progress, with_json_errors
from botdb.errors import DistributionError
from botdb.ops import distribution

__all__ = ["distribute_command"]


@app.command("distribute")
def distribute_command(
    url: UrlOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be done; change nothing.")
    ] = False,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="Your own table's placement, NAME=distributed:guild_id|reference|local "
            "(repeatable).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Citus: distribute chat-scoped tables by guild_id (colocated with guilds), global ones
    as reference tables; keys widened to hold guild_id. Running it again does nothing."""

    async def main() -> dict[str, Any]:
        tables: dict[str, str] = {}
        for item in table or []:
            name, sign, placement = item.partition("=")
            if not sign or not name:
                raise DistributionError(f"--table takes NAME=PLACEMENT, got {item!r}")
            tables[name] = placement
        distribution.placements(tables)  # a bad placement fails before connecting
        async with botdb.connect(url, sqlite_create=False) as db:
            with _progress(not json_output) as progress:
                return await distribution.distribute(
                    db, dry_run=dry_run, tables=tables, progress=progress
                )

    report = run(with_json_errors(main, json_output))
    if json_output:
        emit_json(report)
        return
    if not report["distributed"] and "keys" not in report:
        console.print("already distributed: nothing to do")
    elif dry_run:
        console.print("[yellow]dry run:[/] nothing changed; would do:")
    else:
        console.print(f"[green]distributed[/] in {report['took']} s")
    if "keys" in report:
        for key in report["keys"]:
            console.print(f"  key {key}")
        for fk in report["foreign_keys"]["changed"]:
            console.print(f"  foreign key {fk}")
        for fk in report["foreign_keys"]["dropped"]:
            console.print(f"  foreign key dropped: {fk}")
    for table, placement in report["tables"].items():
        console.print(f"  {table}: {placement}")
