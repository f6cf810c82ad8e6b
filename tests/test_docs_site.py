"""The documentation site: ``mkdocs build --strict`` succeeds, offline, with every page.

One strict build (Material, mkdocstrings) into a temporary folder, as ``.ci/run``
does; then the built HTML is read: the pages and the API reference's anchors are
there (every name in an ``__all__`` the reference documents), the changelog page is
``CHANGELOG.md`` itself, the docstrings' reST reads as Markdown, and nothing is
fetched from the network when a page is viewed (no web fonts, no CDN).
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["index", "getting-started", "concepts", "stores", "changelog", "architecture"]
# the API reference: page -> the module whose __all__ it documents
REFERENCE = {
    "index": "mdcollect",
    "storage": "mdcollect.storage",
    "exchanges": "mdcollect.exchanges",
    "collectors": "mdcollect.collectors",
    "testing": "mdcollect.testing",
    "remote": "mdcollect.remote",
    "service": "mdcollect.service",
    "backfill": "mdcollect.backfill",
    "aggregate": "mdcollect.aggregate",
    "audit": "mdcollect.audit",
    "catalog": "mdcollect.catalog",
    "analytics": "mdcollect.analytics",
    "interop": "mdcollect.interop",
    "metrics": "mdcollect.metrics",
    "parsing": "mdcollect.exchanges.parsing",
}
# what a viewed page would fetch: a resource attribute with a scheme, or a CSS url()
RESOURCE = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=[\"']((?:https?:)?//[^\"']+)"
    r"|<link\b[^>]*\bhref=[\"']((?:https?:)?//[^\"']+)"
    r"|url\(\s*[\"']?((?:https?:)?//[^)\"']+)"
    r"|@import\s+[\"']((?:https?:)?//[^\"']+)",
    re.I,
)
CDN = re.compile(r"fonts\.googleapis|fonts\.gstatic|unpkg\.com|jsdelivr|cdnjs|\bcdn\.", re.I)


def build(out: Path) -> None:
    """``mkdocs build --strict`` into ``out``, as ``.ci/run`` does."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_documentation_site(tmp_path: Path) -> None:
    """One build (about 10 s on an idle machine), every check on it: a test each would build it once per
    pytest-xdist worker."""
    build(tmp_path)
    check_every_page(tmp_path)
    for page in sorted(REFERENCE):
        check_every_public_name(tmp_path, page)
    check_signatures_and_members(tmp_path)
    check_the_changelog_page_is_the_changelog(tmp_path)
    check_docstrings_read_as_markdown(tmp_path)
    check_nothing_is_fetched_when_a_page_is_viewed(tmp_path)


def html_files(site: Path) -> Iterator[Path]:
    yield from (p for p in site.rglob("*") if p.suffix in (".html", ".css"))


def anchors(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


def check_every_page(site: Path) -> None:
    for name in PAGES:
        assert (site / f"{name}.html").is_file(), name
    for name in REFERENCE:
        assert (site / "reference" / f"{name}.html").is_file(), name
    # links between pages end in .html (use_directory_urls off): it browses from file://
    index = (site / "index.html").read_text()
    assert 'href="getting-started.html"' in index and 'href="reference/index.html"' in index


def check_every_public_name(site: Path, page: str) -> None:
    module = importlib.import_module(REFERENCE[page])
    names = [n for n in module.__all__ if not n.startswith("__")]
    found = anchors(site / "reference" / f"{page}.html")
    # a name that is also a submodule (mdcollect.audit, mdcollect.catalog,
    # mdcollect.exchanges.parsing) is documented on that module's own page
    modules = {m: p for p, m in REFERENCE.items()}
    missing = []
    for name in names:
        path = f"{module.__name__}.{name}"
        if path in modules:
            assert path in anchors(site / "reference" / f"{modules[path]}.html"), path
        elif path not in found:
            missing.append(name)
    assert names and missing == [], page


def check_signatures_and_members(site: Path) -> None:
    found = anchors(site / "reference" / "index.html")
    assert {"mdcollect.ensure_data", "mdcollect.DataCollectionStorage.write"} <= found
    assert "mdcollect.DataCollector.on_rows" in found
    storage = (site / "reference" / "storage.html").read_text()
    assert "covered" in storage and "mdcollect.storage.open_storage" in anchors(
        site / "reference" / "storage.html"
    )


def check_the_changelog_page_is_the_changelog(site: Path) -> None:
    """The page includes CHANGELOG.md: each subsection's newest line is on it."""
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "changelog.html").read_text()))
    page = " ".join(page.split())
    sections = (ROOT / "CHANGELOG.md").read_text().split("\n### ")[1:]
    assert len(sections) >= 3  # Added, Changed, Fixed
    for section in sections:
        title, _, entries = section.split("\n## ")[0].partition("\n")
        newest = entries.strip().split("\n- ")[-1]
        words = " ".join(re.sub(r"[`*\[\]]|\]\([^)]*\)", "", newest).split()[:8])
        assert title in page and words in page, (title, words)


