"""The price model and the seeded random draws every trade comes from.

The noise-free price is a sum of slow sines of time (so days are independent);
each trade adds its own noise, a log-normal amount and a side. Every draw comes
from a generator seeded by ``(seed, venue, symbol, *parts)``, in a fixed order.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Final

import numpy as np

from .spec import MarketKey
from .units import DAY, F64, HOUR, I64, MINUTE, B

# Slow price components: (period ms, amplitude of log price). A sum of sines makes
# the price a pure function of time, so days are independent.
_WAVES: Final = (
    (41 * DAY, 0.30),
    (int(6.3 * DAY), 0.06),
    (21 * HOUR, 0.02),
    (int(2.9 * HOUR), 0.008),
    (37 * MINUTE, 0.003),
)


_NOISE: Final = 0.0004  # per-trade multiplicative noise (log sigma)
_GRID: Final = 5 * MINUTE


def seeded_rng(seed: int, venue: str, symbol: str, *parts: object) -> np.random.Generator:
    text = "|".join(str(p) for p in (seed, venue, symbol, *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def model_log_price(key: MarketKey, t: I64) -> F64:
    """Log of the noise-free price: a sum of slow sines sampled on a 5-minute grid, interpolated."""
    seed, _, spec = key
    # The model depends on the base asset only: spot and perpetual, and every venue,
    # track the same price; trades add per-market noise.
    phases = seeded_rng(seed, "model", spec.base, "phase").random(len(_WAVES)) * 2 * math.pi
    if len(t) == 0:
        return np.zeros(0, dtype=np.float64)
    lo = int(t.min()) // _GRID * _GRID
    hi = int(t.max()) // _GRID * _GRID + _GRID
    grid = np.arange(lo, hi + 1, _GRID, dtype=np.int64)
    gf = grid.astype(np.float64)
    x = np.zeros(len(grid), dtype=np.float64)
    for (period, amp), phase in zip(_WAVES, phases, strict=True):
        x += amp * spec.volatility * np.sin(2 * math.pi * gf / period + phase)
    out: F64 = math.log(spec.base_price) + np.interp(t.astype(np.float64), gf, x)
    return out


def price_units(key: MarketKey, t: I64, noise: F64 | None = None) -> I64:
    spec = key[2]
    logp = model_log_price(key, t)
    if noise is not None:
        logp = logp + noise
    tick_value = spec.tick * 10.0**-spec.price_decimals
    ticks = np.maximum(np.rint(np.exp(logp) / tick_value), 1).astype(np.int64)
    out: I64 = ticks * spec.tick
    return out


@functools.lru_cache(maxsize=64)
def poisson_cdf(lam: float) -> F64:
    k = np.arange(0, max(20, int(lam * 6 + 20)))
    logp = -lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k])
    cdf: F64 = np.cumsum(np.exp(logp))
    return cdf


def fills(key: MarketKey, rng: np.random.Generator, ts: I64) -> tuple[I64, I64, B]:
    """Price units, amount units and buy flags of trades at ``ts``, drawn from ``rng``
    in a fixed order (so a market's trades never change)."""
    spec, n = key[2], len(ts)
    noise = rng.normal(0.0, _NOISE * spec.volatility, n)
    price = price_units(key, ts, noise)
    step = 10.0**-spec.amount_decimals
    sigma = 0.9
    mu = math.log(spec.mean_amount / step) - sigma * sigma / 2
    amount = np.maximum(np.rint(rng.lognormal(mu, sigma, n)), 1).astype(np.int64)
    buy = rng.random(n) < 0.5
    return price, amount, buy
