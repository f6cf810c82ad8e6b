from __future__ import annotations

import logging

import aiohttp
import ccxt
import pytest

from mdcollect._errors import ExchangeError
from mdcollect.exchanges import RetryPolicy
from mdcollect.exchanges._http import parse_retry_after
from mdcollect.exchanges._retry import translate_error


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter="none")
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(1000) == 4.0  # no overflow


def test_full_jitter_spans_zero_to_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter="full", random=lambda: 0.25)
    assert policy.delay(3) == pytest.approx(1.0)  # 4.0 * 0.25
    real = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter="full")
    draws = [real.delay(3) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in draws)
    assert len(set(draws)) > 100


def test_equal_jitter_keeps_half() -> None:
    lo = RetryPolicy(base_delay=1.0, jitter="equal", random=lambda: 0.0)
    hi = RetryPolicy(base_delay=1.0, jitter="equal", random=lambda: 1.0)
    assert lo.delay(3) == 2.0 and hi.delay(3) == 4.0


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_delay=0.1, jitter="none")
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(8, retry_after=0.01) == policy.delay(8)


def test_invalid_policy_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter="some")  # type: ignore[arg-type]


async def test_run_retries_transient_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=4, base_delay=0.1, jitter="none", sleep=sleeps)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ExchangeError("boom", transient=True)
        return "ok"

    retries: list[float] = []
    with caplog.at_level(logging.WARNING, logger="mdcollect.exchanges"):
        result = await policy.run(attempt, what="x", on_retry=lambda e, w: retries.append(w))
    assert result == "ok" and calls == 3
    assert sleeps.waits == [0.1, 0.2] == retries
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


async def test_run_honours_retry_after() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(base_delay=0.01, jitter="full", sleep=sleeps)
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ExchangeError("429", transient=True, retry_after=2.5)
        return calls

    assert await policy.run(attempt) == 2
    assert sleeps.waits == [2.5]


async def test_run_gives_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, sleep=sleeps)
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ExchangeError(f"fail {calls}", transient=True)

    with pytest.raises(ExchangeError, match="fail 3"):
        await policy.run(attempt)
    assert calls == 3 and len(sleeps.waits) == 2


async def test_run_never_retries_permanent() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(sleep=sleeps)
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ExchangeError("bad symbol", transient=False)

    with pytest.raises(ExchangeError):
        await policy.run(attempt)
    assert calls == 1 and sleeps.waits == []


async def test_run_does_not_wait_for_excessive_retry_after() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_retry_after=10.0, sleep=sleeps)

    async def attempt() -> None:
        raise ExchangeError("banned", transient=True, retry_after=3600.0)

    with pytest.raises(ExchangeError) as info:
        await policy.run(attempt)
    assert info.value.retry_after == 3600.0 and sleeps.waits == []


async def test_run_lets_other_errors_through() -> None:
    policy = RetryPolicy(sleep=Sleeps())

    async def attempt() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await policy.run(attempt)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


@pytest.mark.parametrize(
    ("exc", "status", "transient"),
    [
        (ccxt.RequestTimeout("t"), None, True),
        (ccxt.ExchangeNotAvailable("down"), 503, True),
        (ccxt.ExchangeNotAvailable("bad gateway"), 502, True),
        (ccxt.DDoSProtection("slow down"), 429, True),
        (ccxt.RateLimitExceeded("slow down"), 429, True),
        (ccxt.NetworkError("reset"), None, True),
        (ccxt.BadResponse("garbled"), 200, True),
        (ccxt.InvalidNonce("nonce"), None, False),
        (ccxt.BadSymbol("no such market"), 400, False),
        (ccxt.BadRequest("bad"), 400, False),
        (ccxt.AuthenticationError("key"), 401, False),
        (ccxt.PermissionDenied("no"), 403, False),
        (ccxt.NotSupported("no"), None, False),
        # ccxt maps a bare 400/404 to ExchangeNotAvailable; the status says permanent
        (ccxt.ExchangeNotAvailable("404"), 404, False),
        (ccxt.ExchangeNotAvailable("400"), 400, False),
        (ccxt.ExchangeError("500 body"), 500, True),
        (aiohttp.ServerDisconnectedError(), None, True),
        (TimeoutError(), None, True),
    ],
)
def test_translate_error_kinds(exc: BaseException, status: int | None, transient: bool) -> None:
    err = translate_error(exc, where="binance fetch_ohlcv", status=status, retry_after=1.0)
    assert isinstance(err, ExchangeError)
    assert err.transient is transient
    assert err.retry_after == (1.0 if transient else None)
    assert "binance fetch_ohlcv" in str(err)


def test_translate_wrapped_aiohttp_error_is_transient() -> None:
    exc = ccxt.ExchangeError("binance GET /x")
    exc.__cause__ = aiohttp.ClientPayloadError("truncated")
    assert translate_error(exc, where="w").transient


def test_translate_parse_failure_depends_on_body() -> None:
    garbled = translate_error(TypeError("x"), where="w", status=200, malformed=True)
    assert garbled.transient and "malformed" in str(garbled)
    bug = translate_error(TypeError("x"), where="w", status=200)
    assert not bug.transient
