"""pyproject.toml ships what the code needs: every package folder, every data file it reads.

A folder left out of `packages` or a data file left out of `package-data` works in the editable
development install and breaks only in a real one; this catches it without building a wheel.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
# Files inside the package folders that the code does not read at run time.
NOT_SHIPPED = ("mapping/locales/glossary/*.md",)   # translators' glossaries, for people


def _folder(package: str) -> Path:
    """The source folder of an installed package name, through `package-dir`."""
    dirs = SETUPTOOLS["package-dir"]
    best = max((name for name in dirs if package == name or package.startswith(name + ".")), key=len)
    rest = package[len(best):].lstrip(".")
    return ROOT / dirs[best] / Path(*rest.split(".")) if rest else ROOT / dirs[best]


def _package_folders() -> dict[Path, str]:
    return {_folder(p): p for p in SETUPTOOLS["packages"]}


def test_every_package_folder_is_listed():
    listed = set(_package_folders())
    found = {init.parent for top in SETUPTOOLS["package-dir"].values()
             for init in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed packages without an __init__.py"


def test_every_data_file_is_package_data():
    folders = _package_folders()
    data = SETUPTOOLS["package-data"]
    missing = []
    for folder, package in folders.items():
        for path in folder.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            # the deepest listed package holding the file owns it
            owner = max((f for f in folders if path.is_relative_to(f)), key=lambda f: len(f.parts))
            if owner != folder:
                continue
            rel = path.relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(path.relative_to(ROOT).as_posix(), p) for p in NOT_SHIPPED):
                continue
            if not any(fnmatch.fnmatch(rel, pattern) for pattern in data.get(package, [])):
                missing.append(f"{package}: {rel}")
    assert missing == [], "add these to [tool.setuptools.package-data]"
