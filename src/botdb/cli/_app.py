"""The typer application every ``botdb`` subcommand registers on, and what they share.

Exit codes (documented in the README):

====  =====================================================================
code  meaning
====  =====================================================================
0     done
1     a botdb error: bad input, a failed statement, a failed migration
2     wrong usage (unknown option, missing argument) — typer's own code
3     the database could not be reached (down, refused, wrong credentials)
4     a check failed: unhealthy, integrity problems, verification mismatch
5     refused: the target is not empty (pass ``--yes``), nothing was changed
====  =====================================================================
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console

from botdb import errors

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "JsonOption",
    "UrlOption",
    "app",
    "console",
    "emit_json",
    "fail",
    "run",
]

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3
EXIT_CHECK_FAILED = 4
EXIT_REFUSED = 5

app = typer.Typer(
    name="botdb",
    help="botdb: the database layer for Discord and Telegram bots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        help="Database URL (default: from the environment, see the README's precedence).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (dates, paths and the like as strings)."""
    sys.stdout.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error on stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def run(main: Callable[[], Coroutine[Any, Any, T] | Awaitable[T]]) -> T:
    """Run an async command; botdb errors become a message and a documented exit code."""

    async def wrapped() -> T:
        return await main()

    try:
        return asyncio.run(wrapped())
    except (errors.ConnectionFailedError, errors.AuthenticationError) as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_UNAVAILABLE)
    except errors.TargetNotEmptyError as exc:
        fail(f"{exc} (pass --yes to allow it)", EXIT_REFUSED)
    except errors.VerificationError as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_CHECK_FAILED)
    except errors.BotDBError as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        fail("interrupted", 130)
