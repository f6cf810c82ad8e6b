"""Each fault class surfaces in unmodified ccxt as the right exception; rate limits as Binance does."""

from __future__ import annotations

import time
from typing import Any

import ccxt
import pytest
from emulator_helpers import DAY, MINUTE, NOW, sync_exchange

from mdcollect.testing import ExchangeEmulator, Fault, FaultKind, Limit

SINCE = NOW - NOW % DAY - 2 * DAY
VENUES = [
    ("binance", "BTC/USDT", "klines"),
    ("okx", "BTC/USDT", "market/history-candles"),
    ("bybit", "BTC/USDT:USDT", "market/kline"),
    ("kraken", "BTC/USDT", "OHLC"),
    ("coinbase", "BTC/USD", "market/candles"),
]

#: ccxt's class for each venue's rate-limit answer (siblings under NetworkError)
RATE_LIMIT_ERROR = {
    "binance": ccxt.DDoSProtection,  # HTTP 429/418
    "okx": ccxt.RateLimitExceeded,  # code 50011
    "bybit": ccxt.RateLimitExceeded,  # HTTP 403 "access too frequent"
    "kraken": ccxt.DDoSProtection,  # EGeneral:Too many requests
    "coinbase": ccxt.RateLimitExceeded,  # HTTP 429 rate_limit_exceeded
}


def fetch(ex: Any, symbol: str) -> list[list[float]]:
    since = SINCE if ex.id != "kraken" else NOW - 3_600_000
    return ex.fetch_ohlcv(symbol, "1m", since=since, limit=5)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("exchange_id", "symbol", "route"), VENUES, ids=[v[0] for v in VENUES])
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("500", ccxt.ExchangeNotAvailable),
        ("502", ccxt.ExchangeNotAvailable),
        ("503", ccxt.ExchangeNotAvailable),
        ("504", ccxt.RequestTimeout),
        ("429", "rate"),
        ("418", "rate"),
        ("truncated", ccxt.NetworkError),  # sync ccxt (requests); async ccxt raises ExchangeError
    ],
)
def test_fault_maps_to_ccxt_error(
    emu: ExchangeEmulator, exchange_id: str, symbol: str, route: str, kind: str, error: Any
) -> None:
    if error == "rate":
        error = RATE_LIMIT_ERROR[exchange_id]
    ex = sync_exchange(emu, exchange_id)
    emu.faults.add(Fault(kind, route=route, count=1, retry_after=0.01))
    with pytest.raises(error):
        fetch(ex, symbol)
    rec = emu.requests[-1]
    assert rec.route == route and rec.fault == kind
    time.sleep(0.02)  # honour Retry-After
    assert fetch(ex, symbol)  # the fault was used up
    assert emu.requests[-1].status == 200 and emu.requests[-1].fault is None


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "route"), VENUES[:2], ids=[v[0] for v in VENUES[:2]]
)
async def test_timeout_drop_and_slow_async(
    emu: ExchangeEmulator, exchange_id: str, symbol: str, route: str
) -> None:
    ex = emu.ccxt(exchange_id, enableRateLimit=False, timeout=500)
    try:
        await ex.load_markets()
        since = SINCE
        emu.faults.add(Fault(FaultKind.TIMEOUT, route=route, count=1, delay=3))
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_ohlcv(symbol, "1m", since=since, limit=5)
        # aiohttp retries a request once when a reused keep-alive connection is closed,
        # so a single dropped connection is invisible; two in a row are not.
        emu.faults.add(Fault(FaultKind.DROP, route=route, count=2))
        with pytest.raises(ccxt.NetworkError):
            await ex.fetch_ohlcv(symbol, "1m", since=since, limit=5)
        assert [r.status for r in emu.requests if r.fault == "drop"] == [0, 0]
        emu.faults.add(Fault(FaultKind.TRUNCATED, route=route, count=1))
        with pytest.raises(ccxt.ExchangeError):  # aiohttp ClientPayloadError
            await ex.fetch_ohlcv(symbol, "1m", since=since, limit=5)
        emu.faults.add(Fault(FaultKind.SLOW, route=route, count=1, delay=0.2))
        t = time.monotonic()
        rows = await ex.fetch_ohlcv(symbol, "1m", since=since, limit=5)
        assert time.monotonic() - t >= 0.2 and len(rows) == 5
    finally:
        await ex.close()


