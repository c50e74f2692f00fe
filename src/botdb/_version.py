"""botdb's version, from the installed package's metadata (``pyproject.toml``'s ``version``).

A low module of its own, so that the layers (``botdb.ops`` writes it into backup manifests)
read it without importing the root package.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]


def _installed_version() -> str:
    try:
        return version("botdb")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


__version__ = _installed_version()
