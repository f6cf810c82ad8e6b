"""Bybit v5 (``/v5``): spot and linear (USDT) perpetuals.

Serves ccxt id ``bybit`` (project alias ``bybit_futures``). ``market/kline`` is
newest first, limit default 200 max 1000; with ``start`` it returns the first
``limit`` candles from ``start`` (up to ``end``), otherwise the last ``limit`` up to
``end`` or now. ``market/recent-trade`` only has recent trades (spot max 60,
linear max 1000), as on Bybit, which has no public trade history endpoint.
``market/mark-price-kline``, ``market/index-price-kline`` and
``market/premium-index-price-kline`` (linear only) page as ``market/kline`` and
write ``[startTime, open, high, low, close]``.

Rate limit: 600 requests per 5 s per IP over all endpoints; exceeding answers
HTTP 403 ``access too frequent`` as Bybit documents
(https://bybit-exchange.github.io/docs/v5/rate-limit), which ccxt maps to
RateLimitExceeded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from mdcollect.testing._faults import Limit
from mdcollect.testing._market import (
    FUNDING_8H_TO_4H,
    Frame,
    MarketSpec,
    PriceKind,
    RawCandles,
    RawTrades,
    SyntheticMarket,
    derive,
    listed_markets,
)
from mdcollect.testing.dialects._base import (
    Ctx,
    Dialect,
    Reply,
    Route,
    WsSession,
    find_market,
    fmt,
    fmt_plain_col,
    parse_int,
    plain_candle_rows,
)
from mdcollect.testing.dialects._render import cached_rows, page

from ._common import _market_id
from .ws import BybitWs

__all__ = ["Bybit"]

#: Candles of other prices: the endpoint's name and the price.
PRICE_KLINES: dict[str, PriceKind] = {
    "mark-price-kline": "mark",
    "index-price-kline": "index",
    "premium-index-price-kline": "premium",
}

INTERVALS: dict[str, str] = {
    "1": "1m",
    "3": "3m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "120": "2h",
    "240": "4h",
    "360": "6h",
    "720": "12h",
    "D": "1d",
    "W": "1w",
    "M": "1M",
}


class Bybit(Dialect):
    """Bybit v5 public REST."""

    name: ClassVar[str] = "bybit"
    aliases: ClassVar[tuple[str, ...]] = ("bybit_futures",)
    fill_empty: ClassVar[bool] = True
    limits: ClassVar[Mapping[str, Limit]] = {"ip": Limit(600, 5.0)}

    def default_markets(self) -> Sequence[MarketSpec]:
        return [
            MarketSpec("BTC/USDT", 30_000.0, price_decimals=2, amount_decimals=6, mean_amount=0.02),
            MarketSpec("ETH/USDT", 2_000.0, price_decimals=2, amount_decimals=5, mean_amount=0.3),
            MarketSpec(
                "BTC/USDT:USDT",
                30_000.0,
                price_decimals=2,
                tick=10,
                amount_decimals=3,
                mean_amount=0.05,
            ),
            MarketSpec(
                "ETH/USDT:USDT",
                2_000.0,
                price_decimals=2,
                amount_decimals=2,
                mean_amount=0.5,
                funding_intervals=FUNDING_8H_TO_4H,
            ),
            *listed_markets(self.name),
        ]

    def routes(self) -> Sequence[Route]:
        return [
            Route("GET", "/v5/market/time", "market/time", self.time, 1, "ip"),
            Route(
                "GET",
                "/v5/market/instruments-info",
                "market/instruments-info",
                self.instruments,
                1,
                "ip",
            ),
            Route("GET", "/v5/market/kline", "market/kline", self.kline, 1, "ip"),
            *(
                Route(
                    "GET",
                    f"/v5/market/{name}",
                    f"market/{name}",
                    functools.partial(self.price_kline, kind=kind),
                    1,
                    "ip",
                )
                for name, kind in PRICE_KLINES.items()
            ),
            Route(
                "GET", "/v5/market/recent-trade", "market/recent-trade", self.recent_trade, 1, "ip"
            ),
            Route("GET", "/v5/market/tickers", "market/tickers", self.tickers, 1, "ip"),
            Route(
                "GET",
                "/v5/market/funding/history",
                "market/funding/history",
                self.funding_history,
                1,
                "ip",
            ),
            Route(
                "GET",
                "/v5/market/open-interest",
                "market/open-interest",
                self.open_interest,
                1,
                "ip",
            ),
        ]

    def used_weight_headers(
        self, bucket: str, used: int, limit: Limit, now_ms: int
    ) -> dict[str, str]:
        """Bybit's ``X-Bapi-Limit`` (requests allowed in the window),
        ``X-Bapi-Limit-Status`` (remaining) and ``X-Bapi-Limit-Reset-Timestamp`` (ms;
        "the current timestamp" unless the limit was exceeded, then when it resets)."""
        remaining = max(0, limit.capacity - used)
        reset = now_ms if used <= limit.capacity else now_ms + int(limit.window * 1000)
        return {
            "X-Bapi-Limit": str(limit.capacity),
            "X-Bapi-Limit-Status": str(remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(reset),
        }

    #: Websocket hosts: public streams by category in the path (``/v5/public/linear``).
    ws_hosts: ClassVar[Mapping[str, str]] = {"stream.bybit.com": "public"}

    def ws_session(
        self, market: SyntheticMarket, kind: str, path: str, query: Mapping[str, str], conn_id: int
    ) -> WsSession | None:
        """``/v5/public/spot`` and ``/v5/public/linear`` (``allLiquidation``)."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["v5", "public"] or len(parts) != 3 or parts[2] not in ("spot", "linear"):
            return None
        return BybitWs(market, self.name, parts[2], conn_id)

    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """Bybit errors: HTTP 200 with ``{"retCode":10001,"retMsg":"Not supported symbols",...}``."""
        if kind in ("rate_limit", "ban"):
            return Reply("access too frequent", 403)
        if kind == "bad_symbol":
            return _ret(10001, "Not supported symbols")
        if kind == "not_found":
            return Reply({"retCode": 404, "retMsg": "Not Found"}, 404)
        return _ret(10001, f"params error: {message}" if message else "params error")

    # -- helpers

    def _category(self, ctx: Ctx) -> str:
        category = ctx.params.get("category")
        if category not in ("spot", "linear", "inverse", "option"):
            raise self.fail("bad_request", "Illegal category")
        return category

    def _spec(self, ctx: Ctx) -> tuple[str, MarketSpec]:
        category = self._category(ctx)
        market_id = ctx.params.get("symbol")
        if not market_id:
            raise self.fail("bad_request", "symbol is empty")
        spec = find_market(
            ctx.market,
            self.name,
            lambda s: (
                _market_id(s) == market_id
                and (category == "linear") == s.is_contract
                and category in ("spot", "linear")
            ),
        )
        if spec is None:
            raise self.fail("bad_symbol")
        return category, spec

    # -- endpoints

    def time(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/time``.

        Sample::

            {"retCode": 0, "retMsg": "OK", "result": {"timeSecond": "1688639403",
             "timeNano": "1688639403423213947"}, "retExtInfo": {}, "time": 1688639403423}
        """
        now = ctx.now
        return _ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}, now)

    def instruments(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/instruments-info?category=linear``.

        Sample (linear, abridged)::

            {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "nextPageCursor": "",
             "list": [{"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
             "baseCoin": "BTC", "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1584230400000",
             "priceFilter": {"tickSize": "0.10", ...}, "lotSizeFilter": {"qtyStep": "0.001", ...}}]}}
        """
        category = self._category(ctx)
        out: list[dict[str, Any]] = []
        wanted = ctx.params.get("symbol")
        if ctx.params.get("status") in (None, "", "Trading") and category in ("spot", "linear"):
            for symbol in ctx.market.symbols(self.name):
                s = ctx.market.spec(self.name, symbol)
                if (category == "linear") != s.is_contract or (wanted and wanted != _market_id(s)):
                    continue
                out.append(self._linear(s) if s.is_contract else self._spot(s))
        return _ok({"category": category, "list": out, "nextPageCursor": ""}, ctx.now)

    def _spot(self, s: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": _market_id(s),
            "baseCoin": s.base,
            "quoteCoin": s.quote,
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": fmt(1, s.amount_decimals),
                "quotePrecision": "0.00000001",
                "minOrderQty": fmt(1, s.amount_decimals),
                "maxOrderQty": "71.73956243",
                "minOrderAmt": "5",
                "maxOrderAmt": "8000000",
            },
            "priceFilter": {"tickSize": fmt(s.tick, s.price_decimals)},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        }

    def _linear(self, s: MarketSpec) -> dict[str, Any]:
        step = fmt(1, s.amount_decimals)
        return {
            "symbol": _market_id(s),
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": s.base,
            "quoteCoin": s.quote,
            "launchTime": str(s.listed),
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(s.price_decimals),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {
                "minPrice": fmt(s.tick, s.price_decimals),
                "maxPrice": "1999999.80",
                "tickSize": fmt(s.tick, s.price_decimals),
            },
            "lotSizeFilter": {
                "maxOrderQty": "1190.000",
                "minOrderQty": step,
                "qtyStep": step,
                "postOnlyMaxOrderQty": "1190.000",
                "maxMktOrderQty": "500.000",
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "settleCoin": s.settle,
            "copyTrading": "both",
            "upperFundingRate": "0.00375",
            "lowerFundingRate": "-0.00375",
            "isPreListing": False,
            "preListingInfo": None,
        }

    def kline(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/kline``: newest first.

        Sample::

            {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSDT", "category": "linear",
             "list": [["1706637600000", "43376.1", "43474.1", "43264.8", "43352.8", "1575.305",
                       "68345898.1407"]]}, "retExtInfo": {}, "time": 1706803708087}
        """
        category, spec = self._spec(ctx)
        seed = ctx.market.seed

        def render(r: RawCandles) -> list[Any]:
            return cached_rows("bybit", seed, r, self._rows)

        return self._kline(ctx, category, spec, render)

    def price_kline(self, ctx: Ctx, kind: PriceKind) -> Reply:
        """``GET /v5/market/mark-price-kline``, ``index-price-kline``,
        ``premium-index-price-kline``: as ``kline`` for linear contracts, derived from
        the last-price candles (:mod:`mdcollect.testing._market.prices`).

        Sample::

            {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSDT", "category": "linear",
             "list": [["1670608800000", "17164.16", "17164.16", "17121.5", "17131.64"]]},
             "retExtInfo": {}, "time": 1672026361839}
        """
        category, spec = self._spec(ctx)
        if category == "spot":
            raise self.fail("bad_request", "Illegal category")
        return self._kline(ctx, category, spec, lambda raw: plain_candle_rows(derive(raw, kind)))

    def _kline(
        self,
        ctx: Ctx,
        category: str,
        spec: MarketSpec,
        render: Callable[[RawCandles], list[Any]],
    ) -> Reply:
        interval = ctx.params.get("interval", "")
        if interval not in INTERVALS:
            raise self.fail("bad_request", "Invalid period!")
        frame = Frame.parse(INTERVALS[interval])
        limit = self.limit_param(ctx, 200, 1000)
        start = parse_int(ctx.params, "start", self)
        end = parse_int(ctx.params, "end", self)
        m = ctx.market
        if start is not None:
            raw = m.raw_candles_forward(self.name, spec.symbol, frame, start, limit, end=end)
        else:
            raw = m.raw_candles_backward(
                self.name, spec.symbol, frame, ctx.now if end is None else end, limit
            )
        rows = ctx.mangle_candles(render(raw), raw, render)[::-1]
        reply = _ok({"symbol": _market_id(spec), "category": category, "list": rows}, ctx.now)
        reply.body = page(reply.body)
        return reply

    def _rows(self, raw: RawCandles) -> list[list[str]]:
        s = raw.spec
        a = raw.agg
        pd_, ad = s.price_decimals, s.amount_decimals
        return plain_candle_rows(raw, fmt_plain_col(a.volume, ad), fmt_plain_col(a.quote, pd_ + ad))

    def _trade_rows(self, spec: MarketSpec, raw: RawTrades) -> list[dict[str, Any]]:
        return [
            {
                "execId": _exec_id(spec, int(raw.id[i])),
                "symbol": _market_id(spec),
                "price": fmt(int(raw.price[i]), spec.price_decimals),
                "size": fmt(int(raw.amount[i]), spec.amount_decimals),
                "side": "Buy" if raw.buy[i] else "Sell",
                "time": str(int(raw.ts[i])),
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": str(int(raw.id[i])),
            }
            for i in range(len(raw))
        ]

    def recent_trade(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/recent-trade``: newest first.

        Sample::

            {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
              {"execId": "9afd1288-b444-53f8-8e40-c2f99368ad22", "symbol": "BTCUSDT",
               "price": "51444.40", "size": "0.972", "side": "Buy", "time": "1707905515968",
               "isBlockTrade": false}]}, "retExtInfo": {}, "time": 1707905516443}
        """
        category, spec = self._spec(ctx)
        maximum, default = (60, 60) if category == "spot" else (1000, 500)
        limit = self.limit_param(ctx, default, maximum)
        raw = ctx.market.raw_trades_backward(self.name, spec.symbol, limit=limit)
        return _ok({"category": category, "list": self._trade_rows(spec, raw)[::-1]}, ctx.now)

    def tickers(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/tickers`` (last price from trades, funding for linear)."""
        category = self._category(ctx)
        wanted = ctx.params.get("symbol")
        out = []
        now = ctx.now
        for symbol in ctx.market.symbols(self.name):
            s = ctx.market.spec(self.name, symbol)
            if (category == "linear") != s.is_contract or (wanted and wanted != _market_id(s)):
                continue
            last = ctx.market.raw_trades_backward(self.name, symbol, limit=1)
            price = fmt(int(last.price[0]), s.price_decimals) if len(last) else ""
            item: dict[str, Any] = {
                "symbol": _market_id(s),
                "lastPrice": price,
                "bid1Price": price,
                "ask1Price": price,
                "bid1Size": "1",
                "ask1Size": "1",
            }
            if s.is_contract:
                mark = ctx.market.mark_price(self.name, symbol, now)
                item.update(
                    fundingRate=f"{ctx.market.funding_rate(self.name, symbol, now):.8f}",
                    nextFundingTime=str(ctx.market.next_funding_time(self.name, symbol, now)),
                    markPrice=f"{mark:.{s.price_decimals}f}",
                    indexPrice=f"{mark:.{s.price_decimals}f}",
                )
            out.append(item)
        if wanted and not out:
            raise self.fail("bad_symbol")
        return _ok({"category": category, "list": out}, now)

    def open_interest(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/open-interest``: open interest per ``intervalTime`` (5min to 1d),
        newest first from ``endTime`` (default now; a ``startTime`` alone is ignored, as
        Bybit does), ``limit`` default 50, max 200; ``nextPageCursor`` pages further back
        (down to ``startTime`` when given), empty when there is nothing more.

        Sample::

            {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSDT", "category":
             "linear", "list": [{"openInterest": "461134384.00000000", "timestamp":
             "1669571400000"}], "nextPageCursor": ""}, "retExtInfo": {}, "time": 1672053548579}
        """
        category, spec = self._spec(ctx)
        if category != "linear":
            raise self.fail("bad_request", "category only support linear or inverse")
        interval = ctx.params.get("intervalTime")
        if interval not in OPEN_INTEREST_INTERVALS:
            raise self.fail("bad_request", "intervalTime")
        limit = self.limit_param(ctx, 50, 200)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        if end is None:
            start = None
        hi = ctx.now if end is None else end + 1
        cursor = ctx.params.get("cursor")
        if cursor:
            try:
                hi = min(hi, int(cursor.removeprefix("oi")))
            except ValueError:
                raise self.fail("bad_request", "cursor") from None
        rows = ctx.market.open_interest(
            self.name, spec.symbol, OPEN_INTEREST_INTERVALS[interval],
            spec.listed if start is None else start, hi,
        )  # fmt: skip
        more = len(rows) > limit
        rows = ctx.mangle(rows[-limit:], lambda: None)[::-1]
        result = {
            "symbol": _market_id(spec),
            "category": category,
            "list": [{"openInterest": f"{a:.8f}", "timestamp": str(t)} for t, a, _ in rows],
            "nextPageCursor": _oi_cursor(rows[-1][0]) if more and rows else "",
        }
        return _ok(result, ctx.now)

    def funding_history(self, ctx: Ctx) -> Reply:
        """``GET /v5/market/funding/history``: newest first (max 200)."""
        _, spec = self._spec(ctx)
        limit = self.limit_param(ctx, 200, 200)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        events = ctx.market.funding(
            self.name,
            spec.symbol,
            spec.listed if start is None else start,
            ctx.now if end is None else end,
        )[-limit:]
        events = ctx.mangle(events, lambda: None)[::-1]
        rows = [
            {"symbol": _market_id(spec), "fundingRate": f"{r:.8f}", "fundingRateTimestamp": str(t)}
            for t, r, _ in events
        ]
        return _ok({"category": "linear", "list": rows}, ctx.now)


#: market/open-interest's intervalTime values, in ms.
OPEN_INTEREST_INTERVALS: dict[str, int] = {
    "5min": 5 * 60_000,
    "15min": 15 * 60_000,
    "30min": 30 * 60_000,
    "1h": 3_600_000,
    "4h": 4 * 3_600_000,
    "1d": 24 * 3_600_000,
}


def _oi_cursor(t: int) -> str:
    # opaque to clients, as Bybit's own cursors are: the oldest row sent so far
    return f"oi{t}"


def _ok(result: Any, now: int) -> Reply:
    return Reply({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now})


def _ret(code: int, msg: str) -> Reply:
    return Reply({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 0})


def _exec_id(spec: MarketSpec, trade_id: int) -> str:
    """A UUID-shaped execId that still sorts and encodes the trade id."""
    h = f"{trade_id:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
