"""ExchangeClient through real ccxt over HTTP to the loopback ExchangeEmulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from mdcollect._errors import ExchangeError, InvalidRequest
from mdcollect._schema import normalize_frame
from mdcollect._time import index_ms
from mdcollect.exchanges import ExchangeClient, RetryPolicy, TradesPage
from mdcollect.testing import ExchangeEmulator, Fault

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: 2024-01-04 00:00:12.345 UTC: the emulator's and the clients' "now".
NOW = 1_704_067_200_000 + 3 * DAY + 12_345

SPOT = "BTC/USDT"
PERP = "BTC/USDT:USDT"
CASES = [
    ("binance", SPOT),
    ("binance_futures", PERP),
    ("okx", SPOT),
    ("okx_futures", PERP),
    ("bybit", SPOT),
    ("bybit_futures", PERP),
    ("kraken", SPOT),
]
DEEP = [c for c in CASES if c[0] != "kraken"]
#: the candle endpoint of each venue, as a path regex for faults and the request log
OHLCV_PATH = {
    "binance": "klines",
    "binanceusdm": "klines",
    "okx": "history-candles",
    "bybit": "market/kline",
    "kraken": "OHLC",
}


def _clock() -> int:
    return NOW


class Sleeps:
    """An injected sleep: records each wait and really waits (the emulator keeps time)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_clock) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: ExchangeEmulator) -> None:
    emu.faults.clear()
    emu.clear_requests()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(
    emu: ExchangeEmulator, key: str, sleeps: Sleeps | None = None, **config: Any
) -> ExchangeClient:
    policy = RetryPolicy(
        max_attempts=config.pop("max_attempts", 4),
        base_delay=0.001,
        max_delay=0.01,
        jitter="none",
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    config.setdefault("timeout", 2_000)
    config.setdefault("enableRateLimit", False)  # the emulator's limits are off too
    return ExchangeClient(key, emu.url, retry=policy, clock=_clock, **config)


#: the ohlcv columns every venue's candles have (the optional ones: see RICH)
OHLCV = ["open", "high", "low", "close", "volume"]


def truth(
    emu: ExchangeEmulator, client: ExchangeClient, symbol: str, tf: str, start: int, end: int
) -> pd.DataFrame:
    candles = emu.market.candles(client.info.ccxt_id, symbol, tf, start, end)
    frame = candles.to_frame().drop(columns="trades")
    return frame[frame.index < pd.Timestamp(end, unit="ms", tz="UTC")]


def ohlcv_requests(emu: ExchangeEmulator, client: ExchangeClient) -> list[Any]:
    pattern = OHLCV_PATH[client.info.ccxt_id]
    return [r for r in emu.requests if pattern in r.path]


def window(key: str) -> tuple[int, int]:
    """A one-page 1m window well inside what the exchange serves."""
    if key == "kraken":  # the last 720 candles only
        return NOW - 5 * HOUR, NOW - 4 * HOUR
    return NOW - 3 * DAY, NOW


# ---------------------------------------------------------------------- markets


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_load_markets_once(emu: ExchangeEmulator, key: str, symbol: str) -> None:
    async with make_client(emu, key) as client:
        results = await asyncio.gather(*(client.load_markets() for _ in range(5)))
        assert all(symbol in markets for markets in results)
        loads = client.request_count
        assert loads >= 1
        await client.load_markets()
        market = await client.check_symbol(symbol)
        assert client.request_count == loads == len(emu.requests)
        assert market["symbol"] == symbol
        assert market["spot" if client.info.market_type == "spot" else "swap"]


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_unknown_symbol_names_close_matches(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    async with make_client(emu, key) as client:
        await client.load_markets()
        before = client.request_count
        bad = symbol.replace("BTC", "BTX")
        with pytest.raises(InvalidRequest) as info:
            await client.fetch_ohlcv(bad, "1m", NOW - HOUR, NOW)
        assert repr(bad) in str(info.value) and key in str(info.value)
        assert symbol in str(info.value)  # the close match
        assert client.request_count == before  # refused before any request


async def test_unsupported_timeframe_lists_allowed(emu: ExchangeEmulator) -> None:
    async with make_client(emu, "kraken") as client:
        with pytest.raises(InvalidRequest, match=r"'3m'.*kraken.*1m, 5m, 15m"):
            client.check_timeframe("3m")
        assert client.check_timeframe("1h") == "1h"


async def test_bad_range_rejected(emu: ExchangeEmulator) -> None:
    async with make_client(emu, "binance") as client:
        with pytest.raises(InvalidRequest, match="before since"):
            await client.fetch_ohlcv(SPOT, "1m", NOW, NOW - 1)
        with pytest.raises(InvalidRequest, match="limit"):
            await client.fetch_ohlcv(SPOT, "1m", NOW - HOUR, NOW, limit=0)


async def test_range_in_seconds_or_not_ms_rejected_before_a_request(
    emu: ExchangeEmulator,
) -> None:
    """Epoch seconds are not read as 1970 ms; a bound that is no int of ms is named."""
    async with make_client(emu, "binance") as client:
        await client.load_markets()
        before = client.request_count
        with pytest.raises(InvalidRequest, match=r"since 1704067200 looks like seconds"):
            await client.fetch_ohlcv(SPOT, "1m", 1_704_067_200, NOW)
        with pytest.raises(InvalidRequest, match=r"until 1704070800 looks like seconds"):
            await client.fetch_trades_page(SPOT, 1_704_067_200_000, 1_704_070_800)
        with pytest.raises(InvalidRequest, match=r"until \(ms since the epoch\) must be .*'x'"):
            await client.fetch_trades(SPOT, NOW - HOUR, "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match=r"limit must be a positive integer, got 1.5"):
            await client.fetch_ohlcv(SPOT, "1m", NOW - HOUR, NOW, limit=1.5)  # type: ignore[arg-type]
        assert client.request_count == before
        # numpy ints, as frames hand them out, are ms like any int
        end = NOW - NOW % MINUTE
        frame = await client.fetch_ohlcv(SPOT, "1m", np.int64(end - HOUR), np.int64(end))
        assert len(frame) == 60


def test_ws_keepalive_refuses_what_is_no_positive_number(emu: ExchangeEmulator) -> None:
    client = make_client(emu, "binance")
    for bad in (0, -1, float("nan"), True, "5"):
        with pytest.raises(InvalidRequest, match=r"keep-alive seconds must be a positive number"):
            client.ws_keepalive(bad)  # type: ignore[arg-type]
    client.ws_keepalive(2.5)
    assert client.exchange.streaming["keepAlive"] == 2500


# ---------------------------------------------------------------------- candles


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_fetch_ohlcv_page_equals_ground_truth(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key) as client:
        frame = await client.fetch_ohlcv(symbol, "1m", since + 7, until)
        page = client.info.page_limit
        start = -(-(since + 7) // MINUTE) * MINUTE  # the first boundary >= since + 7
        expected = truth(emu, client, symbol, "1m", start, min(until, start + page * MINUTE))
        assert len(frame) == min(page, len(expected)) > 0
        pd.testing.assert_frame_equal(frame[OHLCV], expected.iloc[: len(frame)])
        assert frame.index.name == "timestamp" and str(frame.index.tz) == "UTC"
        assert len(ohlcv_requests(emu, client)) == 1


@pytest.mark.parametrize(("key", "symbol"), DEEP)
async def test_consecutive_pages_tile_the_range(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    async with make_client(emu, key) as client:
        until = NOW // HOUR * HOUR - DAY
        since = until - 3 * client.info.page_limit * HOUR
        frames, t = [], since
        while t < until:
            frame = await client.fetch_ohlcv(symbol, "1h", t, until)
            assert len(frame) == client.info.page_limit
            frames.append(frame)
            t = int(frame.index[-1].value // 1_000_000) + HOUR
        got = pd.concat(frames)
        pd.testing.assert_frame_equal(got[OHLCV], truth(emu, client, symbol, "1h", since, until))


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_open_candle_dropped(emu: ExchangeEmulator, key: str, symbol: str) -> None:
    async with make_client(emu, key) as client:
        frame = await client.fetch_ohlcv(symbol, "1m", NOW - 10 * MINUTE, NOW + 10 * MINUTE)
        open_start = NOW // MINUTE * MINUTE
        last = int(frame.index[-1].value // 1_000_000)
        assert last == open_start - MINUTE
        hourly = await client.fetch_ohlcv(symbol, "1h", NOW - 5 * HOUR, NOW + HOUR)
        assert int(hourly.index[-1].value // 1_000_000) == NOW // HOUR * HOUR - HOUR


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_duplicated_and_overlapping_rows_are_deduplicated(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key) as client:
        await client.load_markets()
        clean = await client.fetch_ohlcv(symbol, "1m", since, until)
        for kind in ("duplicate", "overlap"):
            emu.faults.add(Fault(kind, route=OHLCV_PATH[client.info.ccxt_id], count=1))
            faulty = await client.fetch_ohlcv(symbol, "1m", since, until)
            assert faulty.index.is_unique and faulty.index.is_monotonic_increasing
            # a repeated row may take the place of the page's last one
            assert len(faulty) >= len(clean) - 1
            pd.testing.assert_frame_equal(faulty, clean.iloc[: len(faulty)])


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_first_candle_time(emu: ExchangeEmulator, key: str, symbol: str) -> None:
    async with make_client(emu, key) as client:
        await client.load_markets()
        before = client.request_count
        first = await client.first_candle_time(symbol)
        assert client.request_count - before <= 1
        if client.info.deep_history:
            assert first == 1_577_836_800_000  # the emulator lists markets on 2020-01-01
        else:
            assert first is None


# ---------------------------------------------------------------------- trades


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_fetch_trades_match_ground_truth(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    since, until = NOW - 2 * MINUTE, NOW
    async with make_client(emu, key) as client:
        frame = await client.fetch_trades(symbol, since, until)
        assert list(frame.columns) == ["id", "price", "amount", "side"]
        assert len(frame) > 0
        ms = frame.index.asi8 // 1_000_000
        assert ((ms >= since) & (ms < until)).all()
        # venues format ids their own way: compare the trades' content
        expected = emu.market.trades(client.info.ccxt_id, symbol, since, until).to_frame()
        got, want = _trade_set(frame), _trade_set(expected)
        assert got <= want
        first = frame.index[0]
        assert {t for t in want if t[0] > first} <= got  # a contiguous, most recent page


def _trade_set(frame: pd.DataFrame) -> set[tuple[Any, ...]]:
    return set(zip(frame.index, frame["price"], frame["amount"], frame["side"], strict=True))


@pytest.mark.parametrize(("key", "symbol"), [("binance", SPOT), ("kraken", SPOT)])
async def test_trades_paging_covers_range_without_gaps(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    """Binance pages by time (1 h windows), Kraken by its ``last`` cursor."""
    since, until = NOW - 150 * MINUTE, NOW - 20 * MINUTE
    async with make_client(emu, key) as client:
        pages: list[TradesPage] = [await client.fetch_trades_page(symbol, since, until, limit=200)]
        while pages[-1].next_since is not None:
            assert len(pages) < 500
            prev = pages[-1]
            assert prev.next_since is not None
            pages.append(
                await client.fetch_trades_page(
                    symbol, prev.next_since, until, limit=200, cursor=prev.cursor
                )
            )
        got = normalize_frame("trades", pd.concat([p.frame for p in pages]))
        expected = emu.market.trades(client.info.ccxt_id, symbol, since, until).to_frame()
        assert len(pages) > 2
        pd.testing.assert_frame_equal(got, normalize_frame("trades", expected))


@pytest.mark.parametrize(("key", "symbol"), [("okx", SPOT), ("okx_futures", PERP)])
async def test_okx_trades_read_newest_first_cover_the_range(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    """OKX's trades endpoint ignores ``since``: history-trades is read backwards from
    ``until`` (by time), then by trade id (never splitting a millisecond)."""
    since, until = NOW - 150 * MINUTE, NOW - 20 * MINUTE
    async with make_client(emu, key) as client:
        await client.load_markets()
        emu.clear_requests()
        page = await client.fetch_trades_page(symbol, since, until)
        expected = emu.market.trades("okx", symbol, since, until).to_frame()
        asked = [r for r in emu.requests if r.path.endswith("/market/history-trades")]
        with pytest.raises(InvalidRequest, match="last 90 days"):
            await client.fetch_trades_page(symbol, NOW - 91 * DAY, NOW - 90 * DAY)
    assert page.next_since is None
    assert len(expected) > 300
    pd.testing.assert_frame_equal(page.frame, normalize_frame("trades", expected))
    # 100 a page; after the first, a page starts with the oldest trade seen (known to
    # exist, so a page cut short shows): 99 new ones, until one older than since
    assert len(asked) == 1 + -(-(len(expected) + 1 - 100) // 99) == len(emu.requests)
    assert asked[0].params["type"] == "2" and asked[0].params["after"] == str(until)
    assert all(r.params["type"] == "1" for r in asked[1:])


# ---------------------------------------------------------------------- faults

FAULT_CASES = [("binance", SPOT), ("okx_futures", PERP), ("bybit", SPOT), ("kraken", SPOT)]
TRANSIENT = ["500", "502", "503", "504", "drop", "malformed", "truncated"]


@pytest.mark.parametrize("kind", TRANSIENT)
@pytest.mark.parametrize(("key", "symbol"), FAULT_CASES)
async def test_transient_faults_retried_to_success(
    emu: ExchangeEmulator, sleeps: Sleeps, key: str, symbol: str, kind: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key, sleeps) as client:
        clean = await client.fetch_ohlcv(symbol, "1m", since, until)
        emu.clear_requests()
        emu.faults.add(Fault(kind, route=OHLCV_PATH[client.info.ccxt_id], count=2))
        frame = await client.fetch_ohlcv(symbol, "1m", since, until)
        pd.testing.assert_frame_equal(frame, clean)
        assert [r.status for r in ohlcv_requests(emu, client)][-1] == 200
        assert len(ohlcv_requests(emu, client)) == 3
        if kind == "drop":
            # aiohttp resends an idempotent request once by itself when the server
            # drops a reused keep-alive connection: one of the drops never reaches us
            assert 1 <= client.retry_count <= 2
        else:
            assert client.retry_count == 2
        assert len(sleeps.waits) == client.retry_count


@pytest.mark.parametrize(("key", "symbol"), FAULT_CASES)
async def test_timeout_retried_to_success(
    emu: ExchangeEmulator, sleeps: Sleeps, key: str, symbol: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key, sleeps, timeout=300) as client:
        await client.load_markets()
        emu.faults.add(Fault("timeout", route=OHLCV_PATH[client.info.ccxt_id], count=1, delay=1))
        frame = await client.fetch_ohlcv(symbol, "1m", since, until)
        assert len(frame) > 0 and client.retry_count == 1


@pytest.mark.parametrize(("key", "symbol"), FAULT_CASES)
async def test_rate_limit_honours_retry_after(
    emu: ExchangeEmulator, sleeps: Sleeps, key: str, symbol: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key, sleeps) as client:
        await client.load_markets()
        emu.clear_requests()
        emu.faults.add(
            Fault("429", route=OHLCV_PATH[client.info.ccxt_id], count=1, retry_after=1.0)
        )
        frame = await client.fetch_ohlcv(symbol, "1m", since, until)
        assert len(frame) > 0
        statuses = [r.status for r in ohlcv_requests(emu, client)]
        assert statuses[-1] == 200 and len(statuses) == 2
        assert client.retry_count == 1
        # the backoff alone would be 0.001 s: the wait is the server's Retry-After
        assert sleeps.waits == [pytest.approx(1.0, abs=1e-6)]


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_persistent_failure_raises_after_max_attempts(
    emu: ExchangeEmulator, sleeps: Sleeps, key: str, symbol: str
) -> None:
    since, until = window(key)
    async with make_client(emu, key, sleeps, max_attempts=3) as client:
        await client.load_markets()
        emu.clear_requests()
        before = client.request_count
        emu.faults.add(Fault("503", route=OHLCV_PATH[client.info.ccxt_id]))
        with pytest.raises(ExchangeError) as info:
            await client.fetch_ohlcv(symbol, "1m", since, until)
        assert info.value.transient
        assert isinstance(info.value.__cause__, ccxt.ExchangeNotAvailable)
        assert [r.status for r in ohlcv_requests(emu, client)] == [503, 503, 503]
        assert client.request_count - before == 3 and client.retry_count == 2
        assert len(sleeps.waits) == 2


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_exchange_side_bad_symbol_never_retried(
    emu: ExchangeEmulator, sleeps: Sleeps, key: str, symbol: str
) -> None:
    """A market ccxt knows but the exchange refuses: one request, a permanent error."""
    async with make_client(emu, key, sleeps) as client:
        markets = await client.load_markets()
        ghost = {**markets[symbol], "id": "NOPE" + markets[symbol]["id"], "symbol": "NOPE/USDT"}
        client.exchange.markets["NOPE/USDT"] = ghost
        emu.clear_requests()
        with pytest.raises(ExchangeError) as info:
            await client.fetch_ohlcv("NOPE/USDT", "1m", NOW - HOUR, NOW)
        assert not info.value.transient and info.value.retry_after is None
        assert isinstance(info.value.__cause__, ccxt.BaseError)
        assert len(emu.requests) == 1
        assert client.retry_count == 0 and sleeps.waits == []


async def test_a_cancel_as_the_answer_arrives_is_not_lost(
    emu: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call cancelled in the very loop turn its answer arrives raises CancelledError.

    Python 3.11's ``asyncio.wait_for`` returned the answer instead, losing the cancel:
    a collector's poll loop then polled on until the stop timeout (30 s). The answer
    and the cancel are made to coincide by holding ccxt's call on a future (a race
    the network cannot be made to produce on demand)."""
    client = ExchangeClient("binance_futures", base_url=emu.url, enableRateLimit=False)
    try:
        await client.check_symbol(PERP)
        answer = await client.exchange.fetch_funding_rate(PERP)  # a real one, to hand back
        held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asked = asyncio.Event()

        async def fetch_funding_rate(symbol: str) -> Any:
            asked.set()
            return await held

        monkeypatch.setattr(client.exchange, "fetch_funding_rate", fetch_funding_rate)
        call = asyncio.create_task(client.fetch_funding_rate(PERP))
        await asyncio.wait_for(asked.wait(), 10)
        held.set_result(answer)
        call.cancel()  # in the same turn: the answer is in before the call sees the cancel
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await client.close()


# ---------------------------------------------------------------------- rich candles

#: the optional ohlcv columns each venue's candle rows carry (Binance klines: quote
#: volume, trade count, taker-buy volumes; OKX volCcyQuote and Bybit turnover: quote
#: volume; Kraken OHLC: vwap and count)
RICH = {
    "binance": ["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"],
    "binance_futures": ["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"],
    "okx": ["quote_volume"],
    "okx_futures": ["quote_volume"],
    "bybit": ["quote_volume"],
    "bybit_futures": ["quote_volume"],
    "kraken": ["trades", "vwap"],
}


@pytest.mark.parametrize(("key", "symbol"), CASES)
async def test_fetch_ohlcv_keeps_the_candle_fields_the_venue_sends(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    """ccxt's unified candle drops the raw row's extra fields; the client keeps them as
    the optional ohlcv columns, equal to the emulator's candles (from its own trades)."""
    since, until = window(key)
    async with make_client(emu, key) as client:
        frame = await client.fetch_ohlcv(symbol, "1m", since, until)
        assert list(frame.columns) == ["open", "high", "low", "close", "volume", *RICH[key]]
        t = index_ms(frame)
        c = emu.market.candles(client.info.ccxt_id, symbol, "1m", int(t[0]), int(t[-1]) + MINUTE)
        assert len(c) == len(frame) > 50
        want = {
            "quote_volume": c.quote_volume,
            "trades": c.trades,
            "taker_buy_volume": c.taker_buy_volume,
            "taker_buy_quote_volume": c.taker_buy_quote_volume,
            "vwap": np.divide(c.quote_volume, c.volume, out=np.zeros(len(c)), where=c.volume > 0),
        }
        for col in RICH[key]:
            if col == "trades":
                np.testing.assert_array_equal(frame[col].to_numpy(), want[col])
                assert frame[col].dtype == np.int64
            elif col == "vwap":  # Kraken rounds it to the price's decimals, as the emulator
                np.testing.assert_allclose(frame[col].to_numpy(), want[col], atol=0.05 + 1e-9)
            else:
                np.testing.assert_allclose(frame[col].to_numpy(), want[col], rtol=1e-9)
        assert not frame.isna().any().any()


async def test_price_candles_keep_only_the_ohlcv_columns(emu: ExchangeEmulator) -> None:
    """Binance's mark-price klines have the kline layout with zeros in the volume
    fields: they are no quote volumes, so mark candles keep ccxt's six values."""
    async with make_client(emu, "binance_futures") as client:
        frame = await client.fetch_ohlcv(PERP, "1h", NOW - DAY, NOW, kind="mark")
        assert len(frame) > 0
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]


def test_inverse_markets_keep_ccxt_candles_only() -> None:
    """An inverse market's raw candle counts volumes in contracts or the base coin (OKX
    and Bybit inverse swaps, Binance COIN-M), so its rows get no optional columns; a
    linear market's rows keep their raw row for them."""
    from mdcollect.exchanges._client import _keep_raw_candles

    raw = ["1706630400000", "1", "2", "0.5", "1.5", "10", "15.5"]

    def parse(ohlcv: Any, market: Any = None) -> list[Any]:
        return [int(ohlcv[0]), *map(float, ohlcv[1:6])]

    wrapped = _keep_raw_candles(parse)
    assert wrapped(raw, {"inverse": False})[6] is raw
    assert wrapped(raw, None)[6] is raw
    assert len(wrapped(raw, {"inverse": True})) == 6
