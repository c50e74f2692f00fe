"""aiogram's own storage contract tests, fetched from the sdist of the installed aiogram.

aiogram ships ``tests/test_fsm/storage/test_storages.py`` in its source distribution; it is
not copied into this project. :func:`storage_contract` downloads the sdist of exactly the
installed version with pip (``--no-binary :all: --no-deps``), extracts that one file into a
cache directory (pytest's cache, or the temporary directory) and imports it. The download
happens once per cache directory and aiogram version.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

MEMBER = "tests/test_fsm/storage/test_storages.py"


def aiogram_version() -> str:
    return importlib.metadata.version("aiogram")


def _fetch(version: str, cache_dir: Path) -> Path:
    target = cache_dir / f"aiogram-{version}-test_storages.py"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--disable-pip-version-check",
                f"aiogram=={version}",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        archives = list(Path(tmp).glob("aiogram-*.tar.gz"))
        if done.returncode != 0 or not archives:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"pip download aiogram=={version} failed: {last[0]}")
        with tarfile.open(archives[0]) as archive:
            member = archive.getmember(f"aiogram-{version}/{MEMBER}")
            source = archive.extractfile(member)
            if source is None:
                raise RuntimeError(f"{MEMBER} is not a file in the aiogram sdist")
            partial = target.with_suffix(".part")
            partial.write_bytes(source.read())
            partial.replace(target)
    return target


def storage_contract(cache_dir: Path | None) -> tuple[type | None, str]:
    """aiogram's ``TestStorages`` class, or None and the reason it is unavailable."""
    version = aiogram_version()
    if cache_dir is None:
        cache_dir = Path(tempfile.gettempdir()) / "botdb-aiogram-sdist"
    try:
        path = _fetch(version, cache_dir)
    except (OSError, RuntimeError, KeyError, tarfile.TarError, subprocess.SubprocessError) as exc:
        return None, f"aiogram {version}'s storage tests could not be fetched: {exc}"
    spec = importlib.util.spec_from_file_location("aiogram_test_storages", path)
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TestStorages, f"aiogram {version}"
