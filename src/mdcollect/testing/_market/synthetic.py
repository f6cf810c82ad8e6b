"""The façade: :class:`SyntheticMarket` answers every question the dialects and tests ask."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs
import numpy as np
import pandas as pd

from .cache import DAILY, MINUTES
from .fast import fast_backward, fast_close_before, fast_forward, fast_minutes, fast_trades_in
from .grid import Frame
from .ids import block_of_id, day_of_id, day_trades, generate_day
from .liquidations import RawLiquidations, liquidations_in
from .model import price_units, seeded_rng
from .prices import PRICE_KINDS, PriceKind, derive
from .reduce import reduce_rows
from .results import (
    EMPTY_AGG,
    EMPTY_TRADES,
    Agg,
    Candles,
    RawCandles,
    RawTrades,
    Trades,
    concat_candles,
    scale,
)
from .spec import (
    MarketKey,
    MarketSpec,
    alive_intervals,
    funding_period_at,
    funding_times,
    is_fast,
    next_alive,
    prev_alive,
)
from .units import DAY, MINUTE, MINUTES_PER_DAY, i64


class SyntheticMarket:
    """The emulator's ground truth: deterministic trades, candles and funding per market.

    The same ``seed`` gives the same market in every process. ``clock`` returns "now"
    in ms (default: the wall clock); nothing at or after now exists, and the candle
    containing now is partial.

    Example::

        market = SyntheticMarket(seed=1, clock=lambda: 1_700_000_000_000)
        c = market.candles("binance", "BTC/USDT", "1h", 1_690_000_000_000, 1_690_036_000_000)
        t = market.trades("binance", "BTC/USDT", 1_690_000_000_000, 1_690_000_060_000)
        assert c.volume[0] >= t.amount.sum()
    """

    def __init__(
        self,
        seed: int = 0,
        markets: Iterable[MarketSpec] = (),
        clock: Callable[[], int] | None = None,
        *,
        venues: dict[str, Sequence[MarketSpec]] | None = None,
        aliases: dict[str, str] | None = None,
        contract_venues: Iterable[str] = ("binance", "okx", "bybit"),
        unfilled_venues: Iterable[str] = ("kraken",),
    ) -> None:
        self.seed = seed
        self._clock = clock
        self._aliases = dict(aliases or {})
        self._contract_venues = set(contract_venues)
        #: venues that publish no candle for an interval without trades
        self._unfilled_venues = set(unfilled_venues)
        self._specs: dict[str, dict[str, MarketSpec]] = {}
        for venue, specs in (venues or {}).items():
            self._specs[venue] = {s.symbol: s for s in specs}
        for spec in markets:
            self.add(spec)

    # -- configuration

    def now(self) -> int:
        """Current time in ms according to the clock."""
        return int(self._clock()) if self._clock is not None else int(time.time() * 1000)

    def venue(self, exchange: str) -> str:
        """Canonical venue for an exchange id or alias (``binanceusdm`` -> ``binance``)."""
        return self._aliases.get(exchange, exchange)

    def add(self, spec: MarketSpec) -> None:
        """Add or replace a market (on every venue when ``spec.exchange`` is None)."""
        venues = [self.venue(spec.exchange)] if spec.exchange else list(self._specs)
        for venue in venues:
            if spec.is_contract and venue not in self._contract_venues:
                continue
            self._specs.setdefault(venue, {})[spec.symbol] = attrs.evolve(spec, exchange=venue)

    def configure(self, exchange: str, symbol: str, **changes: Any) -> MarketSpec:
        """Change one market's spec (e.g. ``listed=``, ``outages=``) and return the new spec."""
        venue = self.venue(exchange)
        spec = attrs.evolve(self.spec(venue, symbol), **changes)
        self._specs[venue][symbol] = spec
        return spec

    def spec(self, exchange: str, symbol: str) -> MarketSpec:
        """The spec of one market; KeyError when the venue does not list it."""
        return self._specs[self.venue(exchange)][symbol]

    def symbols(self, exchange: str) -> list[str]:
        """Unified symbols listed on a venue."""
        return list(self._specs.get(self.venue(exchange), {}))

    def _key(self, exchange: str, symbol: str) -> MarketKey:
        venue = self.venue(exchange)
        return (self.seed, venue, self._specs[venue][symbol])

    # -- trades

    def raw_trades(self, exchange: str, symbol: str, start: int, end: int) -> RawTrades:
        """Trades with ``start <= timestamp < min(end, now)``."""
        return trades_in(self._key(exchange, symbol), start, end, self.now())

    def raw_trades_forward(
        self,
        exchange: str,
        symbol: str,
        *,
        start: int | None = None,
        from_id: int | None = None,
        end: int | None = None,
        limit: int,
    ) -> RawTrades:
        """The first ``limit`` trades at/after ``start`` (or with id >= ``from_id``), before ``end``."""
        key = self._key(exchange, symbol)
        spec = key[2]
        now = self.now()
        stop = now if end is None else min(end, now)
        if is_fast(spec):
            if from_id is not None:
                cursor = block_of_id(key, max(from_id, 1), (now - 1) // DAY) * MINUTE
            else:
                assert start is not None
                cursor = max(start, spec.listed)
            return fast_forward(key, cursor, stop, from_id, limit)
        if from_id is not None:
            day = day_of_id(key, max(from_id, 1), (now - 1) // DAY)
            lo_ts = day * DAY
        else:
            assert start is not None
            lo_ts = max(start, spec.listed)
            day = lo_ts // DAY
        parts: list[RawTrades] = []
        have = 0
        while have < limit and day * DAY < stop:
            if alive_intervals(spec, day * DAY, (day + 1) * DAY):
                t = generate_day(key, day)
                mask = (t.ts >= lo_ts) & (t.ts < stop)
                if from_id is not None:
                    mask &= t.id >= from_id
                chunk = t.take(mask)
                parts.append(chunk.take(slice(0, limit - have)))
                have += len(parts[-1])
            else:
                nxt = next_alive(spec, day * DAY)
                if nxt is None:
                    break
                day = max(day, nxt // DAY - 1)
            day += 1
        return RawTrades.concat(parts)

    def raw_trades_backward(
        self,
        exchange: str,
        symbol: str,
        *,
        end: int | None = None,
        before_id: int | None = None,
        start: int | None = None,
        limit: int,
    ) -> RawTrades:
        """The last ``limit`` trades before ``end`` (or with id < ``before_id``), chronological."""
        key = self._key(exchange, symbol)
        spec = key[2]
        stop = self.now() if end is None else min(end, self.now())
        floor = max(spec.listed, start if start is not None else spec.listed)
        if is_fast(spec):
            cursor = stop
            if before_id is not None:
                block = block_of_id(key, max(before_id - 1, 1), (stop - 1) // DAY)
                cursor = min(cursor, (block + 1) * MINUTE)
            return fast_backward(key, cursor, floor, before_id, limit)
        day = (stop - 1) // DAY
        if before_id is not None:
            day = min(day, day_of_id(key, max(before_id - 1, 1), day))
        parts: list[RawTrades] = []
        have = 0
        while have < limit and (day + 1) * DAY > floor:
            if alive_intervals(spec, day * DAY, (day + 1) * DAY):
                t = generate_day(key, day)
                mask = (t.ts < stop) & (t.ts >= floor)
                if before_id is not None:
                    mask &= t.id < before_id
                chunk = t.take(mask)
                take = min(limit - have, len(chunk))
                parts.append(chunk.take(slice(len(chunk) - take, len(chunk))))
                have += take
            day -= 1
        return RawTrades.concat(parts[::-1])

    def trades(self, exchange: str, symbol: str, start: int, end: int) -> Trades:
        """Ground-truth trades with ``start <= timestamp < end`` (and before now)."""
        spec = self.spec(exchange, symbol)
        raw = self.raw_trades(exchange, symbol, start, end)
        return Trades(
            raw.id,
            raw.ts,
            scale(raw.price, spec.price_decimals),
            scale(raw.amount, spec.amount_decimals),
            np.where(raw.buy, "buy", "sell"),
        )

    # -- candles

    def _minutes(self, key: MarketKey, day: int, now: int) -> Agg:
        """Per-minute aggregates of a day (trades before now only)."""
        if is_fast(key[2]):
            return fast_minutes(key, day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY, now)
        partial = (day + 1) * DAY > now
        if not partial:
            cached = MINUTES.get((key, day))
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        t = day_trades(key, day)
        if partial:
            t = t.take(t.ts < now)
        starts = np.searchsorted(t.ts, day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
        agg = reduce_rows(t.as_agg(), starts.astype(np.int64))
        agg = attrs.evolve(agg, start=day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
        if not partial:
            MINUTES.put((key, day), agg)
        return agg

    def _daily(self, key: MarketKey, day: int, now: int) -> Agg:
        partial = (day + 1) * DAY > now
        if not partial and (key, day) in DAILY:
            return DAILY[(key, day)]
        spec = key[2]
        if day * DAY >= now or not alive_intervals(spec, day * DAY, (day + 1) * DAY):
            agg = reduce_rows(EMPTY_AGG, i64(1))
        else:
            agg = reduce_rows(self._minutes(key, day, now), i64(1))
        agg = attrs.evolve(agg, start=np.asarray([day * DAY], dtype=np.int64))
        if not partial:
            DAILY[(key, day)] = agg
        return agg

    def _units(self, key: MarketKey, start: int, end: int, unit: int, now: int) -> Agg:
        """Aggregates at ``unit`` resolution (1 s, 1 min or 1 day) covering ``[start, end)``."""
        spec = key[2]
        if unit == DAY:
            parts = [self._daily(key, d, now) for d in range(start // DAY, end // DAY)]
            return Agg.concat(parts)
        if unit == MINUTE and is_fast(spec):
            return fast_minutes(key, start // MINUTE, end // MINUTE, now)
        parts = []
        for day in range(start // DAY, (end - 1) // DAY + 1):
            lo, hi = max(start, day * DAY), min(end, (day + 1) * DAY)
            if unit == MINUTE:
                if day * DAY < now and alive_intervals(spec, day * DAY, (day + 1) * DAY):
                    m = self._minutes(key, day, now)
                else:
                    m = reduce_rows(EMPTY_AGG, i64(1440))
                    m = attrs.evolve(m, start=day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
                a, b = (lo - day * DAY) // MINUTE, (hi - day * DAY) // MINUTE
                parts.append(m.take(slice(a, b)))
            else:
                t = trades_in(key, lo, hi, now)
                grid = np.arange(lo, hi, unit, dtype=np.int64)
                sec = reduce_rows(t.as_agg(), np.searchsorted(t.ts, grid).astype(np.int64))
                parts.append(attrs.evolve(sec, start=grid))
        return Agg.concat(parts)

    def _close_before(self, key: MarketKey, t: int, now: int) -> int:
        """Last traded price before ``t`` (the model price when nothing traded yet)."""
        spec = key[2]
        if is_fast(spec):
            price = fast_close_before(key, t, now)
            if price is not None:
                return price
            return int(price_units(key, np.asarray([max(t, spec.listed)], dtype=np.int64))[0])
        day = (t - 1) // DAY
        while (day + 1) * DAY > spec.listed:
            if alive_intervals(spec, day * DAY, (day + 1) * DAY):
                tr = day_trades(key, day)
                i = int(np.searchsorted(tr.ts, min(t, now), side="left"))
                if i > 0:
                    return int(tr.price[i - 1])
            day -= 1
        return int(price_units(key, np.asarray([max(t, spec.listed)], dtype=np.int64))[0])

    def raw_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | Frame,
        start: int,
        end: int,
        *,
        fill_empty: bool = True,
    ) -> RawCandles:
        """Candles with open time in ``[start, end)``; the one containing now is partial.

        A candle exists when its interval overlaps ``[listed, now)`` minus the outage
        windows. An existing candle without trades is flat at the previous close with
        zero volume when ``fill_empty`` (Binance, OKX, Bybit), otherwise omitted (Kraken).
        """
        key = self._key(exchange, symbol)
        spec = key[2]
        frame = timeframe if isinstance(timeframe, Frame) else Frame.parse(timeframe)
        now = self.now()
        lo = max(start, frame.floor(spec.listed))
        hi = min(end, now)
        starts = frame.starts(lo, hi)
        if len(starts) == 0:
            return RawCandles(EMPTY_AGG, spec, now, frame)
        ends = np.append(starts[1:], frame.next(int(starts[-1])))
        alive = np.zeros(len(starts), dtype=np.bool_)
        for a, b in alive_intervals(spec, int(starts[0]), min(int(ends[-1]), now)):
            alive |= (starts < b) & (ends > a)
        if not alive.any():
            return RawCandles(EMPTY_AGG, spec, now, frame)
        keep = np.flatnonzero(alive)
        starts, ends = starts[keep[0] : keep[-1] + 1], ends[keep[0] : keep[-1] + 1]
        alive = alive[keep[0] : keep[-1] + 1]
        span_lo, span_hi = int(starts[0]), int(ends[-1])
        if frame.ms and frame.ms < MINUTE:
            unit = frame.ms
        elif (frame.months or frame.ms % DAY == 0) and frame.offset % DAY == 0:
            unit = DAY
        else:
            unit = MINUTE
        units = self._units(key, span_lo, span_hi, unit, now)
        agg = reduce_rows(units, ((starts - span_lo) // unit).astype(np.int64))
        agg = attrs.evolve(agg, start=starts)
        empty = agg.count == 0
        if fill_empty and empty.any():
            close = np.where(empty, 0, agg.close)
            valid = np.where(~empty, np.arange(len(close)), -1)
            np.maximum.accumulate(valid, out=valid)
            prior = self._close_before(key, span_lo, now) if valid[0] < 0 else 0
            filled = np.where(valid >= 0, close[np.maximum(valid, 0)], prior)
            agg = attrs.evolve(
                agg,
                open=np.where(empty, filled, agg.open),
                high=np.where(empty, filled, agg.high),
                low=np.where(empty, filled, agg.low),
                close=np.where(empty, filled, agg.close),
            )
        keep_mask = alive & (~empty if not fill_empty else True)
        return RawCandles(agg.take(keep_mask), spec, now, frame)

    def raw_candles_forward(
        self,
        exchange: str,
        symbol: str,
        frame: Frame,
        start: int,
        limit: int,
        *,
        end: int | None = None,
        fill_empty: bool = True,
    ) -> RawCandles:
        """The first ``limit`` candles with open time >= ``start`` (and <= ``end``)."""
        spec = self.spec(exchange, symbol)
        now = self.now()
        stop = now if end is None else min(end + 1, now)
        parts: list[RawCandles] = []
        have = 0
        cursor = max(start, frame.floor(spec.listed))
        while have < limit and cursor < stop:
            nxt = next_alive(spec, cursor)
            if nxt is None or nxt >= stop:
                break
            cursor = max(cursor, frame.floor(nxt))
            hi = min(stop, cursor + frame.step_estimate() * (limit - have) + 1)
            got = self.raw_candles(exchange, symbol, frame, cursor, hi, fill_empty=fill_empty)
            got = got.take(slice(0, limit - have))
            if len(got):
                parts.append(got)
                have += len(got)
            cursor = hi
        return concat_candles(parts, spec, now, frame)

    def raw_candles_backward(
        self,
        exchange: str,
        symbol: str,
        frame: Frame,
        end: int,
        limit: int,
        *,
        start: int | None = None,
        fill_empty: bool = True,
    ) -> RawCandles:
        """The last ``limit`` candles with open time <= ``end`` (and >= ``start``)."""
        spec = self.spec(exchange, symbol)
        now = self.now()
        floor = frame.floor(spec.listed) if start is None else max(start, frame.floor(spec.listed))
        hi = min(end + 1, now)
        parts: list[RawCandles] = []
        have = 0
        while have < limit and hi > floor:
            lo = max(floor, hi - frame.step_estimate() * (limit - have + 1))
            got = self.raw_candles(exchange, symbol, frame, lo, hi, fill_empty=fill_empty)
            take = min(len(got), limit - have)
            if take:
                parts.append(got.take(slice(len(got) - take, len(got))))
                have += take
            hi = lo
            prev = prev_alive(spec, hi)
            if prev is None:
                break
            hi = min(hi, frame.next(frame.floor(prev - 1)))
        return concat_candles(parts[::-1], spec, now, frame)

    def candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: int,
        end: int,
        *,
        fill_empty: bool | None = None,
        closed_only: bool = False,
    ) -> Candles:
        """Ground-truth candles with open time in ``[start, end)``.

        ``fill_empty=None`` uses the venue's rule (flat candles everywhere but Kraken and
        Coinbase: ``unfilled_venues``).
        ``closed_only=True`` drops the still-open candle.
        """
        if fill_empty is None:
            fill_empty = self.venue(exchange) not in self._unfilled_venues
        raw = self.raw_candles(exchange, symbol, timeframe, start, end, fill_empty=fill_empty)
        if closed_only:
            raw = raw.take(raw.confirmed())
        return Candles.from_raw(raw)

    def price_candles(
        self,
        exchange: str,
        symbol: str,
        kind: PriceKind,
        timeframe: str,
        start: int,
        end: int,
        *,
        closed_only: bool = False,
    ) -> Candles:
        """Ground-truth ``mark``, ``index`` or ``premium`` candles with open time in
        ``[start, end)``, derived from the last-price candles (:mod:`.prices`); zero volume.

        Example::

            c = emu.market.price_candles("binanceusdm", "BTC/USDT:USDT", "mark", "1h", s, e)
        """
        if kind not in PRICE_KINDS:
            raise ValueError(f"kind {kind!r} is not one of {PRICE_KINDS}")
        raw = self.raw_candles(exchange, symbol, timeframe, start, end, fill_empty=True)
        if closed_only:
            raw = raw.take(raw.confirmed())
        return Candles.from_raw(derive(raw, kind))

    # -- funding and mark price

    def mark_price(self, exchange: str, symbol: str, t: int) -> float:
        """Model (noise-free) price at ``t``: the mark/index price of perpetuals."""
        key = self._key(exchange, symbol)
        spec = key[2]
        units = price_units(key, np.asarray([t], dtype=np.int64))
        return float(units[0]) / float(10**spec.price_decimals)

    def funding(
        self, exchange: str, symbol: str, start: int, end: int
    ) -> list[tuple[int, float, float]]:
        """Funding settlements ``(time, rate, mark_price)`` in ``[start, min(end, now)]``: every
        8 h, or as the market's ``funding_intervals`` say (e.g. 4-hourly from a date on).
        The settlement at ``t`` pays the rate of the period ending at ``t``, the rate
        the live streams announced during that period (:meth:`funding_rate`).

        The mark price at a settlement is the index (the model price) times
        ``1 + premium``, and the rate follows from that premium as Binance's formula
        has it (:meth:`funding_rate`)."""
        spec = self.spec(exchange, symbol)
        if not spec.is_contract:
            return []
        times = funding_times(spec, max(start, spec.listed), min(end, self.now()))
        out = []
        for t in times:
            # the settlement at t closes the period before it: its premium and rate
            premium = self.premium(exchange, symbol, t - 1)
            mark = round(self.mark_price(exchange, symbol, t) * (1 + premium), spec.price_decimals)
            out.append((t, self.funding_rate(exchange, symbol, t - 1), mark))
        return out

    def next_funding_time(self, exchange: str, symbol: str, t: int) -> int:
        """When the funding period containing ``t`` settles (its end)."""
        start, length = self.funding_period(exchange, symbol, t)
        return start + length

    def funding_period(self, exchange: str, symbol: str, t: int) -> tuple[int, int]:
        """``(start, length)`` in ms of the funding period containing ``t``."""
        return funding_period_at(self.spec(exchange, symbol), t)

    def premium(self, exchange: str, symbol: str, t: int) -> float:
        """The premium ``mark / index - 1`` averaged over the funding period containing ``t``."""
        seed, venue, spec = self._key(exchange, symbol)
        start = funding_period_at(spec, t)[0]
        return float(seeded_rng(seed, venue, spec.symbol, start, "p").normal(0.0001, 0.0006))

    def funding_rate(self, exchange: str, symbol: str, t: int) -> float:
        """The rate settled for the funding period containing ``t``: Binance's
        ``premium + clamp(interest - premium, -0.05%, 0.05%)`` with an interest of
        0.01% a period, capped at +-0.375% (so mostly 0.01%, as on the exchanges)."""
        premium = self.premium(exchange, symbol, t)
        interest = 0.0001
        rate = premium + min(max(interest - premium, -0.0005), 0.0005)
        return round(min(max(rate, -0.00375), 0.00375), 8)

    # -- open interest

    def open_interest(
        self, exchange: str, symbol: str, period: int, start: int, end: int
    ) -> list[tuple[int, float, float]]:
        """Open interest ``(time, amount, value)`` of a perpetual at every ``period`` ms
        (a multiple of it from the epoch) with ``start <= time < end`` whose period has
        closed (``time + period <= now``), from the listing on.

        ``amount`` is in base units (3 decimals), ``value`` is ``amount`` times the model
        price at ``time`` (4 decimals). Both depend only on the instant ``time``, so a 1h
        row equals the 5m row at the same instant on every venue's periods.

        Example::

            rows = emu.market.open_interest("binanceusdm", "BTC/USDT:USDT", HOUR, s, e)
        """
        seed, venue, spec = self._key(exchange, symbol)
        if not spec.is_contract:
            return []
        lo = max(start, spec.listed)
        lo = -(-lo // period) * period
        hi = min(end, self.now() - period + 1)
        if hi <= lo:
            return []
        t = np.arange(lo, hi, period, dtype=np.int64)
        rng = seeded_rng(seed, venue, spec.symbol, "open_interest")
        base = rng.uniform(20_000.0, 80_000.0)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        tf = t.astype(np.float64)
        shape = (
            1.0
            + 0.15 * np.sin(2.0 * np.pi * tf / (3 * DAY))
            + 0.05 * np.sin(2.0 * np.pi * tf / (7 * 3_600_000) + phase)
        )
        units = np.rint(base * shape * 1000).astype(np.int64)
        price = price_units((seed, venue, spec), t).astype(np.float64) / 10.0**spec.price_decimals
        out = []
        for ti, ui, pi in zip(t.tolist(), units.tolist(), price.tolist(), strict=True):
            amount = float(f"{ui / 1000:.3f}")
            out.append((ti, amount, float(f"{amount * pi:.4f}")))
        return out

    # -- liquidations

    def raw_liquidations(self, exchange: str, symbol: str, start: int, end: int) -> RawLiquidations:
        """Forced orders of a perpetual with ``start <= ts < min(end, now)`` in integer
        units, as the venue's liquidation stream pushes them (:mod:`.liquidations`)."""
        key = self._key(exchange, symbol)
        one = key[1] in _ONE_LIQUIDATION_PER_SECOND
        return liquidations_in(key, start, end, self.now(), one_per_second=one)

    def liquidations(self, exchange: str, symbol: str, start: int, end: int) -> pd.DataFrame:
        """Ground-truth liquidations of a perpetual in ``[start, end)``: ``side``,
        ``price``, ``amount`` (base units) by time, as the venue's stream sends them
        (Binance and OKX: only the last of each second, as their streams do).

        Example::

            truth = emu.market.liquidations("binanceusdm", "BTC/USDT:USDT", lo, hi)
        """
        raw = self.raw_liquidations(exchange, symbol, start, end)
        return raw.to_frame(self.spec(exchange, symbol))


#: Venues whose liquidation stream pushes at most one forced order of a symbol per
#: second: Binance ("only the latest one liquidation order within 1000ms"), OKX ("a
#: maximum of one order per one-second period"). Bybit's ``allLiquidation`` sends all.
_ONE_LIQUIDATION_PER_SECOND: Final = frozenset({"binance", "okx"})


def trades_in(key: MarketKey, start: int, end: int, now: int) -> RawTrades:
    spec = key[2]
    end = min(end, now)
    start = max(start, spec.listed)
    if end <= start:
        return EMPTY_TRADES
    if is_fast(spec):
        return fast_trades_in(key, start, end)
    parts = []
    for day in range(start // DAY, (end - 1) // DAY + 1):
        if not alive_intervals(spec, day * DAY, (day + 1) * DAY):
            continue
        t = generate_day(key, day)
        lo, hi = np.searchsorted(t.ts, [start, end], side="left")
        parts.append(t.take(slice(int(lo), int(hi))))
    return RawTrades.concat(parts)
