"""``executor=`` and ``--scheduler`` refuse what cannot work before any request, and
``import mdcollect`` stays free of dask. (The runs on a cluster: tests/backfill/test_dask.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mdcollect import InvalidRequest, ensure_data
from mdcollect.cli import main
from mdcollect.distributed import ClientSpec, check_executor, connect
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator


def test_an_executor_of_another_type_is_refused_before_any_request(tmp_path: object) -> None:
    with ExchangeEmulator() as emu:
        with pytest.raises(InvalidRequest, match=r"dask\.distributed\.Client.*got str"):
            ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", emu.client("binance"),
                        0, f"arctic+lmdb://{tmp_path}/s", executor="tcp://127.0.0.1:8786")  # fmt: skip
        assert emu.requests == []


def test_without_dask_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(InvalidRequest, match=r"pip install 'mdcollect\[dask\]'"):
        check_executor(object())
    with pytest.raises(InvalidRequest, match=r"pip install 'mdcollect\[dask\]'"):
        connect("tcp://127.0.0.1:8786")


def test_a_bad_scheduler_address_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"'127\.0\.0\.1:8786'.*tcp://HOST:PORT"):
        connect("127.0.0.1:8786")


def test_cli_scheduler_address_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--emulate", "ensure", "BTC/USDT", "--start", "2024-01-01", "--end",
                 "2024-01-01", "-x", "binance", "--scheduler", "localhost:8786"])  # fmt: skip
    assert code == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_a_client_spec_leaves_credentials_behind() -> None:
    client = ExchangeClient("binance", base_url="http://127.0.0.1:9", timeout=5000,
                            apiKey="AK", secret="SK")  # fmt: skip
    spec = ClientSpec.of(client)
    assert spec == ClientSpec("binance", "http://127.0.0.1:9", {"timeout": 5000})
    assert "SK" not in repr(spec) and "AK" not in spec.cache_key()


def test_import_mdcollect_does_not_import_dask() -> None:
    code = (
        "import sys, mdcollect, mdcollect.ensure\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_progress_from_workers_counts_each_attempt_once() -> None:
    """A retried job's new attempt starts its count again; late words from the attempt
    it replaced are dropped."""
    from mdcollect.backfill import OHLCVBackfill, ProgressFeed

    jan1 = 1_704_067_200_000  # 2024-01-01
    job = OHLCVBackfill("binance", "BTC/USDT", "1m", jan1, jan1 + 4_320 * 60_000)
    seen: list[tuple[int, int]] = []
    feed = ProgressFeed(False, lambda j, done, total: seen.append((done, total)))
    feed.update(job, 1000, 4320, "a")
    feed.update(job, 2000, 4320, "a")
    feed.update(job, 1000, 2320, "b")  # retried elsewhere: 2000 were stored
    feed.update(job, 3000, 4320, "a")  # late, from the lost worker
    feed.update(job, 2320, 2320, "b")
    feed.update(job, 2320, 2320, "b")  # the result repeats a step the events gave
    feed.close()
    assert seen == [(1000, 4320), (2000, 4320), (1000, 2320), (2320, 2320)]
