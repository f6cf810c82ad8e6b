"""The package's metadata: one version everywhere, the license file, project URLs and
classifiers. ``.ci/package`` builds the wheel and the sdist and checks what they hold."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import mdcollect

ROOT = Path(__file__).resolve().parents[1]


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def test_version_is_the_installed_metadata() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert proc.stdout == f"mdcollect {importlib.metadata.version('mdcollect')}\n"
    assert mdcollect.__version__ == importlib.metadata.version("mdcollect")


def test_the_version_has_one_source() -> None:
    """The wheel's version is read from ``__version__`` at build time, so the two never differ."""
    data = project()
    assert "version" not in data["project"] and "version" in data["project"]["dynamic"]
    source = ROOT / data["tool"]["hatch"]["version"]["path"]
    assert re.search(rf'^__version__ = "{re.escape(mdcollect.__version__)}"$',
                     source.read_text(), re.M)  # fmt: skip


def test_license_file_and_expression() -> None:
    meta = project()["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text
    # PEP 639: the license expression replaces the (deprecated) license classifiers
    assert not [c for c in meta["classifiers"] if c.startswith("License ::")]


def test_project_urls_share_one_base() -> None:
    urls: dict[str, str] = project()["project"]["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
    base = urls["Homepage"]
    assert base.startswith("https://") and all(u.startswith(base) for u in urls.values())


def test_classifiers_say_what_the_package_is() -> None:
    meta = project()["project"]
    classifiers: list[str] = meta["classifiers"]
    for prefix in ("Development Status ::", "Intended Audience ::", "Operating System ::",
                   "Framework :: AsyncIO", "Topic ::", "Typing :: Typed"):  # fmt: skip
        assert any(c.startswith(prefix) for c in classifiers), prefix
    lowest = meta["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {lowest}" in classifiers
    assert meta["keywords"]
