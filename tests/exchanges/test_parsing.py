"""The parsers of :mod:`mdcollect.exchanges.parsing` on real ccxt unified structures.

Each structure is what real ccxt makes of an exchange's recorded message: the
responses ccxt's maintainers recorded for their static tests
(``tests/data/realdata/exchange_rest_samples/ccxt-static/``), parsed by an
offline ccxt instance whose markets were loaded from the ExchangeEmulator (its
instrument lists are in each exchange's real format; OKX's swap contract is
0.01 BTC as on OKX). Where the recording holds ccxt's own parse
(``parsedResponse``), the structure is first checked against it, so the test
parses the way ccxt's ``fetch_*`` does.
"""

from __future__ import annotations

import asyncio
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest

from mdcollect._schema import SCHEMAS
from mdcollect._time import Timeframe
from mdcollect.exchanges import (
    book_row,
    candle_columns,
    contract_size,
    exchange_info,
    funding_row,
    ohlcv_frame,
    ohlcv_row,
    row_columns,
    rows_frame,
    ticker_row,
    trade_id,
    trade_rows,
    trades_frame,
)
from mdcollect.testing import ExchangeEmulator

SAMPLES = Path(__file__).parents[1] / "data/realdata/exchange_rest_samples/ccxt-static"
REAL = Path(__file__).parents[1] / "data/realdata"
#: the ms the tests say a structure arrived (stands in where it has no timestamp)
RECEIVED = 1_800_000_000_000
#: the emulator's "now" (2024-01-04 00:00:12.345 UTC): the same trades every run
NOW = 1_704_326_412_345
NAN = float("nan")
#: exchange key -> the ccxt class of an offline instance
OFFLINE = {
    "binance": ccxt.binance,
    "binance_futures": ccxt.binanceusdm,
    "okx": ccxt.okx,
    "okx_futures": ccxt.okx,
    "bybit_futures": ccxt.bybit,
    "kraken": ccxt.kraken,
}


@pytest.fixture(scope="module")
def markets() -> dict[str, dict[str, Any]]:
    """Each exchange key's ccxt markets, loaded once from the emulator."""

    async def load() -> dict[str, dict[str, Any]]:
        out = {}
        with ExchangeEmulator(rate_limits=False) as emu:
            for key in OFFLINE:
                async with emu.client(key) as client:
                    out[key] = await client.load_markets()
        return out

    return asyncio.run(load())


@pytest.fixture(scope="module")
def okx_swap_trades() -> dict[str, Any]:
    """A BTC-USDT-SWAP ``/api/v5/market/trades`` answer in OKX's format (sizes in
    contracts), from the emulator: the recordings hold no swap trades."""

    async def load() -> dict[str, Any]:
        with ExchangeEmulator(rate_limits=False, clock=lambda: NOW) as emu:
            async with emu.client("okx_futures") as client:
                await client.load_markets()
                answer: dict[str, Any] = await client.exchange.publicGetMarketTrades(
                    {"instId": "BTC-USDT-SWAP", "limit": 20}
                )
                return answer

    return asyncio.run(load())


def offline(markets: dict[str, dict[str, Any]], key: str) -> Any:
    """An offline ccxt instance of ``key`` with the markets set."""
    exchange = OFFLINE[key]()
    exchange.set_markets(list(markets[key].values()))
    return exchange


def sample(exchange: str, method: str, description: str) -> dict[str, Any]:
    entries = json.loads((SAMPLES / f"{exchange}.json").read_text())["methods"][method]
    (entry,) = [e for e in entries if e["description"] == description]
    return dict(entry)


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Tuples equal value by value, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y
        or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------------- columns


def test_row_columns_are_the_schemas() -> None:
    assert row_columns("ticker") == SCHEMAS["ticker"].columns()
    assert row_columns("funding") == SCHEMAS["funding"].columns()
    assert row_columns("trades") == SCHEMAS["trades"].columns()
    # a ccxt candle has no trade count
    assert row_columns("ohlcv") == ["open", "high", "low", "close", "volume"]
    assert row_columns("orderbook", 2) == [
        "bid_px_0", "bid_px_1", "bid_sz_0", "bid_sz_1",
        "ask_px_0", "ask_px_1", "ask_sz_0", "ask_sz_1",
    ]  # fmt: skip


# ---------------------------------------------------------------------- ticker


