"""What OKX's REST and websocket halves share: bars, contract values, instrument
ids and the current funding row."""

from __future__ import annotations

from mdcollect.testing._market import HOUR, MarketSpec, SyntheticMarket

# OKX bar -> (ccxt timeframe, alignment offset ms). Bars >= 6H without "utc" are
# aligned to Hong Kong time (UTC+8), the "utc" variants to UTC.
_HK = -8 * HOUR


BARS: dict[str, tuple[str, int]] = {
    "1s": ("1s", 0),
    "1m": ("1m", 0),
    "3m": ("3m", 0),
    "5m": ("5m", 0),
    "15m": ("15m", 0),
    "30m": ("30m", 0),
    "1H": ("1h", 0),
    "2H": ("2h", 0),
    "4H": ("4h", 0),
    "6H": ("6h", _HK),
    "12H": ("12h", _HK),
    "1D": ("1d", _HK),
    "2D": ("2d", _HK),
    "3D": ("3d", _HK),
    "1W": ("1w", _HK),
    "1M": ("1M", 0),
    "6Hutc": ("6h", 0),
    "12Hutc": ("12h", 0),
    "1Dutc": ("1d", 0),
    "2Dutc": ("2d", 0),
    "3Dutc": ("3d", 0),
    "1Wutc": ("1w", 0),
    "1Mutc": ("1M", 0),
}


#: contract value exponent: ctVal = 10**-k base units per contract (OKX's own values:
#: 0.01 BTC, 0.1 ETH, 100 XRP, 1000 DOGE; 1 of other coins).
CT_VAL_EXP = {"BTC": 2, "ETH": 1, "XRP": -2, "DOGE": -3, "ADA": -2}


def _funding_row(market: SyntheticMarket, venue: str, spec: MarketSpec, now: int) -> dict[str, str]:
    nxt = market.next_funding_time(venue, spec.symbol, now)
    period = market.funding_period(venue, spec.symbol, now)[1]
    rate = market.funding_rate(venue, spec.symbol, now)
    return {
        "fundingRate": f"{rate:.10f}",
        "fundingTime": str(nxt),
        "instId": _inst_id(spec),
        "instType": "SWAP",
        "interestRate": "0.0001",
        "method": "current_period",
        "maxFundingRate": "0.00375",
        "minFundingRate": "-0.00375",
        "nextFundingRate": "",
        "nextFundingTime": str(nxt + period),
        "premium": "0.0001",
        "settFundingRate": f"{market.funding_rate(venue, spec.symbol, now - period):.10f}",
        "settState": "settled",
        "sign": "",
        "ts": str(now),
    }


def _inst_id(spec: MarketSpec) -> str:
    return f"{spec.base}-{spec.quote}-SWAP" if spec.is_contract else f"{spec.base}-{spec.quote}"
