"""The ``botdb`` command. Each subcommand lives in a module of this package and registers
itself on :data:`botdb.cli._app.app`; every one is also a library call on the Database."""

from __future__ import annotations

import importlib
import pkgutil

from botdb.cli._app import app

__all__ = ["app", "main"]


def _register_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_commands()


def main() -> None:
    """Entry point of the ``botdb`` console script."""
    app()
