"""Unmodified ccxt's fetch_open_interest_history against the emulator's open-interest
endpoints: shapes ccxt parses, page sizes, depth, Bybit's cursor."""

from __future__ import annotations

import ccxt
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW, sync_exchange

from mdcollect.testing import ExchangeEmulator

SYMBOL = "BTC/USDT:USDT"
T0 = NOW - NOW % DAY - 10 * DAY


def truth(emu: ExchangeEmulator, ex: str, period: int, lo: int, hi: int) -> list[tuple[int, float]]:
    return [(t, a) for t, a, _ in emu.market.open_interest(ex, SYMBOL, period, lo, hi)]


def test_binance_pages_500_oldest_first_and_keeps_30_days(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "binanceusdm")
    emu.clear_requests()
    rows = ex.fetch_open_interest_history(SYMBOL, "5m", T0, 500, {"until": T0 + 600 * 5 * MINUTE})
    assert len(rows) == 500
    want = truth(emu, "binance", 5 * MINUTE, T0, T0 + 500 * 5 * MINUTE)
    assert [(r["timestamp"], r["openInterestAmount"]) for r in rows] == want
    values = [v for _, _, v in emu.market.open_interest("binance", SYMBOL, 5 * MINUTE, T0, NOW)]
    assert [r["openInterestValue"] for r in rows] == values[:500]
    (req,) = emu.requests
    assert req.path == "/futures/data/openInterestHist" and req.params["period"] == "5m"
    with pytest.raises(ccxt.BadRequest, match="startTime"):
        ex.fetch_open_interest_history(SYMBOL, "1h", NOW - 31 * DAY, 10)
    with pytest.raises(ccxt.BadRequest, match="limit"):
        ex.fetch_open_interest_history(SYMBOL, "1h", T0, 501)


def test_okx_answers_contracts_base_and_usd_newest_first(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "okx")
    rows = ex.fetch_open_interest_history(SYMBOL, "1h", T0, 100)
    assert len(rows) == 100
    want = truth(emu, "okx", HOUR, T0, T0 + 100 * HOUR)
    assert [r["timestamp"] for r in rows] == [t for t, _ in want]
    # BTC-USDT-SWAP: ctVal 0.01 BTC, so 100 contracts a BTC; baseVolume in BTC
    assert [r["openInterestAmount"] for r in rows] == [round(a * 100, 1) for _, a in want]
    assert [r["baseVolume"] for r in rows] == [a for _, a in want]
    raw = emu.requests[-1]
    assert raw.path == "/api/v5/rubik/stat/contracts/open-interest-history"
    assert raw.params["period"] == "1H" and int(raw.params["begin"]) == T0 - 1
    # 5m only for the last 2 days: an older window is empty
    assert ex.fetch_open_interest_history(SYMBOL, "5m", NOW - 3 * DAY, 100) == []


def test_bybit_pages_by_cursor_newest_first(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "bybit")
    b0 = T0 - 20 * DAY  # Bybit keeps open interest from the listing: 450 hours back
    # ccxt's own window is since + limit periods, both ends inclusive (201 rows, the
    # newest 200 answered): the library bounds it with until, as here
    rows = ex.fetch_open_interest_history(SYMBOL, "1h", b0, 200, {"until": b0 + 200 * HOUR - 1})
    want = truth(emu, "bybit", HOUR, b0, b0 + 450 * HOUR)
    assert [(r["timestamp"], r["openInterestAmount"]) for r in rows] == want[:200]
    assert all(r["openInterestValue"] is None for r in rows)  # Bybit gives no value
    # the raw endpoint: newest first from endTime, nextPageCursor pages back to startTime
    emu.clear_requests()
    request = {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1h",
               "startTime": b0, "endTime": b0 + 450 * HOUR - 1, "limit": 200}  # fmt: skip
    got: list[tuple[int, float]] = []
    while True:
        result = ex.publicGetV5MarketOpenInterest(request)["result"]
        got += [(int(r["timestamp"]), float(r["openInterest"])) for r in result["list"]]
        if not result["nextPageCursor"]:
            break
        request["cursor"] = result["nextPageCursor"]
    assert got == want[::-1]
    assert [len(r.params.get("cursor", "")) > 0 for r in emu.requests] == [False, True, True]
    # a startTime alone is ignored, as Bybit does: the newest rows
    alone = ex.publicGetV5MarketOpenInterest(
        {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1h", "startTime": b0}
    )["result"]["list"]
    assert int(alone[0]["timestamp"]) == NOW - NOW % HOUR - HOUR and len(alone) == 50
