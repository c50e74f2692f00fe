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

In a pipe (stderr not a terminal) messages are printed unwrapped, one line each, so that
``grep`` finds them; retries are logged only with ``botdb -v``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from botdb import errors

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "JsonOption",
    "UrlOption",
    "app",
    "cli_terms",
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
#: Console width when stderr is not a terminal: wide enough that nothing wraps.
_PIPE_WIDTH = 10_000


def _make_console() -> Console:
    """The stderr console; in a pipe it never wraps a line (``grep`` must see whole lines)."""
    out = Console(stderr=True)
    if not out.is_terminal:
        out.soft_wrap = True
        out.width = _PIPE_WIDTH
    return out


console = _make_console()


class _ConsoleHandler(logging.Handler):
    """botdb's log records on the stderr console, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            console.print(prefix + record.getMessage(), markup=False, highlight=False)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _quiet_retries(record: logging.LogRecord) -> bool:
    return record.name != "botdb.retry"


_handler = _ConsoleHandler()


def configure_logging(verbose: bool) -> None:
    """Route botdb's log to stderr: warnings only (without the retry chatter) by default,
    everything from INFO up, retries included, with ``verbose``.

    The handler on the ``botdb`` logger keeps Python's last-resort handler (which printed
    every retry) out; propagation is left alone, so an application's own logging setup still
    sees every record.
    """
    logger = logging.getLogger("botdb")
    logger.removeHandler(_handler)
    _handler.filters.clear()
    if not verbose:
        _handler.addFilter(_quiet_retries)
    _handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.setLevel(logging.INFO if verbose else logging.NOTSET)
    logger.addHandler(_handler)


@app.callback()
def _global_options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log retries and other details on stderr; goes before the command: botdb -v info.",
        ),
    ] = False,
) -> None:
    """botdb: the database layer for Discord and Telegram bots."""
    configure_logging(verbose)


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


def cli_terms(message: str) -> str:
    """A library message in command-line terms: ``yes=True (--yes)`` becomes ``--yes``."""
    return message.replace("yes=True (--yes)", "--yes").replace("yes=True", "--yes")


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error on stderr (one line in a pipe) and exit with ``code``."""
    console.print(f"[bold red]error:[/] {escape(cli_terms(message))}", highlight=False)
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
        fail(f"{type(exc).__name__}: {exc.advice('--yes')}", EXIT_REFUSED)
    except errors.VerificationError as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_CHECK_FAILED)
    except errors.BotDBError as exc:
        fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        fail("interrupted", 130)
