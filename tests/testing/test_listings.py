"""The default markets: about ten a venue, listed on different days, each at its own
price level, with the precision and contract size ccxt parses from the venue's answer;
no endpoint serves anything from before a market's listing."""

from __future__ import annotations

import pytest
from emulator_helpers import DAY, HOUR, NOW, sync_exchange

from mdcollect.testing import DEFAULT_LISTING, ExchangeEmulator

#: Each coin's price level (USDT) and listing day (ms, UTC), written out here rather than
#: read from the emulator, so the test checks the emulator's table.
LEVELS = {
    "BTC": 30_000.0, "ETH": 2_000.0, "SOL": 100.0, "XRP": 0.5, "DOGE": 0.08, "ADA": 0.4,
    "BNB": 300.0, "LTC": 80.0, "LINK": 15.0, "AVAX": 30.0, "WIF": 2.0,
}  # fmt: skip
LISTED = {
    "BTC": DEFAULT_LISTING, "ETH": DEFAULT_LISTING,
    "SOL": 1_600_041_600_000,  # 2020-09-14
    "AVAX": 1_632_268_800_000,  # 2021-09-22
    "WIF": 1_709_596_800_000,  # 2024-03-05
}  # fmt: skip
#: OKX's contract values (base units a contract), as OKX publishes them.
OKX_CT_VAL = {"BTC": 0.01, "ETH": 0.1, "XRP": 100.0, "DOGE": 1000.0, "ADA": 100.0}
VENUES = ["binance", "binanceusdm", "okx", "bybit", "kraken"]
#: Venues whose market list says when a perpetual was listed (ccxt ``created``).
CREATED = {"binanceusdm", "okx", "bybit"}


@pytest.mark.parametrize("exchange_id", VENUES)
def test_precision_contract_size_and_listing_as_ccxt_parses_them(
    emu: ExchangeEmulator, exchange_id: str
) -> None:
    ex = sync_exchange(emu, exchange_id)
    assert len(ex.markets) >= 10, sorted(ex.markets)  # a realistic handful, not only BTC/ETH
    listed = set()
    for symbol, m in ex.markets.items():
        spec = emu.market.spec(exchange_id, symbol)
        listed.add(spec.listed)
        if m["base"] in LISTED:
            assert spec.listed == LISTED[m["base"]], symbol
        size = OKX_CT_VAL.get(m["base"], 1.0) if exchange_id == "okx" and m["swap"] else 1.0
        assert (m["contractSize"] or 1.0) == size, symbol
        assert m["precision"]["price"] == pytest.approx(spec.tick * 10.0**-spec.price_decimals)
        # OKX counts swap amounts in contracts: a base step of 10**-d is 10**-d / size
        step = 10.0**-spec.amount_decimals / size
        assert m["precision"]["amount"] == pytest.approx(step), symbol
        if exchange_id in CREATED and m["swap"]:
            assert m["created"] == spec.listed, symbol
    assert len(listed) >= 6 and DEFAULT_LISTING in listed and max(listed) >= LISTED["WIF"]


def test_each_market_trades_at_its_own_price_level(emu: ExchangeEmulator) -> None:
    for exchange_id in ("binance", "okx", "bybit", "kraken"):
        ex = sync_exchange(emu, exchange_id)
        for symbol, m in ex.markets.items():
            if emu.market.spec(exchange_id, symbol).listed > NOW:
                continue
            (candle,) = ex.fetch_ohlcv(symbol, "1h", since=NOW - 3 * HOUR, limit=1)
            close, level = candle[4], LEVELS[m["base"]]
            assert level / 1.6 < close < level * 1.6, (exchange_id, symbol, close)


LATE = "AVAX"  # listed 2021-09-22, long after BTC and ETH


def test_no_endpoint_serves_anything_before_the_listing(emu: ExchangeEmulator) -> None:
    listed = LISTED[LATE]
    spot, perp = f"{LATE}/USDT", f"{LATE}/USDT:USDT"
    before = listed - 2 * DAY
    for exchange_id, symbol in [("binance", spot), ("binanceusdm", perp), ("okx", perp),
                                ("bybit", spot), ("bybit", perp)]:  # fmt: skip
        ex = sync_exchange(emu, exchange_id)
        candles = ex.fetch_ohlcv(symbol, "1h", since=before, limit=100)
        assert candles and candles[0][0] == listed, (exchange_id, symbol)
        truth = emu.market.candles(exchange_id, symbol, "1h", before, listed + 100 * HOUR)
        assert [c[0] for c in candles] == truth.timestamp[: len(candles)].tolist()
    usdm = sync_exchange(emu, "binanceusdm")
    mark = usdm.fetch_mark_ohlcv(perp, "1h", since=before, limit=100)
    assert mark[0][0] == listed
    trades = usdm.fetch_trades(perp, since=listed - HOUR // 2, limit=1000)
    assert trades and min(t["timestamp"] for t in trades) >= listed
    funding = usdm.fetch_funding_rate_history(perp, since=before, limit=10)
    assert funding and funding[0]["timestamp"] == listed  # the first settlement: 00:00 UTC
    kraken = sync_exchange(emu, "kraken")
    kt = kraken.fetch_trades(spot, since=before, limit=1000)
    assert kt and min(t["timestamp"] for t in kt) >= listed
    assert len(emu.market.trades("kraken", spot, before, listed)) == 0
