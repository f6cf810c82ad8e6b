"""The service's ``start``/``end`` refuse epoch seconds instead of reading them as 1970."""

from __future__ import annotations

import httpx
import pytest

from .conftest import LiveServer

T0_S = 1_704_067_200  # 2024-01-01T00:00Z in seconds


@pytest.mark.parametrize(
    "query",
    [f"start={T0_S}", f"end={T0_S}", f"start={T0_S}&end={T0_S + 86_400}"],
)
def test_seconds_in_start_or_end_are_a_400_naming_the_value(shared: LiveServer, query: str) -> None:  # fmt: skip
    r = httpx.get(f"{shared.url}/api/v1/ohlcv?symbol=BTC/USDT:USDT&{query}")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert str(T0_S) in error and "milliseconds" in error


def test_milliseconds_are_still_accepted(shared: LiveServer) -> None:
    r = httpx.get(
        f"{shared.url}/api/v1/ohlcv?symbol=BTC/USDT:USDT&start={T0_S * 1000}&end={(T0_S + 3600) * 1000}"
    )
    assert r.status_code == 200, r.text
