"""Kraken spot (``/0/public``).

Serves ccxt id ``kraken`` (spot only: Kraken futures is the separate ccxt id
``krakenfutures``, not emulated). ``OHLC`` only reaches the last 720 committed
candles plus the unfinished one, and returns a ``last`` cursor (open time in
seconds of the last committed candle); intervals without trades have no candle
(Kraken does not fill them). ``Trades`` pages forward from a ``since`` cursor
(seconds, or the nanosecond ``last`` of the previous page; exclusive) with up to
1000 trades per page.

Rate limit: public calls are counted per IP and decay by one per second; we
allow a burst of 15 (``{"error":["EGeneral:Too many requests"]}``).
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from mdcollect.testing._faults import Limit
from mdcollect.testing._market import (
    MINUTE,
    Frame,
    MarketSpec,
    RawCandles,
    RawTrades,
    listed_markets,
)
from mdcollect.testing.dialects._base import Ctx, Dialect, Reply, Route, find_market, fmt, parse_int
from mdcollect.testing.dialects._render import cached_rows, page

__all__ = ["Kraken"]

INTERVALS = {
    1: "1m",
    5: "5m",
    15: "15m",
    30: "30m",
    60: "1h",
    240: "4h",
    1440: "1d",
    10080: "1w",
    21600: "15d",
}
OHLC_WINDOW = 720
TRADES_PAGE = 1000
#: sub-millisecond part of every trade's nanosecond timestamp (timestamps are unique per ms).
SUB_MS_NS = 123_456
_ALT = {"BTC": "XBT", "DOGE": "XDG"}
_ASSET_ID = {
    "BTC": "XXBT",
    "ETH": "XETH",
    "LTC": "XLTC",
    "XRP": "XXRP",
    "DOGE": "XXDG",
    "USD": "ZUSD",
    "EUR": "ZEUR",
}


def _ok(result: Any) -> Reply:
    return Reply({"error": [], "result": result})


class Kraken(Dialect):
    """Kraken spot public REST."""

    name: ClassVar[str] = "kraken"
    fill_empty: ClassVar[bool] = False
    spot_only: ClassVar[bool] = True
    limits: ClassVar[Mapping[str, Limit]] = {"public": Limit(15, 15.0)}

    def default_markets(self) -> Sequence[MarketSpec]:
        return [
            MarketSpec("BTC/USDT", 30_000.0, price_decimals=1, amount_decimals=8, mean_amount=0.02),
            MarketSpec("ETH/USDT", 2_000.0, price_decimals=2, amount_decimals=8, mean_amount=0.3),
            *listed_markets(self.name, perp=False),
        ]

    def routes(self) -> Sequence[Route]:
        p = "/0/public"
        return [
            Route("GET", f"{p}/Time", "Time", self.time, 1, "public"),
            Route("GET", f"{p}/SystemStatus", "SystemStatus", self.status, 1, "public"),
            Route("GET", f"{p}/Assets", "Assets", self.assets, 1, "public"),
            Route("GET", f"{p}/AssetPairs", "AssetPairs", self.asset_pairs, 1, "public"),
            Route("GET", f"{p}/OHLC", "OHLC", self.ohlc, 1, "public"),
            Route("GET", f"{p}/Trades", "Trades", self.trades, 1, "public"),
        ]

    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """Kraken errors: HTTP 200 with ``{"error":["EQuery:Unknown asset pair"]}``."""
        if kind == "bad_symbol":
            return Reply({"error": ["EQuery:Unknown asset pair"]})
        if kind in ("rate_limit", "ban"):
            return Reply({"error": ["EGeneral:Too many requests"]})
        if kind == "not_found":
            return Reply({"error": ["EGeneral:Unknown method"]}, 404)
        return Reply({"error": [f"EGeneral:Invalid arguments{':' + message if message else ''}"]})

    # -- helpers

    def _spec(self, ctx: Ctx) -> tuple[str, MarketSpec]:
        pair = ctx.params.get("pair")
        if not pair:
            raise self.fail("bad_request")
        spec = find_market(ctx.market, self.name, lambda s: pair in (_pair_id(s), _wsname(s)))
        if spec is None:
            raise self.fail("bad_symbol")
        return _pair_id(spec), spec

    # -- reference data

    def time(self, ctx: Ctx) -> Reply:
        """``GET /0/public/Time``: ``{"error": [], "result": {"unixtime": 1688669448, "rfc1123": "..."}}``."""
        secs = ctx.now // 1000
        return _ok({"unixtime": secs, "rfc1123": email.utils.formatdate(secs, usegmt=True)})

    def status(self, ctx: Ctx) -> Reply:
        return _ok(
            {"status": "online", "timestamp": email.utils.formatdate(ctx.now // 1000, usegmt=True)}
        )

    def assets(self, ctx: Ctx) -> Reply:
        """``GET /0/public/Assets``.

        Sample::

            {"error": [], "result": {"XXBT": {"aclass": "currency", "altname": "XBT",
             "decimals": 10, "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"}}}
        """
        out: dict[str, Any] = {}
        for symbol in ctx.market.symbols(self.name):
            s = ctx.market.spec(self.name, symbol)
            for code in (s.base, s.quote):
                out[_asset_id(code)] = {
                    "aclass": "currency",
                    "altname": _ALT.get(code, code),
                    "decimals": 10 if code in ("BTC", "ETH") else 8,
                    "display_decimals": 5 if code in ("BTC", "ETH") else 4,
                    "collateral_value": 1.0,
                    "status": "enabled",
                }
        return _ok(out)

    def asset_pairs(self, ctx: Ctx) -> Reply:
        """``GET /0/public/AssetPairs``.

        Sample::

            {"error": [], "result": {"XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT",
             "aclass_base": "currency", "base": "XXBT", "aclass_quote": "currency", "quote": "USDT",
             "lot": "unit", "cost_decimals": 5, "pair_decimals": 1, "lot_decimals": 8,
             "lot_multiplier": 1, "leverage_buy": [2, 3], "leverage_sell": [2, 3],
             "fees": [[0, 0.4]], "fees_maker": [[0, 0.25]], "fee_volume_currency": "ZUSD",
             "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001", "costmin": "0.5",
             "tick_size": "0.1", "status": "online"}}}
        """
        wanted = ctx.params.get("pair")
        out: dict[str, Any] = {}
        for symbol in ctx.market.symbols(self.name):
            s = ctx.market.spec(self.name, symbol)
            pid = _pair_id(s)
            if wanted and wanted not in (pid, _wsname(s)) and pid not in wanted.split(","):
                continue
            out[pid] = {
                "altname": pid,
                "wsname": _wsname(s),
                "aclass_base": "currency",
                "base": _asset_id(s.base),
                "aclass_quote": "currency",
                "quote": _asset_id(s.quote),
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": s.price_decimals,
                "lot_decimals": s.amount_decimals,
                "lot_multiplier": 1,
                "leverage_buy": [2, 3],
                "leverage_sell": [2, 3],
                "fees": [[0, 0.4], [10000, 0.35], [50000, 0.24]],
                "fees_maker": [[0, 0.25], [10000, 0.2], [50000, 0.14]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": "0.0001",
                "costmin": "0.5",
                "tick_size": fmt(s.tick, s.price_decimals),
                "status": "online",
            }
        if wanted and not out:
            raise self.fail("bad_symbol")
        return _ok(out)

    # -- market data

    def ohlc(self, ctx: Ctx) -> Reply:
        """``GET /0/public/OHLC``: the last 720 committed candles plus the unfinished one.

        Sample::

            {"error": [], "result": {"XBTUSDT": [[1706626800, "43437.5", "43593.7", "43355.5",
              "43361.1", "43511.3", "18.75430110", 162]], "last": 1706796000}}

        Row: time (s), open, high, low, close, vwap, volume, count. ``since`` (s) keeps
        candles opening after it; the unfinished candle is always included.
        """
        pid, spec = self._spec(ctx)
        interval = parse_int(ctx.params, "interval", self) or 1
        if interval not in INTERVALS:
            raise self.fail("bad_request", "interval")
        frame = Frame.parse(INTERVALS[interval]) if interval != 21600 else Frame(ms=21600 * MINUTE)
        since = parse_int(ctx.params, "since", self)
        now = ctx.now
        current = frame.floor(now)
        oldest = current - OHLC_WINDOW * interval * MINUTE
        raw = ctx.market.raw_candles(
            self.name, spec.symbol, frame, oldest, now + 1, fill_empty=False
        )
        starts = raw.agg.start.tolist()
        committed = [t for t in starts if t < current]
        last = (committed[-1] if committed else oldest) // 1000
        if since is not None:
            keep = [i for i, t in enumerate(starts) if t // 1000 > since or t == current]
            raw = raw.take(np.asarray(keep, dtype=np.int64))
        rows = cached_rows("kraken", ctx.market.seed, raw, self._ohlc_rows)
        reply = _ok({pid: ctx.mangle(rows, lambda: None), "last": last})
        reply.body = page(reply.body)
        return reply

    def _ohlc_rows(self, raw: RawCandles) -> list[list[Any]]:
        a = raw.agg
        pd_, ad = raw.spec.price_decimals, raw.spec.amount_decimals
        rows: list[list[Any]] = []
        for i in range(len(a)):
            t = int(a.start[i])
            vol = int(a.volume[i])
            vwap = (int(a.quote[i]) / vol / 10**pd_) if vol else 0.0
            rows.append(
                [
                    t // 1000,
                    fmt(int(a.open[i]), pd_),
                    fmt(int(a.high[i]), pd_),
                    fmt(int(a.low[i]), pd_),
                    fmt(int(a.close[i]), pd_),
                    f"{vwap:.{pd_}f}",
                    fmt(vol, ad),
                    int(a.count[i]),
                ]
            )
        return rows

    def trades(self, ctx: Ctx) -> Reply:
        """``GET /0/public/Trades``: oldest first, ``last`` is the ns cursor of the last trade.

        Sample::

            {"error": [], "result": {"XBTUSDT": [["73324.40000", "0.01030900", 1710327959.1733468,
              "b", "m", "", 6324366]], "last": "1710327959173746878"}}
        """
        pid, spec = self._spec(ctx)
        count = parse_int(ctx.params, "count", self)
        limit = TRADES_PAGE if count is None else max(1, min(count, TRADES_PAGE))
        since_raw = ctx.params.get("since")
        m = ctx.market
        if since_raw in (None, ""):
            raw = m.raw_trades_backward(self.name, spec.symbol, limit=limit)
            last = str(_ns(raw)[-1]) if len(raw) else "0"
        else:
            since = parse_int(ctx.params, "since", self)
            assert since is not None
            if since < 10**12:  # seconds
                start_ms = since * 1000
            else:  # nanoseconds, exclusive
                start_ms = since // 1_000_000 + (1 if since % 1_000_000 >= SUB_MS_NS else 0)
            raw = m.raw_trades_forward(self.name, spec.symbol, start=start_ms, limit=limit)
            last = str(_ns(raw)[-1]) if len(raw) else str(since)
        rows = ctx.mangle_trades(
            self._rows(spec, raw), raw, spec.symbol, lambda r: self._rows(spec, r)
        )
        return _ok({pid: rows, "last": last})

    def _rows(self, spec: MarketSpec, raw: RawTrades) -> list[list[Any]]:
        pd_, ad = spec.price_decimals, spec.amount_decimals
        ns = _ns(raw)
        return [
            [
                fmt(int(raw.price[i]), pd_, 5),
                fmt(int(raw.amount[i]), ad, 8),
                float(ns[i]) / 1e9,
                "b" if raw.buy[i] else "s",
                "m",
                "",
                int(raw.id[i]),
            ]
            for i in range(len(raw))
        ]


def _ns(raw: RawTrades) -> np.ndarray[Any, np.dtype[np.int64]]:
    out: np.ndarray[Any, np.dtype[np.int64]] = raw.ts * 1_000_000 + SUB_MS_NS
    return out


def _asset_id(code: str) -> str:
    return _ASSET_ID.get(code, code)


def _pair_id(spec: MarketSpec) -> str:
    return f"{_ALT.get(spec.base, spec.base)}{_ALT.get(spec.quote, spec.quote)}"


def _wsname(spec: MarketSpec) -> str:
    return f"{_ALT.get(spec.base, spec.base)}/{_ALT.get(spec.quote, spec.quote)}"
