"""``botdb migrate``: upgrade, downgrade, current, history, check and revision.

Your own revisions live in one or more directories given with ``--version-path`` (repeatable)
or the setting ``migrations_path`` (``BOTDB_MIGRATIONS_PATH``, paths separated like ``PATH``).
Commands that compare against the models (``check``, ``revision``) import your models
module(s) with ``--models``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from botdb.cli._app import (
    EXIT_CHECK_FAILED,
    JsonOption,
    UrlOption,
    app,
    console,
    emit_json,
    fail,
    run,
)
from botdb.errors import ConfigurationError

__all__ = ["migrate_app"]

migrate_app = typer.Typer(
    name="migrate",
    help="Schema migrations: botdb's built-in tables and your own (Alembic, no alembic.ini).",
    no_args_is_help=True,
)
app.add_typer(migrate_app)

VersionPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--version-path",
        "-p",
        help="Directory of your own revisions (repeatable; default: BOTDB_MIGRATIONS_PATH).",
        show_default=False,
    ),
]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--models",
        help="Module that defines your models, imported first (repeatable), e.g. mybot.models.",
        show_default=False,
    ),
]
BranchOption = Annotated[
    str, typer.Option("--branch", help="Branch label of your revisions.", show_default=True)
]


def _import_models(modules: list[str] | None) -> None:
    """Import the user's models modules so that their tables are on ``Base.metadata``."""
    try:
        _import_all(modules)
    except ConfigurationError as exc:
        fail(str(exc))


def _import_all(modules: list[str] | None) -> None:
    if not modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # the console script does not put the project on sys.path
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigurationError(
                f"could not import models module {name!r}: {type(exc).__name__}: {exc}"
            ) from exc


async def _with_migrator(
    url: str | None,
    version_paths: list[Path] | None,
    branch: str,
    action: Any,
) -> Any:
    import botdb
    from botdb.migrations import Migrator

    async with botdb.connect(url) as db:
        locations = version_paths or db.settings.migration_locations()
        migrator = Migrator(db, script_locations=locations, branch=branch)
        return await action(migrator)


def _print_revisions(title: str, revisions: list[str], empty: str) -> None:
    if revisions:
        console.print(f"{title}: [bold]{', '.join(revisions)}[/]", highlight=False)
    else:
        console.print(empty, highlight=False)


@migrate_app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target: head (all branches), app@head, +1…")] = (
        "head"
    ),
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    json: JsonOption = False,
) -> None:
    """Apply migrations up to REVISION (default: every branch to its head)."""

    async def action(migrator: Any) -> dict[str, Any]:
        with console.status("migrating…", spinner="dots"):
            applied = await migrator.upgrade(revision)
        return {"applied": applied, "current": await migrator.current()}

    result = run(lambda: _with_migrator(url, version_path, "app", action))
    if json:
        emit_json(result)
        return
    _print_revisions("applied", result["applied"], "already up to date")
    _print_revisions("now at", result["current"], "the database has no revision")


# "-1" is a revision, not an option.
@migrate_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target: base, app@base, -1, a revision id.")],
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    json: JsonOption = False,
) -> None:
    """Revert migrations down to REVISION (``app@base`` reverts only your branch)."""

    async def action(migrator: Any) -> dict[str, Any]:
        reverted = await migrator.downgrade(revision)
        return {"reverted": reverted, "current": await migrator.current()}

    result = run(lambda: _with_migrator(url, version_path, "app", action))
    if json:
        emit_json(result)
        return
    _print_revisions("reverted", result["reverted"], "nothing to revert")
    _print_revisions("now at", result["current"], "the database has no revision")


@migrate_app.command("current")
def current(
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    json: JsonOption = False,
) -> None:
    """Show the revisions the database is at, and what is pending."""

    async def action(migrator: Any) -> dict[str, Any]:
        pending = await migrator.pending()
        return {
            "current": await migrator.current(),
            "heads": await migrator.heads(),
            "pending": pending,
            "up_to_date": not pending,
        }

    result = run(lambda: _with_migrator(url, version_path, "app", action))
    if json:
        emit_json(result)
        return
    _print_revisions("current", result["current"], "the database has no revision")
    _print_revisions("pending", result["pending"], "up to date")


@migrate_app.command("history")
def history(
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    json: JsonOption = False,
) -> None:
    """List every revision, oldest first, and whether it is applied."""
    entries: list[dict[str, Any]] = run(
        lambda: _with_migrator(url, version_path, "app", lambda m: m.history())
    )
    if json:
        emit_json(entries)
        return
    table = Table("revision", "parent", "branch", "applied", "message")
    for entry in entries:
        down = entry["down_revision"]
        parent = ", ".join(down) if isinstance(down, list) else (down or "-")
        table.add_row(
            entry["revision"] + (" (head)" if entry["is_head"] else ""),
            parent,
            ", ".join(entry["branch_labels"]) or "",
            "yes" if entry["is_applied"] else "no",
            entry["message"] or "",
        )
    console.print(table)


@migrate_app.command("check")
def check(
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    models: ModelsOption = None,
    json: JsonOption = False,
) -> None:
    """Compare the models with the migrated database; exit 4 if a change has no migration."""

    _import_models(models)

    async def action(migrator: Any) -> list[str]:
        differences: list[str] = await migrator.check()
        return differences

    differences = run(lambda: _with_migrator(url, version_path, "app", action))
    if json:
        emit_json({"ok": not differences, "differences": differences})
    elif differences:
        console.print("[bold red]models and migrations differ:[/]")
        for line in differences:
            console.print(f"  {line}", highlight=False)
        console.print("write a revision: botdb migrate revision -m '...' --models <module>")
    else:
        console.print("models and migrations agree")
    if differences:
        raise typer.Exit(EXIT_CHECK_FAILED)


@migrate_app.command("revision")
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")],
    autogenerate: Annotated[
        bool,
        typer.Option(
            "--autogenerate/--empty", help="Fill it from your model changes, or leave it empty."
        ),
    ] = True,
    url: UrlOption = None,
    version_path: VersionPathOption = None,
    models: ModelsOption = None,
    branch: BranchOption = "app",
    json: JsonOption = False,
) -> None:
    """Write a new revision of your own branch (into the first --version-path)."""

    _import_models(models)

    async def action(migrator: Any) -> dict[str, Any]:
        path: Path = await migrator.revision(message, autogenerate=autogenerate)
        return {"path": str(path), "branch": branch}

    result = run(lambda: _with_migrator(url, version_path, branch, action))
    if json:
        emit_json(result)
        return
    console.print(f"wrote {result['path']}", highlight=False)