def test_malformed_json_reaches_ccxt_as_empty_result(emu: ExchangeEmulator) -> None:
    """ccxt does not raise on a 200 whose JSON is cut: it parses nothing and returns []."""
    ex = sync_exchange(emu, "binance")
    emu.faults.add(Fault("malformed", route="klines", count=1))
    assert fetch(ex, "BTC/USDT") == []
    assert emu.requests[-1].fault == "malformed" and emu.requests[-1].status == 200
    assert ex.last_http_response.startswith("[[") and not ex.last_http_response.endswith("]]")


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "route"), VENUES[:3], ids=[v[0] for v in VENUES[:3]]
)
def test_duplicate_and_overlapping_rows(
    emu: ExchangeEmulator, exchange_id: str, symbol: str, route: str
) -> None:
    ex = sync_exchange(emu, exchange_id)
    clean = ex.fetch_ohlcv(symbol, "1m", since=SINCE, limit=10)
    emu.faults.add(Fault("duplicate", route=route, count=1))
    dup = ex.fetch_ohlcv(symbol, "1m", since=SINCE, limit=10)
    times = [r[0] for r in dup]
    assert (
        len(set(times)) < len(times)
        and sorted(set(times)) == [r[0] for r in clean][: len(set(times))]
    )
    emu.faults.add(Fault("overlap", route=route, count=1))
    raw = ex.fetch_ohlcv(
        symbol,
        "1m",
        since=SINCE,
        limit=10,
        params={"until": SINCE + 9 * MINUTE} if exchange_id != "okx" else {},
    )
    assert raw == clean or raw[: len(clean)] == clean  # ccxt filters rows before `since`
    assert emu.requests[-1].fault == "overlap"


def test_seeded_rate_faults_are_deterministic() -> None:
    def run() -> list[int]:
        with ExchangeEmulator(seed=11, clock=lambda: NOW, rate_limits=False) as emu:
            ex = sync_exchange(emu, "binance")
            emu.faults.add(Fault("503", route="klines", rate=0.5))
            out = []
            for _ in range(12):
                try:
                    fetch(ex, "BTC/USDT")
                    out.append(200)
                except ccxt.ExchangeNotAvailable:
                    out.append(503)
            return out

    first = run()
    assert first == run() and 503 in first and 200 in first


def test_binance_weight_limit_429_then_418() -> None:
    limits = {"binance.spot": Limit(30, 60.0)}
    with ExchangeEmulator(seed=1, clock=lambda: NOW, rate_limits=limits, ban_seconds=30) as emu:
        ex = sync_exchange(emu, "binance")  # exchangeInfo weighs 20
        assert [r.weight for r in emu.requests] == [20, 1, 1]
        emu.limiter.reset()
        emu.clear_requests()
        for i in range(15):  # klines weigh 2
            fetch(ex, "BTC/USDT")
            assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == str(2 * (i + 1))
        with pytest.raises(ccxt.DDoSProtection) as info:
            fetch(ex, "BTC/USDT")
        assert "429" in str(info.value) and "-1003" in str(info.value)
        assert int(ex.last_response_headers["Retry-After"]) >= 59
        assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "32"
        for _ in range(emu.limiter.ban_after - 1):  # inside the back-off: 429 again
            with pytest.raises(ccxt.DDoSProtection) as info:
                fetch(ex, "BTC/USDT")
            assert "429" in str(info.value)
        with pytest.raises(ccxt.DDoSProtection) as info:
            fetch(ex, "BTC/USDT")  # kept requesting before Retry-After: banned
        assert "418" in str(info.value) and "IP banned until" in str(info.value)
        assert [r.status for r in emu.requests] == [200] * 15 + [429] * 5 + [418]
        assert [r.weight for r in emu.requests][:15] == [2] * 15
        # USD-M has its own 2400/min budget and weights klines by limit
        exf = sync_exchange(emu, "binanceusdm")
        exf.fetch_ohlcv("BTC/USDT:USDT", "1m", since=SINCE, limit=499)
        exf.fetch_ohlcv("BTC/USDT:USDT", "1m", since=SINCE, limit=1000)
        assert [r.weight for r in emu.requests[-2:]] == [2, 5]
        assert exf.last_response_headers["X-MBX-USED-WEIGHT-1M"] == str(
            1 + 2 + 5
        )  # exchangeInfo + klines(499) + klines(1000)