def test_ticker_row_binance_spot(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "binance")
    entry = sample("binance", "fetchTicker", "public spot ticker")
    t = ex.parse_ticker(entry["httpResponse"], ex.market("BTC/USDT"))
    assert t["timestamp"] == entry["parsedResponse"]["timestamp"] == 1710328245391
    row = ticker_row(t, RECEIVED)
    assert row == (1710328245391, 73369.83, 73369.84, 73369.84, 6.27086, 0.03321, 72140.348628)
    frame = rows_frame("ticker", [row])
    assert frame.index[0] == pd.Timestamp(1710328245391, unit="ms", tz="UTC")
    assert frame.iloc[0].tolist() == list(row[1:])


def test_ticker_row_okx_spot(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "okx")
    entry = sample("okx", "fetchTicker", "public spot ticker")
    t = ex.parse_ticker(entry["httpResponse"]["data"][0], ex.market("BTC/USDT"))
    assert t["bidVolume"] == entry["parsedResponse"]["bidVolume"]
    assert ticker_row(t, RECEIVED) == (
        1710328243709, 73384.7, 73384.8, 73384.8, 0.0655768, 0.40193728, 21266.19145051,
    )  # fmt: skip


def test_ticker_row_without_timestamp_takes_received(markets: dict[str, dict[str, Any]]) -> None:
    """Kraken's ticker has no time: the row takes ``received``; a missing number is NaN."""
    ex = offline(markets, "kraken")
    entry = sample("kraken", "fetchTicker", "public spot ticker")
    t = ex.parse_ticker(entry["httpResponse"]["result"]["XBTUSDT"], ex.market("BTC/USDT"))
    assert t["timestamp"] is None
    # the touch sizes are Kraken's whole-lot volumes ("1")
    row = ticker_row(t, RECEIVED)
    assert row == (RECEIVED, 73380.6, 73380.7, 73380.6, 1.0, 1.0, 598.03698452)
    assert same(ticker_row({**t, "bidVolume": None}, RECEIVED), (*row[:4], NAN, *row[5:]))


# ---------------------------------------------------------------------- order book


def test_book_row_binance_swap(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "binance_futures")
    entry = sample("binance", "fetchOrderBook", "swap orderbook")
    msg = entry["httpResponse"]
    ob = ex.parse_order_book(msg, "BTC/USDT:USDT", int(msg["T"]))  # as fetch_order_book
    assert ob["bids"] == entry["parsedResponse"]["bids"]
    assert book_row(ob, 2, RECEIVED) == (
        1706803917258,
        42651.1, 42650.0, 470.672, 66.452,  # bid px 0..1, bid sz 0..1
        42878.0, 42950.9, 7.011, 0.005,  # ask px, ask sz
    )  # fmt: skip


def test_book_row_pads_missing_levels(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "okx")
    entry = sample("okx", "fetchOrderBook", "spot orderbook")
    first = entry["httpResponse"]["data"][0]
    ob = ex.parse_order_book(first, "BTC/USDT", int(first["ts"]))
    assert ob["asks"] == entry["parsedResponse"]["asks"]
    row = book_row(ob, 3, RECEIVED)
    assert same(row, (
        1712265035051,
        67973.3, 67973.2, NAN, 0.05, 0.00725939, NAN,
        67973.4, 67975.9, NAN, 1.40848059, 0.08292002, NAN,
    ))  # fmt: skip
    frame = rows_frame("orderbook", [row], depth=3)
    assert frame.columns.tolist() == row_columns("orderbook", 3)
    assert frame["ask_sz_0"].iloc[0] == 1.40848059


# ---------------------------------------------------------------------- funding


def test_funding_row_bybit(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "bybit_futures")
    entry = sample("bybit", "fetchFundingRate", "fetchFundingRate")
    item = entry["httpResponse"]["result"]["list"][0]
    fr = ex.parse_funding_rate(item, ex.market("BTC/USDT:USDT"))
    assert fr["fundingRate"] == entry["parsedResponse"]["fundingRate"]
    row = funding_row(fr, RECEIVED)
    assert row == (1730730080834, 0.0001, 68591.46, 68599.9)
    frame = rows_frame("funding", [row, (1730730080834 - 1000, 0.0002, NAN, NAN)])
    assert frame["rate"].tolist() == [0.0002, 0.0001]  # sorted by time


