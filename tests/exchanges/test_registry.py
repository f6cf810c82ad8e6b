from __future__ import annotations

import ccxt
import pytest

import mdcollect.exchanges as exchanges
from mdcollect._errors import InvalidRequest
from mdcollect.exchanges import ExchangeInfo, exchange_info, exchange_keys


def test_all_matches_exports() -> None:
    public = {n for n in dir(exchanges) if not n.startswith("_")}
    assert sorted(exchanges.__all__) == exchanges.__all__
    assert set(exchanges.__all__) <= public


@pytest.mark.parametrize(
    ("key", "ccxt_id", "market_type", "page_limit", "default_type"),
    [
        ("binance", "binance", "spot", 1000, "spot"),
        ("binance_futures", "binanceusdm", "swap", 1000, "swap"),  # ccxt caps at 1000
        ("okx", "okx", "spot", 100, "spot"),
        ("okx_futures", "okx", "swap", 100, "swap"),
        ("bybit", "bybit", "spot", 1000, "spot"),
        ("bybit_futures", "bybit", "swap", 1000, "swap"),
    ],
)
def test_known_keys(
    key: str, ccxt_id: str, market_type: str, page_limit: int, default_type: str
) -> None:
    info = exchange_info(key)
    assert isinstance(info, ExchangeInfo)
    assert (info.key, info.ccxt_id, info.market_type) == (key, ccxt_id, market_type)
    assert info.page_limit == page_limit
    assert info.options["defaultType"] == default_type
    assert info.deep_history
    assert "1m" in info.timeframes and "1d" in info.timeframes


def test_bybit_futures_is_linear() -> None:
    assert exchange_info("bybit_futures").options["defaultSubType"] == "linear"


def test_okx_reads_history_candles() -> None:
    assert exchange_info("okx").ohlcv_params["type"] == "HistoryCandles"


def test_kraken_has_no_deep_history() -> None:
    info = exchange_info("kraken")
    assert info.page_limit == 720
    assert not info.deep_history
    assert info.trades_cursor is not None
    assert info.first_candle == "none"


def test_every_ccxt_id_is_a_key() -> None:
    keys = exchange_keys()
    assert set(ccxt.exchanges) <= set(keys)
    assert {"binance_futures", "bybit_futures", "okx_futures"} <= set(keys)
    assert keys == sorted(keys)


@pytest.mark.parametrize("key", ["coinbase", "kucoin", "gate", "bitfinex"])
def test_generic_ccxt_ids_have_sane_defaults(key: str) -> None:
    info = exchange_info(key)
    assert info.ccxt_id == key
    assert info.market_type == "spot"
    assert info.page_limit > 0 and info.trades_page_limit > 0
    assert info.timeframes


def test_info_is_frozen_and_options_immutable() -> None:
    info = exchange_info("binance")
    with pytest.raises(AttributeError):
        info.page_limit = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.options["defaultType"] = "swap"  # type: ignore[index]


def test_unknown_key_suggests_close_matches() -> None:
    with pytest.raises(InvalidRequest, match=r"'binanse'.*did you mean 'binance'"):
        exchange_info("binanse")
    with pytest.raises(InvalidRequest, match="okx_futures"):
        exchange_info("okx_future")


@pytest.mark.parametrize("bad", ["", "nope-nope", None, 3])
def test_unknown_key_rejected(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="not known"):
        exchange_info(bad)  # type: ignore[arg-type]
