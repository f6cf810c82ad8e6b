"""Check what the built wheel and sdist hold; run from a git checkout by .ci/package.

    python .ci/check_dist.py dist/mdcollect-X-py3-none-any.whl dist/mdcollect-X.tar.gz

The wheel: every tracked file under src/mdcollect (py.typed and any data file included),
the LICENSE and the metadata (version, license expression, project URLs, extras). The
sdist: what the tests need to run from it (src, tests, docs, examples, bench, mkdocs.yml).
Neither: caches, virtualenvs, compiled files. Exits 1 naming every problem.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

UNWANTED = re.compile(r"(^|/)(__pycache__|\.venv|\.pytest_cache|\.mypy_cache|\.ruff_cache|"
                      r"\.hypothesis|\.git|dist|build)(/|$)|\.py[co]$")  # fmt: skip
EXTRAS = {"redis", "s3", "service", "remote", "plot", "dask", "notebook", "docs", "test", "dev"}
URLS = {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
SDIST_DIRS = ("src/", "tests/", "docs/", "examples/", "bench/")
SDIST_FILES = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "PKG-INFO", "mkdocs.yml"}


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True)
    return [p for p in out.stdout.splitlines() if Path(p).exists()]


def version() -> str:
    text = Path("src/mdcollect/__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    assert m, "no __version__ in src/mdcollect/__init__.py"
    return m.group(1)


def check_wheel(path: Path, files: list[str], v: str) -> list[str]:
    problems = []
    names = set(zipfile.ZipFile(path).namelist())
    info = f"mdcollect-{v}.dist-info/"
    for f in files:
        if f.startswith("src/mdcollect/") and f.removeprefix("src/") not in names:
            problems.append(f"wheel: {f} missing")
    for name in sorted(names):
        if UNWANTED.search(name) or not name.startswith(("mdcollect/", info)):
            problems.append(f"wheel: {name} should not be there")
    if f"{info}licenses/LICENSE" not in names:
        problems.append("wheel: no LICENSE in the dist-info")
    meta = email.message_from_bytes(zipfile.ZipFile(path).read(f"{info}METADATA"))
    if meta["Version"] != v:
        problems.append(f"wheel: version {meta['Version']} is not __version__ {v}")
    if meta["License-Expression"] != "MIT":
        problems.append(f"wheel: License-Expression {meta['License-Expression']!r}")
    urls = {u.split(",")[0] for u in meta.get_all("Project-URL") or []}
    if urls != URLS:
        problems.append(f"wheel: project URLs {sorted(urls)}, expected {sorted(URLS)}")
    extras = set(meta.get_all("Provides-Extra") or [])
    if not extras >= EXTRAS:
        problems.append(f"wheel: extras {sorted(EXTRAS - extras)} missing")
    if not meta.get_all("Classifier"):
        problems.append("wheel: no classifiers")
    return problems


def check_sdist(path: Path, files: list[str], v: str) -> list[str]:
    problems = []
    top = f"mdcollect-{v}/"
    with tarfile.open(path) as tar:
        names = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
    for f in files:
        if (f.startswith(SDIST_DIRS) or f in SDIST_FILES) and f not in names:
            problems.append(f"sdist: {f} missing")
    for f in SDIST_FILES - names:
        if f != "mkdocs.yml" or Path(f).exists():
            problems.append(f"sdist: {f} missing")
    problems += [f"sdist: {n} should not be there" for n in sorted(names) if UNWANTED.search(n)]
    return problems


def main(argv: list[str]) -> int:
    files, v = tracked(), version()
    problems = []
    for arg in argv:
        path = Path(arg)
        check = check_wheel if path.suffix == ".whl" else check_sdist
        problems += check(path, files, v)
    for p in problems:
        print(f"check_dist: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
