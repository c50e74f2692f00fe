"""The migrations' error class, defined with the others in :mod:`botdb.errors`."""

from __future__ import annotations

from botdb.errors import MigrationError

__all__ = ["MigrationError"]
