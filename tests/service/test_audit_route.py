"""``/api/v1/audit``: GET audits read-only; POST or ``repair=true`` repairs, and only on a
service with an API token; bad input is 400. Defects are planted through the backend's
own ``_write`` (see ``tests/test_audit.py``)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, ensure_data
from mdcollect.storage import Stamp
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer, emulated

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
T0 = 1_704_067_200_000
HOUR = 3_600_000
TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def holed(emu: ExchangeEmulator, storage: DataCollectionStorage) -> pd.DataFrame:
    """A day of candles from the emulator with a 3-hour hole planted inside coverage;
    returns the good rows."""
    ensure_data(
        ["BTC/USDT"], "1h", "2024-01-01", "2024-01-01", emulated(emu)("binance"),
        padding_days=0, storage=storage, progress=False,
    )  # fmt: skip
    good, cov = storage.read(KEY), storage.coverage(KEY)
    assert len(good) == 24
    storage.delete(KEY)
    storage._write(KEY, good.drop(good.index[5:8]), cov, Stamp("planted", 0))
    return good


def test_get_audits_read_only(
    live: LiveServer, storage: DataCollectionStorage, holed: pd.DataFrame
) -> None:
    r = httpx.get(f"{live.url}/api/v1/audit", params={"key": str(KEY), "start": "2024-01-01"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ok"] is False and doc["repaired"] == []
    (d,) = doc["datasets"]
    assert (d["key"], d["rows"], d["score"]) == (str(KEY), 21, pytest.approx(1 - 3 / 24))
    assert [(f["check"], f["start"], f["end"], f["count"]) for f in d["findings"]] == [
        ("hole", T0 + 5 * HOUR, T0 + 8 * HOUR, 3)
    ]
    # every dataset when no key is given
    assert httpx.get(f"{live.url}/api/v1/audit").json()["datasets"] == doc["datasets"]
    assert len(storage.read(KEY)) == 21


def test_repair_needs_the_token(
    live: LiveServer, storage: DataCollectionStorage, holed: pd.DataFrame
) -> None:
    for r in (
        httpx.get(f"{live.url}/api/v1/audit", params={"repair": "true"}),
        httpx.post(f"{live.url}/api/v1/audit"),
    ):
        assert r.status_code == 403 and "API token" in r.json()["error"]
    assert len(storage.read(KEY)) == 21


@pytest.mark.parametrize("how", ["post", "get"])
def test_repair_with_the_token(
    serve: Callable[..., LiveServer],
    emu: ExchangeEmulator,
    storage: DataCollectionStorage,
    holed: pd.DataFrame,
    how: str,
) -> None:
    live = serve(api_token="s3cret", allowed_exchanges=("binance",))
    assert httpx.post(f"{live.url}/api/v1/audit").status_code == 401
    emu.clear_requests()
    if how == "post":
        r = httpx.post(f"{live.url}/api/v1/audit", params={"key": str(KEY)}, headers=TOKEN)
    else:
        r = httpx.get(f"{live.url}/api/v1/audit", params={"repair": "true"}, headers=TOKEN)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ok"] is True and [f["check"] for f in doc["repaired"]] == ["hole"]
    klines = [p for p in emu.requests if p.path == "/api/v3/klines"]
    assert [int(p.params["startTime"]) for p in klines] == [T0 + 5 * HOUR]
    pd.testing.assert_frame_equal(storage.read(KEY), holed)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"key": "binance:ohlcv"}, "not of the form"),
        ({"start": "2024-13-01"}, "2024-13-01"),
        ({"repair": "maybe"}, "repair 'maybe'"),
        ({"symbol": "BTC/USDT"}, "unknown parameter 'symbol'"),
        ({"start": "2024-01-02", "end": "2024-01-01"}, "must be after"),
    ],
)
def test_bad_input_is_400(live: LiveServer, params: dict[str, str], says: str) -> None:
    r = httpx.get(f"{live.url}/api/v1/audit", params=params)
    assert r.status_code == 400 and says in r.json()["error"]


def test_repair_only_from_allowed_exchanges(
    serve: Callable[..., LiveServer], storage: DataCollectionStorage, holed: pd.DataFrame
) -> None:
    live = serve(api_token="s3cret")  # the default allowed exchanges: futures only
    r = httpx.post(f"{live.url}/api/v1/audit", headers=TOKEN)
    assert r.status_code == 400 and "exchange 'binance' is not allowed" in r.json()["error"]


def test_in_the_openapi_document(live: LiveServer) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    path = doc["paths"]["/api/v1/audit"]
    assert set(path) == {"get", "post"}
    names = [p["name"] for p in path["get"]["parameters"]]
    assert names == ["key", "start", "end", "repair"]
    assert "403" in path["post"]["responses"]


def test_a_key_not_stored_is_404_naming_it(
    serve: Callable[..., LiveServer],
    emu: ExchangeEmulator,
    storage: DataCollectionStorage,
    holed: pd.DataFrame,
) -> None:
    missing = "binance:ohlcv:1h:ETH/USDT"
    live = serve(api_token="s3cret", allowed_exchanges=("binance",))
    emu.clear_requests()
    for r in (
        httpx.get(f"{live.url}/api/v1/audit", params={"key": missing}, headers=TOKEN),
        httpx.get(f"{live.url}/api/v1/audit", params={"key": [str(KEY), missing]}, headers=TOKEN),
        httpx.post(f"{live.url}/api/v1/audit", params={"key": missing}, headers=TOKEN),
    ):
        assert r.status_code == 404, r.text
        error = r.json()["error"]
        assert f"no dataset {missing!r}" in error and "/api/v1/datasets" in error
        assert str(KEY) not in error.split(";")[0]
    assert emu.requests == [] and len(storage.read(KEY)) == 21
    doc = httpx.get(f"{live.url}/openapi.json").json()
    assert "404" in doc["paths"]["/api/v1/audit"]["get"]["responses"]
