"""The no-op pre-hook: ``mdcollect ensure`` over a range already stored reads the
coverage from the store and stops there; ccxt, aiohttp and the other heavy packages
are never imported (``bench/prehook.py`` measures what that saves)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, open_storage
from mdcollect.cli import main

T2024 = 1_704_067_200_000
DAY = 86_400_000
KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")


def ensure(timeframe: str = "1h", exchange: str = "binance") -> list[str]:
    """``mdcollect ensure``'s arguments for 2024-01-01..03 with a day of padding."""
    return ["--no-progress", "ensure", "BTC/USDT", "-t", timeframe, "--start", "2024-01-01",
            "--end", "2024-01-03", "-x", exchange, "--padding-days", "1"]  # fmt: skip


#: Top-level packages a covered ensure has no use for.
HEAVY = ("ccxt", "aiohttp", "matplotlib", "starlette", "uvicorn", "httpx", "redis", "dask",
         "distributed", "nbclient")  # fmt: skip
#: mdcollect's own parts a covered ensure has no use for.
UNUSED = ("mdcollect.service", "mdcollect.remote", "mdcollect.testing", "mdcollect.collectors",
          "mdcollect.plot", "mdcollect.exchanges._client", "mdcollect.exchanges._http",
          "mdcollect.exchanges._retry")  # fmt: skip

#: Runs the CLI, then prints what it imported of HEAVY and UNUSED.
WRAPPER = """
import sys
from mdcollect.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
unused = sorted(m for m in sys.modules if m.startswith(UNUSED))
print("imported:", heavy, unused)
sys.exit(code)
"""


def run(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """``mdcollect ARGV`` in a fresh interpreter with ``MDCOLLECT_HOME=home``; its last
    line of output lists what it imported of HEAVY and UNUSED."""
    code = f"HEAVY = {HEAVY!r}\nUNUSED = {UNUSED!r}\n{WRAPPER}"
    env = dict(os.environ, MDCOLLECT_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home in which ccxt's facts of binance and binance_futures were kept, as by any
    earlier run that checked a request for them."""
    home = tmp_path_factory.mktemp("home")
    code = "from mdcollect.exchanges import exchange_info as i; i('binance'); i('binance_futures')"
    env = dict(os.environ, MDCOLLECT_HOME=str(home))
    subprocess.run([sys.executable, "-c", code], env=env, timeout=120, check=True)
    return home


@pytest.fixture
def covered(tmp_path: Path) -> str:
    """An ArcticDB store holding [2023-12-31, 2024-01-04) of binance BTC/USDT 1h candles,
    fetched from the emulator."""
    url = f"arctic+lmdb://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", *ensure()]) == 0
    return url


def test_a_covered_ensure_imports_neither_ccxt_nor_aiohttp(covered: str, home: Path) -> None:
    result = run(["--storage", covered, *ensure()], home)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "imported: [] []"
    assert lines[0] == "binance 1h: ensured [2023-12-31, 2024-01-04) UTC (4 days)"
    assert re.fullmatch(
        r"  binance:ohlcv:1h:BTC/USDT: had 4 days in \[2023-12-31, 2024-01-04\), "
        r"fetched 0 rows in 0 requests \(\d+(\.\d+)? m?s\): ok",
        lines[1],
    ), lines[1]
    assert re.fullmatch(r"0 rows, 0 requests in \d+(\.\d+)? m?s: ok", lines[2]), lines[2]
    assert len(lines) == 4


def test_bad_input_is_refused_as_before_without_ccxt(covered: str, home: Path) -> None:
    result = run(["--storage", covered, *ensure("1H")], home)
    assert result.returncode == 2
    assert "timeframe '1H' is not supported by binance (did you mean '1h'?)" in result.stderr
    assert result.stdout.splitlines() == ["imported: [] []"]
    # binance_futures serves no 1s candles: refused, though nothing would be fetched
    result = run(["--storage", covered, *ensure("1s", "binance_futures")], home)
    assert result.returncode == 2
    assert "timeframe '1s' is not supported by binance_futures" in result.stderr
    assert result.stdout.splitlines() == ["imported: [] []"]


def test_coverage_is_read_from_the_store_each_time(
    covered: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # this process deletes a day; the next ensure fetches exactly that day...
    with open_storage(covered) as st:
        st.delete(KEY, T2024, T2024 + DAY)
        assert st.coverage(KEY) == IntervalSet(
            [Interval(T2024 - DAY, T2024), Interval(T2024 + DAY, T2024 + 3 * DAY)]
        )
    assert main(["--storage", covered, "--emulate", *ensure()]) == 0
    assert "fetched 24 rows" in capsys.readouterr().out
    # ...and another process finds it all stored again, without the exchange
    result = run(["--storage", covered, *ensure()], home)
    assert result.returncode == 0, result.stderr
    assert "had 4 days in [2023-12-31, 2024-01-04), fetched 0 rows" in result.stdout
    assert result.stdout.splitlines()[-1] == "imported: [] []"
    with open_storage(covered) as st:
        assert len(st.read(KEY)) == 4 * 24


def test_the_command_spares_the_interpreter_its_last_collections(covered: str, home: Path) -> None:
    # the process's own command line (main() without argv, as the console script calls
    # it): at exit every object is frozen, which the last collections skip
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "from mdcollect.cli import main\n"
        "sys.argv = ['mdcollect', *sys.argv[1:]]\n"
        "sys.exit(main())\n"
    )
    env = dict(os.environ, MDCOLLECT_HOME=str(home))
    result = subprocess.run(
        [sys.executable, "-c", code, "--storage", covered, *ensure()], capture_output=True,
        text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "binance 1h: ensured [2023-12-31, 2024-01-04) UTC (4 days)"
    assert lines[-1] == "frozen at exit: True"
    assert len(lines) == 4
