"""Docs are code: every fenced block of README.md and docs/*.md runs as written.

Each page runs in a fresh folder with its own ``MDCOLLECT_HOME`` and
``MDCOLLECT_EMULATE=1``, so code written for a real exchange is served by the
built-in emulator. Blocks of a page run in order and share state, as a reader's
session would: Python blocks in one namespace, shell lines as real processes
(``mdcollect serve`` and ``mdcollect collect`` keep running in the background
until the page ends, then get SIGINT and must exit 0), and a block with a
``title="NAME"`` (MkDocs' syntax) is saved as that file. A block in a language
this test cannot run fails it: a page cannot show code that is never checked.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[ \t]*(.*)$")
TITLE = re.compile(r'title="([^"]+)"')
DEADLINE = 120.0  # seconds for one command, or for a background one to be ready


@attrs.frozen
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    code: str


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{path.name}:{start}: unclosed code block"
        title = TITLE.search(m.group(2))
        out.append(Block(path.name, start, m.group(1), title and title.group(1), "\n".join(body)))
        i += 1
    return out


def extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


@attrs.define
class Shell:
    """Runs the shell lines of a page; keeps long-running commands until the page ends."""

    cwd: Path
    env: dict[str, str]
    background: list[tuple[str, subprocess.Popen[str]]] = attrs.field(factory=list)

    def run_block(self, block: Block) -> None:
        for raw in block.code.splitlines():
            line = raw.split("  #")[0].strip()  # a comment after two spaces
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                self.run(part.strip(), f"{block.page}:{block.line}")

    def run(self, command: str, where: str) -> None:
        words = shlex.split(command)
        env = dict(self.env)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        program = words[0].removeprefix(".venv/bin/") if words else ""
        if command.startswith("python3 -m venv") or [program, *words[1:3]] == [
            "python", "-m", "pytest",
        ]:  # fmt: skip
            return  # the README's set-up and test commands: .ci/run runs them as written
        if program == "pip":
            assert words[1] == "install", f"{where}: {command}"
            for spec in (w for w in words[2:] if w != "-e"):
                m = re.fullmatch(r"\.?(?:mdcollect)?\[([\w,-]+)\]", spec.strip("\"'"))
                assert m, f"{where}: cannot check {spec!r}"
                for extra in m.group(1).split(","):
                    assert extra in extras(), f"{where}: no extra {extra!r} in pyproject.toml"
            return
        assert program == "mdcollect", f"{where}: the docs test cannot run {command!r}"
        argv = [sys.executable, "-m", "mdcollect.cli", *words[1:]]
        sub = next((w for w in words[1:] if not w.startswith("-")), "")
        if sub in ("serve", "collect"):
            proc = subprocess.Popen(argv, cwd=self.cwd, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
            self.background.append((f"{where}: {command}", proc))
            self._wait_ready(sub, words, proc, where)
            return
        proc2 = subprocess.run(argv, cwd=self.cwd, env=env, text=True, capture_output=True,
                               timeout=DEADLINE)  # fmt: skip
        assert proc2.returncode == 0, f"{where}: {command}\n{proc2.stdout}\n{proc2.stderr}"

    def _wait_ready(
        self, sub: str, words: list[str], proc: subprocess.Popen[str], where: str
    ) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{where}: exited early:\n{proc.communicate()[0]}"
            if sub == "serve":
                port = words[words.index("--port") + 1] if "--port" in words else "8002"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).is_success:
                        return
                except httpx.HTTPError:
                    pass
            elif (self.cwd / words[words.index("--status-file") + 1]).exists():
                return
            time.sleep(0.1)  # polling a condition, with a deadline
        pytest.fail(f"{where}: not ready after {DEADLINE}s")

    def stop(self) -> None:
        failures = []
        for what, proc in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode not in (0, -signal.SIGINT):
                failures.append(f"{what} exited {proc.returncode}:\n{out}")
        self.background.clear()
        assert not failures, "\n".join(failures)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MDCOLLECT_EMULATE", "1")
    runner = Shell(tmp_path, dict(os.environ))
    yield runner
    runner.stop()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_code_block_runs(page: Path, shell: Shell) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    found = blocks(page)
    assert found, f"{page.name} has no code blocks"
    for block in found:
        where = f"{block.page}:{block.line}"
        if block.title is not None:
            (shell.cwd / block.title).write_text(block.code + "\n")
        elif block.lang == "python":
            exec(compile(block.code, where, "exec"), namespace)
        elif block.lang in ("bash", "sh"):
            shell.run_block(block)
        elif block.lang != "text":  # text blocks are pictures, not code
            pytest.fail(f"{where}: a ```{block.lang} block this test cannot run")


def test_the_docs_stand_alone() -> None:
    """Nothing in the repository's docs, code or tests points outside it."""
    outside = re.compile(r"\.\./shared|/work/|parents\[[2-9]\] */ *\"shared\"")
    offenders = []
    for folder in ("src", "tests", "docs", "examples"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".toml", ".txt") and path != Path(__file__):
                for n, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if outside.search(text):
                        offenders.append(f"{path.relative_to(ROOT)}:{n}: {text.strip()}")
    offenders += [
        f"README.md: {line}" for line in (ROOT / "README.md").read_text().splitlines()
        if outside.search(line)
    ]  # fmt: skip
    assert offenders == []


def test_docs_links_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_every_example_runs(example: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MDCOLLECT_HOME": str(tmp_path / "home"), "MDCOLLECT_EMULATE": "1"}
    proc = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=DEADLINE)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), f"{example.name} printed nothing"