def test_injected_429_then_ignored_gives_418(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "binance")
    emu.faults.add(Fault("429", route="klines", count=1, retry_after=5))
    with pytest.raises(ccxt.DDoSProtection):
        fetch(ex, "BTC/USDT")
    assert ex.last_response_headers["Retry-After"] == "5"
    for _ in range(emu.limiter.ban_after):
        with pytest.raises(ccxt.DDoSProtection):
            fetch(ex, "BTC/USDT")
    # requests in flight when the 429 went out are answered 429; repeating gets a ban
    assert [r.status for r in emu.requests[-6:]] == [429, 429, 429, 429, 429, 418]


def test_okx_and_kraken_own_rate_limit_errors() -> None:
    limits = {"okx.history-candles": Limit(2, 2.0), "kraken.public": Limit(3, 15.0)}
    with ExchangeEmulator(seed=1, clock=lambda: NOW, rate_limits=limits) as emu:
        okx = sync_exchange(emu, "okx")
        fetch(okx, "BTC/USDT")
        fetch(okx, "BTC/USDT")
        with pytest.raises(ccxt.RateLimitExceeded):
            fetch(okx, "BTC/USDT")
        kraken = emu.ccxt("kraken", async_=False, enableRateLimit=False)
        kraken.load_markets()  # Assets + AssetPairs
        fetch(kraken, "BTC/USDT")
        with pytest.raises(ccxt.DDoSProtection):
            fetch(kraken, "BTC/USDT")


def test_bad_symbol_in_each_dialects_format(emu: ExchangeEmulator) -> None:
    binance = sync_exchange(emu, "binance")
    with pytest.raises(ccxt.BadSymbol):
        binance.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"})
    assert emu.requests[-1].status == 400
    with pytest.raises(ccxt.BadRequest):
        binance.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})
    okx = sync_exchange(emu, "okx")
    with pytest.raises(ccxt.BadSymbol):
        okx.publicGetMarketCandles({"instId": "NOPE-USDT"})
    bybit = sync_exchange(emu, "bybit")
    with pytest.raises(ccxt.BadSymbol):
        bybit.publicGetV5MarketKline({"category": "spot", "symbol": "NOPEUSDT", "interval": "1"})
    kraken = sync_exchange(emu, "kraken")
    with pytest.raises(ccxt.ExchangeError, match="EQuery:Unknown asset pair"):
        kraken.publicGetOHLC({"pair": "NOPEUSDT"})


#: Binance USD-M's list endpoints, each read through ccxt: candles, mark-price candles,
#: trades and funding history (route, fetch)
LIST_ENDPOINTS: list[tuple[str, Any]] = [
    ("klines", lambda ex: ex.fetch_ohlcv("BTC/USDT:USDT", "1m", since=SINCE, limit=10)),
    ("markPriceKlines", lambda ex: ex.fetch_mark_ohlcv("BTC/USDT:USDT", "1m", SINCE, 10)),
    ("aggTrades", lambda ex: ex.fetch_trades("BTC/USDT:USDT", since=SINCE, limit=10)),
    ("fundingRate", lambda ex: ex.fetch_funding_rate_history("BTC/USDT:USDT", SINCE - 5 * DAY, 10)),
]


@pytest.mark.parametrize(
    ("route", "fetch_rows"), LIST_ENDPOINTS, ids=[e[0] for e in LIST_ENDPOINTS]
)
def test_short_and_empty_pages_on_every_list_endpoint(
    emu: ExchangeEmulator, route: str, fetch_rows: Any
) -> None:
    """``Fault("short")`` answers the older half of a page, ``Fault("empty")`` no rows,
    with HTTP 200: for candles, price candles, trades and funding history alike."""
    ex = sync_exchange(emu, "binanceusdm")
    clean = fetch_rows(ex)
    assert len(clean) == 10
    emu.faults.add(Fault("short", route=route, count=1))
    assert fetch_rows(ex) == clean[:5]
    assert emu.requests[-1].fault == "short" and emu.requests[-1].status == 200
    emu.faults.add(Fault("empty", route=route, count=1))
    assert fetch_rows(ex) == []
    assert emu.requests[-1].fault == "empty" and emu.requests[-1].status == 200
    assert fetch_rows(ex) == clean  # the faults were counted: the next page is whole
