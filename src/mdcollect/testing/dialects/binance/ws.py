"""Binance websocket market streams, spot (``stream.binance.com``) and USD-M
(``fstream.binance.com``): raw and combined streams, ``SUBSCRIBE`` by id."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mdcollect.testing._book import Book, book_at, book_diff
from mdcollect.testing._live import (
    LIQUIDATION_LAG_MS,
    CandleTracker,
    Every,
    TradeCursor,
    stats_24h,
)
from mdcollect.testing._market import Frame, MarketSpec, SyntheticMarket
from mdcollect.testing.dialects._base import CallbackFeed, WsFeed, WsSession, find_market, fmt

from ._common import FUTURES_INTERVALS, SPOT_INTERVALS, _levels, _market_id, _ticker_24h

if TYPE_CHECKING:
    from .rest import Binance

__all__ = ["BinanceWs"]


#: stream suffix -> default push period in ms (spot, USD-M)
_DEPTH_PERIODS = {
    "": (1000, 250),
    "@100ms": (100, 100),
    "@250ms": (250, 250),
    "@500ms": (500, 500),
    "@1000ms": (1000, 1000),
    "@0ms": (100, 100),
}


class BinanceWs(WsSession):
    """Binance's websocket market streams protocol (``SUBSCRIBE``/``UNSUBSCRIBE`` by id).

    Samples (raw stream, spot)::

        {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.00100000",
         "q": "100.00000000", "T": 1672515782136, "m": true, "M": true}
        {"e": "aggTrade", "E": 1633998523963, "s": "NKNUSDT", "a": 15683430, "p": "0.35280000",
         "q": "58.00000000", "f": 19862790, "l": 19862790, "T": 1633998523963, "m": false, "M": true}
        {"e": "kline", "E": 1633998523963, "s": "NKNUSDT", "k": {"t": 1633998480000,
         "T": 1633998539999, "s": "NKNUSDT", "i": "1m", "f": 19862761, "L": 19862790,
         "o": "0.35270000", "c": "0.35280000", "h": "0.35280000", "l": "0.35220000",
         "v": "25877.00000000", "n": 30, "x": false, "q": "9116.04600000", "V": "58.00000000",
         "Q": "20.46240000", "B": "0"}}
        {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
         "a": "25.36520000", "A": "40.66000000"}
        {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
         "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
        {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
         "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}
        {"e": "forceOrder", "E": 1698871323061, "o": {"s": "BTCUSDT", "S": "BUY", "o": "LIMIT",
         "f": "IOC", "q": "1.437", "p": "35100.81", "ap": "34959.70", "X": "FILLED",
         "l": "1.437", "z": "1.437", "T": 1698871323059}}
    """

    def __init__(
        self,
        dialect: Binance,
        market: SyntheticMarket,
        kind: str,
        path: str,
        query: Mapping[str, str],
        conn_id: int,
    ) -> None:
        super().__init__(market, dialect.name, kind, conn_id)
        self.dialect = dialect
        self.contract = kind == "linear"
        parts = [p for p in path.split("/") if p]
        self.combined = "stream" in parts[:2]
        if self.combined:
            self._initial = [n for n in query.get("streams", "").split("/") if n]
        else:
            self._initial = [parts[-1]] if "@" in parts[-1] else []

    def open(self, now: int) -> list[Any]:
        for name in self._initial:
            feed = self._feed(name, now)
            if feed is not None:
                self.add(feed, now)
        return []

    def receive(self, text: str, now: int) -> list[Any]:
        try:
            req = json.loads(text)
        except ValueError:
            return [{"error": {"code": 3, "msg": "Invalid JSON: expected value"}, "id": None}]
        if not isinstance(req, dict):
            return [{"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None}]
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params") or []
        if method == "SUBSCRIBE":
            feeds: list[WsFeed] = []
            for name in params:
                feed = self._feed(str(name), now)
                if feed is None:
                    msg = f"Invalid request: unknown stream '{name}'"
                    return [{"error": {"code": 2, "msg": msg}, "id": rid}]
                feeds.append(feed)
            for feed in feeds:
                self.add(feed, now)
            return [{"result": None, "id": rid}]
        if method == "UNSUBSCRIBE":
            for name in params:
                self.remove(str(name), now)
            return [{"result": None, "id": rid}]
        if method == "LIST_SUBSCRIPTIONS":
            return [{"result": list(self.feeds), "id": rid}]
        if method == "SET_PROPERTY":
            return [{"result": None, "id": rid}]
        if method == "GET_PROPERTY":
            return [{"result": self.combined, "id": rid}]
        return [{"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": rid}]

    # -- streams

    def _wrap(self, name: str, payload: Any) -> Any:
        return {"stream": name, "data": payload} if self.combined else payload

    def _spec_of(self, market_id: str) -> MarketSpec | None:
        return find_market(
            self.market,
            self.venue,
            lambda s: s.is_contract == self.contract and _market_id(s).lower() == market_id,
        )

    def _feed(self, name: str, now: int) -> WsFeed | None:
        """A feed for a stream name, None when the name is not a stream Binance knows."""
        if name == "!forceOrder@arr":
            if not self.contract:
                return None
            # every perpetual the venue lists, one poll each
            specs = [self.market.spec(self.venue, s) for s in self.market.symbols(self.venue)]
            polls = [self._force_orders(s, now) for s in specs if s.is_contract]
            return CallbackFeed(
                name, lambda t: [self._wrap(name, m) for poll in polls for m in poll(t)]
            )
        market_id, _, rest = name.partition("@")
        builder: Callable[[MarketSpec, int], Callable[[int], list[Any]]] | None = None
        if rest == "trade":
            builder = self._trades
        elif rest == "aggTrade":
            builder = self._agg_trades
        elif rest.startswith("kline_"):
            interval = rest[len("kline_") :]
            allowed = FUTURES_INTERVALS if self.contract else SPOT_INTERVALS
            if interval not in allowed:
                return None
            builder = lambda spec, t: self._klines(spec, t, interval)  # noqa: E731
        elif rest == "bookTicker":
            builder = self._book_ticker
        elif rest == "ticker":
            builder = self._ticker
        elif rest == "miniTicker":
            builder = self._mini_ticker
        elif rest.startswith("depth"):
            levels, _, speed = rest[len("depth") :].partition("@")
            suffix = f"@{speed}" if speed else ""
            if levels not in ("", "5", "10", "20") or suffix not in _DEPTH_PERIODS:
                return None
            period = _DEPTH_PERIODS[suffix][1 if self.contract else 0]
            if levels:
                n = int(levels)
                builder = lambda spec, t: self._partial_depth(spec, t, n, period)  # noqa: E731
            else:
                builder = lambda spec, t: self._depth(spec, t, period)  # noqa: E731
        elif rest == "forceOrder" and self.contract:
            builder = self._force_orders
        elif rest in ("markPrice", "markPrice@1s") and self.contract:
            period = 1000 if rest.endswith("@1s") else 3000
            builder = lambda spec, t: self._mark_price(spec, t, period)  # noqa: E731
        if builder is None:
            return None
        spec = self._spec_of(market_id)
        if spec is None:  # Binance accepts streams of unknown symbols and sends nothing
            return CallbackFeed(name, lambda t: [])
        poll = builder(spec, now)
        return CallbackFeed(name, lambda t: [self._wrap(name, m) for m in poll(t)])

    def _px(self, spec: MarketSpec, units: int) -> str:
        return fmt(units, spec.price_decimals, spec.price_decimals if self.contract else 8)

    def _qty(self, spec: MarketSpec, units: int) -> str:
        return fmt(units, spec.amount_decimals, spec.amount_decimals if self.contract else 8)

    def _trades(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        cursor = TradeCursor(self.market, self.venue, spec.symbol, start)
        sid = _market_id(spec)

        def poll(now: int) -> list[Any]:
            raw = cursor.take(now)
            out: list[Any] = []
            for tid, ts, px, qty, buy in raw.rows():
                p, q = self._px(spec, px), self._qty(spec, qty)
                if self.contract:
                    out.append(
                        {
                            "e": "trade",
                            "E": now,
                            "T": ts,
                            "s": sid,
                            "t": tid,
                            "p": p,
                            "q": q,
                            "X": "MARKET",
                            "m": not buy,
                        }
                    )
                else:
                    out.append(
                        {
                            "e": "trade",
                            "E": now,
                            "s": sid,
                            "t": tid,
                            "p": p,
                            "q": q,
                            "T": ts,
                            "m": not buy,
                            "M": True,
                        }
                    )
            return out

        return poll

    def _agg_trades(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        cursor = TradeCursor(self.market, self.venue, spec.symbol, start)
        sid = _market_id(spec)

        def poll(now: int) -> list[Any]:
            out: list[Any] = []
            for row in self.dialect._agg_rows(spec, cursor.take(now)):
                if self.contract:
                    out.append({"e": "aggTrade", "E": now, "a": row["a"], "s": sid, **row})
                else:
                    out.append({"e": "aggTrade", "E": now, "s": sid, **row})
            return out

        return poll

    def _klines(self, spec: MarketSpec, start: int, interval: str) -> Callable[[int], list[Any]]:
        tracker = CandleTracker(
            self.market, self.venue, spec.symbol, Frame.parse(interval), fill_empty=True
        )
        sid = _market_id(spec)
        m = self.market

        def poll(now: int) -> list[Any]:
            out: list[Any] = []
            for raw, closed in tracker.poll(now):
                row = self.dialect._kline_rows(raw, self.contract)[0]
                t, close_time = int(row[0]), int(row[6])
                first = m.raw_trades_forward(
                    self.venue, spec.symbol, start=t, end=close_time + 1, limit=1
                )
                last = m.raw_trades_backward(
                    self.venue, spec.symbol, end=close_time + 1, start=t, limit=1
                )
                k = {
                    "t": t,
                    "T": close_time,
                    "s": sid,
                    "i": interval,
                    "f": int(first.id[0]) if len(first) else -1,
                    "L": int(last.id[0]) if len(last) else -1,
                    "o": row[1],
                    "c": row[4],
                    "h": row[2],
                    "l": row[3],
                    "v": row[5],
                    "n": row[8],
                    "x": closed,
                    "q": row[7],
                    "V": row[9],
                    "Q": row[10],
                    "B": "0",
                }
                out.append({"e": "kline", "E": now, "s": sid, "k": k})
            return out

        return poll

    def _book_ticker(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        sid = _market_id(spec)
        state: list[tuple[int, int, int, int]] = []

        def poll(now: int) -> list[Any]:
            book = book_at(self.market, self.venue, spec.symbol, now)
            (bp, bq), (ap, aq) = book.bids[0], book.asks[0]
            top = (bp, bq, ap, aq)
            if state and state[0] == top:
                return []
            state[:] = [top]
            body = {
                "u": book.update_id,
                "s": sid,
                "b": self._px(spec, bp),
                "B": self._qty(spec, bq),
                "a": self._px(spec, ap),
                "A": self._qty(spec, aq),
            }
            if self.contract:
                return [{"e": "bookTicker", "u": book.update_id, "E": now, "T": now, **body}]
            return [body]

        return poll

    def _ticker(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        every = Every(1000)

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            rest = _ticker_24h(self.market, self.venue, spec, now)
            out: dict[str, Any] = {"e": "24hrTicker", "E": now}
            out.update({k: rest[f] for k, f in _WS_TICKER_FIELDS if f in rest})
            return [out]

        return poll

    def _mini_ticker(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        sid = _market_id(spec)
        every = Every(1000)
        pd_, ad = spec.price_decimals, spec.amount_decimals

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            st = stats_24h(self.market, self.venue, spec.symbol, now)
            return [
                {
                    "e": "24hrMiniTicker",
                    "E": now,
                    "s": sid,
                    "c": self._px(spec, st.last),
                    "o": self._px(spec, st.open),
                    "h": self._px(spec, st.high),
                    "l": self._px(spec, st.low),
                    "v": self._qty(spec, st.volume),
                    "q": fmt(st.quote, pd_ + ad, pd_ + ad if self.contract else 8),
                }
            ]

        return poll

    def _depth(self, spec: MarketSpec, start: int, period: int) -> Callable[[int], list[Any]]:
        sid = _market_id(spec)
        state: list[Book] = []
        last_sent = [0]

        def poll(now: int) -> list[Any]:
            if not state:  # the stream runs from the subscription on, as on Binance
                state.append(book_at(self.market, self.venue, spec.symbol, start))
            book = book_at(self.market, self.venue, spec.symbol, now)
            prev = state[0]
            if book.update_id <= prev.update_id or now - last_sent[0] < period:
                return []
            bids, asks = book_diff(self.market, self.venue, spec.symbol, prev, book)
            if not bids and not asks:
                return []
            state[0] = book
            last_sent[0] = now
            msg: dict[str, Any] = {"e": "depthUpdate", "E": now}
            if self.contract:
                msg["T"] = now
            msg.update({"s": sid, "U": prev.update_id + 1, "u": book.update_id})
            if self.contract:
                msg["pu"] = prev.update_id
            msg["b"] = _levels(spec, bids)
            msg["a"] = _levels(spec, asks)
            return [msg]

        return poll

    def _partial_depth(
        self, spec: MarketSpec, start: int, levels: int, period: int
    ) -> Callable[[int], list[Any]]:
        sid = _market_id(spec)
        every = Every(period)
        prev: list[int] = []

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            book = book_at(self.market, self.venue, spec.symbol, now)
            before = prev[0] if prev else book.update_id - 1
            prev[:] = [book.update_id]
            bids, asks = _levels(spec, book.bids[:levels]), _levels(spec, book.asks[:levels])
            if not self.contract:
                return [{"lastUpdateId": book.update_id, "bids": bids, "asks": asks}]
            return [
                {
                    "e": "depthUpdate",
                    "E": now,
                    "T": now,
                    "s": sid,
                    "U": before + 1,
                    "u": book.update_id,
                    "pu": before,
                    "b": bids,
                    "a": asks,
                }
            ]

        return poll

    def _mark_price(self, spec: MarketSpec, start: int, period: int) -> Callable[[int], list[Any]]:
        sid = _market_id(spec)
        every = Every(period)

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            mark = self.market.mark_price(self.venue, spec.symbol, now)
            rate = self.market.funding_rate(self.venue, spec.symbol, now)
            return [
                {
                    "e": "markPriceUpdate",
                    "E": now,
                    "s": sid,
                    "p": f"{mark:.8f}",
                    "i": f"{mark:.8f}",
                    "P": f"{mark:.8f}",
                    "r": f"{rate:.8f}",
                    "T": self.market.next_funding_time(self.venue, spec.symbol, now),
                }
            ]

        return poll

    def _force_orders(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        """``<symbol>@forceOrder``: the latest liquidation of each second, pushed once the
        second is over (Binance: "only the latest one ... within 1000ms")."""
        sid = _market_id(spec)
        cursor = [start]

        def poll(now: int) -> list[Any]:
            # the seconds over and published by now
            edge = (now - LIQUIDATION_LAG_MS) // 1000 * 1000
            raw = self.market.raw_liquidations(self.venue, spec.symbol, cursor[0], edge)
            cursor[0] = max(cursor[0], edge)
            out: list[Any] = []
            for ts, buy, px, qty in raw.rows():
                # the order's limit price, a little past the fill (average) price
                limit = px + (10 if buy else -10) * spec.tick
                q = self._qty(spec, qty)
                order = {
                    "s": sid,
                    "S": "BUY" if buy else "SELL",
                    "o": "LIMIT",
                    "f": "IOC",
                    "q": q,
                    "p": self._px(spec, max(spec.tick, limit)),
                    "ap": self._px(spec, px),
                    "X": "FILLED",
                    "l": q,
                    "z": q,
                    "T": ts,
                }
                out.append({"e": "forceOrder", "E": now, "o": order})
            return out

        return poll


#: ``<symbol>@ticker`` stream keys -> ``ticker/24hr`` fields, in the stream's order
_WS_TICKER_FIELDS = (
    ("s", "symbol"),
    ("p", "priceChange"),
    ("P", "priceChangePercent"),
    ("w", "weightedAvgPrice"),
    ("x", "prevClosePrice"),
    ("c", "lastPrice"),
    ("Q", "lastQty"),
    ("b", "bidPrice"),
    ("B", "bidQty"),
    ("a", "askPrice"),
    ("A", "askQty"),
    ("o", "openPrice"),
    ("h", "highPrice"),
    ("l", "lowPrice"),
    ("v", "volume"),
    ("q", "quoteVolume"),
    ("O", "openTime"),
    ("C", "closeTime"),
    ("F", "firstId"),
    ("L", "lastId"),
    ("n", "count"),
)
