"""Docs are code: every fenced block of README.md and docs/*.md runs as written.

Each page runs in a fresh folder with its own ``MDCOLLECT_HOME`` and
``MDCOLLECT_EMULATE=1``, so code written for a real exchange is served by the
built-in emulator. Blocks of a page run in order and share state, as a reader's
session would: Python blocks in one namespace, shell lines as real processes
(``mdcollect serve`` and ``mdcollect collect`` keep running in the background
until the page ends, then get SIGINT and must exit 0), and a block with a
``title="NAME"`` (MkDocs' syntax) is saved as that file. A block in a language
this test cannot run fails it: a page cannot show code that is never checked.

Every block has a deadline of its own (:data:`BLOCK_DEADLINE` seconds, a shell
block that much per command): a block that hangs fails its page's test, naming the
block, long before pytest-timeout's limit for the whole test. Pages run side by
side (pytest-xdist, other checkouts on the machine), so the service port the docs
show (:data:`DOCS_PORT`) becomes a free port of the page's own.

A ``console`` block is a terminal session whose output is checked: ``$ `` lines
are commands run as real processes (as shell lines are), the lines under each its
expected output, where ``...`` matches anything, as doctest's ELLIPSIS; a failing
command is shown with ``$ echo $?`` and its exit code (see :func:`run_console`).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import attrs
import httpx
import pytest

from tests.conftest import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[ \t]*(.*)$")
TITLE = re.compile(r'title="([^"]+)"')
DEADLINE = 120.0  # seconds for one command, or for a background one to be ready
BLOCK_DEADLINE = 60.0  # seconds for one block (a shell block: for each of its commands)
DOCS_PORT = 8002  # the port the docs serve on
REDIS_DOCS_PORT = 6379  # the Redis server the docs connect to
S3_DOCS_PORT = 9000  # the S3-compatible server the docs connect to (MinIO's port)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)  # pymdownx.snippets: a file included whole
GENERATED = re.compile(r"^::: [\w.]+$", re.M)  # mkdocstrings: an API page from docstrings


def page_name(path: Path) -> str:
    """``README.md``, or the page's path under ``docs/`` (``reference/storage.md``)."""
    return (
        path.relative_to(ROOT / "docs").as_posix()
        if path.is_relative_to(ROOT / "docs")
        else path.name
    )


def page_text(path: Path) -> str:
    """The page as the site shows it: with the files it includes (``--8<--``) in place."""
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), path.read_text())


@attrs.frozen
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    code: str


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    name = page_name(path)
    lines = page_text(path).splitlines()
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
        assert i < len(lines), f"{name}:{start}: unclosed code block"
        title = TITLE.search(m.group(2))
        out.append(Block(name, start, m.group(1), title and title.group(1), "\n".join(body)))
        i += 1
    return out


def extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


@contextmanager
def deadline(seconds: float, where: str) -> Iterator[None]:
    """Fail the test, naming ``where``, when the body still runs after ``seconds``.

    SIGALRM in the main thread, as pytest-timeout's own timer (its default method),
    which is put back afterwards with what is left of it, and fires first if due first.
    """
    started = time.monotonic()
    outer = signal.getsignal(signal.SIGALRM)
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]

    def expire(signum: int, frame: FrameType | None) -> None:
        if outer_left and time.monotonic() - started >= outer_left and callable(outer):
            outer(signum, frame)  # pytest-timeout's limit for the whole test came first
        pytest.fail(f"{where}: still running after {seconds:g} s, the block's deadline")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if outer is None else outer)
        if outer_left:
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


