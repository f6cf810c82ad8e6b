"""load_collectors from TOML and dicts; the incremental CandleAggregator against trades_to_ohlcv."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdcollect import InvalidRequest
from mdcollect.aggregate import CandleAggregator, trades_to_ohlcv
from mdcollect.collectors import (
    OrderBookCollector,
    TradesCollector,
    load_collectors,
    load_config,
)

TOML = """
storage = "memory://"
max_silence = 30
resume_window = 600
max_permanent_errors = 5

[[collectors]]
exchange = "binance"
symbols = ["BTC/USDT", "ETH/USDT"]
kinds = ["trades", "orderbook"]
mode = "ws"
candles = ["1s", "1m"]
depth = 10
"""


def test_load_from_toml_and_dict(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    cfg = load_config(path)
    assert cfg.storage == "memory://"
    assert cfg.options == {"max_silence": 30, "resume_window": 600, "max_permanent_errors": 5}
    from mdcollect import DataCollector

    dc = DataCollector.from_config(path)
    assert (dc.max_silence, dc.resume_window, dc.max_permanent_errors) == (30.0, 600.0, 5)
    with pytest.raises(InvalidRequest, match="resume_window"):
        DataCollector.from_config({**tomllib.loads(TOML), "resume_window": -1})
    trades, book = cfg.collectors
    assert isinstance(trades, TradesCollector) and isinstance(book, OrderBookCollector)
    assert [str(t) for t in trades.timeframes] == ["1s", "1m"] and trades.mode == "ws"
    assert book.depth == 10 and book.symbols == ["BTC/USDT", "ETH/USDT"]
    same = load_collectors({"collectors": [{"exchange": "okx", "symbols": "BTC/USDT"}]})
    assert len(same) == 1 and same[0].exchange == "okx"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"exchange": "nope", "symbols": ["A/B"]}, "nope"),
        ({"exchange": "binance", "symbols": []}, "symbols"),
        ({"exchange": "binance", "symbols": ["A/B"], "kinds": ["candles"]}, "candles"),
        ({"exchange": "binance", "symbols": ["A/B"], "mode": "fast"}, "fast"),
        ({"exchange": "binance", "symbols": ["A/B"], "candles": ["7x"]}, "7x"),
        ({"exchange": "binance", "symbols": ["A/B"], "depht": 5}, "depht"),
        ({"exchange": "binance", "symbols": ["A/B"], "batch_rows": -1}, "batch_rows"),
    ],
)
def test_bad_config_names_the_value(section: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        load_collectors({"collectors": [section]})


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("collectors = [")
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        load_collectors(path)
    with pytest.raises(InvalidRequest, match="storge"):
        load_collectors({"storge": "x", "collectors": []})


@pytest.mark.parametrize("fill", [False, True])
def test_incremental_aggregation_equals_batch(fill: bool) -> None:
    rng = np.random.default_rng(5)
    n = 30_000
    t0 = 1_700_000_000_123
    ts = np.sort(rng.integers(t0, t0 + 2 * 3_600_000, n))
    ts[5000:5400] = ts[5000]  # many trades in one millisecond
    price = 100 + rng.normal(0, 1, n).cumsum() * 0.01
    amount = rng.random(n)
    side = rng.choice(["buy", "sell"], n)
    buy = side == "buy"
    tfs = ["1s", "5s", "1m", "15m", "1h"]
    agg = CandleAggregator(tfs, start=t0, fill_empty=fill)
    got: dict[str, list[pd.DataFrame]] = {t: [] for t in tfs}
    spans: dict[str, list[tuple[int, int]]] = {t: [] for t in tfs}
    for part in np.array_split(np.arange(n), 211):
        for tf, (bins, cov) in agg.add(
            ts[part], price[part], amount[part], watermark=int(ts[part][-1]), buy=buy[part]
        ).items():
            got[str(tf)].append(bins.to_frame())
            if cov is not None:
                spans[str(tf)].append(cov)
    trades = pd.DataFrame({"timestamp": ts, "id": np.arange(n).astype(str), "price": price,
                           "amount": amount, "side": side})  # fmt: skip
    for tf in tfs:
        sp = spans[tf]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(sp))  # contiguous
        expected = trades_to_ohlcv(trades, tf, fill, start=sp[0][0], end=sp[-1][1])
        pd.testing.assert_frame_equal(pd.concat(got[tf]), expected, check_freq=False, rtol=1e-12)
