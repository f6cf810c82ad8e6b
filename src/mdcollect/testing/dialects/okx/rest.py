"""OKX v5 REST (``/api/v5``).

Serves ccxt id ``okx`` (project alias ``okx_futures``). Candles and trades come
newest first. ``after`` returns records older than the given ts/tradeId, ``before``
records newer (both exclusive); with both, the newest ``limit`` in between; with
only ``before``, the newest ``limit`` records (OKX's documented behaviour).
``market/candles`` only reaches the most recent 1440 candles, ``market/history-candles``
all history. ``confirm`` is ``"0"`` for the still-open candle, ``"1"`` otherwise.

Swap sizes are in contracts: ``ctVal`` is 0.01 BTC and 0.1 ETH as on OKX (ccxt's
trade ``amount`` is then in contracts; candle volume index 6 ``volCcy`` in base).

Rate limits (per IP, docs: https://www.okx.com/docs-v5/en/#order-book-trading-market-data):
``market/candles`` 40 req/2 s, ``market/history-candles`` 20/2 s, ``market/trades``
100/2 s, ``market/history-trades`` 20/2 s, ``public/instruments`` 20/2 s,
``market/mark-price-candles`` and ``market/index-candles`` 20/2 s, their
``history-`` variants 10/2 s (100 candles a page; the recent ones reach the latest
1440 candles as ``market/candles``); exceeding
answers HTTP 429 ``{"code":"50011","msg":"Too Many Requests"}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from mdcollect.testing._faults import Limit
from mdcollect.testing._market import (
    DAY,
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
    fmt_plain,
    fmt_plain_col,
    parse_int,
    plain_candle_rows,
)
from mdcollect.testing.dialects._render import cached_rows, page

from ._common import BARS, CT_VAL_EXP, _funding_row, _inst_id
from .ws import OkxWs

#: How far back ``public/funding-rate-history`` serves: "the last 3 months".
FUNDING_HISTORY_DEPTH = 90 * DAY

__all__ = ["RECENT_CANDLES", "Okx"]


RECENT_CANDLES = 1440
#: Candles of other prices: the endpoint's name and the price (OKX has no premium candles).
PRICE_CANDLES: dict[str, PriceKind] = {"mark-price-candles": "mark", "index-candles": "index"}


#: rubik/stat/contracts/open-interest-history's periods: (ms, how far back it serves).
#: OKX's trading statistics keep 5m for 2 days, 1H for 30 days, 1D for 180 days.
OPEN_INTEREST_PERIODS: dict[str, tuple[int, int]] = {
    "5m": (5 * 60_000, 2 * DAY),
    "1H": (DAY // 24, 30 * DAY),
    "1D": (DAY, 180 * DAY),
}


def _ok(data: Any) -> Reply:
    return Reply({"code": "0", "msg": "", "data": data})


class Okx(Dialect):
    """OKX v5 public REST."""

    name: ClassVar[str] = "okx"
    aliases: ClassVar[tuple[str, ...]] = ("okx_futures", "okex", "okex5")
    fill_empty: ClassVar[bool] = True
    limit_clamps: ClassVar[bool] = True
    limits: ClassVar[Mapping[str, Limit]] = {
        "candles": Limit(40, 2.0),
        "history-candles": Limit(20, 2.0),
        "trades": Limit(100, 2.0),
        "history-trades": Limit(20, 2.0),
        "instruments": Limit(20, 2.0),
        "public": Limit(20, 2.0),
        "mark-price-candles": Limit(20, 2.0),
        "history-mark-price-candles": Limit(10, 2.0),
        "index-candles": Limit(20, 2.0),
        "history-index-candles": Limit(10, 2.0),
        "rubik": Limit(5, 2.0),
    }
    ws_hosts: ClassVar[Mapping[str, str]] = {
        "ws.okx.com": "okx",
        "wsaws.okx.com": "okx",
        "wspap.okx.com": "okx",
    }

    def default_markets(self) -> Sequence[MarketSpec]:
        return [
            MarketSpec("BTC/USDT", 30_000.0, price_decimals=1, amount_decimals=8, mean_amount=0.02),
            MarketSpec("ETH/USDT", 2_000.0, price_decimals=2, amount_decimals=6, mean_amount=0.3),
            MarketSpec(
                "BTC/USDT:USDT", 30_000.0, price_decimals=1, amount_decimals=4, mean_amount=0.05
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
        p = "/api/v5"
        return [
            Route(
                "GET",
                f"{p}/public/instruments",
                "public/instruments",
                self.instruments,
                1,
                "instruments",
            ),
            Route(
                "GET",
                f"{p}/public/time",
                "public/time",
                lambda c: _ok([{"ts": str(c.now)}]),
                1,
                "public",
            ),
            Route("GET", f"{p}/market/candles", "market/candles", self.candles, 1, "candles"),
            Route(
                "GET",
                f"{p}/market/history-candles",
                "market/history-candles",
                self.history_candles,
                1,
                "history-candles",
            ),
            *(
                Route(
                    "GET",
                    f"{p}/market/{history}{name}",
                    f"market/{history}{name}",
                    functools.partial(self.price_candles, kind=kind, recent=not history),
                    1,
                    f"{history}{name}",
                )
                for name, kind in PRICE_CANDLES.items()
                for history in ("", "history-")
            ),
            Route("GET", f"{p}/market/trades", "market/trades", self.trades, 1, "trades"),
            Route(
                "GET",
                f"{p}/market/history-trades",
                "market/history-trades",
                self.history_trades,
                1,
                "history-trades",
            ),
            Route(
                "GET",
                f"{p}/public/funding-rate",
                "public/funding-rate",
                self.funding_rate,
                1,
                "public",
            ),
            Route(
                "GET",
                f"{p}/public/funding-rate-history",
                "public/funding-rate-history",
                self.funding_rate_history,
                1,
                "public",
            ),
            Route(
                "GET",
                f"{p}/rubik/stat/contracts/open-interest-history",
                "rubik/stat/contracts/open-interest-history",
                self.open_interest_history,
                1,
                "rubik",
            ),
        ]

    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """OKX errors, e.g. ``{"code":"51001","msg":"Instrument ID does not exist","data":[]}``."""
        if kind == "bad_symbol":
            return Reply({"code": "51001", "msg": "Instrument ID does not exist", "data": []}, 400)
        if kind in ("rate_limit", "ban"):
            return Reply(
                {"code": "50011", "msg": "Too Many Requests", "data": []},
                429,
                {"Retry-After": str(max(1, int(-(-retry_after // 1))))},
            )
        if kind == "not_found":
            return Reply({"msg": "", "code": "50030"}, 404)
        if kind == "missing":
            return Reply(
                {"code": "50014", "msg": f"Parameter {message} can not be empty.", "data": []}, 400
            )
        return Reply({"code": "51000", "msg": f"Parameter {message} error", "data": []}, 400)

    # -- helpers

    def _spec(self, ctx: Ctx) -> MarketSpec:
        inst = ctx.params.get("instId")
        if not inst:
            raise self.fail("missing", "instId")
        spec = find_market(ctx.market, self.name, lambda s: _inst_id(s) == inst)
        if spec is None:
            raise self.fail("bad_symbol")
        return spec

    # -- instruments

    def instruments(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/public/instruments?instType=SPOT``.

        Sample (SWAP, abridged)::

            {"code": "0", "msg": "", "data": [{"instType": "SWAP", "instId": "BTC-USDT-SWAP",
              "uly": "BTC-USDT", "instFamily": "BTC-USDT", "settleCcy": "USDT", "ctVal": "0.01",
              "ctMult": "1", "ctValCcy": "BTC", "ctType": "linear", "lotSz": "0.01",
              "tickSz": "0.1", "minSz": "0.01", "state": "live", "listTime": "1573557408000"}]}
        """
        inst_type = ctx.params.get("instType")
        if not inst_type:
            raise self.fail("missing", "instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise self.fail("bad_request", "instType")
        out = []
        for symbol in ctx.market.symbols(self.name):
            s = ctx.market.spec(self.name, symbol)
            if (inst_type == "SWAP") != s.is_contract or inst_type in (
                "FUTURES",
                "OPTION",
                "MARGIN",
            ):
                continue
            inst_id = ctx.params.get("instId")
            if inst_id and inst_id != _inst_id(s):
                continue
            out.append(self._instrument(s))
        return _ok(out)

    def _instrument(self, s: MarketSpec) -> dict[str, Any]:
        contract = s.is_contract
        k = CT_VAL_EXP.get(s.base, 0) if contract else 0
        lot = fmt_plain(1, s.amount_decimals - k) if contract else fmt_plain(1, s.amount_decimals)
        return {
            "alias": "",
            "baseCcy": "" if contract else s.base,
            "category": "1",
            "ctMult": "1" if contract else "",
            "ctType": "linear" if contract else "",
            "ctVal": (fmt_plain(1, k) if k >= 0 else str(10**-k)) if contract else "",
            "ctValCcy": s.base if contract else "",
            "expTime": "",
            "instFamily": f"{s.base}-{s.quote}" if contract else "",
            "instId": _inst_id(s),
            "instType": "SWAP" if contract else "SPOT",
            "lever": "100" if contract else "10",
            "listTime": str(s.listed),
            "contTdSwTime": str(s.listed),
            "lotSz": lot,
            "maxIcebergSz": "9999999999",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999",
            "maxMktAmt": "1000000",
            "maxMktSz": "1000000" if not contract else "12000",
            "maxStopSz": "9999999999",
            "maxTriggerSz": "9999999999",
            "maxTwapSz": "9999999999",
            "minSz": lot,
            "optType": "",
            "quoteCcy": "" if contract else s.quote,
            "ruleType": "normal",
            "settleCcy": s.settle if contract else "",
            "state": "live",
            "stk": "",
            "tickSz": fmt_plain(s.tick, s.price_decimals),
            "uly": f"{s.base}-{s.quote}" if contract else "",
        }

    # -- candles

    def candles(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/market/candles``: the most recent 1440 candles only.

        Sample::

            {"code": "0", "msg": "", "data": [["1706637600000", "43398.6", "43493.9", "43279.9",
              "43373.9", "5070.79611732", "220057933.233687634", "220057933.233687634", "1"]]}
        """
        return self._candles(ctx, recent=True, maximum=300)

    def history_candles(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/market/history-candles``: all history, same format as ``candles``.

        OKX raised its limit from 100 to 300 (ccxt's ``features`` say 300 for both).
        """
        return self._candles(ctx, recent=False, maximum=300)

    def price_candles(self, ctx: Ctx, kind: PriceKind, *, recent: bool) -> Reply:
        """``GET /api/v5/market/(history-)mark-price-candles`` (``instId`` the swap) and
        ``/api/v5/market/(history-)index-candles`` (``instId`` the index, its
        ``instFamily``): paged as ``candles``, at most 100, derived from the last-price
        candles (:mod:`mdcollect.testing._market.prices`).

        Sample::

            {"code": "0", "msg": "", "data": [["1597026383085", "3.721", "3.743", "3.677",
              "3.708", "1"]]}
        """
        if kind == "index":
            inst = ctx.params.get("instId")
            spec = find_market(
                ctx.market, self.name, lambda s: s.is_contract and f"{s.base}-{s.quote}" == inst
            )
            if spec is None:
                raise self.fail("missing" if not inst else "bad_symbol", "instId")
        else:
            spec = self._spec(ctx)

        def render(raw: RawCandles) -> list[list[str]]:
            derived = derive(raw, kind)
            confirm = ["1" if c else "0" for c in derived.confirmed().tolist()]
            return plain_candle_rows(derived, confirm)

        return self._candles(ctx, recent=recent, maximum=100, spec=spec, render=render)

    def _candles(
        self,
        ctx: Ctx,
        *,
        recent: bool,
        maximum: int,
        spec: MarketSpec | None = None,
        render: Callable[[RawCandles], list[Any]] | None = None,
    ) -> Reply:
        spec = self._spec(ctx) if spec is None else spec
        if render is None:
            seed = ctx.market.seed

            def render(r: RawCandles) -> list[Any]:
                return cached_rows("okx", seed, r, self._rows)

        bar = ctx.params.get("bar", "1m")
        if bar not in BARS or (bar == "1s" and not recent):
            raise self.fail("bad_request", "bar")
        tf, offset = BARS[bar]
        frame = Frame.parse(tf, offset)
        limit = self.limit_param(ctx, 100, maximum)
        after = parse_int(ctx.params, "after", self)
        before = parse_int(ctx.params, "before", self)
        m = ctx.market
        now = ctx.now
        top = now if after is None else min(after - 1, now)
        floor = None if before is None else before + 1
        if recent:
            oldest = frame.floor(now)
            for _ in range(RECENT_CANDLES - 1):
                oldest = frame.prev(oldest)
            floor = oldest if floor is None else max(floor, oldest)
        raw = m.raw_candles_backward(self.name, spec.symbol, frame, top, limit, start=floor)
        reply = _ok(ctx.mangle_candles(render(raw), raw, render)[::-1])
        reply.body = page(reply.body)
        return reply

    def _rows(self, raw: RawCandles) -> list[list[str]]:
        s = raw.spec
        a = raw.agg
        pd_, ad = s.price_decimals, s.amount_decimals
        k = CT_VAL_EXP.get(s.base, 0)
        quote = fmt_plain_col(a.quote, pd_ + ad)
        if s.is_contract:
            vol, ccy = fmt_plain_col(a.volume, ad - k), fmt_plain_col(a.volume, ad)
        else:
            vol, ccy = fmt_plain_col(a.volume, ad), quote
        confirm = ["1" if c else "0" for c in raw.confirmed().tolist()]
        return plain_candle_rows(raw, vol, ccy, quote, confirm)

    # -- trades

    def _trade_rows(self, spec: MarketSpec, raw: RawTrades) -> list[dict[str, str]]:
        k = CT_VAL_EXP.get(spec.base, 0) if spec.is_contract else 0
        inst = _inst_id(spec)
        return [
            {
                "instId": inst,
                "side": "buy" if raw.buy[i] else "sell",
                "sz": fmt_plain(int(raw.amount[i]), spec.amount_decimals - k),
                "px": fmt_plain(int(raw.price[i]), spec.price_decimals),
                "source": "0",
                "tradeId": str(int(raw.id[i])),
                "ts": str(int(raw.ts[i])),
            }
            for i in range(len(raw))
        ]

    def trades(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/market/trades``: the most recent trades (default 100, max 500), newest first.

        Sample::

            {"code": "0", "msg": "", "data": [{"instId": "BTC-USDT", "side": "sell",
              "sz": "0.0009478", "px": "73239.3", "source": "0", "tradeId": "497859870",
              "ts": "1710327658374"}]}
        """
        spec = self._spec(ctx)
        limit = self.limit_param(ctx, 100, 500)
        raw = ctx.market.raw_trades_backward(self.name, spec.symbol, limit=limit)
        return _ok(self._trade_rows(spec, raw)[::-1])

    def history_trades(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/market/history-trades``: paginate by tradeId (``type=1``) or ts (``type=2``).

        Same row format as ``market/trades``; default and max limit 100; newest first.
        """
        spec = self._spec(ctx)
        limit = self.limit_param(ctx, 100, 100)
        by_ts = ctx.params.get("type", "1") == "2"
        after = parse_int(ctx.params, "after", self)
        before = parse_int(ctx.params, "before", self)
        m = ctx.market
        if by_ts:
            floor = None if before is None else before + 1
            raw = m.raw_trades_backward(self.name, spec.symbol, end=after, start=floor, limit=limit)
        else:
            raw = m.raw_trades_backward(self.name, spec.symbol, before_id=after, limit=limit)
            if before is not None:
                raw = raw.take(raw.id > before)
        rows = self._trade_rows(spec, raw)
        return _ok(
            ctx.mangle_trades(rows, raw, spec.symbol, lambda r: self._trade_rows(spec, r))[::-1]
        )

    # -- funding

    def funding_rate(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/public/funding-rate?instId=BTC-USDT-SWAP``.

        Sample::

            {"code": "0", "msg": "", "data": [{"fundingRate": "0.0000792386885340",
              "fundingTime": "1703088000000", "instId": "BTC-USDT-SWAP", "instType": "SWAP",
              "method": "next_period", "maxFundingRate": "0.00375", "minFundingRate": "-0.00375",
              "nextFundingRate": "", "nextFundingTime": "1703116800000", "premium": "0.0001",
              "settFundingRate": "0.0001", "settState": "settled", "ts": "1703070685309"}]}
        """
        spec = self._spec(ctx)
        if not spec.is_contract:
            raise self.fail("bad_symbol")
        return _ok([_funding_row(ctx.market, self.name, spec, ctx.now)])

    def funding_rate_history(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/public/funding-rate-history``: the newest ``limit`` (max 100)
        settlements with ``before < fundingTime < after`` (ms), newest first, from the
        last 3 months only (older ones are not served)."""
        spec = self._spec(ctx)
        if not spec.is_contract:
            raise self.fail("bad_symbol")
        limit = self.limit_param(ctx, 100, 100)
        after = parse_int(ctx.params, "after", self)
        before = parse_int(ctx.params, "before", self)
        end = ctx.now if after is None else after - 1
        start = max(spec.listed if before is None else before + 1, ctx.now - FUNDING_HISTORY_DEPTH)
        events = ctx.mangle(
            ctx.market.funding(self.name, spec.symbol, start, end)[-limit:], lambda: None
        )
        events = events[::-1]
        return _ok(
            [
                {
                    "fundingRate": f"{r:.10f}",
                    "fundingTime": str(t),
                    "instId": _inst_id(spec),
                    "instType": "SWAP",
                    "method": "current_period",
                    "realizedRate": f"{r:.10f}",
                }
                for t, r, _ in events
            ]
        )

    def open_interest_history(self, ctx: Ctx) -> Reply:
        """``GET /api/v5/rubik/stat/contracts/open-interest-history``: the newest ``limit``
        (max 100) rows of ``period`` (5m, 1H, 1D) with ``begin < ts < end`` (ms), newest
        first; each period only as far back as OKX keeps it (older rows are not served).

        Sample::

            {"code": "0", "msg": "", "data": [["1790550000000", "2800476.45", "28006.5419",
              "2360916466.88"]]}   (ts, oi in contracts, oiCcy in base, oiUsd)
        """
        spec = self._spec(ctx)
        if not spec.is_contract:
            raise self.fail("bad_symbol")
        period = ctx.params.get("period", "5m")
        if period not in OPEN_INTEREST_PERIODS:
            raise self.fail("bad_request", "period")
        length, depth = OPEN_INTEREST_PERIODS[period]
        limit = self.limit_param(ctx, 100, 100)
        begin = parse_int(ctx.params, "begin", self)
        end = parse_int(ctx.params, "end", self)
        lo = max(ctx.now - depth, -1 if begin is None else begin + 1)
        hi = ctx.now if end is None else end
        rows = ctx.market.open_interest(self.name, spec.symbol, length, lo, hi)[-limit:]
        rows = ctx.mangle(rows, lambda: None)[::-1]
        k = CT_VAL_EXP.get(spec.base, 0)
        return _ok(
            [[str(t), f"{a * 10**k:.{max(0, 3 - k)}f}", f"{a:.3f}", f"{v:.4f}"] for t, a, v in rows]
        )

    # -- websockets

    def ws_session(
        self, market: SyntheticMarket, kind: str, path: str, query: Mapping[str, str], conn_id: int
    ) -> WsSession | None:
        """``/ws/v5/public`` (trades, tickers, books, books5, bbo-tbt, funding-rate,
        mark-price) and ``/ws/v5/business`` (candles)."""
        endpoint = path.rstrip("/").rsplit("/", 1)[-1]
        if not path.startswith("/ws/v5/") or endpoint not in ("public", "business"):
            return None
        return OkxWs(self, market, endpoint, conn_id)