@attrs.define
class Shell:
    """Runs the shell lines of a page; keeps long-running commands until the page ends.

    ``port`` is the page's own, for the service the docs run on :data:`DOCS_PORT`; a
    page that connects to Redis or S3 on their docs ports (:data:`REDIS_DOCS_PORT`,
    :data:`S3_DOCS_PORT`) gets a real ``redis-server`` or moto S3 server of its own.
    """

    cwd: Path
    env: dict[str, str]
    port: int = attrs.field(factory=free_port)
    background: list[tuple[str, subprocess.Popen[str]]] = attrs.field(factory=list)
    redis: RedisServer | None = None
    s3: tuple[int, subprocess.Popen[bytes]] | None = None

    def local(self, code: str) -> str:
        """``code`` with the docs' service, Redis and S3 ports replaced by this page's."""
        code = re.sub(
            rf"(127\.0\.0\.1:|localhost:|--port\s+){DOCS_PORT}\b", rf"\g<1>{self.port}", code
        )
        for docs_port, port in (
            (REDIS_DOCS_PORT, self.redis and self.redis.port),
            (S3_DOCS_PORT, self.s3 and self.s3[0]),
        ):
            if port:
                code = re.sub(rf"(127\.0\.0\.1:|port=){docs_port}\b", rf"\g<1>{port}", code)
        return code

    def start_servers(self, text: str) -> None:
        """Start the Redis and S3 servers ``text`` connects to on their docs ports."""
        if re.search(rf"(127\.0\.0\.1:|port=){REDIS_DOCS_PORT}\b", text) and not self.redis:
            self.redis = RedisServer(self.cwd)
            self.redis.start()
        if re.search(rf"(127\.0\.0\.1:|port=){S3_DOCS_PORT}\b", text) and not self.s3:
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                     "-p", str(port)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            self.s3 = (port, proc)
            deadline = time.monotonic() + DEADLINE
            while not _listening(port):
                assert proc.poll() is None and time.monotonic() < deadline, "no S3 server"
                time.sleep(0.05)  # polling a condition, with a deadline

    @staticmethod
    def commands(code: str) -> list[str]:
        """The commands of a shell block, in order."""
        out = []
        for raw in code.splitlines():
            line = raw.split("  #")[0].strip()  # a comment after two spaces
            if line and not line.startswith("#"):
                out += [part.strip() for part in line.split("&&")]
        return out

    def run_block(self, block: Block) -> None:
        for command in self.commands(self.local(block.code)):
            self.run(command, f"{block.page}:{block.line}")

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
        if sub == "serve" and "--port" not in words:
            argv += ["--port", str(self.port)]
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
                port = words[words.index("--port") + 1] if "--port" in words else self.port
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
        if self.redis is not None:
            self.redis.stop()
        if self.s3 is not None:
            self.s3[1].terminate()
            self.s3[1].wait(timeout=DEADLINE)
        assert not failures, "\n".join(failures)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MDCOLLECT_EMULATE", "1")
    runner = Shell(tmp_path, dict(os.environ))
    yield runner
    runner.stop()


PROMPT = "$ "


@attrs.frozen
class Step:
    """One ``$ command`` of a console block with the output shown after it."""

    command: str
    expected: list[str]


def console_steps(code: str) -> list[Step]:
    """The commands of a ``console`` block, each with the lines shown under it."""
    steps: list[Step] = []
    for line in code.splitlines():
        if line.startswith(PROMPT):
            steps.append(Step(line.removeprefix(PROMPT).strip(), []))
        else:
            assert steps, f"output before the first {PROMPT!r} command: {line!r}"
            steps[-1].expected.append(line)
    return steps


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    """A regex matching the output ``expected`` shows: ``...`` alone on a line stands for
    any lines (none too), ``...`` inside a line for any text on that line."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(map(re.escape, line.rstrip().split("..."))) + "\n")
    return re.compile("".join(parts))


def normalised(output: str) -> str:
    """``output`` as compared: trailing spaces and blank lines dropped, one final newline."""
    lines = [line.rstrip() for line in output.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def run_console(block: Block, shell: Shell) -> None:
    """Run a ``console`` block as a terminal session and compare what it printed.

    Each line starting with ``$ `` is a command, run as a real process in the page's
    folder as a shell line is (``mdcollect ...``, ``NAME=value`` prefixes allowed); the
    lines after it, up to the next command, are its expected output: stdout and stderr
    as one terminal shows them (unbuffered, 80 columns), compared after dropping
    trailing whitespace and blank lines. As with doctest's ELLIPSIS, ``...`` inside a
    line matches any text on that line and a line of only ``...`` any lines (or none).
    A command must exit 0 unless the next one is ``$ echo $?``, which prints the exit
    code: a failing command is shown failing on purpose, with its code.
    """
    steps = console_steps(shell.local(block.code))
    last_rc: int | None = None
    for i, step in enumerate(steps):
        where = f"{block.page}:{block.line}: $ {step.command}"
        if step.command == "echo $?":
            assert last_rc is not None, f"{where}: no command before it"
            output, last_rc = f"{last_rc}\n", 0
        else:
            words = shlex.split(step.command)
            env = {**shell.env, "PYTHONUNBUFFERED": "1", "COLUMNS": "80"}
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                name, value = words.pop(0).split("=", 1)
                env[name] = value
            assert words[:1] == ["mdcollect"], f"{where}: the docs test cannot run it"
            proc = subprocess.run([sys.executable, "-m", "mdcollect.cli", *words[1:]],
                                  cwd=shell.cwd, env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=DEADLINE)  # fmt: skip
            output, last_rc = proc.stdout, proc.returncode
            shown = steps[i + 1].command if i + 1 < len(steps) else ""
            if last_rc != 0 and shown != "echo $?":
                pytest.fail(
                    f"{where}: exited {last_rc} (show it with '$ echo $?' if meant)\n{output}"
                )
        got = normalised(output)
        if output_pattern(step.expected).fullmatch(got) is None:
            pytest.fail(
                f"{where}: printed\n{got}\nwhich the page does not show; it shows\n"
                + "\n".join(step.expected)
            )


def run_page(page: Path, shell: Shell, block_deadline: float = BLOCK_DEADLINE) -> None:
    """Run the blocks of ``page`` in order, each within its deadline."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    found = blocks(page)
    shell.start_servers("\n".join(b.code for b in found))
    if not found and (GENERATED.search(page.read_text()) or SNIPPET.search(page.read_text())):
        return  # made of docstrings or an included file, with no code blocks of their own
    assert found, f"{page.name} has no code blocks"
    for block in found:
        where = f"{block.page}:{block.line}"
        if block.title is not None:
            (shell.cwd / block.title).write_text(shell.local(block.code) + "\n")
        elif block.lang == "python":
            with deadline(block_deadline, where):
                exec(compile(shell.local(block.code), where, "exec"), namespace)
        elif block.lang in ("bash", "sh"):
            n = max(1, len(shell.commands(block.code)))
            with deadline(block_deadline * n, where):
                shell.run_block(block)
        elif block.lang == "console":
            n = max(1, len(console_steps(block.code)))
            with deadline(block_deadline * n, where):
                run_console(block, shell)
        elif block.lang != "text":  # text blocks are pictures, not code
            pytest.fail(f"{where}: a ```{block.lang} block this test cannot run")


