"""The shared rolling-window limiter: bursts up to the budget, then waits for the window."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mdcollect.exchanges import ExchangeClient
from mdcollect.exchanges._limiter import (
    Budget,
    Usage,
    WeightLimiter,
    binance_body,
    binance_headers,
    bybit_headers,
)

BINANCE = Budget("binance.spot", 6000, 60.0, 5.0, headers=binance_headers, body=binance_body)


class Clock:
    """Seconds that move only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_up_to_the_budget_goes_at_once_then_waits_for_the_window() -> None:
    clock = Clock()
    limiter = WeightLimiter(BINANCE, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for _ in range(3000):  # klines cost 0.4 in ccxt: weight 2; 3,000 x 2 = 6,000
            await limiter.throttle(0.4)
        assert clock.slept == [] and limiter.used() == 6000
        clock.now += 15.0
        await limiter.throttle(0.4)  # the 6,002nd weight waits for the first to leave
        assert clock.slept == [45.0]
        assert clock.now == 1060.0

    asyncio.run(run())


def test_the_exchange_word_wins_limit_window_and_used_weight() -> None:
    clock = Clock()
    limiter = WeightLimiter(BINANCE, clock=clock, sleep=clock.sleep)
    limiter.observe_body(
        {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND",
                         "intervalNum": 10, "limit": 300}]}
    )  # fmt: skip
    assert (limiter.capacity, limiter.window) == (300, 10.0)
    # another process on the IP used 290: only 5 more klines pages fit
    limiter.answered({"X-MBX-USED-WEIGHT-10S": "290", "Content-Type": "application/json"})
    assert limiter.used() == 290

    async def run() -> None:
        for _ in range(5):
            await limiter.throttle(0.4)
        assert clock.slept == []
        await limiter.throttle(0.4)
        assert clock.slept == [10.0]

    asyncio.run(run())


def test_usage_headers_as_the_exchanges_send_them() -> None:
    assert binance_headers({"x-mbx-used-weight-1m": "42", "x-mbx-used-weight": "42"}) == Usage(
        42.0, None, 60.0
    )
    assert binance_headers({"X-MBX-USED-WEIGHT-10S": "7"}) == Usage(7.0, None, 10.0)
    assert binance_headers({"X-MBX-USED-WEIGHT": "7"}) is None
    assert bybit_headers(
        {"X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "598",
         "X-Bapi-Limit-Reset-Timestamp": "1700000000000"}
    ) == Usage(2.0, 600.0, None)  # fmt: skip
    assert bybit_headers({"X-Bapi-Limit": "600"}) is None
    assert binance_body([[1, 2]]) is None


def test_one_limiter_per_exchange_budget_and_host() -> None:
    a = ExchangeClient("binance", base_url="http://127.0.0.1:9")
    b = ExchangeClient("binance", base_url="http://127.0.0.1:9")
    futures = ExchangeClient("binance_futures", base_url="http://127.0.0.1:9")
    other_host = ExchangeClient("binance", base_url="http://127.0.0.1:10")
    assert a.limiter is not None and a.limiter is b.limiter
    assert futures.limiter is not None and futures.limiter is not a.limiter
    assert futures.limiter.capacity == 2400
    assert other_host.limiter is not a.limiter
    # ccxt's throttle is the shared limiter's: bybit too; OKX and Kraken keep ccxt's
    assert a.exchange.throttle == a.limiter.throttle
    assert ExchangeClient("bybit_futures").limiter is ExchangeClient("bybit").limiter
    assert ExchangeClient("okx").limiter is None
    assert ExchangeClient("kraken").limiter is None
    # pacing off, or ccxt's spacing asked for: no limiter
    assert ExchangeClient("binance", enableRateLimit=False).limiter is None
    assert ExchangeClient("binance", rateLimit=100).limiter is None


def test_weight_is_dated_when_its_answer_arrives() -> None:
    """The exchange counts a request when it arrives, at the latest when it answers:
    weight expires a window after the answer, even out of order."""
    clock = Clock()
    limiter = WeightLimiter(Budget("x", 4, 10.0), clock=clock, sleep=clock.sleep)

    async def request(answer_after: float) -> None:
        await limiter.acquire(2)
        await asyncio.sleep(0)  # the answer comes in this task, later
        clock.now += answer_after
        limiter.answered({})

    async def run() -> None:
        await request(5.0)  # sent at 1000, answered at 1005
        await limiter.acquire(2)  # sent and still open at 1005
        clock.now = 1010.5  # the first answer's weight is in the window until 1015
        assert limiter.used() == 4
        clock.now = 1015.5
        assert limiter.used() == 0

    asyncio.run(run())


def test_a_new_limit_is_logged_without_deadlocking(caplog: pytest.LogCaptureFixture) -> None:
    """``observe`` logs the limiter (its repr reads the window) while it holds its lock."""
    import threading

    clock = Clock()
    limiter = WeightLimiter(BINANCE, clock=clock, sleep=clock.sleep)
    done = threading.Event()

    def observe() -> None:
        limiter.observe(Usage(used=10, limit=24, window=2.0))
        done.set()

    with caplog.at_level(logging.INFO, logger="mdcollect.exchanges"):
        worker = threading.Thread(target=observe, daemon=True)
        worker.start()
        assert done.wait(timeout=10), "observe() deadlocked logging the limiter"
    assert (limiter.capacity, limiter.window) == (24, 2.0)
    assert "announces 24 weight a window" in caplog.text
    assert "used 10" in repr(limiter)
