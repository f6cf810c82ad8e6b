"""Binance REST: spot ``/api/v3``, USD-M ``/fapi/v1`` and an empty COIN-M ``/dapi/v1``.

Request weights follow Binance's documentation (checked 2024/2025):

- spot: https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
  ``klines`` 2, ``aggTrades`` 4, ``trades`` 25, ``historicalTrades`` 25,
  ``exchangeInfo`` 20, ``time``/``ping`` 1, ``ticker/24hr`` 2 (1-20 ``symbols`` 2,
  21-100 40, more or none 80), ``ticker/bookTicker`` 2 (4 with ``symbols`` or none);
  limit 6000 weight per minute per IP.
- USD-M: https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api
  ``klines`` by limit ``[1,100)`` 1, ``[100,500)`` 2, ``[500,1000]`` 5, ``>1000`` 10;
  ``aggTrades`` 20, ``trades`` 5, ``historicalTrades`` 20, ``exchangeInfo`` 1,
  ``premiumIndex`` 1 (10 without symbol), ``fundingRate`` 1, ``markPriceKlines``,
  ``indexPriceKlines`` and ``premiumIndexKlines`` by limit as ``klines``,
  ``ticker/24hr`` 1 (40 without symbol), ``ticker/bookTicker`` 2 (5 without symbol);
  2400 per minute per IP. ``/futures/data/openInterestHist`` weighs 0 (the docs: it has
  its own limit of 1000 requests per 5 minutes per IP, not emulated).

Used weight is reported in ``X-MBX-USED-WEIGHT-1M``; exceeding it answers 429 with
``Retry-After`` and ``{"code":-1003,...}``; requesting again before ``Retry-After``
answers 418 (IP ban), as Binance documents.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from mdcollect.testing._book import book_at
from mdcollect.testing._faults import Limit
from mdcollect.testing._market import (
    FUNDING_8H_TO_4H,
    HOUR,
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
    fmt_col,
    frame_or_none,
    parse_int,
)
from mdcollect.testing.dialects._render import cached_rows, page

from ._common import (
    FUTURES_INTERVALS,
    SPOT_INTERVALS,
    _amount,
    _levels,
    _market_id,
    _price,
    _secs,
    _ticker_24h,
)
from .ws import BinanceWs

__all__ = ["Binance"]

#: USD-M's candles of other prices, weighted by ``limit`` as ``klines``.
PRICE_KLINES: dict[str, PriceKind] = {
    "markPriceKlines": "mark",
    "indexPriceKlines": "index",
    "premiumIndexKlines": "premium",
}


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


#: openInterestHist's periods, in ms.
OPEN_INTEREST_PERIODS: dict[str, int] = {
    "5m": 5 * 60_000, "15m": 15 * 60_000, "30m": 30 * 60_000, "1h": HOUR, "2h": 2 * HOUR,
    "4h": 4 * HOUR, "6h": 6 * HOUR, "12h": 12 * HOUR, "1d": 24 * HOUR,
}  # fmt: skip
#: How far back openInterestHist serves: "only the data of the latest 30 days".
OPEN_INTEREST_DEPTH = 30 * 24 * HOUR


class Binance(Dialect):
    """Binance spot + USD-M futures REST."""

    name: ClassVar[str] = "binance"
    aliases: ClassVar[tuple[str, ...]] = ("binanceusdm", "binance_futures", "binancecoinm")
    fill_empty: ClassVar[bool] = True
    bans: ClassVar[bool] = True
    limit_error: ClassVar[str] = "bad_limit"
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
                "ETH/USDT:USDT",
                2_000.0,
                price_decimals=2,
                amount_decimals=3,
                mean_amount=0.5,
                funding_intervals=FUNDING_8H_TO_4H,
            ),
            *listed_markets(self.name),
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
                "/futures/data/openInterestHist",
                "openInterestHist",
                self.open_interest_hist,
                0,
                "fapi",
            ),
            *(
                Route(
                    "GET",
                    f"/fapi/v1/{path}",
                    path,
                    functools.partial(self.price_klines, kind=kind),
                    _futures_klines_weight,
                    "fapi",
                )
                for path, kind in PRICE_KLINES.items()
            ),
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

    def used_weight_headers(
        self, bucket: str, used: int, limit: Limit, now_ms: int
    ) -> dict[str, str]:
        """``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)``, as Binance names it:
        ``X-MBX-USED-WEIGHT-1M: 42`` for the minute; ``-10S`` for a 10-second budget."""
        interval, num = _interval(limit.window)
        return {f"X-MBX-USED-WEIGHT-{num}{interval[0]}": str(used), "X-MBX-USED-WEIGHT": str(used)}

    # -- helpers

    def _spec(self, ctx: Ctx, contract: bool, param: str = "symbol") -> MarketSpec:
        market_id = ctx.params.get(param)
        if not market_id:
            raise self.fail("missing", param)
        wanted = market_id.upper()
        spec = find_market(
            ctx.market,
            self.name,
            lambda s: s.is_contract == contract and _market_id(s) == wanted,
        )
        if spec is None:
            raise self.fail("bad_symbol")
        return spec

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
        # the weight budget in force (a configured one replaces the published one)
        weight = (
            ctx.limits.get("fapi" if contract else "spot")
            or self.limits["fapi" if contract else "spot"]
        )
        interval, num = _interval(weight.window)
        body: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": ctx.now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": num,
                    "limit": weight.capacity,
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
        seed = ctx.market.seed

        def render(r: RawCandles) -> list[Any]:
            return cached_rows(
                ("binance", contract), seed, r, lambda x: self._kline_rows(x, contract)
            )

        return self._klines(ctx, spec, contract, render)

    def price_klines(self, ctx: Ctx, kind: PriceKind) -> Reply:
        """``GET /fapi/v1/markPriceKlines``, ``/fapi/v1/indexPriceKlines`` (by ``pair``),
        ``/fapi/v1/premiumIndexKlines``: paged as ``klines`` (max 1500), derived from
        the last-price candles (:mod:`mdcollect.testing._market.prices`).

        Sample (markPriceKlines; the volume and taker columns are ``"0"``, then the
        number of price samples)::

            [[1591256400000, "9653.69440000", "9653.69640000", "9651.38600000",
              "9651.55200000", "0", 1591256459999, "0", 60, "0", "0", "0"]]
        """
        spec = self._spec(ctx, True, param="pair" if kind == "index" else "symbol")
        return self._klines(ctx, spec, True, lambda raw: self._price_rows(derive(raw, kind)))

    def _klines(
        self,
        ctx: Ctx,
        spec: MarketSpec,
        contract: bool,
        render: Callable[[RawCandles], list[Any]],
    ) -> Reply:
        interval = ctx.params.get("interval")
        if not interval:
            raise self.fail("missing", "interval")
        if interval not in (FUTURES_INTERVALS if contract else SPOT_INTERVALS):
            raise self.fail("bad_interval")
        frame = frame_or_none(interval)
        assert frame is not None
        limit = self.limit_param(ctx, 500, 1500 if contract else 1000)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        m = ctx.market
        if start is not None:
            raw = m.raw_candles_forward(self.name, spec.symbol, frame, start, limit, end=end)
        else:
            raw = m.raw_candles_backward(
                self.name, spec.symbol, frame, ctx.now if end is None else end, limit
            )
        return Reply(page(ctx.mangle_candles(render(raw), raw, render)))

    def _price_rows(self, raw: RawCandles) -> list[list[Any]]:
        a, decimals = raw.agg, raw.spec.price_decimals
        out = max(decimals, 8)
        cols = zip(
            a.start.tolist(),
            fmt_col(a.open, decimals, out),
            fmt_col(a.high, decimals, out),
            fmt_col(a.low, decimals, out),
            fmt_col(a.close, decimals, out),
            raw.close_time().tolist(),
            # Binance counts the price samples: one a second
            ((raw.close_time() + 1 - a.start) // 1000).tolist(),
            strict=True,
        )
        return [[t, o, h, lo, c, "0", ct, "0", n, "0", "0", "0"] for t, o, h, lo, c, ct, n in cols]

    def _kline_rows(self, raw: RawCandles, contract: bool) -> list[tuple[Any, ...]]:
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
            ["0"] * len(a),
            strict=True,
        )
        return list(cols)

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
        limit = self.limit_param(ctx, 500, 1000)
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
        return Reply(ctx.mangle_trades(rows, raw, spec.symbol, lambda r: self._agg_rows(spec, r)))

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
        limit = self.limit_param(ctx, 500, 1000)
        raw = ctx.market.raw_trades_backward(self.name, spec.symbol, limit=limit)
        return Reply(self._trade_rows(spec, raw))

    def historical_trades(self, ctx: Ctx, contract: bool) -> Reply:
        """``GET /api/v3/historicalTrades``: ``limit`` trades from ``fromId`` (else the latest)."""
        spec = self._spec(ctx, contract)
        limit = self.limit_param(ctx, 500, 1000 if not contract else 500)
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
                    "nextFundingTime": ctx.market.next_funding_time(self.name, s.symbol, now),
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
        limit = self.limit_param(ctx, 100, 1000)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        events = ctx.market.funding(
            self.name, spec.symbol, start or spec.listed, end if end is not None else ctx.now
        )
        events = events[:limit] if start is not None else events[-limit:]
        events = ctx.mangle(events, lambda: None)
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

    def open_interest_hist(self, ctx: Ctx) -> Reply:
        """``GET /futures/data/openInterestHist``: open interest per ``period`` (5m to 1d),
        default 30, max 500 rows; "only the data of the latest 30 days is available": an
        older ``startTime`` is refused (-1130). Oldest first from ``startTime``, else the
        latest rows up to ``endTime`` (or now).

        Sample::

            [{"symbol": "BTCUSDT", "sumOpenInterest": "75375.61700000",
              "sumOpenInterestValue": "3248828883.71251440", "timestamp": 1642179900000}]
        """
        spec = self._spec(ctx, True)
        period = ctx.params.get("period")
        if not period:
            raise self.fail("missing", "period")
        if period not in OPEN_INTEREST_PERIODS:
            raise self.fail("bad_limit", "period")
        limit = self.limit_param(ctx, 30, 500)
        start = parse_int(ctx.params, "startTime", self)
        end = parse_int(ctx.params, "endTime", self)
        oldest = ctx.now - OPEN_INTEREST_DEPTH
        if start is not None and start < oldest:
            raise self.fail("bad_limit", "startTime")
        rows = ctx.market.open_interest(
            self.name,
            spec.symbol,
            OPEN_INTEREST_PERIODS[period],
            oldest if start is None else start,
            ctx.now if end is None else end + 1,
        )
        rows = rows[:limit] if start is not None else rows[-limit:]
        rows = ctx.mangle(rows, lambda: None)
        return Reply(
            [
                {
                    "symbol": _market_id(spec),
                    "sumOpenInterest": f"{a:.8f}",
                    "sumOpenInterestValue": f"{v:.8f}",
                    "timestamp": t,
                }
                for t, a, v in rows
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
            limit = self.limit_param(ctx, 500, 1000)
            if limit not in (5, 10, 20, 50, 100, 500, 1000):
                raise self.fail("bad_limit", "limit")
        else:
            limit = self.limit_param(ctx, 100, 5000)
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
        return BinanceWs(self, market, kind, path, query, conn_id)


_INTERVALS = (("DAY", 86_400), ("HOUR", 3_600), ("MINUTE", 60), ("SECOND", 1))


def _interval(window: float) -> tuple[str, int]:
    """Binance's ``interval`` and ``intervalNum`` of a window in seconds: 60 is
    ``("MINUTE", 1)``, 10 is ``("SECOND", 10)``."""
    seconds = max(1, round(window))
    for name, size in _INTERVALS:
        if seconds % size == 0:
            return name, seconds // size
    return "SECOND", seconds
