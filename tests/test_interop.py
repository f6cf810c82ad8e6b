"""freqtrade export: an emulator-filled store written as freqtrade's feather data, read
back field by field, at the paths freqtrade's own naming code computes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.feather as feather
import pytest

from mdcollect import DatasetKey, InvalidRequest, ensure_data, export_freqtrade, open_storage
from mdcollect.cli import main
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.storage import DataCollectionStorage
from mdcollect.testing import ExchangeEmulator
from tests.conftest import MINUTE, T0, candles

NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
PERP, SPOT = "BTC/USDT:USDT", "BTC/USDT"


# --- the oracle: freqtrade's naming, copied from its source -----------------------------
# github.com/freqtrade/freqtrade at c9ae5e1e9ff25bb55dd61f5e5519f7c479291edb:
# freqtrade/misc.py pair_to_filename, freqtrade/enums/candletype.py CandleType,
# freqtrade/data/history/datahandlers/idatahandler.py _pair_data_filename and
# timeframe_to_file, featherdatahandler.py _get_file_extension ("feather").
def ft_pair_to_filename(pair: str) -> str:
    for ch in ["/", " ", ".", "@", "$", "+", ":"]:
        pair = pair.replace(ch, "_")
    return pair


def ft_pair_data_filename(datadir: Path, pair: str, timeframe: str, candle_type: str) -> Path:
    pair_s = ft_pair_to_filename(pair)
    candle = ""
    timeframe = timeframe.replace("M", "Mo")
    if candle_type != "spot":
        datadir = datadir.joinpath("futures")
        candle = f"-{candle_type}"
    return datadir.joinpath(f"{pair_s}-{timeframe}{candle}.feather")


def _now() -> int:
    return NOW


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A parquet store with a day of 1h candles, mark candles and funding of a Binance
    perpetual, and a day of 1h spot candles, all fetched from the emulator."""
    url = f"parquet://{tmp_path_factory.mktemp('store')}"
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
    with ExchangeEmulator(rate_limits=False, clock=_now) as emu, open_storage(url) as store:
        for key, symbol, kinds in (
            ("binance_futures", PERP, ("ohlcv", "funding", "mark")),
            ("binance", SPOT, ("ohlcv",)),
        ):
            client = ExchangeClient(
                key, base_url=emu.url, clock=_now, enableRateLimit=False, retry=retry
            )
            report = ensure_data(
                [symbol], "1h", "2024-12-20", "2024-12-20", client, padding_days=0,
                storage=store, progress=False, clock=_now, kinds=kinds,
            )  # fmt: skip
            assert report.ok, report
    yield url


def stored(url: str, key: str) -> pd.DataFrame:
    with open_storage(url) as store:
        return store.read(DatasetKey.parse(key))


def check_file(path: Path, rows: pd.DataFrame, funding: bool = False) -> None:
    """The file as freqtrade's FeatherDataHandler writes it, with ``rows``' values."""
    table = feather.read_table(path)
    assert table.schema.names == ["date", "open", "high", "low", "close", "volume"]
    assert str(table.schema.field("date").type) == "timestamp[ns, tz=UTC]"
    assert all(str(table.schema.field(c).type) == "double" for c in table.schema.names[1:])
    frame = pd.read_feather(path)
    assert len(frame) == len(rows) > 0
    assert str(frame["date"].dtype) == "datetime64[ns, UTC]"
    assert list(frame["date"]) == list(rows.index)
    if funding:
        np.testing.assert_array_equal(frame["open"].to_numpy(), rows["rate"].to_numpy())
        for c in ("high", "low", "close", "volume"):
            assert (frame[c] == 0.0).all()
    else:
        for c in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(frame[c].to_numpy(), rows[c].to_numpy())


def test_export_writes_freqtrades_files(filled: str, tmp_path: Path) -> None:
    written = export_freqtrade(filled, tmp_path, exchange="binance_futures")
    folder = tmp_path / "binance"  # freqtrade's exchange name, not ccxt's binanceusdm
    expected = {
        ft_pair_data_filename(folder, PERP, "1h", "futures"): "binance_futures:ohlcv:1h:",
        ft_pair_data_filename(folder, PERP, "1h", "mark"): "binance_futures:mark:1h:",
        ft_pair_data_filename(folder, PERP, "8h", "funding_rate"): "binance_futures:funding::",
    }
    assert written == sorted(expected)
    assert {p.name for p in written} == {
        "BTC_USDT_USDT-1h-futures.feather",
        "BTC_USDT_USDT-1h-mark.feather",
        "BTC_USDT_USDT-8h-funding_rate.feather",
    }
    for path, key in expected.items():
        rows = stored(filled, key + PERP)
        check_file(path, rows, funding="funding" in key)
    assert len(stored(filled, "binance_futures:ohlcv:1h:" + PERP)) == 24


