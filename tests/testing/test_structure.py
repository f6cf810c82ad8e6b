"""Where the emulator's code lives: an oracle that shares no logic with the library,
modules that import only what another package re-exports, one shape for every
dialect, and a docstring on every module saying what it holds."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mdcollect.testing
from mdcollect.testing.dialects import DIALECTS

ROOT = Path(mdcollect.testing.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))

#: What the emulator may take from the library: ExchangeEmulator.client() builds one.
LIBRARY_ALLOWED = {
    "mdcollect.exchanges",
    "mdcollect.exchanges.ExchangeClient",
    "mdcollect.exchanges.redirect_urls",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _imports(path: Path) -> list[str]:
    """Every ``mdcollect`` name ``path`` imports: modules, and ``module.name`` for from-imports."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out += [module, *(f"{module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [name for name in out if name.split(".")[0] == "mdcollect"]


def _private_owner(name: str) -> str | None:
    """The package owning the first private module in ``name`` (None: no private part)."""
    parts = name.split(".")
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_the_emulator_shares_no_logic_with_the_library(path: Path) -> None:
    library = [
        name
        for name in _imports(path)
        if not name.startswith("mdcollect.testing") and name != "mdcollect"
    ]
    assert set(library) <= LIBRARY_ALLOWED, library


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_import_of_another_packages_private_module(path: Path) -> None:
    package = _package(path)
    wrong = [
        name
        for name in _imports(path)
        if (owner := _private_owner(name)) is not None
        and not (package == owner or package.startswith(owner + "."))
    ]
    assert wrong == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_every_module_says_what_it_holds(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text()))


@pytest.mark.parametrize("venue", sorted(DIALECTS))
def test_every_dialect_is_a_package_of_one_shape(venue: str) -> None:
    cls = DIALECTS[venue]
    room = ROOT / "dialects" / venue
    assert (room / "__init__.py").is_file() and (room / "rest.py").is_file()
    # websocket halves live in ws.py, exactly for the venues that serve websockets
    assert (room / "ws.py").is_file() == bool(cls.ws_hosts)
    assert cls.__module__ == f"mdcollect.testing.dialects.{venue}.rest"
    package = importlib.import_module(f"mdcollect.testing.dialects.{venue}")
    assert getattr(package, cls.__name__) is cls