def test_funding_row_without_timestamp_takes_received() -> None:
    assert same(funding_row({"fundingRate": 0.0001}, RECEIVED), (RECEIVED, 0.0001, NAN, NAN))


# ---------------------------------------------------------------------- trades


@pytest.mark.parametrize(
    ("key", "exchange", "symbol", "expected"),
    [
        # OKX tradeId; Binance aggTrade id "a" (m=false: the buyer took); Kraken's
        # trade id; Bybit's execId (a linear swap: contract size 1, no conversion)
        ("okx", "okx", "BTC/USDT", (1710327658374, "497859870", 73239.3, 0.0009478, "sell")),
        ("binance", "binance", "BTC/USDT", (1710327661939, "2913537567", 73238.7, 0.00109, "buy")),
        ("kraken", "kraken", "BTC/USDT", (1710327959173, "6324366", 73324.4, 0.010309, "buy")),
        (
            "bybit_futures", "bybit", "BTC/USDT:USDT",
            (1707905515968, "9afd1288-b444-53f8-8e40-c2f99368ad22", 51444.4, 0.972, "buy"),
        ),
    ],
)  # fmt: skip
def test_trade_rows(
    markets: dict[str, dict[str, Any]],
    key: str,
    exchange: str,
    symbol: str,
    expected: tuple[Any, ...],
) -> None:
    ex = offline(markets, key)
    description = {
        "okx": "public spot trades",
        "binance": "public spot trades",
        "kraken": "spot trade",
        "bybit": "swap public trade",
    }[exchange]
    body = sample(exchange, "fetchTrades", description)["httpResponse"]
    raw = {
        "okx": lambda: body["data"],
        "binance": lambda: body,
        "kraken": lambda: body["result"]["XBTUSDT"],
        "bybit": lambda: body["result"]["list"],
    }[exchange]()
    market = ex.market(symbol)
    trades = ex.parse_trades(raw, market)
    assert contract_size(market) is None
    assert trade_rows(trades, contract_size(market), RECEIVED) == [(*expected, RECEIVED)]
    frame = trades_frame(trades, contract_size(market), received=RECEIVED)
    assert frame.index.tolist() == [pd.Timestamp(expected[0], unit="ms", tz="UTC")]
    assert frame.iloc[0].tolist() == [*expected[1:], RECEIVED]
    assert frame.columns.tolist() == row_columns("trades")


