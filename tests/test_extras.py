"""The optional extras: each one imports cleanly alone, and a feature whose extra is not
installed says which one to install (``pip install 'mdcollect[redis]'``), never a bare
``ModuleNotFoundError``.

Each case runs in a fresh interpreter in which the third-party packages of the other extras
cannot be imported: a meta-path finder, installed before anything else, raises
``ModuleNotFoundError`` for them as if pip had never installed them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

from tests.conftest import RedisServer, make_bucket
from tests.test_notebook import _kernel_manager

ROOT = Path(__file__).resolve().parents[1]

#: The packages (import names) each user-facing extra brings.
PROVIDES: dict[str, set[str]] = {
    "redis": {"redis"},
    "s3": set(),  # ArcticDB, a core dependency, has its own S3 client
    "remote": {"httpx"},
    "service": {"starlette", "uvicorn"},
    "notebook": {"ipywidgets"},
    "plot": {"matplotlib"},
    "dask": {"dask", "distributed"},
}
#: Extras for working on mdcollect itself, not features of it.
OWN = {"test", "dev", "docs"}
EVERY = set().union(*PROVIDES.values())
DEADLINE = 120.0

BLOCKER = """\
import sys

BLOCKED = {blocked!r}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""

HELP = """
import contextlib, io, runpy
out = io.StringIO()
sys.argv = ["mdcollect", "--help"]
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    runpy.run_module("mdcollect.cli", run_name="__main__")
assert out.getvalue().startswith("usage: mdcollect"), out.getvalue()
"""


