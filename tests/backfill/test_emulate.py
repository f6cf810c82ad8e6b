"""The Python API against the emulator: synthetic data never lands in the real default store."""

from __future__ import annotations

from pathlib import Path

import pytest

import mdcollect
from mdcollect import DatasetKey, ExchangeClient, InvalidRequest
from mdcollect.storage import default_storage_url, emulated_storage_url
from mdcollect.testing import ExchangeEmulator, shared_emulator

KEY = DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h")
ARGS = (["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-03")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path))
    monkeypatch.delenv("MDCOLLECT_EMULATE", raising=False)
    return tmp_path


def stored(url: str) -> dict[DatasetKey, int]:
    with mdcollect.open_storage(url) as store:
        keys = store.keys()
        return {k: len(store.read(k)) for k in keys}


def test_emulate_true_uses_the_shared_emulator_and_the_emulated_store() -> None:
    before = len(shared_emulator().requests)
    report = mdcollect.ensure_data(*ARGS, padding_days=1, emulate=True, progress=False)
    assert report.ok and report.requests > 0
    assert len(shared_emulator().requests) - before == report.requests
    assert stored(emulated_storage_url()) == {KEY: 4 * 24}
    assert stored(default_storage_url()) == {}
    again = mdcollect.ensure_data(*ARGS, padding_days=1, emulate=True, progress=False)
    assert again.requests == 0
    frame = mdcollect.load_ohlcv("BTC/USDT:USDT", "1h", "2024-02-01", "2024-02-01",
                                 emulate=True, progress=False)  # fmt: skip
    assert len(frame) == 24


def test_the_environment_variable_runs_code_written_for_the_real_exchange_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDCOLLECT_EMULATE", "1")
    frame = mdcollect.load_ohlcv("BTC/USDT:USDT", "1h", "2024-02-01", "2024-02-01", progress=False)
    truth = shared_emulator().market.candles(
        "binance_futures", "BTC/USDT:USDT", "1h", 1_706_745_600_000, 1_706_832_000_000
    )
    assert frame["close"].tolist() == [c[4] for c in truth.to_list()]
    assert stored(default_storage_url()) == {}
    # the parameter itself takes booleans only
    with pytest.raises(InvalidRequest, match="emulate must be"):
        mdcollect.ensure_data(*ARGS, emulate="yes")  # type: ignore[arg-type]


def test_a_client_from_the_emulator_carries_the_emulated_store() -> None:
    with ExchangeEmulator(rate_limits=False) as emu:
        client = emu.client("binance_futures")
        assert client.emulated and "emulated" in repr(client)
        report = mdcollect.ensure_data(*ARGS, exchange=client, padding_days=0, progress=False)
        assert report.ok
        assert stored(emulated_storage_url()) == {KEY: 3 * 24}
        assert stored(default_storage_url()) == {}


def test_a_plain_client_pointed_at_the_emulator_never_writes_the_real_default_store() -> None:
    with ExchangeEmulator(rate_limits=False) as emu:
        client = ExchangeClient("binance_futures", base_url=emu.url)
        with pytest.raises(InvalidRequest, match="emulator"):
            mdcollect.ensure_data(*ARGS, exchange=client, progress=False)
        # it found out from the markets' answer, before any candle was asked for
        assert [r.route for r in emu.requests] == ["exchangeInfo"]
        assert stored(default_storage_url()) == {}
        # with a storage of the caller's choice it works
        store = mdcollect.open_storage("memory://")
        assert mdcollect.ensure_data(*ARGS, exchange=client, storage=store, progress=False).ok


def test_emulate_refuses_a_real_client_and_the_real_default_store() -> None:
    before = len(shared_emulator().requests)
    with pytest.raises(InvalidRequest, match="emulate=True takes an exchange key"):
        mdcollect.ensure_data(*ARGS, exchange=ExchangeClient("binance_futures"), emulate=True)
    with pytest.raises(InvalidRequest, match="real default store"):
        mdcollect.ensure_data(*ARGS, storage=mdcollect.default_storage(), emulate=True)
    assert len(shared_emulator().requests) == before
