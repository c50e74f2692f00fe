"""The public surface: one sorted ``__all__``, light imports, the error tree."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Generic, Protocol

import pytest

import botdb
from botdb import _protocols, _version, errors


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


def test_version_comes_from_the_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    assert botdb.__version__ == importlib.metadata.version("botdb")

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_version, "version", not_installed)
    assert _version._installed_version() == "0+unknown"  # a source tree, never installed


# -- what the layers need of Database: the Protocols of botdb._protocols ------------------


def _protocol_members(protocol: type) -> set[str]:
    members: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (object, Protocol, Generic) or not getattr(cls, "_is_protocol", False):
            continue
        members |= {n for n in vars(cls) if not n.startswith("_")}
        members |= {n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")}
    return members


@pytest.mark.parametrize("name", _protocols.__all__)
def test_database_provides_what_each_layer_protocol_asks_for(name: str) -> None:
    """mypy checks the types where Database is handed down; this checks the names, that
    coroutines stay coroutines and that every parameter a layer passes is accepted."""
    protocol = getattr(_protocols, name)
    db = botdb.Database(botdb.Settings.from_env(url="sqlite:///:memory:"))
    for member in sorted(_protocol_members(protocol)):
        wanted = inspect.getattr_static(protocol, member)
        try:
            have = inspect.getattr_static(db, member)
        except AttributeError:
            pytest.fail(f"Database has no {member!r}, which {name} asks for")
        if not callable(wanted) or isinstance(wanted, property):
            continue
        assert callable(have), f"Database.{member} is not callable"
        method = getattr(botdb.Database, member)
        wrapped = inspect.unwrap(method)
        assert inspect.iscoroutinefunction(wanted) == inspect.iscoroutinefunction(method), member
        given = inspect.signature(wanted).parameters
        accepted = inspect.signature(wrapped).parameters
        for param in given.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                assert any(p.kind == param.kind for p in accepted.values()), (member, param)
            else:
                assert param.name in accepted, f"Database.{member} has no {param.name!r}"
        extra = [p for n, p in accepted.items() if n not in given]
        required = [
            p.name
            for p in extra
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert required == [], f"Database.{member} requires {required}, unknown to {name}"


# -- what sits below the front door never imports it -------------------------------------

SRC = Path(botdb.__file__).resolve().parent
#: Everything ``botdb.Database`` composes, and what those layers stand on.
LOWER_LAYERS = (
    "analytics",
    "cache",
    "engine",
    "importers",
    "migrations",
    "models",
    "ops",
    "repository",
    "services",
)
LOWER_MODULES = ("_protocols.py", "_url.py", "_version.py", "config.py", "errors.py")
#: Modules at or above the front door.
UPPER = ("botdb.database", "botdb._facade", "botdb.testing", "botdb.cli", "botdb.ext")


def _lower_layer_files() -> list[Path]:
    files = [SRC / name for name in LOWER_MODULES if (SRC / name).exists()]
    for layer in LOWER_LAYERS:
        files += sorted((SRC / layer).rglob("*.py"))
    return files


def _imported_names(tree: ast.AST) -> list[str]:
    """Every module an ``import`` names (TYPE_CHECKING blocks and function bodies included);
    ``from botdb import X`` counts as ``botdb.X``, and as ``botdb`` when X is no submodule."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "botdb":
                for alias in node.names:
                    submodule = f"botdb.{alias.name}"
                    found = importlib.util.find_spec(submodule) is not None
                    names.append(submodule if found else "botdb")
            else:
                names.append(node.module)
    return names


@pytest.mark.parametrize("path", _lower_layer_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_a_lower_layer_never_imports_the_front_door(path: Path) -> None:
    """Not even for typing: it types against a Protocol of ``botdb._protocols``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    upward = [
        name
        for name in _imported_names(tree)
        if name == "botdb" or any(name == up or name.startswith(up + ".") for up in UPPER)
    ]
    assert upward == [], f"{path.relative_to(SRC)} imports {upward}"


# -- docstrings speak in users' terms ------------------------------------------------------

#: Design documents are "seeds" to botdb's authors, not to its users.
_DESIGN_REFERENCE = re.compile(r"\bseeds? \d{3}\b|\bseed's\b", re.IGNORECASE)


def _docstrings(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[Any] = [tree]
    nodes += [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    found = []
    for node in nodes:
        text = ast.get_docstring(node)
        if text:
            found.append((getattr(node, "name", "<module>"), text))
    return found


def test_docstrings_and_cli_help_never_cite_design_documents() -> None:
    cited = [
        f"{path.relative_to(SRC)}:{name}"
        for path in sorted(SRC.rglob("*.py"))
        for name, text in _docstrings(path)
        if _DESIGN_REFERENCE.search(text)
    ]
    assert cited == []
    import typer
    from typer.testing import CliRunner

    from botdb.cli import app

    def paths(command: Any, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
            found += paths(sub, [*prefix, name])
        return found

    runner = CliRunner()
    commands = paths(typer.main.get_command(app), [])
    assert ["migrate", "upgrade"] in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert not _DESIGN_REFERENCE.search(result.output), command
