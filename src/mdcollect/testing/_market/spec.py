"""What a market is: :class:`MarketSpec`, and when it trades (listing, outages, speed).

A market trades on ``[listed, inf)`` minus its outage windows; those ranges are
the only place trades and candles can exist. A market with more trades per minute
than :data:`FAST_TRADES_PER_MINUTE` is "fast" and generated a minute at a time
(see :mod:`.blocks`), others a UTC day at a time (see :mod:`.days`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from .units import DAY, HOUR, INT_MAX, MINUTE

#: 2020-01-01T00:00:00Z, when every default market is listed.
DEFAULT_LISTING: Final = 1_577_836_800_000
#: Markets with more trades per minute are generated a minute at a time (a day of
#: 2.16M trades or more is too big to hold), slower ones a UTC day at a time.
FAST_TRADES_PER_MINUTE: Final = 1_500.0
#: Most trades a minute of a fast market holds: one per ms, as unique timestamps need.
MAX_TRADES_PER_MINUTE: Final = MINUTE
#: Perpetuals settle funding every 8 hours unless ``MarketSpec.funding_intervals`` says otherwise.
FUNDING_PERIOD: Final = 8 * HOUR
#: The default ``ETH/USDT:USDT`` perpetuals settle 8-hourly until 2024-06-01 UTC and
#: 4-hourly from then on (a venue changing a busy market's interval, as they do).
FUNDING_8H_TO_4H: Final = ((1_717_200_000_000, 4 * HOUR),)


def _to_funding_intervals(value: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    out = tuple(sorted((int(a), int(b)) for a, b in value))
    for since, period in out:
        if period <= 0 or since % period:
            raise ValueError(
                f"funding interval ({since}, {period}) must start on a multiple of its period"
            )
    return out


def _to_outages(value: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    out = tuple(sorted((int(a), int(b)) for a, b in value))
    for start, end in out:
        if end <= start:
            raise ValueError(f"outage window must have start < end, got [{start}, {end})")
    return out


@attrs.frozen
class MarketSpec:
    """One synthetic market: its symbol, price scale, precision, listing and outages.

    ``exchange=None`` puts the market on every dialect that supports its type
    (Kraken is spot only); otherwise on the named dialect (``"binance"``,
    ``"okx"``, ``"bybit"``, ``"kraken"``; aliases such as ``"binanceusdm"`` work).
    A spec for a symbol a dialect already lists replaces the default one.

    Example::

        MarketSpec("SOL/USDT", base_price=100.0, listed=1_600_000_000_000,
                   outages=[(1_650_000_000_000, 1_650_003_600_000)])
    """

    symbol: str
    base_price: float = 100.0
    price_decimals: int = 2
    #: Price tick in units of ``10**-price_decimals`` (Binance BTCUSDT perp: 0.10 -> 10).
    tick: int = 1
    amount_decimals: int = 5
    mean_amount: float = 0.05
    #: Mean trades per minute. Above :data:`FAST_TRADES_PER_MINUTE` the market is
    #: generated a minute at a time, with at most one trade per ms (60,000 a minute).
    trades_per_minute: float = 4.0
    listed: int = DEFAULT_LISTING
    #: Half-open ``[start, end)`` ms windows without trades and without candles.
    outages: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_to_outages)
    exchange: str | None = None
    volatility: float = 1.0
    #: ``(since, period)`` ms pairs: from ``since`` on, funding settles every ``period``
    #: (before the first pair: every :data:`FUNDING_PERIOD`). Exchanges move busy
    #: perpetuals from 8-hourly to 4-hourly funding this way.
    funding_intervals: tuple[tuple[int, int], ...] = attrs.field(
        default=(), converter=_to_funding_intervals
    )

    @property
    def is_contract(self) -> bool:
        """True for swap symbols such as ``BTC/USDT:USDT``."""
        return ":" in self.symbol

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]

    @property
    def settle(self) -> str | None:
        return self.symbol.split(":")[1] if self.is_contract else None


MarketKey = tuple[int, str, MarketSpec]  # (seed, venue, spec)


def is_fast(spec: MarketSpec) -> bool:
    """Whether the market is generated a minute at a time (see :data:`FAST_TRADES_PER_MINUTE`)."""
    return spec.trades_per_minute > FAST_TRADES_PER_MINUTE


def alive_intervals(spec: MarketSpec, start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end) & [listed, inf) - outages`` as sorted disjoint intervals."""
    out: list[tuple[int, int]] = []
    cursor = max(start, spec.listed)
    for a, b in spec.outages:
        if b <= cursor:
            continue
        if a >= end:
            break
        if a > cursor:
            out.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if cursor < end:
        out.append((cursor, end))
    return out


def is_plain_day(spec: MarketSpec, day: int) -> bool:
    start, end = day * DAY, (day + 1) * DAY
    return start >= spec.listed and not any(a < end and b > start for a, b in spec.outages)


def next_alive(spec: MarketSpec, t: int) -> int | None:
    """First alive ms at or after ``t`` (ignoring now)."""
    iv = alive_intervals(spec, t, INT_MAX // 2)
    return iv[0][0] if iv else None


def prev_alive(spec: MarketSpec, t: int) -> int | None:
    """One past the last alive ms before ``t``."""
    iv = alive_intervals(spec, 0, t)
    return iv[-1][1] if iv else None


def funding_segments(spec: MarketSpec) -> list[tuple[int, int, int]]:
    """``(start, end, period)``: the funding period in force over ``[start, end)``, from 0 on."""
    bounds = [(0, FUNDING_PERIOD), *spec.funding_intervals]
    ends = [since for since, _ in bounds[1:]] + [INT_MAX]
    return [(since, end, period) for (since, period), end in zip(bounds, ends, strict=True)]


def funding_times(spec: MarketSpec, lo: int, hi: int) -> list[int]:
    """Settlement times ``t`` with ``lo <= t <= hi`` (inclusive: a settlement at now exists)."""
    out: list[int] = []
    for a, b, period in funding_segments(spec):
        first = -(-max(lo, a) // period) * period
        out.extend(range(first, min(hi + 1, b), period))
    return out


def funding_period_at(spec: MarketSpec, t: int) -> tuple[int, int]:
    """``(start, period)`` of the funding period containing ``t``."""
    for a, b, period in funding_segments(spec):
        if a <= t < b:
            return t - (t - a) % period, period
    raise ValueError(f"no funding period contains {t}")