def run_without(blocked: set[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the packages ``blocked`` cannot be imported."""
    src = str(ROOT / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    script = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=DEADLINE, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _name(requirement: str) -> tuple[str, list[str]]:
    """``dask[distributed]>=2024.1`` -> ``("dask", ["distributed"])``."""
    m = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", requirement)
    assert m, requirement
    return m.group(1).lower(), [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]


def test_the_extras_in_pyproject_are_the_ones_tested_here() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    assert set(extras) - OWN == set(PROVIDES)
    core = {_name(r)[0] for r in project["dependencies"]}
    # which import names each installed distribution provides
    provided: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provided.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for extra, modules in PROVIDES.items():
        names = set()
        for requirement in extras[extra]:
            name, sub = _name(requirement)
            assert name not in core, f"{extra}: {name} is a core dependency already"
            names |= {name, *sub}
        imports = set().union(*(provided.get(n, set()) for n in names))
        assert modules <= imports and all(n in provided for n in names), (extra, names)


#: What each extra enables, used with only that extra installed.
ALONE = {
    "redis": """
        import mdcollect
        from mdcollect.collectors import RedisLease
        from tests.conftest import candles
        key = mdcollect.DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        store = mdcollect.open_storage(URL)
        store.write(key, candles(1_704_067_200_000, 3))
        assert len(store.read(key)) == 3
        store.close()
        lease = RedisLease(URL, "extras-alone", ttl=5)
        assert lease.acquire()
        lease.release()
    """,
    "s3": """
        import mdcollect
        from tests.conftest import candles
        key = mdcollect.DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        store = mdcollect.open_storage(URL)
        store.write(key, candles(1_704_067_200_000, 3))
        assert len(store.read(key)) == 3
        store.close()
    """,
    "remote": """
        from mdcollect.remote import DataCollectionClient, lambda_handler
        client = DataCollectionClient("http://127.0.0.1:9")
        client.close()
    """,
    "service": """
        from mdcollect.service import create_app
        app = create_app("memory://")
    """,
    "notebook": """
        import ipywidgets
        from tqdm.notebook import tqdm
    """,
    "plot": """
        import mdcollect
        from tests.conftest import candles
        store = mdcollect.open_storage("memory://")
        store.write(mdcollect.DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"),
                    candles(1_704_067_200_000, 3))
        assert type(mdcollect.plot_coverage(store)).__name__ == "Figure"
    """,
    "dask": """
        import dask.distributed
    """,
}


@pytest.mark.parametrize("extra", sorted(PROVIDES))
def test_each_extra_works_alone(extra: str, request: pytest.FixtureRequest) -> None:
    url = ""
    if extra == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    elif extra == "s3":
        s3 = request.getfixturevalue("s3_server")
        url = (
            f"arctic+s3://{s3['host']}:{make_bucket(s3)}?port={s3['port']}"
            f"&access={s3['access']}&secret={s3['secret']}"
        )
    code = f"URL = {url!r}\n" + textwrap.dedent(ALONE[extra]) + HELP
    run_without(EVERY - PROVIDES[extra], code)


NONE = """
import contextlib, io, json
import mdcollect

said = {}


def attempt(feature, call):
    try:
        call()
    except BaseException as exc:  # what a user would see
        said[feature] = f"{type(exc).__name__}: {exc}"
    else:
        said[feature] = "no error"


def serve():
    from mdcollect.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--storage", "memory://", "serve", "--port", "9"])
    raise SystemExit(f"exit {code}: {err.getvalue().strip()}")


def lease():
    from mdcollect.collectors import RedisLease
    RedisLease("redis://127.0.0.1:9/0", "x")


attempt("redis", lambda: mdcollect.open_storage("redis://127.0.0.1:9/0"))
attempt("redis lease", lease)
attempt("remote", lambda: __import__("mdcollect.remote"))
attempt("service", lambda: __import__("mdcollect.service"))
attempt("serve", serve)
attempt("plot", lambda: mdcollect.plot_coverage(mdcollect.open_storage("memory://")))
print(json.dumps(said))
"""

#: The error each feature raises without its extra: (its type, the extra it names).
WITHOUT = {
    "redis": ("StorageError", "redis"),
    "redis lease": ("MdcollectError", "redis"),
    "remote": ("ImportError", "remote"),
    "service": ("ImportError", "service"),
    "serve": ("SystemExit", "service"),
    "plot": ("MdcollectError", "plot"),
}


@pytest.fixture(scope="module")
def without_extras() -> dict[str, str]:
    proc = run_without(EVERY, NONE + HELP)
    said: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return said


@pytest.mark.parametrize("feature", sorted(WITHOUT))
def test_without_its_extra_a_feature_names_the_extra(
    feature: str, without_extras: dict[str, str]
) -> None:
    kind, extra = WITHOUT[feature]
    said = without_extras[feature]
    assert said.startswith(f"{kind}: "), said
    assert f"needs the '{extra}' extra: pip install 'mdcollect[{extra}]'" in said, said
    if feature == "serve":
        assert said.startswith("SystemExit: exit 2: mdcollect: error: mdcollect serve needs")


@pytest.mark.slow  # imports ccxt and runs the emulator in a fresh interpreter
def test_without_any_extra_the_readme_job_runs(tmp_path: Path) -> None:
    """The README's first command's job (``--emulate ensure``) needs no extra at all."""
    code = f"""
        from mdcollect.cli import main
        store = {f"parquet://{tmp_path / 'pq'}"!r}
        argv = ["--emulate", "--storage", store, "--no-progress", "ensure", "BTC/USDT:USDT",
                "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02"]
        assert main(argv) == 0
        import mdcollect
        key = mdcollect.DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h")
        frame = mdcollect.open_storage(store).read(key)
        print(len(frame), frame.index[0], frame.index[-1])
        blocked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        assert blocked == [], blocked
    """
    proc = run_without(EVERY, code)
    # 30 days of padding before 2024-01-01, through the end of 2024-01-02: 32 days of hours
    assert proc.stdout.strip().splitlines()[-1] == (
        "768 2023-12-02 00:00:00+00:00 2024-01-02 23:00:00+00:00"
    )


BLOCK_CELL = BLOCKER.format(blocked=["ipywidgets"]) + "\nsys.modules.pop('ipywidgets', None)"
ENSURE_CELL = """\
import mdcollect
from mdcollect.testing import ExchangeEmulator

with ExchangeEmulator() as emu:
    client = emu.client("binance")
    report = mdcollect.ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02",
                                   exchange=client, storage=mdcollect.open_storage("memory://"),
                                   padding_days=0)
    await client.close()
assert report.ok and report.candles_fetched == 48, repr(report)"""


@pytest.mark.slow  # starts an ipykernel
def test_a_notebook_without_ipywidgets_is_told_the_extra(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (BLOCK_CELL, ENSURE_CELL)]
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=DEADLINE, startup_timeout=DEADLINE,
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    outputs: list[Any] = nb.cells[1].outputs
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "progress bars needs the 'notebook' extra: pip install 'mdcollect[notebook]'" in streams
    assert "IProgress not found" not in streams  # tqdm's own words, naming no extra
    assert not [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert "BTC/USDT 1h" in streams  # the text bar took the widget's place
