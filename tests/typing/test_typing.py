"""The public boundaries as a user's type checker sees them.

``user_code.py`` is what README.md and docs/ show; it must pass ``mypy --strict``
(and its ``assert_type`` lines pin what ``load_ohlcv`` returns for one symbol and for
a list). The misuses below must each be reported where they are, so this test fails
if a boundary loosens to ``Any`` or ``str``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"

#: One misuse a line, each followed by the error code mypy must report on it.
MISUSE = """
import pandas as pd

from mdcollect import ExchangeClient, ensure_data, load_ohlcv
from mdcollect.ensure import backfill_async


async def misuse(client: ExchangeClient) -> None:
    ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", exchange=3)  # E: arg-type
    ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", storage=3.5)  # E: arg-type
    ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", strategy="fast")  # E: arg-type
    await backfill_async(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", kind="ohlcvv")  # E: arg-type
    await backfill_async(["BTC/USDT"], "1h", 0, 1, exchange=client, strategy="candles")  # E: arg-type
    frame: pd.DataFrame = load_ohlcv(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02")  # E: assignment
    frames: dict[str, pd.DataFrame] = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")  # E: assignment
    print(frame, frames)
"""

ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<text>.*?)\s+\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """Run ``mypy --strict`` once on the user code and the misuses, against this tree's
    ``src`` (not whatever ``mdcollect`` is installed): ``{file name: {line: [codes]}}``."""
    tmp = tmp_path_factory.mktemp("typing")
    (tmp / "misuse.py").write_text(MISUSE)
    args = [
        "--strict", "--config-file", str(HERE.parents[1] / "pyproject.toml"),
        "--cache-dir", str(tmp / "cache"), "--no-error-summary", "--show-error-codes",
        str(HERE / "user_code.py"), str(tmp / "misuse.py"),
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MYPYPATH", str(SRC))
        out, err, _status = api.run(args)
    assert not err.strip(), err
    found: dict[str, dict[int, list[str]]] = {}
    for line in out.splitlines():
        m = ERROR.match(line)
        if m is None:
            continue  # notes
        name = Path(m["file"]).name
        found.setdefault(name, {}).setdefault(int(m["line"]), []).append(
            f"{m['code']}: {m['text']}"
        )
    return found


def test_documented_usage_passes_and_each_misuse_is_reported_where_it_is(
    mypy_errors: dict[str, dict[int, list[str]]],
) -> None:
    """One test for one mypy run (tens of seconds): two tests could land on two
    pytest-xdist workers and run it twice."""
    assert mypy_errors.get("user_code.py", {}) == {}
    expected = {
        n: m.group(1)
        for n, text in enumerate(MISUSE.splitlines(), start=1)
        if (m := re.search(r"# E: ([a-z-]+)$", text))
    }
    assert len(expected) == 7
    reported = mypy_errors.get("misuse.py", {})
    got = {n: sorted({e.split(":")[0] for e in errors}) for n, errors in reported.items()}
    assert got == {n: [code] for n, code in expected.items()}, reported