@pytest.mark.parametrize("page", PAGES, ids=[page_name(p) for p in PAGES])
def test_every_code_block_runs(page: Path, shell: Shell) -> None:
    run_page(page, shell)


HUNG_PAGE = """# A page that hangs

```python
ready = True
```

```python
import threading

threading.Event().wait()  # a deadlock: nothing will ever set it
```
"""


def test_a_hung_block_fails_its_page_soon_naming_the_block(tmp_path: Path, shell: Shell) -> None:
    page = tmp_path / "hung.md"
    page.write_text(HUNG_PAGE)
    outer = signal.getsignal(signal.SIGALRM)
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]  # pytest-timeout's, when armed
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"^hung\.md:7: still running after 0\.5 s"):
        run_page(page, shell, block_deadline=0.5)
    assert time.monotonic() - started < 30
    # pytest-timeout's limit for this test is back, less the time spent
    assert signal.getsignal(signal.SIGALRM) == outer
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert (0 < left < outer_left) if outer_left else left == 0


def test_a_shell_command_past_the_deadline_fails_naming_the_block(
    tmp_path: Path, shell: Shell
) -> None:
    page = tmp_path / "slow.md"
    page.write_text("# Slow\n\n```bash\nmdcollect --emulate ls\n```\n")
    # no interpreter importing the library answers within 10 ms
    with pytest.raises(pytest.fail.Exception, match=r"^slow\.md:3: still running after 0\.01 s"):
        run_page(page, shell, block_deadline=0.01)


def test_the_docs_service_port_is_the_pages_own(shell: Shell) -> None:
    code = 'mdcollect serve --port 8002\nDataCollectionClient("http://127.0.0.1:8002")\nx = 8002'
    assert shell.local(code) == (
        f"mdcollect serve --port {shell.port}\n"
        f'DataCollectionClient("http://127.0.0.1:{shell.port}")\nx = 8002'
    )


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


CONSOLE_PAGE = """# A terminal session

```console
$ mdcollect --help
usage: mdcollect ...
...
Collect and store cryptocurrency market data.
...
$ mdcollect status nowhere.json
mdcollect: error: no status file at nowhere.json; start ...
$ echo $?
2
```
"""


def test_a_console_block_runs_its_commands_and_matches_their_output(
    tmp_path: Path, shell: Shell
) -> None:
    page = tmp_path / "console.md"
    page.write_text(CONSOLE_PAGE)
    run_page(page, shell)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("and store", "and keep"), r"console\.md:3: \$ mdcollect --help: printed"),
        (("$ echo $?\n2", "$ echo $?\n1"), r"console\.md:3: \$ echo \$\?: printed\n2\n"),
        (("$ echo $?\n2\n", ""), r"console\.md:3: \$ mdcollect status nowhere.json: exited 2"),
        (("data.\n...\n", "data.\n"), r"console\.md:3: \$ mdcollect --help: printed"),
    ],
    ids=["other-text", "other-exit-code", "unshown-failure", "unshown-line"],
)
def test_a_console_block_fails_when_the_page_shows_other_output(
    tmp_path: Path, shell: Shell, change: tuple[str, str], message: str
) -> None:
    page = tmp_path / "console.md"
    page.write_text(CONSOLE_PAGE.replace(*change))
    with pytest.raises(pytest.fail.Exception, match=message):
        run_page(page, shell)


def test_console_output_patterns() -> None:
    pattern = output_pattern(["a ... c", "...", "end"])
    assert pattern.fullmatch("a b c\nend\n")
    assert pattern.fullmatch("a b c\nx\ny\nend\n")
    assert not pattern.fullmatch("a b\nc\nend\n")  # ... inside a line stays on it
    assert not pattern.fullmatch("a b c\nend\nmore\n")
    assert normalised("x  \n\n\n") == "x\n" and normalised("") == ""
