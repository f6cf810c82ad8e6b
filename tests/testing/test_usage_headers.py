"""The emulator reports rate-limit usage as the exchanges do, and announces the budget
in force (a configured one lower than published included)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from mdcollect.testing import ExchangeEmulator, Limit

KLINES = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000&startTime=1672531200000"


def get(emu: ExchangeEmulator, path: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(emu.url + path, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_binance_reports_used_weight_per_minute_and_announces_its_budget() -> None:
    with ExchangeEmulator() as emu:
        status, headers, body = get(emu, "/api/v3/exchangeInfo")
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20"
        assert body["rateLimits"][0] == {
            "rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
            "limit": 6000,
        }  # fmt: skip
        _, headers, _ = get(emu, KLINES)
        assert headers["X-MBX-USED-WEIGHT-1M"] == headers["X-MBX-USED-WEIGHT"] == "22"
        _, headers, _ = get(emu, "/fapi/v1/exchangeInfo")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_a_lower_budget_is_announced_and_counted_in_its_own_window() -> None:
    with ExchangeEmulator(rate_limits={"binance.spot": Limit(300, 10.0)}) as emu:
        _, headers, body = get(emu, "/api/v3/exchangeInfo")
        assert body["rateLimits"][0] == {
            "rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 10,
            "limit": 300,
        }  # fmt: skip
        assert headers["X-MBX-USED-WEIGHT-10S"] == "20"
        assert "X-MBX-USED-WEIGHT-1M" not in headers
        for used in range(22, 302, 2):
            status, headers, _ = get(emu, KLINES)
            assert status == 200 and headers["X-MBX-USED-WEIGHT-10S"] == str(used)
        status, headers, _ = get(emu, KLINES)
        assert status == 429 and headers["X-MBX-USED-WEIGHT-10S"] == "302"
        assert float(headers["Retry-After"]) > 0


def test_bybit_reports_limit_remaining_and_reset() -> None:
    with ExchangeEmulator(rate_limits={"bybit.ip": Limit(3, 5.0)}) as emu:
        path = "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1&limit=10"
        for remaining in (2, 1, 0):
            status, headers, _ = get(emu, path)
            assert status == 200
            assert headers["X-Bapi-Limit"] == "3"
            assert headers["X-Bapi-Limit-Status"] == str(remaining)
            assert abs(int(headers["X-Bapi-Limit-Reset-Timestamp"]) - emu.requests[-1].time) < 2000
        status, headers, _ = get(emu, path)
        assert status == 403 and headers["X-Bapi-Limit-Status"] == "0"
        # exceeded: the reset is when the window frees, about 5 s on
        assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) - emu.requests[-1].time > 4000


def test_okx_and_kraken_send_no_usage_headers() -> None:
    with ExchangeEmulator() as emu:
        _, headers, _ = get(emu, "/api/v5/public/time")
        assert not any("limit" in h.lower() or "weight" in h.lower() for h in headers)
        _, headers, _ = get(emu, "/0/public/Time")
        assert not any("limit" in h.lower() or "weight" in h.lower() for h in headers)
