"""Binance spot (``/api/v3``) and USD-M futures (``/fapi/v1``), plus empty COIN-M (``/dapi/v1``).

Serves ccxt ids ``binance`` and ``binanceusdm`` (project alias ``binance_futures``).
Request weights follow Binance's documentation (checked 2024/2025):

- spot: https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
  ``klines`` 2, ``aggTrades`` 4, ``trades`` 25, ``historicalTrades`` 25,
  ``exchangeInfo`` 20, ``time``/``ping`` 1, ``ticker/24hr`` 2 (1-20 ``symbols`` 2,
  21-100 40, more or none 80), ``ticker/bookTicker`` 2 (4 with ``symbols`` or none);
  limit 6000 weight per minute per IP.
- USD-M: https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api
  ``klines`` by limit ``[1,100)`` 1, ``[100,500)`` 2, ``[500,1000]`` 5, ``>1000`` 10;
  ``aggTrades`` 20, ``trades`` 5, ``historicalTrades`` 20, ``exchangeInfo`` 1,
  ``premiumIndex`` 1 (10 without symbol), ``fundingRate`` 1, ``ticker/24hr`` 1 (40 without
  symbol), ``ticker/bookTicker`` 2 (5 without symbol); 2400 per minute per IP.

Used weight is reported in ``X-MBX-USED-WEIGHT-1M``; exceeding it answers 429 with
``Retry-After`` and ``{"code":-1003,...}``; requesting again before ``Retry-After``
answers 418 (IP ban), as Binance documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from mdcollect.testing._book import Book, book_at, book_diff
from mdcollect.testing._faults import Limit
from mdcollect.testing._live import CandleTracker, Every, TradeCursor, stats_24h
from mdcollect.testing._market import (
    HOUR,
    Frame,
    MarketSpec,
    RawCandles,
    RawTrades,
    SyntheticMarket,
)
from mdcollect.testing.dialects._base import (
    CallbackFeed,
    Ctx,
    Dialect,
    Reply,
    Route,
    WsFeed,
    WsSession,
    fmt,
    fmt_col,
    frame_or_none,
    parse_int,
)

__all__ = ["Binance"]

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


def _spot_depth_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit", "100"))
    except ValueError:
        return 5
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _futures_depth_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit", "500"))
    except ValueError:
        return 2
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _futures_klines_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit", "500"))
    except ValueError:
        return 1
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _symbols_count(params: Mapping[str, str]) -> int | None:
    """How many markets a ticker request names (None: every market)."""
    if params.get("symbol"):
        return 1
    raw = params.get("symbols")
    if not raw:
        return None
    try:
        ids = json.loads(raw)
    except ValueError:
        return 1
    return len(ids) if isinstance(ids, list) else 1


def _spot_ticker_weight(params: Mapping[str, str]) -> int:
    n = _symbols_count(params)
    if n is None or n > 100:
        return 80
    return 2 if n <= 20 else 40


def _spot_book_ticker_weight(params: Mapping[str, str]) -> int:
    return 2 if params.get("symbol") else 4


class Binance(Dialect):
    """Binance spot + USD-M futures REST."""

    name: ClassVar[str] = "binance"
    aliases: ClassVar[tuple[str, ...]] = ("binanceusdm", "binance_futures", "binancecoinm")
    fill_empty: ClassVar[bool] = True
    bans: ClassVar[bool] = True
    limits: ClassVar[Mapping[str, Limit]] = {
        "spot": Limit(6000, 60.0),
        "fapi": Limit(2400, 60.0),
        "dapi": Limit(2400, 60.0),
    }
    ws_hosts: ClassVar[Mapping[str, str]] = {
        "stream.binance.com": "spot",
        "data-stream.binance.vision": "spot",
        "fstream.binance.com": "linear",
    }
    #: Binance pings every 20 s on spot streams and every 3 min on USD-M futures.
    ws_server_pings: ClassVar[Mapping[str, float]] = {"spot": 20.0, "linear": 180.0}

    def default_markets(self) -> Sequence[MarketSpec]:
        return [
            MarketSpec("BTC/USDT", 30_000.0, price_decimals=2, amount_decimals=5, mean_amount=0.02),
            MarketSpec("ETH/USDT", 2_000.0, price_decimals=2, amount_decimals=4, mean_amount=0.3),
            MarketSpec(
                "BTC/USDT:USDT",
                30_000.0,
                price_decimals=2,
                tick=10,
                amount_decimals=3,
                mean_amount=0.05,
            ),
            MarketSpec(
                "ETH/USDT:USDT", 2_000.0, price_decimals=2, amount_decimals=3, mean_amount=0.5
            ),
        ]

    def routes(self) -> Sequence[Route]:
        r: list[Route] = []
        for prefix, bucket, contract in (("/api/v3", "spot", False), ("/fapi/v1", "fapi", True)):
            spot = not contract

            def bind(fn: Any, contract: bool = contract) -> Any:
                return lambda ctx: fn(ctx, contract)

            r += [
                Route("GET", f"{prefix}/ping", "ping", lambda ctx: Reply({}), 1, bucket),
                Route(
                    "GET",
                    f"{prefix}/time",
                    "time",
                    lambda ctx: Reply({"serverTime": ctx.now}),
                    1,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/exchangeInfo",
                    "exchangeInfo",
                    bind(self.exchange_info),
                    20 if spot else 1,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/klines",
                    "klines",
                    bind(self.klines),
                    2 if spot else _futures_klines_weight,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/aggTrades",
                    "aggTrades",
                    bind(self.agg_trades),
                    4 if spot else 20,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/trades",
                    "trades",
                    bind(self.recent_trades),
                    25 if spot else 5,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/depth",
                    "depth",
                    bind(self.depth),
                    _futures_depth_weight if contract else _spot_depth_weight,
                    bucket,
                ),
                Route(
                    "GET",
                    f"{prefix}/historicalTrades",
                    "historicalTrades",
                    bind(self.historical_trades),
                    25 if spot else 20,
                    bucket,
                ),
            ]
        r += [
            Route(
                "GET",
                "/fapi/v1/premiumIndex",
                "premiumIndex",
                self.premium_index,
                lambda p: 1 if p.get("symbol") else 10,
                "fapi",
            ),
            Route("GET", "/fapi/v1/fundingRate", "fundingRate", self.funding_rate, 1, "fapi"),
            Route(
                "GET",
                "/api/v3/ticker/24hr",
                "ticker/24hr",
                lambda ctx: self.ticker_24hr(ctx, False),
                _spot_ticker_weight,
                "spot",
            ),
            Route(
                "GET",
                "/fapi/v1/ticker/24hr",
                "ticker/24hr",
                lambda ctx: self.ticker_24hr(ctx, True),
                lambda p: 1 if p.get("symbol") else 40,
                "fapi",
            ),
            Route(
                "GET",
                "/api/v3/ticker/bookTicker",
                "ticker/bookTicker",
                lambda ctx: self.book_ticker(ctx, False),
                _spot_book_ticker_weight,
                "spot",
            ),
            Route(
                "GET",
                "/fapi/v1/ticker/bookTicker",
                "ticker/bookTicker",
                lambda ctx: self.book_ticker(ctx, True),
                lambda p: 2 if p.get("symbol") else 5,
                "fapi",
            ),
            # COIN-M is not emulated, but ccxt's binance.load_markets() asks for it.
            Route(
                "GET", "/dapi/v1/exchangeInfo", "exchangeInfo", self.dapi_exchange_info, 1, "dapi"
            ),
            Route(
                "GET",
                "/dapi/v1/time",
                "time",
                lambda ctx: Reply({"serverTime": ctx.now}),
                1,
                "dapi",
            ),
            Route("GET", "/dapi/v1/ping", "ping", lambda ctx: Reply({}), 1, "dapi"),
        ]
        return r

    # -- errors

    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """Binance error bodies, e.g. ``{"code":-1121,"msg":"Invalid symbol."}`` (HTTP 400)."""
        if kind == "bad_symbol":
            return Reply({"code": -1121, "msg": "Invalid symbol."}, 400)
        if kind == "rate_limit":
            msg = (
                "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API."
            )
            return Reply(
                {"code": -1003, "msg": message or msg}, 429, {"Retry-After": _secs(retry_after)}
            )
        if kind == "ban":
            msg = (
                "Way too much request weight used; IP banned until "
                f"{message}. Please use WebSocket Streams for live updates to avoid bans."
            )
            return Reply({"code": -1003, "msg": msg}, 418, {"Retry-After": _secs(retry_after)})
        if kind == "not_found":
            return Reply({"code": -5000, "msg": f"Path {message}, Method GET is invalid"}, 404)
        if kind == "bad_interval":
            return Reply({"code": -1120, "msg": "Invalid interval."}, 400)
        if kind == "missing":
            return Reply(
                {
                    "code": -1102,
                    "msg": f"Mandatory parameter '{message}' was not sent, was empty/null, or malformed.",
                },
                400,
            )
        if kind == "bad_limit":
            return Reply(
                {"code": -1130, "msg": f"Data sent for parameter '{message}' is not valid."}, 400
            )
        if kind == "bad_combination":
            return Reply({"code": -1128, "msg": "Combination of optional parameters invalid."}, 400)
        if kind == "too_long":
            return Reply(
                {"code": -1127, "msg": "More than 1 hours between startTime and endTime."}, 400
            )
        return Reply(
            {"code": -1100, "msg": message or "Illegal characters found in a parameter."}, 400
        )

    def used_weight_headers(self, bucket: str, used: int) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}

    # -- helpers

    def _spec(self, ctx: Ctx, contract: bool) -> MarketSpec:
        market_id = ctx.params.get("symbol")
        if not market_id:
            raise self.fail("missing", "symbol")
        for symbol in ctx.market.symbols(self.name):
            spec = ctx.market.spec(self.name, symbol)
            if spec.is_contract == contract and _market_id(spec) == market_id.upper():
                return spec
        raise self.fail("bad_symbol")

    def _limit(self, ctx: Ctx, default: int, maximum: int) -> int:
        limit = parse_int(ctx.params, "limit", self)
        if limit is None:
            return default
        if limit <= 0 or limit > maximum:
            raise self.fail("bad_limit", "limit")
        return limit

    # -- markets

    def exchange_info(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/exchangeInfo`` (and ``/fapi/v1/exchangeInfo``).

        Sample (spot, abridged)::

            {"timezone": "UTC", "serverTime": 1706803708087, "rateLimits": [...],
             "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC",
                          "quoteAsset": "USDT", "filters": [{"filterType": "PRICE_FILTER",
                          "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                          "tickSize": "0.01000000"}, ...], ...}]}
        """
        specs = [ctx.market.spec(self.name, s) for s in ctx.market.symbols(self.name)]
        specs = [s for s in specs if s.is_contract == contract]
        limit = 2400 if contract else 6000
        body: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": ctx.now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            ],
            "exchangeFilters": [],
        }
        if contract:
            body["futuresType"] = "U_MARGINED"
            body["assets"] = [
                {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}
            ]
            body["symbols"] = [self._futures_symbol(s) for s in specs]
        else:
            body["symbols"] = [self._spot_symbol(s) for s in specs]
        return Reply(body)

    def dapi_exchange_info(self, ctx: Ctx) -> Reply:
        """COIN-M exchangeInfo with no symbols (inverse markets are not emulated)."""
        return Reply(
            {
                "timezone": "UTC",
                "serverTime": ctx.now,
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [],
            }
        )

    def _spot_symbol(self, s: MarketSpec) -> dict[str, Any]:
        tick = fmt(s.tick, s.price_decimals, 8)
        step = fmt(1, s.amount_decimals, 8)
        return {
            "symbol": _market_id(s),
            "status": "TRADING",
            "baseAsset": s.base,
            "baseAssetPrecision": 8,
            "quoteAsset": s.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": True,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": tick,
                    "maxPrice": "1000000.00000000",
                    "tickSize": tick,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": step,
                    "maxQty": "9000.00000000",
                    "stepSize": step,
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _futures_symbol(self, s: MarketSpec) -> dict[str, Any]:
        tick = fmt(s.tick, s.price_decimals)
        step = fmt(1, s.amount_decimals)
        return {
            "symbol": _market_id(s),
            "pair": _market_id(s),
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": s.listed,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": s.base,
            "quoteAsset": s.quote,
            "marginAsset": s.settle,
            "pricePrecision": s.price_decimals,
            "quantityPrecision": s.amount_decimals,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": ["PoW"],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": tick,
                    "maxPrice": "4529764",
                    "tickSize": tick,
                },
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000", "stepSize": step},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": step,
                    "maxQty": "120",
                    "stepSize": step,
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    # -- candles

    def klines(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/klines`` / ``/fapi/v1/klines``: oldest first, open time in [startTime, endTime].

        Sample (spot)::

            [[1706630400000, "43519.34000000", "43936.00000000", "43171.00000000",
              "43488.71000000", "20.55495000", 1706633999999, "891428.42858070", 3743,
              "10.91428000", "473782.95739920", "0"]]

        With ``startTime`` the first ``limit`` candles from it; with only ``endTime`` the
        last ``limit`` up to it; with neither the last ``limit`` including the open one.
        Empty intervals are flat candles at the previous close; outages have no candles.
        """
        spec = self._spec(ctx, contract)
        interval = ctx.params.get("interval")
        if not interval:
            raise self.fail("missing", "interval")
        if interval not in (FUTURES_INTERVALS if contract else SPOT_INTERVALS):
            raise self.fail("bad_interval")
        frame = frame_or_none(interval)
        assert frame is not None
        limit = self._limit(ctx, 500, 1500 if contract else 1000)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        m = ctx.market
        if start is not None:
            raw = m.raw_candles_forward(self.name, spec.symbol, frame, start, limit, end=end)
        else:
            raw = m.raw_candles_backward(
                self.name, spec.symbol, frame, ctx.now if end is None else end, limit
            )
        rows = self._kline_rows(raw, contract)

        def previous() -> list[Any] | None:
            if not len(raw):
                return None
            first = int(raw.agg.start[0])
            prev = m.raw_candles_backward(self.name, spec.symbol, frame, first - 1, 1)
            return self._kline_rows(prev, contract)[0] if len(prev) else None

        return Reply(ctx.mangle(rows, previous))

    def _kline_rows(self, raw: RawCandles, contract: bool) -> list[list[Any]]:
        s = raw.spec
        a = raw.agg
        pd_, ad = s.price_decimals, s.amount_decimals
        po, vo, qo = (pd_, ad, pd_ + ad) if contract else (8, 8, 8)
        cols = zip(
            a.start.tolist(),
            fmt_col(a.open, pd_, po),
            fmt_col(a.high, pd_, po),
            fmt_col(a.low, pd_, po),
            fmt_col(a.close, pd_, po),
            fmt_col(a.volume, ad, vo),
            raw.close_time().tolist(),
            fmt_col(a.quote, pd_ + ad, qo),
            a.count.tolist(),
            fmt_col(a.buy_volume, ad, vo),
            fmt_col(a.buy_quote, pd_ + ad, qo),
            strict=True,
        )
        return [[*row, "0"] for row in cols]

    # -- trades

    def agg_trades(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/aggTrades`` / ``/fapi/v1/aggTrades`` (ccxt's default for fetch_trades).

        Sample (spot)::

            [{"a": 2913537567, "p": "73238.70000000", "q": "0.00109000", "f": 3479463557,
              "l": 3479463557, "T": 1710327661939, "m": false, "M": true}]

        ``fromId``: ids >= fromId; ``startTime``/``endTime`` inclusive, at most one hour
        apart; neither: the most recent ``limit`` (default 500, max 1000).
        """
        spec = self._spec(ctx, contract)
        limit = self._limit(ctx, 500, 1000)
        from_id = parse_int(ctx.params, "fromId", self)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        if start is not None and end is not None and end - start > HOUR:
            raise self.fail("too_long")
        m = ctx.market
        if from_id is not None:
            raw = m.raw_trades_forward(self.name, spec.symbol, from_id=from_id, limit=limit)
        elif start is not None:
            stop = None if end is None else end + 1
            raw = m.raw_trades_forward(self.name, spec.symbol, start=start, end=stop, limit=limit)
        elif end is not None:
            raw = m.raw_trades_backward(self.name, spec.symbol, end=end + 1, limit=limit)
        else:
            raw = m.raw_trades_backward(self.name, spec.symbol, limit=limit)
        rows = self._agg_rows(spec, raw)

        def previous() -> dict[str, Any] | None:
            if not len(raw):
                return None
            prev = m.raw_trades_backward(self.name, spec.symbol, before_id=int(raw.id[0]), limit=1)
            return self._agg_rows(spec, prev)[0] if len(prev) else None

        return Reply(ctx.mangle(rows, previous))

    def _agg_rows(self, spec: MarketSpec, raw: RawTrades) -> list[dict[str, Any]]:
        pd_, ad = spec.price_decimals, spec.amount_decimals
        contract = spec.is_contract
        rows = []
        for i in range(len(raw)):
            tid = int(raw.id[i])
            row: dict[str, Any] = {
                "a": tid,
                "p": fmt(int(raw.price[i]), pd_, pd_ if contract else 8),
                "q": fmt(int(raw.amount[i]), ad, ad if contract else 8),
                "f": tid,
                "l": tid,
                "T": int(raw.ts[i]),
                "m": not bool(raw.buy[i]),
            }
            if not contract:
                row["M"] = True
            rows.append(row)
        return rows

    def _trade_rows(self, spec: MarketSpec, raw: RawTrades) -> list[dict[str, Any]]:
        contract = spec.is_contract
        pd_, ad = spec.price_decimals, spec.amount_decimals
        po, ao = (pd_, ad) if contract else (8, 8)
        rows = []
        for i in range(len(raw)):
            row: dict[str, Any] = {
                "id": int(raw.id[i]),
                "price": fmt(int(raw.price[i]), pd_, po),
                "qty": fmt(int(raw.amount[i]), ad, ao),
                "quoteQty": fmt(
                    int(raw.price[i]) * int(raw.amount[i]),
                    pd_ + ad,
                    max(po, 8) if not contract else pd_ + ad,
                ),
                "time": int(raw.ts[i]),
                "isBuyerMaker": not bool(raw.buy[i]),
            }
            if not contract:
                row["isBestMatch"] = True
            rows.append(row)
        return rows

    def recent_trades(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/trades``: the most recent ``limit`` trades (default 500, max 1000).

        Sample::

            [{"id": 28457, "price": "4.00000100", "qty": "12.00000000",
              "quoteQty": "48.000012", "time": 1499865549590, "isBuyerMaker": true,
              "isBestMatch": true}]
        """
        spec = self._spec(ctx, contract)
        limit = self._limit(ctx, 500, 1000)
        raw = ctx.market.raw_trades_backward(self.name, spec.symbol, limit=limit)
        return Reply(self._trade_rows(spec, raw))

    def historical_trades(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/historicalTrades``: ``limit`` trades from ``fromId`` (else the latest)."""
        spec = self._spec(ctx, contract)
        limit = self._limit(ctx, 500, 1000 if not contract else 500)
        from_id = parse_int(ctx.params, "fromId", self)
        m = ctx.market
        if from_id is None:
            raw = m.raw_trades_backward(self.name, spec.symbol, limit=limit)
        else:
            raw = m.raw_trades_forward(self.name, spec.symbol, from_id=from_id, limit=limit)
        return Reply(self._trade_rows(spec, raw))

    # -- funding

    def premium_index(self, ctx: Ctx) -> Reply:
        """``GET /fapi/v1/premiumIndex``.

        Sample::

            {"symbol": "BTCUSDT", "markPrice": "11793.63104562", "indexPrice": "11781.80495970",
             "estimatedSettlePrice": "11781.16138815", "lastFundingRate": "0.00038246",
             "interestRate": "0.00010000", "nextFundingTime": 1597392000000, "time": 1597370495002}
        """
        if ctx.params.get("symbol"):
            specs = [self._spec(ctx, True)]
        else:
            specs = [ctx.market.spec(self.name, s) for s in ctx.market.symbols(self.name)]
            specs = [s for s in specs if s.is_contract]
        now = ctx.now
        period = 8 * HOUR
        out = []
        for s in specs:
            mark = ctx.market.mark_price(self.name, s.symbol, now)
            out.append(
                {
                    "symbol": _market_id(s),
                    "markPrice": f"{mark:.8f}",
                    "indexPrice": f"{mark:.8f}",
                    "estimatedSettlePrice": f"{mark:.8f}",
                    "lastFundingRate": f"{ctx.market.funding_rate(self.name, s.symbol, now):.8f}",
                    "interestRate": "0.00010000",
                    "nextFundingTime": (now // period + 1) * period,
                    "time": now,
                }
            )
        return Reply(out[0] if ctx.params.get("symbol") else out)

    def funding_rate(self, ctx: Ctx) -> Reply:
        """``GET /fapi/v1/fundingRate``: funding history, oldest first (default 100, max 1000).

        Sample::

            [{"symbol": "BTCUSDT", "fundingRate": "-0.03750000", "fundingTime": 1570608000000,
              "markPrice": "34287.54619963"}]
        """
        spec = self._spec(ctx, True)
        limit = self._limit(ctx, 100, 1000)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        events = ctx.market.funding(
            self.name, spec.symbol, start or spec.listed, end if end is not None else ctx.now
        )
        events = events[:limit] if start is not None else events[-limit:]
        return Reply(
            [
                {
                    "symbol": _market_id(spec),
                    "fundingTime": t,
                    "fundingRate": f"{r:.8f}",
                    "markPrice": f"{p:.8f}",
                }
                for t, r, p in events
            ]
        )

    # -- tickers

    def _ticker_specs(self, ctx: Ctx, contract: bool) -> tuple[list[MarketSpec], bool]:
        """The markets a ticker request names, and whether to answer one object.

        ``symbol``: that market (an object); spot ``symbols``: a JSON array of ids
        (a list, in the order asked); neither: every market (a list).
        """
        symbol, symbols = ctx.params.get("symbol"), ctx.params.get("symbols")
        if contract:
            symbols = None  # USD-M has no ``symbols`` parameter
        if symbol and symbols:
            raise self.fail("bad_combination")
        if symbol:
            return [self._spec(ctx, contract)], True
        specs = [ctx.market.spec(self.name, s) for s in ctx.market.symbols(self.name)]
        specs = [s for s in specs if s.is_contract == contract]
        if not symbols:
            return specs, False
        try:
            ids = json.loads(symbols)
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise self.fail("bad_request", "Illegal characters found in parameter 'symbols'.")
        by_id = {_market_id(s): s for s in specs}
        try:
            return [by_id[i.upper()] for i in ids], False
        except KeyError:
            raise self.fail("bad_symbol") from None

    def ticker_24hr(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/ticker/24hr`` / ``/fapi/v1/ticker/24hr``: rolling 24 h statistics.

        Sample (spot, ``type=FULL``, the default)::

            {"symbol": "BTCUSDT", "priceChange": "-188.18000000", "priceChangePercent": "-0.159",
             "weightedAvgPrice": "118356.64734074", "prevClosePrice": "118637.22000000",
             "lastPrice": "118449.03000000", "lastQty": "0.00731000",
             "bidPrice": "118449.02000000", "bidQty": "7.15931000",
             "askPrice": "118449.03000000", "askQty": "0.09592000",
             "openPrice": "118637.21000000", "highPrice": "119273.36000000",
             "lowPrice": "117427.50000000", "volume": "14741.41491000",
             "quoteVolume": "1744744445.80640740", "openTime": 1753701474013,
             "closeTime": 1753787874013, "firstId": 5116031635, "lastId": 5117964946,
             "count": 1933312}

        USD-M has no ``prevClosePrice`` and no bid/ask fields (prices in the market's
        decimals); spot ``type=MINI`` keeps only open/high/low/last, volumes, times,
        ids and count. The values are those of the ``<symbol>@ticker`` stream at the
        same time, the bid/ask those of the order book.
        """
        specs, single = self._ticker_specs(ctx, contract)
        kind = ctx.params.get("type", "FULL")
        if contract or kind not in ("FULL", "MINI"):
            if not contract:
                raise self.fail("bad_request", "Illegal characters found in parameter 'type'.")
            kind = "FULL"
        now = ctx.now
        rows = [_ticker_24h(ctx.market, self.name, s, now, mini=kind == "MINI") for s in specs]
        return Reply(rows[0] if single else rows)

    def book_ticker(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/ticker/bookTicker`` / ``/fapi/v1/ticker/bookTicker``: the best quotes.

        Samples (spot, USD-M)::

            {"symbol": "ETHBTC", "bidPrice": "0.07466800", "bidQty": "5.31990000",
             "askPrice": "0.07466900", "askQty": "10.93540000"}
            {"lastUpdateId": 1027024, "symbol": "BTCUSDT", "bidPrice": "21321.90",
             "bidQty": "33.592", "askPrice": "21322.00", "askQty": "1.427",
             "time": 1673899207538}
        """
        specs, single = self._ticker_specs(ctx, contract)
        now = ctx.now
        rows = []
        for s in specs:
            book = book_at(ctx.market, self.name, s.symbol, now)
            (bp, bq), (ap, aq) = book.bids[0], book.asks[0]
            row: dict[str, Any] = {"lastUpdateId": book.update_id} if contract else {}
            row.update(
                {
                    "symbol": _market_id(s),
                    "bidPrice": _price(s, bp),
                    "bidQty": _amount(s, bq),
                    "askPrice": _price(s, ap),
                    "askQty": _amount(s, aq),
                }
            )
            if contract:
                row["time"] = now
            rows.append(row)
        return Reply(rows[0] if single else rows)

    # -- order book

    def depth(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/depth`` / ``/fapi/v1/depth``: the book ``lastUpdateId`` of the ws diff stream.

        Sample (spot)::

            {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
             "asks": [["4.00000200", "12.00000000"]]}

        USD-M adds ``"E"`` and ``"T"`` (ms). At most 100 levels a side are emulated.
        """
        spec = self._spec(ctx, contract)
        if contract:
            limit = self._limit(ctx, 500, 1000)
            if limit not in (5, 10, 20, 50, 100, 500, 1000):
                raise self.fail("bad_limit", "limit")
        else:
            limit = self._limit(ctx, 100, 5000)
        now = ctx.now
        book = book_at(ctx.market, self.name, spec.symbol, now)
        body: dict[str, Any] = {"lastUpdateId": book.update_id}
        if contract:
            body.update({"E": now, "T": now})
        body["bids"] = _levels(spec, book.bids[:limit])
        body["asks"] = _levels(spec, book.asks[:limit])
        return Reply(body)

    # -- websockets

    def ws_session(
        self, market: SyntheticMarket, kind: str, path: str, query: Mapping[str, str], conn_id: int
    ) -> WsSession | None:
        """Spot (``stream.binance.com``) and USD-M (``fstream.binance.com``) market streams.

        Raw streams on ``/ws[/<stream>]`` (USD-M also ``/public/ws``, ``/market/ws``),
        combined ones (``{"stream":..., "data":...}``) on ``/stream[?streams=a/b]``.
        """
        parts = [p for p in path.split("/") if p]
        if not parts or not any(p in ("ws", "stream") for p in parts[:2]):
            return None
        return _BinanceWs(self, market, kind, path, query, conn_id)


#: stream suffix -> default push period in ms (spot, USD-M)
_DEPTH_PERIODS = {
    "": (1000, 250),
    "@100ms": (100, 100),
    "@250ms": (250, 250),
    "@500ms": (500, 500),
    "@1000ms": (1000, 1000),
    "@0ms": (100, 100),
}


class _BinanceWs(WsSession):
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
        for symbol in self.market.symbols(self.venue):
            spec = self.market.spec(self.venue, symbol)
            if spec.is_contract == self.contract and _market_id(spec).lower() == market_id:
                return spec
        return None

    def _feed(self, name: str, now: int) -> WsFeed | None:
        """A feed for a stream name, None when the name is not a stream Binance knows."""
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
            for tid, ts, px, qty, buy in zip(
                raw.id.tolist(),
                raw.ts.tolist(),
                raw.price.tolist(),
                raw.amount.tolist(),
                raw.buy.tolist(),
                strict=True,
            ):
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
        funding_period = 8 * HOUR

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
                    "T": (now // funding_period + 1) * funding_period,
                }
            ]

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
