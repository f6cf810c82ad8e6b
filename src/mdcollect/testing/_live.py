"""Venue-neutral building blocks of live feeds: trade cursors, candle trackers, 24 h stats."""

from __future__ import annotations

from typing import Final

import attrs

from mdcollect.testing._market import DAY, Frame, RawCandles, RawTrades, SyntheticMarket

__all__ = [
    "LIQUIDATION_LAG_MS",
    "CandleTracker",
    "Every",
    "Stats24h",
    "TradeCursor",
    "stats_24h",
]

#: A candle stream sends the open candle at least this often (ms), trades or not.
CANDLE_HEARTBEAT_MS: Final = 1_000
#: How long after a liquidation a venue publishes it (ms): the exchange's own processing
#: time, so a stream's frame at ``t`` does not yet carry the liquidations just before ``t``.
LIQUIDATION_LAG_MS: Final = 250


class TradeCursor:
    """Trades of one market not yet pushed: each trade is returned exactly once, in order.

    ``start`` is the subscription time: trades with ``start <= ts < now`` come out
    of the first :meth:`take`, later ones as the clock passes them.
    """

    def __init__(self, market: SyntheticMarket, venue: str, symbol: str, start: int) -> None:
        self.market, self.venue, self.symbol = market, venue, symbol
        self.cursor = start

    def take(self, now: int) -> RawTrades:
        """Trades with ``cursor <= ts < now``; the cursor moves to ``now``."""
        if now <= self.cursor:
            return self.market.raw_trades(self.venue, self.symbol, 0, 0)
        raw = self.market.raw_trades(self.venue, self.symbol, self.cursor, now)
        self.cursor = now
        return raw


class CandleTracker:
    """The open candle of one market and timeframe as the clock passes.

    :meth:`poll` yields ``(candle, closed)`` pairs of one-row :class:`RawCandles`:
    every candle that closed since the last poll (``closed=True``, equal to the
    REST candle) and then the open one when it changed or every
    :data:`CANDLE_HEARTBEAT_MS`.
    """

    def __init__(
        self, market: SyntheticMarket, venue: str, symbol: str, frame: Frame, *, fill_empty: bool
    ) -> None:
        self.market, self.venue, self.symbol, self.frame = market, venue, symbol, frame
        self.fill_empty = fill_empty
        self._open: int | None = None
        self._count = -1
        self._sent = 0

    def poll(self, now: int) -> list[tuple[RawCandles, bool]]:
        """Candles due at ``now`` (see the class docstring)."""
        m, frame = self.market, self.frame
        cur = frame.floor(now)
        out: list[tuple[RawCandles, bool]] = []
        if self._open is not None and cur > self._open:
            closed = m.raw_candles(
                self.venue, self.symbol, frame, self._open, cur, fill_empty=self.fill_empty
            )
            out += [(closed.take([i]), True) for i in range(len(closed))]
            self._count = -1
        self._open = cur
        raw = m.raw_candles(
            self.venue, self.symbol, frame, cur, cur + 1, fill_empty=self.fill_empty
        )
        if len(raw):
            count = int(raw.agg.count[0])
            if count != self._count or now - self._sent >= CANDLE_HEARTBEAT_MS:
                out.append((raw, False))
                self._count, self._sent = count, now
        return out


class Every:
    """True once per ``period`` ms (first call: True)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self._last: int | None = None

    def due(self, now: int) -> bool:
        """Whether a periodic message is due at ``now`` (and mark it sent)."""
        if self._last is None or now - self._last >= self.period:
            self._last = now
            return True
        return False


@attrs.frozen
class Stats24h:
    """Rolling 24 h statistics in integer units (prices: price units, volumes: amount units)."""

    open: int
    high: int
    low: int
    last: int
    last_amount: int
    volume: int
    quote: int  # units of 10**-(price_decimals + amount_decimals)
    count: int
    first_id: int
    last_id: int
    open_time: int


def stats_24h(market: SyntheticMarket, venue: str, symbol: str, now: int) -> Stats24h:
    """24 h ticker statistics ending at ``now`` (minute resolution at the window's start)."""
    lo = now - DAY
    frame = Frame.parse("1m")
    c = market.raw_candles(venue, symbol, frame, frame.floor(lo), now + 1, fill_empty=True)
    last = market.raw_trades_backward(venue, symbol, end=now, limit=1)
    first = market.raw_trades_forward(venue, symbol, start=lo, end=now, limit=1)
    spec = market.spec(venue, symbol)
    base = round(spec.base_price * 10**spec.price_decimals)
    last_px = int(last.price[0]) if len(last) else base
    if len(c):
        a = c.agg
        o, h, lw = int(a.open[0]), int(a.high.max()), int(a.low.min())
        vol, quote, count = int(a.volume.sum()), int(a.quote.sum()), int(a.count.sum())
    else:
        o = h = lw = last_px
        vol = quote = count = 0
    return Stats24h(
        open=o,
        high=max(h, last_px),
        low=min(lw, last_px),
        last=last_px,
        last_amount=int(last.amount[0]) if len(last) else 0,
        volume=vol,
        quote=quote,
        count=count,
        first_id=int(first.id[0]) if len(first) else -1,
        last_id=int(last.id[0]) if len(last) else -1,
        open_time=lo,
    )
