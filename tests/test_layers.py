"""The layering rule of docs/architecture.md, checked on every import in ``src/``.

Imports point downwards only (model < storage < exchanges < backfill/aggregate <
collectors < ensure < entry points), and no module imports another package's
private module: a package re-exports from its ``__init__`` what others may use.
The emulator in ``testing/`` stands beside the library: it may build clients from
``mdcollect.exchanges``'s public names, and the library may start it only lazily
(inside a function, for ``emulate=``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mdcollect"

#: Layer of each top-level name under ``mdcollect``; a module may import its own layer
#: and those below. A new top-level module must be placed here (the test says so).
LAYERS: dict[str, int] = {
    # the model: no imports from any package below
    **dict.fromkeys(
        [
            *(
                "_api",
                "_backoff",
                "_errors",
                "_human",
                "_intervals",
                "_keys",
                "_lease",
                "_logs",
                "_redact",
            ),
            *("_rules", "_schema", "_sync", "_time"),
        ],
        0,
    ),
    "storage": 1,
    "exchanges": 2,
    "backfill": 3,
    "aggregate": 3,
    "analytics": 3,
    "collectors": 4,
    "collector": 4,  # deprecated alias of mdcollect.collectors
    "ensure": 5,
    "plot": 5,
    "metrics": 5,
    "catalog": 5,
    "interop": 5,
    "jobs": 5,
    "distributed": 5,
    "_audit": 3,
    "audit": 5,
    "cli": 6,
    "__main__": 6,
    "service": 6,
    "remote": 6,
}
TESTING = "testing"
ENTRY_LAYER = 6
#: What the emulator may use of the library (to build clients pointed at itself).
TESTING_MAY_IMPORT = {"mdcollect.exchanges"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, list[str], bool]]:
    """``(line, imported modules or names, at module level)`` per import of mdcollect."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        ours = [n for n in names if n == "mdcollect" or n.startswith("mdcollect.")]
        if ours:
            yield node.lineno, ours, id(node) in top_level or _under_type_checking(tree, node)


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        in_block = isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
        if in_block and any(child is node for child in ast.walk(stmt)):
            return True
    return False


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``module`` that breaks the layering rule, one line each."""
    found: list[str] = []
    package = module if is_package else module.rpartition(".")[0]
    parts = module.split(".")
    mine = parts[1] if len(parts) > 1 else ""
    for line, targets, at_top in imports(source, module, is_package):
        said = len(found)
        for target in targets:
            if len(found) == said:
                found += _check(module, package, mine, line, target, at_top)
    return found


def _check(module: str, package: str, mine: str, line: int, target: str, at_top: bool) -> list[str]:
    """What is wrong with one imported module or name, if anything (at most one line)."""
    where = f"{module}:{line} imports {target}"
    tparts = target.split(".")
    for i, part in enumerate(tparts[1:], 1):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(tparts[:i])
            if not (package == owner or package.startswith(owner + ".")):
                return [f"{where}: a private module of {owner}"]
            break
    theirs = tparts[1] if len(tparts) > 1 else ""
    if mine == TESTING:
        if theirs and theirs != TESTING and ".".join(tparts[:2]) not in TESTING_MAY_IMPORT:
            return [f"{where}: the emulator may use only {sorted(TESTING_MAY_IMPORT)}"]
        return []
    if theirs == TESTING:
        return [f"{where}: the library starts the emulator only lazily"] if at_top else []
    if mine == "":  # mdcollect/__init__.py re-exports everything
        return []
    if mine not in LAYERS:
        return [f"{module}: not placed in a layer (add it to LAYERS and the docs)"]
    if theirs == "":
        if LAYERS[mine] < ENTRY_LAYER:
            return [f"{where}: only entry points import the top-level package"]
        return []
    if theirs in LAYERS and LAYERS[theirs] > LAYERS[mine]:
        return [f"{where}: an upward import ({mine} is below {theirs})"]
    return []


def test_no_import_breaks_the_layering_rule() -> None:
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path, SRC)
        found += violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "says"),
    [
        ("mdcollect.collectors._kinds", "from ..exchanges._client import x", "private module"),
        ("mdcollect.service._app", "from mdcollect.remote._client import y", "private module"),
        ("mdcollect.storage.redis", "from ..exchanges import ExchangeClient", "upward"),
        ("mdcollect._time", "from .storage import open_storage", "upward"),
        ("mdcollect.exchanges._client", "import mdcollect", "top-level package"),
        ("mdcollect.ensure", "from .testing import ExchangeEmulator", "only lazily"),
        ("mdcollect.testing._market", "from mdcollect._time import DAY", "emulator may use"),
        ("mdcollect.unplaced", "import pandas", ""),
    ],
)
def test_the_checker_catches_each_kind_of_violation(module: str, source: str, says: str) -> None:
    if module == "mdcollect.unplaced":  # an unplaced module is reported once it imports us
        source = "from ._time import DAY"
        says = "not placed in a layer"
    found = violations(source, module)
    assert len(found) == 1 and says in found[0], found


def test_allowed_imports_pass_the_checker() -> None:
    assert (
        violations("from .._time import DAY\nfrom .._errors import X", "mdcollect.storage.redis")
        == []
    )
    assert violations("from ..exchanges import ExchangeClient", "mdcollect.backfill._engine") == []
    assert violations("from ._base import Dialect", "mdcollect.testing.dialects.okx") == []
    lazy = "def f():\n    from .testing import shared_emulator\n"
    assert violations(lazy, "mdcollect.ensure") == []
