"""What Binance's REST and websocket halves write alike: intervals, market ids,
numbers (8 decimals on spot, the market's own on USD-M) and the 24 h ticker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdcollect.testing._book import book_at
from mdcollect.testing._live import stats_24h
from mdcollect.testing._market import MarketSpec, SyntheticMarket
from mdcollect.testing.dialects._base import fmt

SPOT_INTERVALS = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)


FUTURES_INTERVALS = SPOT_INTERVALS[1:]


def _ticker_24h(
    market: SyntheticMarket, venue: str, spec: MarketSpec, now: int, *, mini: bool = False
) -> dict[str, Any]:
    """One market's ``ticker/24hr`` object at ``now`` (the ``@ticker`` stream's values too).

    Spot carries ``prevClosePrice`` and the book's best quotes; USD-M neither.
    """
    st = stats_24h(market, venue, spec.symbol, now)
    pd_, ad = spec.price_decimals, spec.amount_decimals
    contract = spec.is_contract
    quote = fmt(st.quote, pd_ + ad, pd_ + ad if contract else 8)
    times = {
        "openTime": st.open_time,
        "closeTime": now,
        "firstId": st.first_id,
        "lastId": st.last_id,
        "count": st.count,
    }
    if mini:
        return {
            "symbol": _market_id(spec),
            "openPrice": _price(spec, st.open),
            "highPrice": _price(spec, st.high),
            "lowPrice": _price(spec, st.low),
            "lastPrice": _price(spec, st.last),
            "volume": _amount(spec, st.volume),
            "quoteVolume": quote,
            **times,
        }
    change = st.last - st.open
    pct = 100.0 * change / st.open if st.open else 0.0
    vwap = st.quote / st.volume / 10**pd_ if st.volume else st.last / 10**pd_
    out: dict[str, Any] = {
        "symbol": _market_id(spec),
        "priceChange": _price(spec, change),
        "priceChangePercent": f"{pct:.3f}",
        "weightedAvgPrice": f"{vwap:.{pd_ if contract else 8}f}",
    }
    if not contract:
        out["prevClosePrice"] = _price(spec, st.open)
    out["lastPrice"] = _price(spec, st.last)
    out["lastQty"] = _amount(spec, st.last_amount)
    if not contract:
        book = book_at(market, venue, spec.symbol, now)
        out["bidPrice"] = _price(spec, book.bids[0][0])
        out["bidQty"] = _amount(spec, book.bids[0][1])
        out["askPrice"] = _price(spec, book.asks[0][0])
        out["askQty"] = _amount(spec, book.asks[0][1])
    out.update(
        {
            "openPrice": _price(spec, st.open),
            "highPrice": _price(spec, st.high),
            "lowPrice": _price(spec, st.low),
            "volume": _amount(spec, st.volume),
            "quoteVolume": quote,
            **times,
        }
    )
    return out


def _price(spec: MarketSpec, units: int) -> str:
    """A price as Binance writes it: 8 decimals on spot, the market's own on USD-M."""
    return fmt(units, spec.price_decimals, spec.price_decimals if spec.is_contract else 8)


def _amount(spec: MarketSpec, units: int) -> str:
    """A quantity as Binance writes it: 8 decimals on spot, the market's own on USD-M."""
    return fmt(units, spec.amount_decimals, spec.amount_decimals if spec.is_contract else 8)


def _levels(spec: MarketSpec, levels: Sequence[tuple[int, int]]) -> list[list[str]]:
    po = spec.price_decimals if spec.is_contract else 8
    qo = spec.amount_decimals if spec.is_contract else 8
    return [[fmt(p, spec.price_decimals, po), fmt(q, spec.amount_decimals, qo)] for p, q in levels]


def _market_id(spec: MarketSpec) -> str:
    return f"{spec.base}{spec.quote}".upper()


def _secs(seconds: float) -> str:
    return str(max(1, int(-(-seconds // 1))))
