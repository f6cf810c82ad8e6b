"""One set of input rules: the library, the service (its HTTP 400 body) and the remote
client refuse the same bad input with the same words, before any request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mdcollect import InvalidRequest, ensure_data, load_ohlcv, open_storage
from mdcollect.remote import DataCollectionClient
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer

T0_S = 1_704_067_200  # 2024-01-01T00:00Z in seconds
SYNC = {
    "symbols": ["BTC/USDT:USDT"],
    "timeframe": "1h",
    "start_date": "2024-02-01",
    "end_date": "2024-02-02",
    "padding_days": 0,
}
OHLCV = {"symbol": "BTC/USDT:USDT", "timeframe": "1h"}

BAD_SYNC: list[tuple[str, dict[str, Any], str]] = [
    ("bad date", {"start_date": "2024/02/01"}, "'2024/02/01' is not a date"),
    ("epoch seconds as a date", {"start_date": T0_S}, f"got {T0_S}"),
    ("too many symbols", {"symbols": [f"S{i}/USDT" for i in range(51)]}, "at most 50 symbols"),
    ("negative padding", {"padding_days": -1}, "padding_days"),
    ("padding before 1970", {"padding_days": 20_000}, "padding_days"),
    ("end before start", {"end_date": "2024-01-31"}, "before start_date"),
]
BAD_OHLCV: list[tuple[str, dict[str, Any], str]] = [
    ("epoch seconds", {"start": T0_S}, f"start {T0_S} looks like seconds"),
    ("bad time", {"start": "soon"}, "'soon' is not a date"),
    ("end before start", {"start": "2024-02-02", "end": "2024-02-01"}, "must be after start"),
]


def _library_sync(emu: ExchangeEmulator, args: dict[str, Any]) -> str:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest) as err:
        ensure_data(
            args["symbols"], args["timeframe"], args["start_date"], args["end_date"],
            "binance_futures", args["padding_days"], store, progress=False,
        )  # fmt: skip
    assert store.keys() == []
    return str(err.value)


def _library_ohlcv(args: dict[str, Any]) -> str:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest) as err:
        load_ohlcv(
            args["symbol"], args["timeframe"], args.get("start"), args.get("end", "2024-03-01"),
            exchange="binance_futures", storage=store, progress=False,
        )  # fmt: skip
    return str(err.value)


def _client(live: LiveServer, method: str, args: dict[str, Any]) -> str:
    before = len(live.requests)
    with (
        DataCollectionClient(live.url, max_retries=0) as client,
        pytest.raises(InvalidRequest) as err,
    ):
        getattr(client, method)(**args)
    assert len(live.requests) == before, "nothing may be sent"
    return str(err.value)


@pytest.mark.parametrize(("case", "override", "needle"), BAD_SYNC, ids=[c[0] for c in BAD_SYNC])
def test_a_bad_sync_is_refused_in_the_same_words_everywhere(
    shared: LiveServer, emu: ExchangeEmulator, case: str, override: dict[str, Any], needle: str
) -> None:
    args = {**SYNC, **override}
    asked = len(emu.requests)
    library = _library_sync(emu, args)
    r = httpx.post(f"{shared.url}/api/v1/sync", json=args)
    assert r.status_code == 400, r.text
    service = r.json()["error"]
    client = _client(shared, "ensure_data", args)
    assert needle in library
    assert service == library
    assert client == library
    assert len(emu.requests) == asked, "nothing may be asked of the exchange"


@pytest.mark.parametrize(("case", "override", "needle"), BAD_OHLCV, ids=[c[0] for c in BAD_OHLCV])
def test_a_bad_candles_query_is_refused_in_the_same_words_everywhere(
    shared: LiveServer, emu: ExchangeEmulator, case: str, override: dict[str, Any], needle: str
) -> None:
    args = {**OHLCV, **override}
    asked = len(emu.requests)
    library = _library_ohlcv(args)
    r = httpx.get(f"{shared.url}/api/v1/ohlcv", params={k: str(v) for k, v in args.items()})
    assert r.status_code == 400, r.text
    service = r.json()["error"]
    client = _client(shared, "fetch_ohlcv", args)
    assert needle in library
    assert service == library
    assert client == library
    assert len(emu.requests) == asked, "nothing may be asked of the exchange"


def test_padding_beyond_the_limit_names_the_limit(emu: ExchangeEmulator) -> None:
    # once read 20000 days back from 2024 (1969) and failed later as "seconds"
    message = _library_sync(emu, {**SYNC, "padding_days": 20_000})
    assert message == "padding_days must be an integer in [0, 3650], got 20000"