def test_export_spot_candles(filled: str, tmp_path: Path) -> None:
    written = export_freqtrade(filled, tmp_path, exchange="binance")
    assert written == [ft_pair_data_filename(tmp_path / "binance", SPOT, "1h", "spot")]
    assert written[0] == tmp_path / "binance" / "BTC_USDT-1h.feather"
    rows = stored(filled, "binance:ohlcv:1h:" + SPOT)
    # the stored klines' optional columns stay out of freqtrade's six
    assert {"quote_volume", "trades", "taker_buy_volume"} <= set(rows.columns)
    check_file(written[0], rows)


def test_export_selects_kinds_and_replaces_files(filled: str, tmp_path: Path) -> None:
    first = export_freqtrade(filled, tmp_path, exchange="binance_futures", kinds=["funding"])
    assert [p.name for p in first] == ["BTC_USDT_USDT-8h-funding_rate.feather"]
    first[0].write_bytes(b"an older export")
    again = export_freqtrade(filled, tmp_path, exchange="binance_futures", kinds=["funding"])
    assert again == first
    assert sorted(p.name for p in first[0].parent.iterdir()) == [first[0].name]  # no temp left
    check_file(first[0], stored(filled, "binance_futures:funding::" + PERP), funding=True)


def test_a_contract_under_a_plain_ccxt_id_is_futures(tmp_path: Path) -> None:
    # binanceusdm is ccxt's id of Binance USD-M; freqtrade calls it binance, futures mode
    key = DatasetKey("binanceusdm", "ETH/USDT:USDT", "ohlcv", "1h")
    rows = candles(T0, 3, step=60 * MINUTE)
    with open_storage("memory://") as store:
        store.write(key, rows)
        written = export_freqtrade(store, tmp_path, exchange="binanceusdm")
    path = ft_pair_data_filename(tmp_path / "binance", "ETH/USDT:USDT", "1h", "futures")
    assert written == [path]
    check_file(path, rows)


def test_monthly_timeframe_file_name() -> None:
    # freqtrade writes 1M as 1Mo (1m and 1M collide on case-blind disks)
    from mdcollect.interop import _filename

    assert _filename(Path("d"), PERP, "1M", "mark") == ft_pair_data_filename(
        Path("d"), PERP, "1M", "mark"
    )
    assert _filename(Path("d"), SPOT, "1M", "spot").name == "BTC_USDT-1Mo.feather"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"exchange": "binanse_futures"}, "'binanse_futures' is not known"),
        ({"kinds": ["trades"]}, "kind 'trades' is not valid; allowed: 'ohlcv', 'funding'"),
        ({"symbols": ["BTCUSDT"]}, "symbol 'BTCUSDT' is not valid"),
        ({"timeframes": ["1H"]}, "timeframe '1H' is not supported (did you mean '1h'?)"),
        ({"symbols": ["ETH/USDT:USDT"]}, "nothing to export"),
        ({"exchange": "okx_futures"}, "nothing to export"),
    ],
)
def test_bad_input_writes_nothing(
    filled: str, tmp_path: Path, kw: dict[str, Any], message: str
) -> None:
    kw.setdefault("exchange", "binance_futures")
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        export_freqtrade(filled, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_datadir_that_is_a_file(filled: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidRequest, match="is a file"):
        export_freqtrade(filled, tmp_path / "f", exchange="binance_futures")


def test_a_storage_passed_in_stays_open(filled: str, tmp_path: Path) -> None:
    with open_storage(filled) as store:
        assert isinstance(store, DataCollectionStorage)
        export_freqtrade(store, tmp_path, exchange="binance", timeframes=["1h"])
        assert len(store.read(DatasetKey.parse("binance:ohlcv:1h:" + SPOT))) == 24


def test_cli_export_freqtrade(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datadir = tmp_path / "user_data" / "data"
    argv = ["--storage", filled, "--no-progress", "export", "--format", "freqtrade"]
    code = main([*argv, "--datadir", str(datadir), "--kinds", "ohlcv,mark"])
    assert code == 0
    out = capsys.readouterr()
    folder = datadir / "binance"
    files = [
        ft_pair_data_filename(folder, PERP, "1h", "futures"),
        ft_pair_data_filename(folder, PERP, "1h", "mark"),
    ]
    assert out.out.splitlines() == [str(p) for p in files]
    assert "wrote 2 freqtrade file(s)" in out.err
    check_file(files[0], stored(filled, "binance_futures:ohlcv:1h:" + PERP))
    check_file(files[1], stored(filled, "binance_futures:mark:1h:" + PERP))


def test_cli_export_freqtrade_bad_input(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--storage", filled, "--no-progress", "export", "--format", "freqtrade"]
    assert main(argv) == 2
    assert "needs --datadir" in capsys.readouterr().err
    assert main([*argv, "--datadir", str(tmp_path / "d"), "-o", "x.csv"]) == 2
    assert "-o belong to the single-dataset export" in capsys.readouterr().err
    assert main([*argv, "--datadir", str(tmp_path / "d"), "--kinds", "ohlcv,index"]) == 2
    assert "kind 'index' is not valid" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_cli_single_dataset_export_still_works(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "btc.csv"
    key = "binance:ohlcv:1h:" + SPOT
    assert main(["--storage", filled, "--no-progress", "export", key, "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 24
    assert main(["--storage", filled, "--no-progress", "export", key]) == 2
