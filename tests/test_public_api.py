"""The public surface: one sorted ``__all__``, light imports, the error tree."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import botdb
from botdb import errors


def test_all_is_sorted_and_matches_the_exports() -> None:
    assert botdb.__all__ == sorted(botdb.__all__)
    public = {name for name in vars(botdb) if not name.startswith("_")}
    public -= {name for name, value in vars(botdb).items() if inspect.ismodule(value)}
    public -= {"annotations"}
    assert set(botdb.__all__) - {"__version__"} == public


def test_every_error_is_exported_and_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.BotDBError), name
        assert getattr(botdb, name) is cls, f"{name} is not re-exported by botdb"


def test_importing_botdb_loads_no_framework_or_server_driver() -> None:
    code = (
        "import sys, botdb\n"
        "heavy = {'discord', 'aiogram', 'telegram', 'redis', 'asyncpg', 'typer', 'alembic'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_postgres_without_asyncpg_names_the_extra() -> None:
    code = (
        "import sys, asyncio\n"
        "sys.modules['asyncpg'] = None  # as if the extra were not installed\n"
        "import botdb\n"
        "try:\n"
        "    asyncio.run(botdb.connect('postgresql://u@127.0.0.1/db').connect())\n"
        "except botdb.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'botdb[postgres]'" in out.stdout


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "http://example.com", "sqlite:/relative-without-slashes"],
)
async def test_unknown_url_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(errors.ConfigurationError):
        await botdb.connect(url)
