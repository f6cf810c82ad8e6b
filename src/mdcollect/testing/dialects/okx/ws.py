"""OKX v5 websockets: ``/ws/v5/public`` (trades, tickers, books, books5, bbo-tbt,
funding-rate, mark-price, liquidation-orders) and ``/ws/v5/business`` (candles)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mdcollect.testing._book import Book, book_at, book_diff
from mdcollect.testing._live import (
    LIQUIDATION_LAG_MS,
    CandleTracker,
    Every,
    TradeCursor,
    stats_24h,
)
from mdcollect.testing._market import HOUR, Frame, MarketSpec, SyntheticMarket
from mdcollect.testing.dialects._base import CallbackFeed, WsFeed, WsSession, find_market, fmt_plain

from ._common import BARS, CT_VAL_EXP, _funding_row, _inst_id

if TYPE_CHECKING:
    from .rest import Okx

__all__ = ["OkxWs"]


_PUBLIC = ("trades", "tickers", "books", "books5", "bbo-tbt", "funding-rate", "mark-price")


_FUNDING_PUSH_MS = 10_000


class OkxWs(WsSession):
    """OKX v5 public websocket protocol: ``{"op":"subscribe","args":[...]}``, text ping/pong.

    Samples::

        {"event": "subscribe", "arg": {"channel": "trades", "instId": "BTC-USDT"},
         "connId": "a4d3ae55"}
        {"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [{"instId": "BTC-USDT",
         "tradeId": "338476308", "px": "30243.5", "sz": "0.001", "side": "buy",
         "ts": "1652459226050"}]}
        {"arg": {"channel": "candle1m", "instId": "BTC-USDT"}, "data": [["1629993600000",
         "42500", "48199.9", "41006.1", "41006.1", "3587.41204591", "166741046.22583129",
         "166741046.22583129", "0"]]}
        {"arg": {"channel": "books5", "instId": "BTC-USDT"}, "data": [{"asks": [["31738.3",
         "0.05973179", "0", "3"]], "bids": [...], "instId": "BTC-USDT", "ts": "1670324386802",
         "seqId": 363996337}]}
        {"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": [{"details":
         [{"bkLoss": "0", "bkPx": "0.007831", "ccy": "", "posSide": "short", "side": "buy",
         "sz": "13", "ts": "1692266434010"}], "instFamily": "IOST-USDT", "instId":
         "IOST-USDT-SWAP", "instType": "SWAP", "uly": "IOST-USDT"}]}
    """

    def __init__(self, dialect: Okx, market: SyntheticMarket, endpoint: str, conn_id: int) -> None:
        super().__init__(market, dialect.name, endpoint, conn_id)
        self.dialect = dialect
        self.conn_tag = f"{zlib.crc32(str(conn_id).encode()):08x}"

    def receive(self, text: str, now: int) -> list[Any]:
        if text == "ping":
            return ["pong"]
        try:
            req = json.loads(text)
        except ValueError:
            return [self._error("60012", f"Illegal request: {text}")]
        if not isinstance(req, dict) or req.get("op") not in ("subscribe", "unsubscribe"):
            return [self._error("60012", f"Illegal request: {text}")]
        op = req["op"]
        args = req.get("args")
        if not isinstance(args, list) or not args:
            return [self._error("60012", f"Illegal request: {text}")]
        out: list[Any] = []
        for arg in args:
            if not isinstance(arg, dict):
                out.append(self._error("60012", f"Illegal request: {text}"))
                continue
            channel = str(arg.get("channel", ""))
            # instrument channels name an instId; liquidation-orders an instType
            inst = str(arg.get("instId") or arg.get("instType") or "")
            name = f"{channel}:{inst}"
            if op == "unsubscribe":
                self.remove(name, now)
                out.append({"event": "unsubscribe", "arg": arg, "connId": self.conn_tag})
                continue
            feed = self._feed(channel, inst, now)
            if feed is None:
                msg = f"Wrong URL or channel:{channel},instId:{inst} doesn't exist."
                out.append(self._error("60018", msg))
                continue
            self.add(feed, now)
            out.append({"event": "subscribe", "arg": arg, "connId": self.conn_tag})
        return out

    def _error(self, code: str, msg: str) -> dict[str, str]:
        return {"event": "error", "code": code, "msg": msg, "connId": self.conn_tag}

    def _spec_of(self, inst: str) -> MarketSpec | None:
        return find_market(self.market, self.venue, lambda s: _inst_id(s) == inst)

    def _feed(self, channel: str, inst: str, now: int) -> WsFeed | None:
        if channel == "liquidation-orders":
            return self._liquidations(inst, now) if self.kind == "public" else None
        spec = self._spec_of(inst)
        if spec is None:
            return None
        builder: Callable[[MarketSpec, int], Callable[[int], list[Any]]] | None = None
        if self.kind == "business" and channel.startswith("candle"):
            bar = channel[len("candle") :]
            if bar not in BARS:
                return None
            builder = lambda s, t: self._candles(s, t, bar)  # noqa: E731
        elif self.kind == "public" and channel in _PUBLIC:
            if channel in ("funding-rate", "mark-price") and not spec.is_contract:
                return None
            builder = {
                "trades": self._trades,
                "tickers": self._tickers,
                "books": self._books,
                "books5": lambda s, t: self._top(s, t, 5),
                "bbo-tbt": lambda s, t: self._top(s, t, 1),
                "funding-rate": self._funding,
                "mark-price": self._mark_price,
            }[channel]
        if builder is None:
            return None
        arg = {"channel": channel, "instId": inst}
        poll = builder(spec, now)

        def wrapped(t: int) -> list[Any]:
            return [{"arg": arg, **m} for m in poll(t)]

        return CallbackFeed(f"{channel}:{inst}", wrapped)

    def _trades(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        cursor = TradeCursor(self.market, self.venue, spec.symbol, start)
        k = CT_VAL_EXP.get(spec.base, 0) if spec.is_contract else 0
        inst = _inst_id(spec)

        def poll(now: int) -> list[Any]:
            raw = cursor.take(now)
            return [
                {
                    "data": [
                        {
                            "instId": inst,
                            "tradeId": str(tid),
                            "px": fmt_plain(px, spec.price_decimals),
                            "sz": fmt_plain(qty, spec.amount_decimals - k),
                            "side": "buy" if buy else "sell",
                            "ts": str(ts),
                        }
                    ]
                }
                for tid, ts, px, qty, buy in raw.rows()
            ]

        return poll

    def _candles(self, spec: MarketSpec, start: int, bar: str) -> Callable[[int], list[Any]]:
        tf, offset = BARS[bar]
        tracker = CandleTracker(
            self.market, self.venue, spec.symbol, Frame.parse(tf, offset), fill_empty=True
        )

        def poll(now: int) -> list[Any]:
            out: list[Any] = []
            for raw, closed in tracker.poll(now):
                row = self.dialect._rows(raw)[0]
                row[-1] = "1" if closed else "0"
                out.append({"data": [row]})
            return out

        return poll

    def _tickers(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        every = Every(1000)
        inst = _inst_id(spec)
        k = CT_VAL_EXP.get(spec.base, 0) if spec.is_contract else 0
        pd_, ad = spec.price_decimals, spec.amount_decimals

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            m = self.market
            st = stats_24h(m, self.venue, spec.symbol, now)
            book = book_at(m, self.venue, spec.symbol, now)
            day = Frame.parse("1d")
            sod0 = m.raw_candles(self.venue, spec.symbol, day, day.floor(now), now + 1)
            hk = Frame.parse("1d", -8 * HOUR)
            sod8 = m.raw_candles(self.venue, spec.symbol, hk, hk.floor(now), now + 1)
            vol_ccy = (
                fmt_plain(st.volume, ad) if spec.is_contract else fmt_plain(st.quote, pd_ + ad)
            )
            data = {
                "instType": "SWAP" if spec.is_contract else "SPOT",
                "instId": inst,
                "last": fmt_plain(st.last, pd_),
                "lastSz": fmt_plain(st.last_amount, ad - k),
                "askPx": fmt_plain(book.asks[0][0], pd_),
                "askSz": fmt_plain(book.asks[0][1], ad - k),
                "bidPx": fmt_plain(book.bids[0][0], pd_),
                "bidSz": fmt_plain(book.bids[0][1], ad - k),
                "open24h": fmt_plain(st.open, pd_),
                "high24h": fmt_plain(st.high, pd_),
                "low24h": fmt_plain(st.low, pd_),
                "sodUtc0": fmt_plain(int(sod0.agg.open[0]) if len(sod0) else st.last, pd_),
                "sodUtc8": fmt_plain(int(sod8.agg.open[0]) if len(sod8) else st.last, pd_),
                "volCcy24h": vol_ccy,
                "vol24h": fmt_plain(st.volume, ad - k),
                "ts": str(now),
            }
            return [{"data": [data]}]

        return poll

    def _levels(self, spec: MarketSpec, levels: Sequence[tuple[int, int]]) -> list[list[str]]:
        k = CT_VAL_EXP.get(spec.base, 0) if spec.is_contract else 0
        return [
            [
                fmt_plain(p, spec.price_decimals),
                fmt_plain(q, spec.amount_decimals - k),
                "0",
                "0" if q == 0 else str(1 + p % 7),
            ]
            for p, q in levels
        ]

    def _top(self, spec: MarketSpec, start: int, depth: int) -> Callable[[int], list[Any]]:
        inst = _inst_id(spec)
        last: list[int] = []

        def poll(now: int) -> list[Any]:
            book = book_at(self.market, self.venue, spec.symbol, now)
            if last and last[0] == book.update_id:
                return []
            last[:] = [book.update_id]
            data = {
                "asks": self._levels(spec, book.asks[:depth]),
                "bids": self._levels(spec, book.bids[:depth]),
                "instId": inst,
                "ts": str(now),
                "seqId": book.update_id,
            }
            return [{"data": [data]}]

        return poll

    def _books(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        state: list[Book] = []

        def poll(now: int) -> list[Any]:
            book = book_at(self.market, self.venue, spec.symbol, now)
            if not state:
                state.append(book)
                data = {
                    "asks": self._levels(spec, book.asks),
                    "bids": self._levels(spec, book.bids),
                    "ts": str(now),
                    "checksum": _checksum(
                        self._levels(spec, book.bids), self._levels(spec, book.asks)
                    ),
                    "prevSeqId": -1,
                    "seqId": book.update_id,
                }
                return [{"action": "snapshot", "data": [data]}]
            prev = state[0]
            if book.update_id <= prev.update_id:
                return []
            bids, asks = book_diff(self.market, self.venue, spec.symbol, prev, book)
            state[0] = book
            data = {
                "asks": self._levels(spec, asks),
                "bids": self._levels(spec, bids),
                "ts": str(now),
                "checksum": _checksum(self._levels(spec, book.bids), self._levels(spec, book.asks)),
                "prevSeqId": prev.update_id,
                "seqId": book.update_id,
            }
            return [{"action": "update", "data": [data]}]

        return poll

    def _funding(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        every = Every(_FUNDING_PUSH_MS)

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            return [{"data": [_funding_row(self.market, self.venue, spec, now)]}]

        return poll

    def _mark_price(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        every = Every(1000)
        inst = _inst_id(spec)

        def poll(now: int) -> list[Any]:
            if not every.due(now):
                return []
            mark = self.market.mark_price(self.venue, spec.symbol, now)
            px = f"{mark:.{spec.price_decimals}f}"
            return [{"data": [{"instType": "SWAP", "instId": inst, "markPx": px, "ts": str(now)}]}]

        return poll

    def _liquidations(self, inst_type: str, start: int) -> WsFeed | None:
        """``liquidation-orders`` of every perpetual (``instType`` SWAP): at most one order
        per instrument and second, pushed once the second is over, as OKX does."""
        if inst_type != "SWAP":
            return None
        specs = [self.market.spec(self.venue, s) for s in self.market.symbols(self.venue)]
        specs = [s for s in specs if s.is_contract]
        cursor = [start]
        arg = {"channel": "liquidation-orders", "instType": "SWAP"}

        def poll(now: int) -> list[Any]:
            # the seconds over and published by now
            edge = (now - LIQUIDATION_LAG_MS) // 1000 * 1000
            data: list[Any] = []
            for spec in specs:
                raw = self.market.raw_liquidations(self.venue, spec.symbol, cursor[0], edge)
                k = CT_VAL_EXP.get(spec.base, 0)
                inst = _inst_id(spec)
                family = inst.removesuffix("-SWAP")
                for ts, buy, px, qty in raw.rows():
                    detail = {
                        "bkLoss": "0",
                        "bkPx": fmt_plain(px, spec.price_decimals),
                        "ccy": "",
                        "posSide": "short" if buy else "long",
                        "side": "buy" if buy else "sell",
                        "sz": fmt_plain(qty, spec.amount_decimals - k),
                        "ts": str(ts),
                    }
                    data.append(
                        {
                            "details": [detail],
                            "instFamily": family,
                            "instId": inst,
                            "instType": "SWAP",
                            "uly": family,
                        }
                    )
            cursor[0] = max(cursor[0], edge)
            # one message per order, in time order across instruments
            data.sort(key=lambda d: int(d["details"][0]["ts"]))
            return [{"arg": arg, "data": [d]} for d in data]

        return CallbackFeed("liquidation-orders:SWAP", poll)


def _checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """OKX's book checksum: signed CRC32 of ``bid:size:ask:size:...`` over 25 levels."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
