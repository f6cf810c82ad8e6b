"""The one backoff (mdcollect._backoff) and the number rules it is checked with."""

from __future__ import annotations

import math

import pytest

from mdcollect import InvalidRequest
from mdcollect._backoff import Backoff, RetryPolicy
from mdcollect._errors import ExchangeError, RemoteError
from mdcollect._rules import check_number


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(initial=0.5, maximum=4.0, jitter=0)
    assert [b.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.delay(10_000) == 4.0  # no overflow
    full = Backoff(initial=1.0, maximum=8.0, jitter="full")
    assert full.delay(2, rand=lambda: 0.25) == 1.0  # 4 * 0.25
    equal = Backoff(initial=1.0, maximum=8.0, jitter="equal")
    assert (equal.delay(2, rand=lambda: 0.0), equal.delay(2, rand=lambda: 1.0)) == (2.0, 4.0)
    quarter = Backoff(initial=1.0, maximum=8.0, jitter=0.25)
    assert quarter.delay(0, rand=lambda: 0.0) == 0.75


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"initial": -1.0}, "initial must be a number >= 0, got -1.0"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum 1.0 is below initial 2.0"),
        ({"factor": 0.5}, "factor must be a number >= 1, got 0.5"),
        ({"jitter": 1.5}, "jitter must be a number in [0, 1], got 1.5"),
        ({"jitter": "some"}, "jitter 'some' is not valid; use one of full, equal, none"),
        ({"initial": math.nan}, "initial must be a number >= 0, got nan"),
    ],
)
def test_bad_backoff_settings_are_refused(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Backoff(**kwargs)  # type: ignore[arg-type]
    assert says in str(info.value)


def test_bad_retry_policy_settings_are_invalid_requests() -> None:
    with pytest.raises(InvalidRequest, match="max_attempts must be a positive integer, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidRequest, match="base_delay must be a number >= 0"):
        RetryPolicy(base_delay=-0.1)


def test_retry_policy_waits_come_from_its_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter="none")
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.schedule == Backoff(initial=0.5, maximum=4.0, jitter="none")


async def test_retry_on_other_transient_errors() -> None:
    class Flaky(RemoteError):
        transient = True
        retry_after = 0.3

    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky("busy")
        return "ok"

    policy = RetryPolicy(max_attempts=3, base_delay=0.01, jitter="none", sleep=sleep)
    assert await policy.run(attempt, retry_on=(RemoteError,)) == "ok"
    assert waits == [0.3, 0.3]  # Retry-After is the floor
    calls = 0
    with pytest.raises(Flaky):  # not in retry_on: raised at once
        await policy.run(attempt, retry_on=(ExchangeError,))
    assert calls == 1


@pytest.mark.parametrize(
    ("value", "kw", "says"),
    [
        (0, {"integer": True}, "rows must be a positive integer, got 0"),
        (1.5, {"integer": True}, "rows must be a positive integer, got 1.5"),
        (True, {}, "rows must be a positive number, got True"),
        (-1, {"strict": False}, "rows must be a number >= 0, got -1"),
        ("3", {}, "rows must be a positive number, got '3'"),
    ],
)
def test_check_number_names_value_and_what_is_allowed(
    value: object, kw: dict[str, bool], says: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_number("rows", value, **kw)  # type: ignore[arg-type]
    assert str(info.value) == says


def test_next_wait_is_the_decision_of_run_without_io() -> None:
    """``next_wait`` is what ``run`` decides after a failed attempt; the sync HTTP client
    of the service drives its own loop with it."""

    class Busy(RemoteError):
        transient = True

    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, jitter="none")
    assert policy.next_wait(1, Busy("busy")) == 1.0
    assert policy.next_wait(2, Busy("busy")) == 2.0
    assert policy.next_wait(3, Busy("busy")) is None  # attempts used up
    assert policy.next_wait(1, RemoteError("no such job")) is None  # permanent
    assert policy.next_wait(1, RemoteError("full", transient=True, retry_after=5.0)) == 5.0
    too_long = RemoteError("stopping", transient=True, retry_after=121.0)
    assert policy.next_wait(1, too_long) is None  # beyond max_retry_after: raised, not waited
    assert policy.next_wait(1, ValueError("a bug")) is None