def test_trades_frame_converts_okx_contracts_exactly(
    markets: dict[str, dict[str, Any]], okx_swap_trades: dict[str, Any]
) -> None:
    """OKX swap sizes are contracts of 0.01 BTC: the frame's amounts are BTC, as the
    decimal numbers the exchange's sizes stand for (not ``sz * 0.01`` in doubles)."""
    ex = offline(markets, "okx_futures")
    market = ex.market("BTC/USDT:USDT")
    assert contract_size(market) == Decimal("0.01")
    raw = okx_swap_trades["data"]
    trades = ex.parse_trades(raw, market)
    assert len(trades) == len(raw) >= 10
    # the size string with the point moved two places left, read as a double
    expected = {m["tradeId"]: float(Decimal(m["sz"]).scaleb(-2)) for m in raw}
    frame = trades_frame(trades, contract_size(market), received=RECEIVED)
    assert dict(zip(frame["id"], frame["amount"], strict=True)) == expected
    assert sorted(frame.index.asi8 // 1_000_000) == sorted(int(m["ts"]) for m in raw)
    assert dict(zip(frame["id"], frame["price"], strict=True)) == {
        m["tradeId"]: float(m["px"]) for m in raw
    }
    rows = trade_rows(trades, contract_size(market), RECEIVED)
    assert {r[1]: r[3] for r in rows} == expected
    # the product in doubles would differ on some of these sizes (0.07 * 0.01 is not 0.0007)
    assert any(float(m["sz"]) * 0.01 != expected[m["tradeId"]] for m in raw)


def test_trades_frame_window_and_duplicates(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "binance")
    entry = sample("binance", "fetchTrades", "public spot trades")
    (t,) = ex.parse_trades(entry["httpResponse"], ex.market("BTC/USDT"))
    later = ex.parse_trade(
        {**entry["httpResponse"][0], "a": "2913537568", "T": str(t["timestamp"] + 5)},
        ex.market("BTC/USDT"),
    )
    ts = t["timestamp"]
    # the same trade twice (pages overlap) is one row; [since, until) bounds the rest
    frame = trades_frame([later, t, t], None, since=ts, until=ts + 5)
    assert frame["id"].tolist() == ["2913537567"]
    assert frame.columns.tolist() == ["id", "price", "amount", "side"]
    assert trades_frame([later, t], None, since=ts, until=ts + 6)["id"].tolist() == [
        "2913537567",
        "2913537568",
    ]
    assert trades_frame([t], None, since=ts + 1).empty


def test_trade_id_without_exchange_id(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "okx")
    entry = sample("okx", "fetchTrades", "public spot trades")
    (t,) = ex.parse_trades(entry["httpResponse"]["data"], ex.market("BTC/USDT"))
    assert trade_id(t) == "497859870"
    assert trade_id({**t, "id": None}) == "1710327658374:73239.3:0.0009478:sell"
    assert trade_id({**t, "id": ""}) == "1710327658374:73239.3:0.0009478:sell"


def test_contract_size_of_markets(markets: dict[str, dict[str, Any]]) -> None:
    assert contract_size(markets["okx_futures"]["BTC/USDT:USDT"]) == Decimal("0.01")
    assert contract_size(markets["okx_futures"]["ETH/USDT:USDT"]) == Decimal("0.1")
    assert contract_size(markets["binance_futures"]["BTC/USDT:USDT"]) is None  # 1
    assert contract_size(markets["okx"]["BTC/USDT"]) is None  # spot


# ---------------------------------------------------------------------- candles


def test_ohlcv_row_and_frame_binance(markets: dict[str, dict[str, Any]]) -> None:
    ex = offline(markets, "binance")
    entry = sample("binance", "fetchOHLCV", "Spot OHLCV with since and limit")
    candles = ex.parse_ohlcvs(entry["httpResponse"], ex.market("BTC/USDT"), "1h")
    assert candles == entry["parsedResponse"]
    assert ohlcv_row(candles[0]) == (1706630400000, 43519.34, 43936.0, 43171.0, 43488.71, 20.55495)
    tf = Timeframe.parse("1h")
    # now is inside the third candle: it is still open and left out
    frame = ohlcv_frame(candles, tf, 1706630400000, 1706641200000, 1706637600000 + 1)
    assert frame.columns.tolist() == row_columns("ohlcv")
    assert (frame.index.asi8 // 1_000_000).tolist() == [1706630400000, 1706634000000]
    assert frame.iloc[1].tolist() == [43488.71, 43832.08, 43084.0, 43374.8, 21.80865]
    # since/until bound the candles; one closing exactly at now is closed
    frame = ohlcv_frame(candles, tf, 1706634000000, 1706641200000, 1706641200000)
    assert (frame.index.asi8 // 1_000_000).tolist() == [1706634000000, 1706637600000]


def test_ohlcv_frame_okx_newest_first_and_repeated(markets: dict[str, dict[str, Any]]) -> None:
    """OKX answers newest first; a page that repeats a candle gives it once."""
    ex = offline(markets, "okx")
    entry = sample("okx", "fetchOHLCV", "spot ohlcv with limit and since")
    candles = ex.parse_ohlcvs(entry["httpResponse"]["data"], ex.market("BTC/USDT"), "1h")
    assert candles == entry["parsedResponse"]
    rows = [candles[2], candles[0], candles[1], candles[0]]
    frame = ohlcv_frame(rows, Timeframe.parse("1h"), 0, 1706641200000, 1706641200000)
    assert (frame.index.asi8 // 1_000_000).tolist() == [1706630400000, 1706634000000, 1706637600000]
    assert frame.to_numpy().tolist() == [list(map(float, c[1:])) for c in candles]
    assert ohlcv_frame([], Timeframe.parse("1h"), 0, 1, 1).empty


# (registry key, sample, symbol, raw rows in the response, the candle at 1706630400000:
# its optional columns as the exchange's raw row states them)
RICH_SAMPLES = [
    ("binance", "binance", "Spot OHLCV with since and limit", "BTC/USDT", lambda r: r,
     {"quote_volume": 891428.4285807, "trades": 3743, "taker_buy_volume": 10.91428,
      "taker_buy_quote_volume": 473782.9573992}),
    ("okx", "okx", "spot ohlcv with limit and since", "BTC/USDT", lambda r: r["data"],
     {"quote_volume": 309343235.363089398}),
    ("bybit_futures", "bybit", "swap ohlcv with since and limit", "BTC/USDT:USDT",
     lambda r: r["result"]["list"], {"quote_volume": 58117391.4117}),
    ("kraken", "kraken", "Spot ohlcv with since in the request and limit filter on ccxt side",
     "BTC/USDT", lambda r: r["result"]["XBTUSDT"], {"trades": 126, "vwap": 43435.3}),
]  # fmt: skip


@pytest.mark.parametrize(("key", "ex", "desc", "symbol", "rows", "want"), RICH_SAMPLES)
def test_candle_columns_of_real_candle_rows(
    markets: dict[str, dict[str, Any]],
    key: str,
    ex: str,
    desc: str,
    symbol: str,
    rows: Any,
    want: dict[str, float],
) -> None:
    """Each venue's recorded candle rows give the optional columns at the positions its
    registry entry names; with ccxt's parse they make a frame with those columns."""
    exchange = offline(markets, key)
    entry = sample(ex, "fetchOHLCV", desc)
    raw = rows(entry["httpResponse"])
    fields = exchange_info(key).candle_fields
    market = exchange.market(symbol)
    candles = [[*exchange.parse_ohlcv(r, market), r] for r in raw]
    cols = candle_columns(raw, fields)
    assert list(cols) == list(want)
    tf = Timeframe.parse("1h")
    frame = ohlcv_frame(candles, tf, 0, 1706641200000, 1706641200000, fields=fields)
    assert list(frame.columns) == [*row_columns("ohlcv"), *want]
    assert frame.loc[pd.Timestamp(1706630400000, unit="ms", tz="UTC"), list(want)].tolist() == (
        list(want.values())
    )
    if "trades" in want:
        assert frame["trades"].dtype == "int64"
    # mark, index and premium candles keep the six values
    mark = ohlcv_frame(candles, tf, 0, 1706641200000, 1706641200000, "mark", fields)
    assert list(mark.columns) == row_columns("ohlcv")
    # without the fields (an exchange with none), ccxt's six values
    assert list(ohlcv_frame(candles, tf, 0, 1706641200000, 1706641200000).columns) == (
        row_columns("ohlcv")
    )


def test_candle_columns_of_real_binance_vision_klines() -> None:
    """data.binance.vision's 1m klines (the REST kline's 12 fields): quote volume over
    volume is a price within the candle, taker-buy volumes are parts of the volumes."""
    import io
    import zipfile

    path = REAL / "binance_btcusdt_klines_2020-01" / "BTCUSDT-1m-2020-01-01.zip"
    with zipfile.ZipFile(path) as z:
        (name,) = z.namelist()
        lines = io.TextIOWrapper(z.open(name)).read().splitlines()
    raw = [line.split(",") for line in lines]
    fields = exchange_info("binance").candle_fields
    candles = [[int(r[0]), *map(float, r[1:6]), r] for r in raw]
    frame = ohlcv_frame(
        candles, Timeframe.parse("1m"), 0, 1577923200000, 1577923200000, fields=fields
    )
    assert len(frame) == 1_440
    assert frame.iloc[0][["quote_volume", "trades"]].tolist() == [float(raw[0][7]), int(raw[0][8])]
    vol = frame["volume"] > 0
    vwap = frame["quote_volume"][vol] / frame["volume"][vol]
    assert (frame["low"][vol] <= vwap + 1e-6).all() and (vwap <= frame["high"][vol] + 1e-6).all()
    assert (frame["taker_buy_volume"] <= frame["volume"]).all()
    assert (frame["taker_buy_quote_volume"] <= frame["quote_volume"] + 1e-6).all()
    assert int(frame["trades"].sum()) == sum(int(r[8]) for r in raw)


def test_candle_columns_leave_out_what_a_row_lacks() -> None:
    assert candle_columns([["1", "2"]], {"quote_volume": 7}) == {}
    cols = candle_columns(
        [[0, 1, 2, 3, 4, 5, 6, None, 8], [0, 1, 2, 3, 4, 5, 6, "7.5", "9"]],
        {"quote_volume": 7, "trades": 8},
    )
    assert list(cols) == ["trades"] and cols["trades"].tolist() == [8, 9]
    assert cols["trades"].dtype == "int64"
