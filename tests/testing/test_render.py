"""The cached candle path: the same bytes as the plain one, faults intact, memory bounded."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW

from mdcollect.testing import ExchangeEmulator, Fault, MarketSpec
from mdcollect.testing._market.cache import LRU, PREFIX
from mdcollect.testing.dialects import _render
from mdcollect.testing.dialects._base import fmt, fmt_col

#: A market listed 30 days before now with a one-hour outage 3 days ago, beside the defaults.
GAPPY = MarketSpec(
    "GAP/USDT",
    exchange="binance",
    listed=NOW - 30 * DAY,
    outages=[(NOW - 3 * DAY, NOW - 3 * DAY + HOUR)],
)
FAR = NOW - 40 * DAY

#: (path, params): candle requests over every dialect, closed pages, the open candle,
#: forward and backward, before listing and across an outage.
REQUESTS: list[tuple[str, dict[str, str]]] = [
    *[
        ("/api/v3/klines", {"symbol": sym, "interval": iv, "limit": "1000", **extra})
        for sym in ("BTCUSDT", "GAPUSDT")
        for iv in ("1m", "1h")
        for extra in (
            {"startTime": str(FAR)},
            {"startTime": str(NOW - 3 * DAY - 500 * MINUTE)},
            {"startTime": str(NOW - 10 * HOUR), "endTime": str(NOW - 2 * HOUR)},
            {"endTime": str(NOW - 5 * DAY)},
            {},
        )
    ],
    ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1d", "limit": "30"}),
    ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1M", "limit": "12"}),
    *[
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1500", **extra})
        for extra in ({"startTime": str(NOW - 2 * DAY)}, {})
    ],
    *[
        ("/api/v5/market/history-candles", {"instId": inst, "bar": bar, "limit": "300", **extra})
        for inst in ("BTC-USDT", "BTC-USDT-SWAP")
        for bar in ("1m", "1H", "1Dutc")
        for extra in ({"after": str(NOW - DAY)}, {"before": str(NOW - 3 * HOUR)}, {})
    ],
    ("/api/v5/market/candles", {"instId": "BTC-USDT", "bar": "1m", "limit": "300"}),
    *[
        ("/v5/market/kline", {"category": cat, "symbol": "BTCUSDT", "interval": iv, **extra})
        for cat in ("spot", "linear")
        for iv in ("1", "60")
        for extra in ({"start": str(NOW - DAY), "limit": "1000"}, {"limit": "1000"}, {})
    ],
    *[
        ("/0/public/OHLC", {"pair": "XBTUSDT", "interval": iv, **extra})
        for iv in ("1", "60")
        for extra in ({}, {"since": str((NOW - 5 * HOUR) // 1000)})
    ],
]


@pytest.fixture
def server() -> Iterator[ExchangeEmulator]:
    """A fresh emulator on a frozen clock, the row cache emptied before and after."""
    _render.ROWS.clear()
    with ExchangeEmulator(seed=11, clock=lambda: NOW, rate_limits=False, markets=[GAPPY]) as emu:
        yield emu
    _render.ROWS.clear()


def get(emu: ExchangeEmulator, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    url = f"{emu.url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers(emu: ExchangeEmulator) -> list[tuple[int, bytes]]:
    return [get(emu, path, params) for path, params in REQUESTS]


def cached_rows() -> int:
    return sum(len(block) for block in _render.ROWS.values())


def test_cached_pages_are_byte_identical_to_the_plain_path(
    server: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_render, "CACHE", False)
    plain = answers(server)
    assert cached_rows() == 0
    monkeypatch.setattr(_render, "CACHE", True)
    cold = answers(server)
    assert cached_rows() > 0
    warm = answers(server)
    assert [s for s, _ in plain] == [200] * len(REQUESTS)
    # every answer has rows but OKX's daily bars opening after now - 3 h (there are none)
    assert sum(b"],[" not in body for _, body in plain) == 2
    for request, a, b, c in zip(REQUESTS, plain, cold, warm, strict=True):
        assert a == b == c, request


def test_a_closed_page_is_rendered_once_and_the_open_candle_never_cached(
    server: ExchangeEmulator,
) -> None:
    params = {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000"}
    closed = {**params, "startTime": str(NOW - 2 * DAY)}
    status, first = get(server, "/api/v3/klines", closed)
    assert status == 200 and cached_rows() == 1000
    assert get(server, "/api/v3/klines", closed) == (200, first)
    assert cached_rows() == 1000
    # the last 1000 candles: 999 closed (cached), the one containing now is not
    status, latest = get(server, "/api/v3/klines", params)
    assert status == 200 and latest.count(b"],[") == 999
    assert cached_rows() == 1000 + 999


@pytest.mark.parametrize(
    ("route", "path", "params"),
    [
        ("klines", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "20"}),
        (
            "market/history-candles",
            "/api/v5/market/history-candles",
            {"instId": "BTC-USDT", "bar": "1m", "limit": "20"},
        ),
        (
            "market/kline",
            "/v5/market/kline",
            {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": "20"},
        ),
        ("OHLC", "/0/public/OHLC", {"pair": "XBTUSDT", "interval": "1"}),
    ],
    ids=["binance", "okx", "bybit", "kraken"],
)
@pytest.mark.parametrize("fault", ["duplicate", "overlap", "malformed"])
def test_faults_apply_to_cached_pages_exactly_as_to_plain_ones(
    server: ExchangeEmulator,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    path: str,
    params: dict[str, str],
    fault: str,
) -> None:
    if route in ("klines", "market/kline"):
        params = {**params, "start" if route == "market/kline" else "startTime": str(FAR)}
    elif route == "market/history-candles":
        params = {**params, "after": str(FAR)}

    def faulted() -> tuple[int, bytes]:
        server.faults.add(Fault(fault, route=route, count=1))
        answer = get(server, path, params)
        assert server.requests[-1].fault == fault
        return answer

    monkeypatch.setattr(_render, "CACHE", False)
    clean = get(server, path, params)
    plain = faulted()
    monkeypatch.setattr(_render, "CACHE", True)
    get(server, path, params)  # every closed row of the page (and the one before) cached
    get(server, path, {**params, "limit": "21"} if "limit" in params else params)
    assert cached_rows() > 0
    assert faulted() == plain
    assert plain != clean
    assert get(server, path, params) == clean


def test_the_row_cache_stays_within_its_bound(
    server: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_render, "ROWS", LRU(3000, weigh=len))
    pages = [
        {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000", "startTime": str(FAR + i * DAY)}
        for i in range(8)
    ]
    monkeypatch.setattr(_render, "CACHE", False)
    plain = [get(server, "/api/v3/klines", p) for p in pages]
    monkeypatch.setattr(_render, "CACHE", True)
    for _ in range(2):
        for p, expected in zip(pages, plain, strict=True):
            assert get(server, "/api/v3/klines", p) == expected
            assert 0 < cached_rows() <= 3000


def test_candles_do_not_count_trade_ids_since_listing() -> None:
    """Candles need prices, not ids: a cold candle read must not number every day since
    listing (the cost that dominated a fresh emulator's first page of each symbol)."""
    spec = MarketSpec("IDLESS/USDT", exchange="binance", listed=NOW - 400 * DAY)
    with ExchangeEmulator(seed=12, clock=lambda: NOW, rate_limits=False, markets=[spec]) as emu:
        params = {"symbol": "IDLESSUSDT", "interval": "1m", "limit": "1000"}
        status, body = get(emu, "/api/v3/klines", {**params, "startTime": str(NOW - 200 * DAY)})
        assert status == 200 and body.count(b"],[") == 999
        assert not [key for key in PREFIX if key[2].symbol == "IDLESS/USDT"]


def test_a_clock_set_back_reopens_cached_candles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows cached while closed are not served once the clock is set back before their end."""
    now = [NOW]
    params = {"symbol": "BTCUSDT", "interval": "1h", "limit": "100"}
    params["startTime"] = str(NOW - 50 * HOUR)
    _render.ROWS.clear()
    with ExchangeEmulator(seed=13, clock=lambda: now[0], rate_limits=False) as emu:
        get(emu, "/api/v3/klines", params)
        now[0] = NOW - 20 * HOUR - 25 * MINUTE
        status, cached = get(emu, "/api/v3/klines", params)
        monkeypatch.setattr(_render, "CACHE", False)
        assert (status, cached) == get(emu, "/api/v3/klines", params)
    _render.ROWS.clear()
    assert status == 200 and cached.count(b"],[") + 1 == 29  # 28 closed hours, the open one


@pytest.mark.parametrize(
    ("decimals", "out"), [(0, 0), (0, 8), (2, 2), (2, 8), (5, 8), (7, 8), (8, 8), (3, 5)]
)
def test_fmt_col_prints_exactly_what_fmt_prints(decimals: int, out: int) -> None:
    rng = np.random.default_rng(decimals * 10 + out)
    top = 4 * 10 ** (15 - out) * 10**decimals  # the fast path's bound
    values = np.concatenate(
        [
            rng.integers(0, top, 2000),
            rng.integers(0, 10 ** (decimals + 3), 2000),
            [0, 1, 9, 10, 10**decimals - 1, 10**decimals, top - 1],
        ]
    ).astype(np.int64)
    assert fmt_col(values, decimals, out) == [fmt(int(v), decimals, out) for v in values]
