"""trades_to_ohlcv against pandas, against Binance's own klines and its websocket streams."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdcollect import InvalidRequest
from mdcollect.aggregate import trades_to_ohlcv

# recorded exchange data carried by the repository (see tests/data/realdata/README.md)
REAL = Path(__file__).resolve().parent / "data" / "realdata"
assert REAL.is_dir(), f"recorded exchange data not found at {REAL}"


def xrp_trades() -> pd.DataFrame:
    raw = pd.read_csv(
        REAL / "binance_xrpeth_2019-10" / "XRPETH-aggTrades-2019-10-11_to_2019-10-13T1119.csv"
    )
    return pd.DataFrame(
        {
            "timestamp": raw["transact_time"],
            "id": raw["agg_trade_id"].astype(str),
            "price": raw["price"],
            "amount": raw["quantity"],
            "side": np.where(raw["is_buyer_maker"], "sell", "buy"),
        }
    )


def xrp_klines() -> pd.DataFrame:
    k = pd.read_csv(
        REAL / "binance_xrpeth_2019-10" / "XRPETH-1m-klines-2019-10-11_to_2019-10-13T1119.csv"
    )
    k.index = pd.DatetimeIndex(
        pd.to_datetime(k.pop("open_time"), unit="ms", utc=True), name="timestamp"
    )
    return k


def test_real_binance_trades_reproduce_klines_exactly() -> None:
    trades, klines = xrp_trades(), xrp_klines()
    assert len(trades) == 12_477 and len(klines) == 3_560
    candles = trades_to_ohlcv(trades, "1m")
    nonempty = klines[klines["volume"] > 0]
    assert len(candles) == len(nonempty)
    pd.testing.assert_frame_equal(
        candles[["open", "high", "low", "close", "volume"]], nonempty, check_freq=False
    )


def test_real_binance_empty_minutes_are_flat_at_previous_close() -> None:
    trades, klines = xrp_trades(), xrp_klines()
    filled = trades_to_ohlcv(trades, "1m", fill_empty=True)
    # the first kline has trades, so filled covers every minute Binance sent
    assert len(filled) == len(klines)
    assert int((filled["trades"] == 0).sum()) == 1_091
    pd.testing.assert_frame_equal(
        filled[["open", "high", "low", "close", "volume"]], klines, check_freq=False
    )


def test_real_binance_ccxt_json_klines_agree() -> None:
    rows = json.loads((REAL / "binance_xrpeth_2019-10" / "XRP_ETH-1m.json").read_text())
    assert len(rows) == 3_560
    filled = trades_to_ohlcv(xrp_trades(), "1m", fill_empty=True)
    got = np.c_[
        filled.index.asi8 // 1_000_000,
        filled[["open", "high", "low", "close", "volume"]].to_numpy(),
    ]
    np.testing.assert_array_equal(got, np.array(rows, dtype=float))


def test_real_websocket_aggtrades_reproduce_kline_volume_and_counts() -> None:
    """Binance USD-M: for CTK, AKRO and KEEP, the growth of a kline's volume and trade
    count from its first observed update to its closing one (``x: true``) equals the
    aggTrades received in between, aggregated by ``trades_to_ohlcv``."""
    path = REAL / "exchange_ws_samples" / "binance_futures_aggTrade_kline1m_2021-07-22.jsonl"
    msgs = [json.loads(line)["msg"] for line in path.read_text().splitlines() if line.strip()]
    msgs = [m.get("data", m) for m in msgs]
    checked = 0
    for sym in ("CTKUSDT", "AKROUSDT", "KEEPUSDT"):
        agg = [m for m in msgs if m.get("e") == "aggTrade" and m["s"] == sym]
        klines = [m["k"] for m in msgs if m.get("e") == "kline" and m["s"] == sym]
        for close in (k for k in klines if k["x"]):
            first = next(k for k in klines if k["t"] == close["t"])
            # aggTrades whose raw trades came after the first update, up to the close
            between = [m for m in agg if first["L"] < m["l"] <= close["L"]]
            trades = pd.DataFrame(
                {
                    "timestamp": [m["T"] for m in between],
                    "id": [str(m["a"]) for m in between],
                    "price": [float(m["p"]) for m in between],
                    "amount": [float(m["q"]) for m in between],
                    "side": ["sell" if m["m"] else "buy" for m in between],
                }
            )
            c = trades_to_ohlcv(trades, "1m", start=close["t"], end=close["T"] + 1)
            assert len(c) == 1, (sym, close["t"])
            assert c["volume"].iloc[0] == pytest.approx(
                float(close["v"]) - float(first["v"]), rel=1e-9
            )
            assert sum(m["l"] - m["f"] + 1 for m in between) == close["n"] - first["n"]
            assert c["close"].iloc[0] == float(close["c"])
            assert float(close["l"]) <= c["low"].iloc[0] <= c["high"].iloc[0] <= float(close["h"])
            checked += 1
    assert checked >= 3


def test_real_websocket_aggtrades_reproduce_kline_quote_and_taker_volumes() -> None:
    """Binance USD-M klines' quote volume (``q``) and taker-buy base and quote volumes
    (``V``, ``Q``) grow, from a kline's first observed update to its closing one, by
    what ``trades_to_ohlcv`` computes from the aggTrades received in between; the
    count is of aggregate trades (Binance's ``n`` counts the trades inside them)."""
    path = REAL / "exchange_ws_samples" / "binance_futures_aggTrade_kline1m_2021-07-22.jsonl"
    msgs = [json.loads(line)["msg"] for line in path.read_text().splitlines() if line.strip()]
    msgs = [m.get("data", m) for m in msgs]
    checked = 0
    for sym in ("CTKUSDT", "AKROUSDT", "KEEPUSDT"):
        agg = [m for m in msgs if m.get("e") == "aggTrade" and m["s"] == sym]
        klines = [m["k"] for m in msgs if m.get("e") == "kline" and m["s"] == sym]
        for close in (k for k in klines if k["x"]):
            first = next(k for k in klines if k["t"] == close["t"])
            between = [m for m in agg if first["L"] < m["l"] <= close["L"]]
            trades = pd.DataFrame(
                {
                    "timestamp": [m["T"] for m in between],
                    "id": [str(m["a"]) for m in between],
                    "price": [float(m["p"]) for m in between],
                    "amount": [float(m["q"]) for m in between],
                    "side": ["sell" if m["m"] else "buy" for m in between],
                }
            )
            c = trades_to_ohlcv(trades, "1m", start=close["t"], end=close["T"] + 1).iloc[0]
            for col, field in (
                ("quote_volume", "q"),
                ("taker_buy_volume", "V"),
                ("taker_buy_quote_volume", "Q"),
            ):
                grew = float(close[field]) - float(first[field])
                assert c[col] == pytest.approx(grew, rel=1e-9, abs=1e-9), (sym, col)
            assert c["trades"] == len(between)
            assert c["vwap"] == pytest.approx(c["quote_volume"] / c["volume"], rel=1e-12)
            assert float(close["l"]) <= c["vwap"] <= float(close["h"])
            checked += 1
    assert checked >= 3


def test_real_binance_trades_counts_and_quote_volumes_per_minute() -> None:
    """XRP/ETH (its klines file carries OHLCV only): each candle's count is its minute's
    aggregate trades, exactly; its quote and taker-buy volumes are the sums of price x
    quantity over them (all, and those whose buyer was the taker), to float rounding;
    its VWAP lies within the candle."""
    raw = pd.read_csv(
        REAL / "binance_xrpeth_2019-10" / "XRPETH-aggTrades-2019-10-11_to_2019-10-13T1119.csv"
    )
    candles = trades_to_ohlcv(xrp_trades(), "1m", fill_empty=True)
    minute = raw["transact_time"] // 60_000 * 60_000
    cost = raw["price"] * raw["quantity"]
    taker = ~raw["is_buyer_maker"]
    by = pd.DataFrame(
        {
            "n": raw.groupby(minute).size(),
            "q": cost.groupby(minute).sum(),
            "V": raw["quantity"].where(taker, 0.0).groupby(minute).sum(),
            "Q": cost.where(taker, 0.0).groupby(minute).sum(),
        }
    )
    ts = candles.index.asi8 // 1_000_000
    got = candles[candles["trades"] > 0]
    assert (ts[candles["trades"].to_numpy() > 0] == by.index.to_numpy()).all()
    np.testing.assert_array_equal(got["trades"].to_numpy(), by["n"].to_numpy())
    np.testing.assert_allclose(got["quote_volume"].to_numpy(), by["q"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["taker_buy_volume"].to_numpy(), by["V"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        got["taker_buy_quote_volume"].to_numpy(), by["Q"].to_numpy(), rtol=1e-12
    )
    assert ((got["low"] <= got["vwap"] + 1e-15) & (got["vwap"] <= got["high"] + 1e-15)).all()
    # the flat minutes Binance fills: no trades, zero volumes, no VWAP (not a zero price)
    flat = candles[candles["trades"] == 0]
    assert len(flat) == 1_091
    assert (flat[["quote_volume", "taker_buy_volume", "taker_buy_quote_volume"]] == 0).all().all()
    assert flat["vwap"].isna().all()


def test_live_aggregator_computes_the_same_columns_in_pieces() -> None:
    """CandleAggregator fed in batches gives what trades_to_ohlcv gives at once."""
    from mdcollect._time import Timeframe
    from mdcollect.aggregate import CandleAggregator

    trades = _random_trades(3_000, 4, span_ms=3_600_000)
    ts = trades["timestamp"].to_numpy()
    price, amount = trades["price"].to_numpy(), trades["amount"].to_numpy()
    buy = trades["side"].to_numpy() == "buy"
    agg = CandleAggregator(["1m", "5m"], start=int(ts[0]) // 300_000 * 300_000)
    got: dict[str, list[pd.DataFrame]] = {"1m": [], "5m": []}
    for part in np.array_split(np.arange(len(ts)), 7):
        out = agg.add(
            ts[part], price[part], amount[part], watermark=int(ts[part][-1]), buy=buy[part]
        )
        for tf, (bins, _) in out.items():
            got[str(tf)].append(bins.to_frame())
    for tf in ("1m", "5m"):
        live = pd.concat(got[tf])
        assert Timeframe.parse(tf)
        once = trades_to_ohlcv(trades, tf).loc[live.index]
        pd.testing.assert_frame_equal(live, once, check_freq=False, rtol=1e-12)
        assert list(live.columns)[5:] == [
            "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "vwap"
        ]  # fmt: skip


def _random_trades(n: int, seed: int, span_ms: int = 6 * 3_600_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(1_704_067_200_000, 1_704_067_200_000 + span_ms, n))
    return pd.DataFrame(
        {"timestamp": ts, "id": np.arange(n).astype(str), "price": rng.random(n) * 100 + 1,
         "amount": rng.random(n), "side": rng.choice(["buy", "sell"], n)}
    )  # fmt: skip


@pytest.mark.parametrize("tf", ["1s", "5s", "15s", "1m", "5m", "15m", "1h", "4h", "1d", "1w", "1M"])
def test_matches_pandas_resample(tf: str) -> None:
    trades = _random_trades(20_000, 1, span_ms=40 * 86_400_000)
    got = trades_to_ohlcv(trades, tf)
    s = trades.set_index(pd.to_datetime(trades["timestamp"], unit="ms", utc=True))
    special = {"1M": "MS", "1w": "W-MON"}
    rule = special[tf] if tf in special else pd.Timedelta(tf.replace("m", "min"))
    kw = {"label": "left", "closed": "left"} if tf == "1w" else {}
    ohlc = s["price"].resample(rule, **kw).ohlc()
    vol = s["amount"].resample(rule, **kw).sum()
    cnt = s["price"].resample(rule, **kw).count()
    cost = (s["price"] * s["amount"]).resample(rule, **kw).sum()
    taker = s[s["side"] == "buy"]
    buy = taker["amount"].resample(rule, **kw).sum().reindex(cnt.index, fill_value=0.0)
    buy_cost = (
        (taker["price"] * taker["amount"])
        .resample(rule, **kw)
        .sum()
        .reindex(cnt.index, fill_value=0.0)
    )
    want = ohlc.assign(
        volume=vol,
        quote_volume=cost,
        trades=cnt,
        taker_buy_volume=buy,
        taker_buy_quote_volume=buy_cost,
        vwap=cost / vol,
    )[cnt > 0]
    want.index.name = "timestamp"
    pd.testing.assert_frame_equal(got, want, check_freq=False, check_dtype=False)


def test_many_timeframes_at_once_equal_one_at_a_time() -> None:
    trades = _random_trades(5_000, 2)
    tfs = ["1s", "5s", "10s", "15s", "30s", "1m", "5m", "15m", "1h", "4h", "1d"]
    many = trades_to_ohlcv(trades, tfs, fill_empty=True)
    assert list(many) == tfs
    for tf in tfs:
        pd.testing.assert_frame_equal(many[tf], trades_to_ohlcv(trades, tf, fill_empty=True))


def test_only_closed_candles_within_window() -> None:
    t0 = 1_704_067_200_000
    trades = pd.DataFrame(
        {"timestamp": [t0 + 10, t0 + 59_000, t0 + 61_000, t0 + 125_000], "id": ["1", "2", "3", "4"],
         "price": [1.0, 2.0, 3.0, 4.0], "amount": [1.0, 1.0, 1.0, 1.0], "side": ["buy"] * 4}
    )  # fmt: skip
    c = trades_to_ohlcv(trades, "1m", start=t0, end=t0 + 150_000)
    assert list(c.index.asi8 // 1_000_000) == [t0, t0 + 60_000]  # 00:02 still open at 00:02:30
    assert c["close"].tolist() == [2.0, 3.0]
    c2 = trades_to_ohlcv(trades, "1m", start=t0 + 30_000, end=t0 + 180_000)
    assert list(c2.index.asi8 // 1_000_000) == [
        t0 + 60_000,
        t0 + 120_000,
    ]  # 00:00 starts before window
    filled = trades_to_ohlcv(trades, "1m", fill_empty=True, start=t0, end=t0 + 300_000)
    assert filled["trades"].tolist() == [2, 1, 1, 0, 0]
    assert filled["close"].tolist() == [2.0, 3.0, 4.0, 4.0, 4.0]
    assert filled["volume"].tolist() == [2.0, 1.0, 1.0, 0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**32 - 1), st.sampled_from(["1s", "1m", "5m", "1h"]))
def test_candles_agree_with_brute_force(n: int, seed: int, tf: str) -> None:
    trades = _random_trades(n, seed, span_ms=3 * 3_600_000)
    got = trades_to_ohlcv(trades, tf, fill_empty=False)
    step = pd.Timedelta(tf.replace("m", "min")).value // 1_000_000
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(trades["timestamp"]):
        groups.setdefault(int(t) // step * step, []).append(i)
    assert len(got) == len(groups)
    for (start, rows), (ts, row) in zip(sorted(groups.items()), got.iterrows(), strict=True):
        p = trades["price"].to_numpy()[rows]
        assert ts.value // 1_000_000 == start
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            p[0],
            p.max(),
            p.min(),
            p[-1],
        )
        assert row["trades"] == len(rows)


def test_bad_input() -> None:
    with pytest.raises(InvalidRequest, match="timeframe"):
        trades_to_ohlcv(_random_trades(3, 0), "2x")
    with pytest.raises(InvalidRequest, match="side"):
        trades_to_ohlcv(_random_trades(3, 0).assign(side="up"), "1m")
    with pytest.raises(InvalidRequest, match="empty"):
        trades_to_ohlcv(_random_trades(3, 0), [])
