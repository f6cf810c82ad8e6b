"""Coinbase Advanced Trade public REST (``/api/v3/brokerage/market``) and the v2
reference endpoints ccxt reads while loading markets.

Serves ccxt id ``coinbase`` (and its alias class ``coinbaseadvanced``), spot only:
ccxt's ``load_markets`` asks ``/v2/currencies``, ``/v2/currencies/crypto`` and
``/v2/exchange-rates`` (currencies), then ``market/products`` and
``market/products?product_type=FUTURE`` (answered with no products: futures and
INTX perpetuals are not emulated).

- Candles (``market/products/{product_id}/candles``): ``start`` and ``end`` in UNIX
  seconds, both required; ``granularity`` one of :data:`GRANULARITIES`; candles
  opening in ``[start, end)``, newest first, the unfinished one included; a span of
  more than :data:`CANDLE_PAGE` candles is refused with ``INVALID_ARGUMENT``
  ("number of candles requested should be less than 300"). Intervals without
  trades have no candle ("No data is published for intervals where there are no
  ticks").
- Trades (``market/products/{product_id}/ticker``): the newest ``limit`` (required,
  at most :data:`TRADES_PAGE`) trades in ``[start, end)`` (UNIX seconds, both
  optional), newest first, with ``best_bid`` and ``best_ask``. There is no cursor:
  a page is the newest trades of its span, so trades cannot be paged back without
  gaps (mdcollect's registry says so).

Errors: HTTP 400 ``{"error": "INVALID_ARGUMENT", "error_details": ..., "message": ...}``
(ccxt: BadRequest); rate limit HTTP 429 ``{"errors": [{"id": "rate_limit_exceeded",
"message": "Too many requests"}]}`` (ccxt: RateLimitExceeded).

Rate limits (per IP, docs "Advanced Trade API rate limits"): public endpoints 10
requests a second; the v2 public endpoints 10,000 requests an hour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mdcollect.testing._faults import Limit
from mdcollect.testing._market import (
    DEFAULT_LISTING,
    Frame,
    MarketSpec,
    RawCandles,
    RawTrades,
)
from mdcollect.testing.dialects._base import (
    Ctx,
    Dialect,
    Reply,
    Route,
    find_market,
    fmt,
    fmt_plain,
    fmt_plain_col,
    parse_int,
)
from mdcollect.testing.dialects._render import cached_rows, page

from ._common import FIAT, GRANULARITIES, path_product, product_id

__all__ = ["CANDLE_PAGE", "TRADES_PAGE", "Coinbase"]

#: Most candles one ``candles`` request may span.
CANDLE_PAGE = 300
#: Most trades one ``ticker`` request returns.
TRADES_PAGE = 1000

_MARKET = "/api/v3/brokerage/market"


def _iso(ms: int) -> str:
    """``2023-01-11T00:52:37.557000Z``: UTC with microseconds, as the trades carry."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Coinbase(Dialect):
    """Coinbase Advanced Trade public REST (spot)."""

    name: ClassVar[str] = "coinbase"
    aliases: ClassVar[tuple[str, ...]] = ("coinbaseadvanced",)
    fill_empty: ClassVar[bool] = False
    spot_only: ClassVar[bool] = True
    limits: ClassVar[Mapping[str, Limit]] = {
        "public": Limit(10, 1.0),
        "v2": Limit(10_000, 3600.0),
    }

    def default_markets(self) -> Sequence[MarketSpec]:
        # BTC/USD and ETH/USD trade often enough that every minute has a candle; the
        # others are listed later (as on Coinbase) and trade sparsely, so their
        # 1m candles have the gaps Coinbase leaves where nothing traded.
        return [
            MarketSpec(
                "BTC/USD",
                30_000.0,
                price_decimals=2,
                amount_decimals=8,
                mean_amount=0.02,
                trades_per_minute=30.0,
            ),
            MarketSpec(
                "ETH/USD",
                2_000.0,
                price_decimals=2,
                amount_decimals=8,
                mean_amount=0.3,
                trades_per_minute=20.0,
            ),
            MarketSpec("BTC/USDT", 30_000.0, price_decimals=2, amount_decimals=8, mean_amount=0.02),
            MarketSpec("ETH/USDT", 2_000.0, price_decimals=2, amount_decimals=8, mean_amount=0.3),
            MarketSpec(
                "SOL/USD",
                40.0,
                price_decimals=2,
                amount_decimals=3,
                mean_amount=5.0,
                listed=1_622_635_200_000,  # 2021-06-02 12:00 UTC
            ),
            MarketSpec(
                "DOGE/USD",
                0.3,
                price_decimals=5,
                amount_decimals=1,
                mean_amount=2_000.0,
                listed=1_622_728_800_000,  # 2021-06-03 14:00 UTC
            ),
            MarketSpec(
                "ETH/BTC",
                0.05,
                price_decimals=5,
                amount_decimals=8,
                mean_amount=0.3,
                listed=DEFAULT_LISTING,
            ),
        ]

    def routes(self) -> Sequence[Route]:
        m = _MARKET
        return [
            Route("GET", "/v2/currencies", "currencies", self.currencies, 1, "v2"),
            Route("GET", "/v2/currencies/crypto", "currencies/crypto", self.crypto, 1, "v2"),
            Route("GET", "/v2/exchange-rates", "exchange-rates", self.exchange_rates, 1, "v2"),
            Route("GET", "/v2/time", "time", self.v2_time, 1, "v2"),
            Route("GET", "/api/v3/brokerage/time", "brokerage/time", self.time, 1, "public"),
            Route("GET", f"{m}/products", "market/products", self.products, 1, "public"),
            Route(
                "GET", f"{m}/products/{{product_id}}", "market/product", self.product, 1, "public"
            ),
            Route(
                "GET",
                f"{m}/products/{{product_id}}/candles",
                "market/candles",
                self.candles,
                1,
                "public",
            ),
            Route(
                "GET",
                f"{m}/products/{{product_id}}/ticker",
                "market/ticker",
                self.ticker,
                1,
                "public",
            ),
        ]

    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """Advanced Trade errors (``INVALID_ARGUMENT`` with HTTP 400, ``NOT_FOUND``), and
        the platform's ``rate_limit_exceeded`` with HTTP 429."""
        if kind in ("rate_limit", "ban"):
            body = {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
            return Reply(body, 429)
        if kind == "not_found":
            return Reply(
                {"error": "NOT_FOUND", "error_details": message, "message": "Not Found"}, 404
            )
        if kind == "bad_symbol":
            message = "valid product_id is required"
        return Reply(
            {"error": "INVALID_ARGUMENT", "error_details": message, "message": message}, 400
        )

    # -- helpers

    def _spec(self, ctx: Ctx) -> MarketSpec:
        wanted = path_product(ctx.path)
        spec = find_market(ctx.market, self.name, lambda s: product_id(s) == wanted)
        if spec is None:
            raise self.fail("bad_symbol")
        return spec

    def _seconds(self, ctx: Ctx, name: str, *, required: bool) -> int | None:
        value = parse_int(ctx.params, name, self)
        if value is None and required:
            raise self.fail("bad_request", f"{name} argument is required")
        return value

    def _last_price(self, ctx: Ctx, spec: MarketSpec) -> int | None:
        last = ctx.market.raw_trades_backward(self.name, spec.symbol, limit=1)
        return int(last.price[0]) if len(last) else None

    # -- reference data

    def _codes(self, ctx: Ctx) -> list[str]:
        codes: list[str] = []
        for symbol in ctx.market.symbols(self.name):
            spec = ctx.market.spec(self.name, symbol)
            codes += [c for c in (spec.base, spec.quote) if c not in codes]
        return codes

    def currencies(self, ctx: Ctx) -> Reply:
        """``GET /v2/currencies``: fiat currencies.

        Sample::

            {"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]}
        """
        data = [{"id": c, "name": FIAT[c], "min_size": "0.01"} for c in FIAT]
        return Reply({"data": data})

    def crypto(self, ctx: Ctx) -> Reply:
        """``GET /v2/currencies/crypto``.

        Sample::

            {"data": [{"asset_id": "9476e3be-b731-47fa-82be-347fabc573d9", "code": "AERO",
              "name": "Aerodrome Finance", "color": "#0433FF", "sort_index": "340",
              "exponent": "8", "type": "crypto", "address_regex": "^(?:0x)?[0-9a-fA-F]{40}$"}]}
        """
        data = []
        for i, code in enumerate(c for c in self._codes(ctx) if c not in FIAT):
            data.append(
                {
                    "asset_id": f"00000000-0000-4000-8000-{i:012d}",
                    "code": code,
                    "name": code,
                    "color": "#0052FF",
                    "sort_index": str(100 + i),
                    "exponent": "8",
                    "type": "crypto",
                    "address_regex": "^.+$",
                }
            )
        return Reply({"data": data})

    def exchange_rates(self, ctx: Ctx) -> Reply:
        """``GET /v2/exchange-rates``: ``{"data": {"currency": "USD", "rates": {"BTC": ...}}}``."""
        rates = {code: "1" for code in [*FIAT, *self._codes(ctx)]}
        return Reply({"data": {"currency": "USD", "rates": rates}})

    def v2_time(self, ctx: Ctx) -> Reply:
        """``GET /v2/time``: ``{"data": {"iso": "2015-06-23T18:02:51Z", "epoch": 1435082571}}``."""
        secs = ctx.now // 1000
        return Reply({"data": {"iso": _iso(secs * 1000)[:19] + "Z", "epoch": secs}})

    def time(self, ctx: Ctx) -> Reply:
        """``GET /api/v3/brokerage/time``.

        Sample::

            {"iso": "2024-02-27T03:37:14Z", "epochSeconds": "1709005034",
             "epochMillis": "1709005034333"}
        """
        now = ctx.now
        return Reply(
            {
                "iso": _iso(now)[:19] + "Z",
                "epochSeconds": str(now // 1000),
                "epochMillis": str(now),
            }
        )

    def _product(self, spec: MarketSpec) -> dict[str, Any]:
        # "price" (the last trade) is left empty: ccxt does not read it, and finding it
        # would generate a day of every product's trades for each market list
        tick = fmt_plain(spec.tick, spec.price_decimals)
        return {
            "product_id": product_id(spec),
            "price": "",
            "price_percentage_change_24h": "0",
            "volume_24h": "0",
            "volume_percentage_change_24h": "0",
            "base_increment": fmt_plain(1, spec.amount_decimals),
            "quote_increment": tick,
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": fmt_plain(1, spec.amount_decimals),
            "base_max_size": "3400",
            "base_name": spec.base,
            "quote_name": FIAT.get(spec.quote, spec.quote),
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": spec.quote,
            "base_currency_id": spec.base,
            "fcm_trading_session_details": None,
            "mid_market_price": "",
            "alias": "",
            "alias_to": [],
            "base_display_symbol": spec.base,
            "quote_display_symbol": spec.quote,
            "view_only": False,
            "price_increment": tick,
            "display_name": product_id(spec),
            "product_venue": "CBE",
        }

    def products(self, ctx: Ctx) -> Reply:
        """``GET /api/v3/brokerage/market/products``: spot products; ``product_type=FUTURE``
        lists none (futures are not emulated).

        Sample (one product, abridged)::

            {"products": [{"product_id": "BTC-USD", "price": "67060",
              "base_increment": "0.00000001", "quote_increment": "0.01",
              "quote_min_size": "1", "base_min_size": "0.00000001", "status": "online",
              "trading_disabled": false, "product_type": "SPOT", "quote_currency_id": "USD",
              "base_currency_id": "BTC", "alias_to": ["BTC-USDC"], "price_increment": "0.01",
              "display_name": "BTC-USD", "product_venue": "CBE"}], "num_products": "646"}
        """
        kind = ctx.params.get("product_type", "")
        products: list[dict[str, Any]] = []
        if kind in ("", "SPOT"):
            for symbol in ctx.market.symbols(self.name):
                products.append(self._product(ctx.market.spec(self.name, symbol)))
        elif kind != "FUTURE":
            raise self.fail("bad_request", f"invalid product_type {kind!r}")
        return Reply({"products": products, "num_products": len(products)})

    def product(self, ctx: Ctx) -> Reply:
        """``GET /api/v3/brokerage/market/products/{product_id}``: one product as listed."""
        return Reply(self._product(self._spec(ctx)))

    # -- market data

    def candles(self, ctx: Ctx) -> Reply:
        """``GET /api/v3/brokerage/market/products/{product_id}/candles``: newest first.

        Sample::

            {"candles": [{"start": "1712192400", "low": "66055.14", "high": "66331.99",
              "open": "66312.4", "close": "66181.6", "volume": "355.82896243"}]}
        """
        spec = self._spec(ctx)
        granularity = ctx.params.get("granularity", "")
        if granularity not in GRANULARITIES:
            raise self.fail("bad_request", f"granularity argument is invalid: {granularity!r}")
        start = self._seconds(ctx, "start", required=True)
        end = self._seconds(ctx, "end", required=True)
        assert start is not None and end is not None
        frame = Frame.parse(GRANULARITIES[granularity])
        if end < start:
            raise self.fail("bad_request", "start and end argument is invalid - start is after end")
        if (end - start) * 1000 > CANDLE_PAGE * frame.ms:
            raise self.fail(
                "bad_request",
                "start and end argument is invalid - number of candles requested should be "
                f"less than {CANDLE_PAGE}",
            )
        raw = ctx.market.raw_candles(
            self.name, spec.symbol, frame, start * 1000, end * 1000, fill_empty=False
        )
        seed = ctx.market.seed

        def render(r: RawCandles) -> list[Any]:
            return cached_rows("coinbase", seed, r, self._candle_rows)

        rows = ctx.mangle_candles(render(raw), raw, render)
        return Reply(page({"candles": rows[::-1]}))

    def _candle_rows(self, raw: RawCandles) -> list[dict[str, str]]:
        a, decimals = raw.agg, raw.spec.price_decimals
        cols = zip(
            [str(t // 1000) for t in a.start.tolist()],
            fmt_plain_col(a.low, decimals),
            fmt_plain_col(a.high, decimals),
            fmt_plain_col(a.open, decimals),
            fmt_plain_col(a.close, decimals),
            fmt_plain_col(a.volume, raw.spec.amount_decimals),
            strict=True,
        )
        keys = ("start", "low", "high", "open", "close", "volume")
        return [dict(zip(keys, row, strict=True)) for row in cols]

    def ticker(self, ctx: Ctx) -> Reply:
        """``GET /api/v3/brokerage/market/products/{product_id}/ticker``: the newest
        ``limit`` trades of ``[start, end)``, newest first, and the best bid and ask.

        Sample (``tests/data/realdata/exchange_rest_samples/ccxt-static/coinbase.json``)::

            {"trades": [{"trade_id": "635541194", "product_id": "BTC-USDC",
              "price": "66363.03", "size": "0.03720194", "time": "2024-04-24T09:56:38.063595Z",
              "side": "BUY", "bid": "", "ask": ""}], "best_bid": "66367.58",
             "best_ask": "66367.59"}
        """
        spec = self._spec(ctx)
        limit = parse_int(ctx.params, "limit", self)
        if limit is None:
            raise self.fail("bad_request", "limit argument is required")
        if not 1 <= limit <= TRADES_PAGE:
            raise self.fail("bad_request", f"limit must be between 1 and {TRADES_PAGE}")
        start = self._seconds(ctx, "start", required=False)
        end = self._seconds(ctx, "end", required=False)
        raw = ctx.market.raw_trades_backward(
            self.name,
            spec.symbol,
            end=None if end is None else end * 1000,
            start=None if start is None else start * 1000,
            limit=limit,
        )
        rows = ctx.mangle_trades(
            self._trade_rows(spec, raw), raw, spec.symbol, lambda r: self._trade_rows(spec, r)
        )
        last = self._last_price(ctx, spec)
        bid = "" if last is None else fmt(last - spec.tick, spec.price_decimals)
        ask = "" if last is None else fmt(last + spec.tick, spec.price_decimals)
        return Reply({"trades": rows[::-1], "best_bid": bid, "best_ask": ask})

    def _trade_rows(self, spec: MarketSpec, raw: RawTrades) -> list[dict[str, str]]:
        pd_, ad = spec.price_decimals, spec.amount_decimals
        pid = product_id(spec)
        return [
            {
                "trade_id": str(int(raw.id[i])),
                "product_id": pid,
                "price": fmt_plain(int(raw.price[i]), pd_),
                "size": fmt(int(raw.amount[i]), ad),
                "time": _iso(int(raw.ts[i])),
                "side": "BUY" if raw.buy[i] else "SELL",
                "bid": "",
                "ask": "",
            }
            for i in range(len(raw))
        ]