def check_docstrings_read_as_markdown(site: Path) -> None:
    storage = (site / "reference" / "storage.html").read_text()
    # a doctest is a code block, without its doctest flags
    assert '<span class="gp">&gt;&gt;&gt; </span><span class="n">storage</span>' in storage
    assert "doctest:" not in storage
    # a reST table is an aligned block, not a heading
    assert re.search(r"<pre[^>]*>.*?arctic\+lmdb://PATH", storage, re.S)
    # a role (:class:`DataCollectionStorage`) is code, linked to its entry
    assert re.search(
        r'<a class="autorefs autorefs-internal"[^>]*href="#mdcollect\.storage\.'
        r'DataCollectionStorage"[^>]*><code>DataCollectionStorage</code></a>',
        storage,
    )
    assert ":class:" not in storage and ":func:" not in storage
    # a reST directive is an admonition
    remote = (site / "reference" / "remote.html").read_text()
    assert ".. deprecated::" not in remote
    assert '<p class="admonition-title">Deprecated since 0.1.0</p>' in remote
    # the package's own docstring too (a doctest left alone reads as nested quotes)
    for page in REFERENCE:
        assert "<blockquote>" not in (site / "reference" / f"{page}.html").read_text(), page


def check_nothing_is_fetched_when_a_page_is_viewed(site: Path) -> None:
    fetched, cdn = [], []
    for path in html_files(site):
        text = path.read_text()
        where = path.relative_to(site)
        fetched += [f"{where}: {''.join(m)}" for m in RESOURCE.findall(text)]
        cdn += [f"{where}: {m.group(0)}" for m in CDN.finditer(text)]
        assert 'class="mermaid"' not in text, f"{where}: a diagram loads mermaid from a CDN"
    assert fetched == []
    assert cdn == []


def test_the_network_check_catches_fonts_and_cdn_scripts(tmp_path: Path) -> None:
    """What the network check looks for, shown on what Material writes when asked for
    web fonts (``theme.font``) or the offline plugin's shim."""
    (tmp_path / "fonts.html").write_text(
        '<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin>'
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
    )
    (tmp_path / "shim.html").write_text('<script src="https://unpkg.com/iframe-worker/shim">')
    (tmp_path / "ok.html").write_text(
        '<a href="https://semver.org/">SemVer</a><script src="assets/bundle.js"></script>'
    )
    found = {p.name: [m for m in RESOURCE.findall(p.read_text())] for p in html_files(tmp_path)}
    assert len(found["fonts.html"]) == 2 and len(found["shim.html"]) == 1
    assert found["ok.html"] == []


# -- the docstring converter the API reference loads (docs/_ext/rest_docstrings.py) -----


@pytest.fixture(scope="module")
def rest() -> ModuleType:
    path = ROOT / "docs" / "_ext" / "rest_docstrings.py"
    spec = importlib.util.spec_from_file_location("rest_docstrings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_doctest_becomes_a_pycon_block(rest: ModuleType) -> None:
    text = 'Open it.\n\n>>> st = open("x")  # doctest: +SKIP\n>>> st["id"]\n\'a\'\n\nAfter.'
    assert rest.convert(text) == (
        'Open it.\n\n```pycon\n>>> st = open("x")\n>>> st["id"]\n\'a\'\n```\n\nAfter.'
    )


def test_a_literal_block_becomes_fenced_python_or_text(rest: ModuleType) -> None:
    code = "Use it::\n\n    x = f(1)\n    y = 2\n\nThen."
    assert rest.convert(code) == "Use it:\n\n```python\nx = f(1)\ny = 2\n```\n\nThen."
    tree = "Layout::\n\n    ROOT/<exchange>/\n        2024.parquet\n"
    assert rest.convert(tree) == "Layout:\n\n```text\nROOT/<exchange>/\n    2024.parquet\n```"


def test_a_simple_table_becomes_a_text_block(rest: ModuleType) -> None:
    table = "Kinds:\n\n===== ====\nkind  cols\n===== ====\nohlcv open\n===== ====\n\nEnd."
    lines = table.splitlines()
    assert rest.convert(table).splitlines() == [
        *lines[:2], "```text", *lines[2:7], "```", "", "End."
    ]  # fmt: skip


def test_a_directive_becomes_an_admonition(rest: ModuleType) -> None:
    text = "Waits.\n\n.. deprecated:: 0.1.0\n   Use the policy;\n   it is kept.\n\nMore."
    assert rest.convert(text) == (
        'Waits.\n\n!!! warning "Deprecated since 0.1.0"\n    Use the policy;\n    it is kept.'
        "\n\nMore."
    )


def test_the_conversion_is_idempotent(rest: ModuleType) -> None:
    text = (
        ">>> 1 + 1\n2\n\nA table:\n\n=== ===\na   b\n=== ===\n\nCode::\n\n    x = 1\n\n.. note:: N"
    )
    once = rest.convert(text)
    assert rest.convert(once) == once
