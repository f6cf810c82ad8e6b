"""Exchange keys and what mdcollect knows about each exchange, as data.

Every ccxt id (``ccxt.exchanges``) is a key with defaults read from the ccxt
class (timeframes, candle page limit from ``features``; remembered across processes by
:mod:`~mdcollect.exchanges._ccxt_facts`, so that checking a request imports no ccxt). A few keys carry facts
learnt from the exchanges' documentation: page limits, which endpoint has deep
history, how trades page. Aliases (``binance_futures``, ``bybit_futures``,
``okx_futures``) select USDT-margined perpetuals (``BTC/USDT:USDT``).

Adding an exchange's facts is one entry in :data:`_KNOWN`; generic code never
branches on an exchange name.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal

from attrs import evolve, field, frozen

from .._errors import InvalidRequest
from .._rules import check_timeframe
from .._time import DAY, HOUR, NS_PER_MS, Timeframe
from ._ccxt_facts import class_facts, is_ccxt_id
from ._limiter import Budget, binance_body, binance_headers, bybit_headers

__all__ = [
    "ExchangeInfo",
    "FundingHistory",
    "MarketType",
    "OpenInterestHistory",
    "PriceCandles",
    "TradesBefore",
    "TradesCursor",
    "exchange_info",
    "exchange_keys",
    "request_seconds",
]

MarketType = Literal["spot", "swap"]

_DEFAULT_PAGE_LIMIT: Final = 500
_DEFAULT_TRADES_LIMIT: Final = 500


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@frozen
class TradesCursor:
    """How an exchange pages trades by an opaque cursor instead of a time.

    ``param`` is the request parameter that takes the cursor; ``extract`` reads
    the next cursor from the ccxt trades of one page (``None`` when there is none).
    """

    param: str
    extract: Callable[[Sequence[Mapping[str, Any]]], str | None]


@frozen
class TradesBefore:
    """How an exchange serves past trades newest first, before a time or before a
    trade id (OKX ``market/history-trades``).

    ``by_time`` and ``by_id`` are the ccxt ``fetch_trades`` params of each form;
    ``param`` takes the time (ms, exclusive) or the id (exclusive);
    ``retention_ms`` is how far back the exchange keeps trades (``None``: always).
    """

    by_time: Mapping[str, Any] = field(converter=_frozen_mapping)
    by_id: Mapping[str, Any] = field(converter=_frozen_mapping)
    param: str = "after"
    retention_ms: int | None = None


_OKX_TRADES_BEFORE = TradesBefore(
    by_time={"method": "publicGetMarketHistoryTrades", "type": "2"},
    by_id={"method": "publicGetMarketHistoryTrades", "type": "1"},
    retention_ms=90 * DAY,  # "the last 3 months"
)


@frozen
class PriceCandles:
    """How an exchange serves the candles of another price (mark, index, premium).

    ``param`` is the ``price`` param ccxt's ``fetch_ohlcv`` takes for it (what
    ``fetch_mark_ohlcv`` and its siblings pass); ``endpoint`` is where ccxt's
    ``describe()["api"]`` defines the endpoint it reaches (its rate-limit cost).
    """

    param: str
    endpoint: tuple[str, ...]


def _kraken_last(trades: Sequence[Mapping[str, Any]]) -> str | None:
    # Kraken's ``since`` is an exclusive ns time. Not its own "last" cursor (which a page
    # cut short does not show): just before the last trade's millisecond, so the next
    # answer starts with that trade, known to exist.
    if not trades:
        return None
    return str(int(trades[-1]["timestamp"]) * NS_PER_MS - 1)


@frozen
class FundingHistory:
    """How an exchange serves past funding settlements (ccxt ``fetch_funding_rate_history``).

    ``page_limit`` settlements a request; ``newest_first``: a page holds the newest
    settlements of the span asked (OKX, Bybit), else the oldest (Binance);
    ``until_param`` is the ccxt param bounding the span's end, sent as
    ``until + until_offset`` (ccxt's unified ``until`` is inclusive, OKX's ``after``
    exclusive); ``depth_ms`` how far back from now the exchange keeps them (``None``:
    from the listing); ``endpoint`` where ccxt's ``describe()["api"]`` defines it;
    ``settles_on``: every settlement falls on a whole multiple of this many ms since the
    epoch, whatever the symbol's interval (1, 2, 4 or 8 hours, from 00:00 UTC), which
    is what :func:`mdcollect.audit` checks funding rows against.
    """

    page_limit: int
    newest_first: bool
    endpoint: tuple[str, ...]
    until_param: str = "until"
    until_offset: int = -1
    depth_ms: int | None = None
    settles_on: int = HOUR


def _optional_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else _frozen_mapping(value)


@frozen
class OpenInterestHistory:
    """How an exchange serves past open interest (ccxt ``fetch_open_interest_history``).

    ``periods`` are the timeframes it keeps open interest at (ccxt's names; ccxt maps
    them to the exchange's, e.g. Bybit ``5min``); ``page_limit`` rows a request;
    ``depth_ms`` how far back from now it keeps each period (``None``: from the
    listing); ``endpoint`` where ccxt's ``describe()["api"]`` defines it.
    """

    periods: tuple[str, ...]
    page_limit: int
    endpoint: tuple[str, ...]
    depth_ms: Mapping[str, int] | None = field(default=None, converter=_optional_mapping)

    def depth(self, timeframe: str) -> int | None:
        """How far back (ms) the exchange keeps ``timeframe``'s rows, ``None``: no limit."""
        return None if self.depth_ms is None else self.depth_ms.get(timeframe)


@frozen(kw_only=True)
class ExchangeInfo:
    """What mdcollect knows about one exchange key.

    >>> info = exchange_info("binance_futures")
    >>> info.ccxt_id, info.market_type, info.page_limit
    ('binanceusdm', 'swap', 1000)
    >>> exchange_info("kraken").deep_history
    False

    Attributes:
        key: the mdcollect exchange key (a ccxt id or an alias).
        ccxt_id: the ccxt class behind it.
        options: ccxt ``options`` merged into the constructor config.
        market_type: the kind of market the key selects (``spot`` or ``swap``).
        page_limit: candles per ``fetch_ohlcv`` request.
        deep_history: whether the candle endpoint serves any past range
            (Kraken's OHLC only returns the last ~720 candles).
        trades_page_limit: trades per ``fetch_trades`` request.
        timeframes: the timeframes mdcollect fetches from the exchange: ccxt's
            list, less those in ``timeframes_unserved`` and those
            :class:`~mdcollect.Timeframe` cannot represent (OKX's ``3M``).
        timeframes_unserved: timeframes ccxt lists that the exchange does not
            serve as named, each with the reason.
        ohlcv_params: extra ccxt params for every ``fetch_ohlcv`` (OKX needs
            ``type=HistoryCandles`` to read deep history).
        ohlcv_since_grid: ccxt rounds ``fetch_ohlcv``'s ``since`` up to a multiple
            of its own length of the timeframe counted from the epoch (its
            ``parse_timeframe``: weeks from Thursday 1970-01-01, ``1M`` as 30
            days), so :meth:`ohlcv_since` moves ``since`` back onto that grid.
        ohlcv_until: send ccxt's ``until`` param for the end of the page so the
            exchange answers the window starting at ``since`` (Bybit answers the
            newest candles otherwise).
        trades_since: whether the trades endpoint honours ``since`` (most only
            serve recent trades).
        trades_window_ms: the span one trades request covers from ``since``
            (Binance aggTrades: one hour), ``None`` when unbounded.
        trades_cursor: how trades page by cursor, when they do (Kraken).
        trades_before: how past trades are read newest first, before a time
            or an id, when the trades endpoint ignores ``since`` (OKX).
        first_candle: how :meth:`ExchangeClient.first_candle_time` finds a
            listing time: ``since_zero`` (ask candles from the epoch),
            ``market_created`` (the market's ``created`` field from the
            instruments list, no extra request), ``day_scan`` (pages of days, then
            hours, then minutes from where the range starts: Coinbase), ``none``
            (unknowable).
        ws_ticker_params: ccxt params for ``watch_ticker`` (ccxt.pro binance's
            default reads the ``watchTickers`` option and subscribes to the
            miniTicker stream, which has no bid or ask: ask for ``ticker``).
        price_kinds: the candle kinds besides ``ohlcv`` the exchange serves (``mark``,
            ``index``, ``premium``), each with how ccxt reaches it
            (:class:`PriceCandles`).
        ohlcv_endpoint, trades_endpoint: where ccxt's ``describe()["api"]``
            defines the candle and trades endpoints (api, method, path); their
            rate-limit cost gives :func:`request_seconds`.
        funding: how past funding settlements page (:class:`FundingHistory`),
            ``None`` where mdcollect does not backfill them.
        open_interest: how past open interest pages and how deep it goes
            (:class:`OpenInterestHistory`), ``None`` where mdcollect does not backfill it.
        budget: the exchange's rolling-window weight budget, paced by a shared
            :class:`~mdcollect.exchanges._limiter.WeightLimiter` instead of ccxt's
            evenly spaced throttler; ``None`` keeps ccxt's throttler.
        liquidation_delay_ms: how long after a liquidation its stream may push it, plus
            slack for the network: a frame received at ``t`` shows every liquidation
            before ``t - liquidation_delay_ms`` has arrived (Binance and OKX push a
            symbol's latest of each second when the second is over, Bybit every 500 ms).
        liquidation_side_is_position: the stream's side is the liquidated position's
            (Bybit's ``allLiquidation``: ``Buy`` means a long was liquidated), not the
            forced order's as elsewhere.
        candle_fields: the optional ``ohlcv`` columns the exchange's raw candle rows
            carry beyond what ccxt parses, by position in the row (read by
            :func:`~mdcollect.exchanges.candle_columns`), for spot and linear markets
            (inverse markets count volumes in contracts or the base: none kept).
        ws_book_rest_snapshot: ccxt.pro starts this exchange's websocket order book
            from a REST snapshot (Binance's diff-depth streams), which a capture of the
            frames does not hold: such books cannot be replayed.
    """

    key: str
    ccxt_id: str
    options: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    market_type: MarketType = "spot"
    page_limit: int = _DEFAULT_PAGE_LIMIT
    deep_history: bool = True
    trades_page_limit: int = _DEFAULT_TRADES_LIMIT
    timeframes: tuple[str, ...] = ()
    timeframes_unserved: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    ohlcv_params: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    ohlcv_since_grid: bool = False
    ohlcv_until: bool = False
    trades_since: bool = True
    trades_window_ms: int | None = None
    trades_cursor: TradesCursor | None = None
    trades_before: TradesBefore | None = None
    first_candle: Literal["since_zero", "market_created", "day_scan", "none"] = "since_zero"
    ws_ticker_params: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    price_kinds: Mapping[str, PriceCandles] = field(factory=dict, converter=_frozen_mapping)
    ohlcv_endpoint: tuple[str, ...] = ()
    trades_endpoint: tuple[str, ...] = ()
    funding: FundingHistory | None = None
    budget: Budget | None = None
    open_interest: OpenInterestHistory | None = None
    liquidation_delay_ms: int = 1_500
    liquidation_side_is_position: bool = False
    candle_fields: Mapping[str, int] = field(factory=dict, converter=_frozen_mapping)
    ws_book_rest_snapshot: bool = False

    @property
    def trades_history(self) -> bool:
        """Whether past trades of any range can be read (by ``since`` or backwards)."""
        return self.trades_since or self.trades_before is not None

    def capabilities(self) -> dict[str, Any]:
        """What mdcollect fetches from this exchange, as plain data (``mdcollect
        exchanges``): the history kinds, timeframes, page sizes and history depths
        (``None``: back to the listing).

        >>> exchange_info("okx_futures").capabilities()["kinds"]
        ['ohlcv', 'trades', 'funding', 'mark', 'index', 'open_interest']
        """
        kinds = ["ohlcv"]
        if self.trades_history:
            kinds.append("trades")
        if self.funding is not None:
            kinds.append("funding")
        kinds += list(self.price_kinds)
        oi = self.open_interest
        if oi is not None:
            kinds.append("open_interest")
        funding = self.funding
        return {
            "key": self.key,
            "ccxt_id": self.ccxt_id,
            "market_type": self.market_type,
            "kinds": kinds,
            "timeframes": list(self.timeframes),
            "candles_per_request": self.page_limit,
            "deep_candle_history": self.deep_history,
            "trades_per_request": self.trades_page_limit if self.trades_history else None,
            "funding": None
            if funding is None
            else {"per_request": funding.page_limit, "depth_days": _days(funding.depth_ms)},
            "open_interest": None
            if oi is None
            else {
                "periods": list(oi.periods),
                "per_request": oi.page_limit,
                "depth_days": {p: _days(oi.depth(p)) for p in oi.periods},
            },
        }

    def check_timeframe(self, timeframe: object) -> Timeframe:
        """``timeframe`` parsed, if it is one of :attr:`timeframes` exactly as written;
        otherwise :class:`~mdcollect.InvalidRequest` listing them, with the likely
        meaning of a case mistake or a near miss.

        >>> exchange_info("binance").check_timeframe("1w")
        Timeframe(amount=1, unit='w')
        >>> exchange_info("binance").check_timeframe("1H")
        Traceback (most recent call last):
        InvalidRequest: timeframe '1H' is not supported by binance (did you mean '1h'?); ...
        """
        return check_timeframe(
            timeframe, self.timeframes, by=self.key, unserved=self.timeframes_unserved
        )

    def check_candle_kind(self, kind: object) -> None:
        """Nothing if the exchange serves candles of ``kind`` (``ohlcv`` everywhere, or one
        of :attr:`price_kinds`); otherwise :class:`~mdcollect.InvalidRequest` naming those
        it serves and the exchange keys that serve ``kind``.

        >>> exchange_info("binance").check_candle_kind("mark")
        Traceback (most recent call last):
        InvalidRequest: binance does not serve 'mark' candles (it serves: ohlcv); ...
        """
        if kind == "ohlcv" or kind in self.price_kinds:
            return
        served = ", ".join(["ohlcv", *self.price_kinds])
        others = [k for k, facts in _KNOWN.items() if kind in facts.get("price_kinds", {})]
        where = f"; exchanges that do: {', '.join(others)}" if others else ""
        raise InvalidRequest(
            f"{self.key} does not serve {kind!r} candles (it serves: {served}){where}"
        )

    def open_interest_history(self, timeframe: object) -> OpenInterestHistory:
        """How the exchange serves open interest at ``timeframe`` (one of its periods);
        otherwise :class:`~mdcollect.InvalidRequest` naming the periods it keeps, or the
        exchange keys that keep open interest at all.

        >>> exchange_info("okx_futures").open_interest_history("15m")
        Traceback (most recent call last):
        InvalidRequest: okx_futures keeps open interest at the periods 5m, 1h, 1d; not '15m'
        """
        how = self.open_interest
        if how is None:
            others = [k for k, facts in _KNOWN.items() if facts.get("open_interest") is not None]
            raise InvalidRequest(
                f"{self.key} has no open-interest history in mdcollect; exchanges that have "
                f"it: {', '.join(others)}"
            )
        if timeframe not in how.periods:
            raise InvalidRequest(
                f"{self.key} keeps open interest at the periods {', '.join(how.periods)}; "
                f"not {timeframe!r}"
            )
        return how

    def ohlcv_since(self, timeframe: Timeframe, start: int) -> int:
        """The ``since`` to hand ccxt's ``fetch_ohlcv`` so that the request it sends
        starts at or before ``start`` (a candle start): ``start`` itself, or, where
        ccxt rounds ``since`` up (:attr:`ohlcv_since_grid`), ``start`` moved back
        onto ccxt's grid.

        >>> exchange_info("bybit").ohlcv_since(Timeframe.parse("1w"), 1_704_067_200_000)
        1703721600000
        """
        if not self.ohlcv_since_grid:
            return start
        import ccxt

        step = int(ccxt.Exchange.parse_timeframe(str(timeframe)) * 1000)
        return start // step * step


def _market(market_type: MarketType, load: str, **options: Any) -> dict[str, Any]:
    """The facts that select one kind of market of an exchange: ccxt's ``defaultType``
    (and further ``options``) and the only markets ccxt loads (``fetchMarkets.types``:
    one request instead of one per market type)."""
    return {
        "market_type": market_type,
        "options": {"defaultType": market_type, **options, "fetchMarkets": {"types": [load]}},
    }


# One exchange behind a spot key and a perpetuals alias pages alike on both; what
# differs (ccxt class, endpoints, markets) is written in the key's own entry.
_BINANCE: Final[dict[str, Any]] = dict(
    ws_ticker_params={"name": "ticker"},
    # klines: [open time, o, h, l, c, volume, close time, quote asset volume,
    # number of trades, taker buy base volume, taker buy quote volume, ignore]
    candle_fields={
        "quote_volume": 7,
        "trades": 8,
        "taker_buy_volume": 9,
        "taker_buy_quote_volume": 10,
    },
    page_limit=1000,
    trades_page_limit=1000,
    ohlcv_until=True,
    trades_window_ms=HOUR,
    # watch_order_book: diff-depth frames applied to a REST depth snapshot
    ws_book_rest_snapshot=True,
)
# Budgets per IP, from the exchanges' documentation; weight_per_cost maps ccxt's
# cost units (its api tables) to the exchange's weights.
# Binance spot: 6,000 weight a minute; ccxt costs klines 0.4, Binance weighs them 2.
_BINANCE_SPOT_BUDGET: Final = Budget(
    "binance.spot", 6000, 60.0, 5.0, headers=binance_headers, body=binance_body
)
# Binance USD-M: 2,400 weight a minute; ccxt's fapi costs are Binance's weights.
_BINANCE_FAPI_BUDGET: Final = Budget(
    "binance.fapi", 2400, 60.0, 1.0, headers=binance_headers, body=binance_body
)
# Bybit: 600 requests per 5 s per IP for every public endpoint; ccxt costs them 5.
_BYBIT_BUDGET: Final = Budget("bybit.ip", 600, 5.0, 0.2, headers=bybit_headers)

_OKX: Final[dict[str, Any]] = dict(
    ccxt_id="okx",
    ohlcv_endpoint=("public", "get", "market/history-candles"),
    trades_endpoint=("public", "get", "market/history-trades"),
    # history-candles serves the whole history, 100 a page (candles: recent only)
    page_limit=100,
    ohlcv_params={"type": "HistoryCandles"},
    ohlcv_until=True,
    trades_page_limit=100,
    trades_since=False,
    trades_before=_OKX_TRADES_BEFORE,
    first_candle="market_created",
    # candles: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]
    candle_fields={"quote_volume": 7},
)
_BYBIT: Final[dict[str, Any]] = dict(
    ccxt_id="bybit",
    ohlcv_endpoint=("public", "get", "v5/market/kline"),
    trades_endpoint=("public", "get", "v5/market/recent-trade"),
    page_limit=1000,
    ohlcv_since_grid=True,
    ohlcv_until=True,
    trades_since=False,
    first_candle="market_created",
    budget=_BYBIT_BUDGET,
    # allLiquidation: pushed every 500 ms, its "S" the liquidated position's side
    liquidation_delay_ms=1_000,
    liquidation_side_is_position=True,
    # kline: [start, o, h, l, c, volume, turnover (quote)]
    candle_fields={"quote_volume": 6},
)

# Facts per key. Missing fields are filled from the ccxt class (timeframes,
# page_limit) or the ExchangeInfo defaults.
_KNOWN: Final[dict[str, dict[str, Any]]] = {
    "binance": dict(
        _BINANCE,
        ccxt_id="binance",
        ohlcv_endpoint=("public", "get", "klines"),
        trades_endpoint=("public", "get", "aggTrades"),
        **_market("spot", "spot"),
        budget=_BINANCE_SPOT_BUDGET,
    ),
    "binance_futures": dict(
        _BINANCE,
        price_kinds={
            "mark": PriceCandles("mark", ("fapiPublic", "get", "markPriceKlines")),
            "index": PriceCandles("index", ("fapiPublic", "get", "indexPriceKlines")),  # by pair
            "premium": PriceCandles("premiumIndex", ("fapiPublic", "get", "premiumIndexKlines")),
        },
        ccxt_id="binanceusdm",
        ohlcv_endpoint=("fapiPublic", "get", "klines"),
        trades_endpoint=("fapiPublic", "get", "aggTrades"),
        **_market("swap", "linear"),
        budget=_BINANCE_FAPI_BUDGET,
        timeframes_unserved={"1s": "USD-M futures klines have no 1s interval"},
        # fundingRate: 1000 a page, oldest first from startTime, back to the listing
        funding=FundingHistory(
            1000, newest_first=False, endpoint=("fapiPublic", "get", "fundingRate")
        ),
        # futures/data/openInterestHist: 500 a request, "only the data of the latest 30
        # days is available" (an older startTime is refused: -1130)
        open_interest=OpenInterestHistory(
            ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"),
            500,
            ("fapiData", "get", "openInterestHist"),
            depth_ms=dict.fromkeys(
                ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"), 30 * DAY
            ),
        ),
        # USD-M klines serve 1500 a request, but ccxt's binance.fetch_ohlcv caps
        # limit at 1000 and cuts the parsed page to it ("the time range wider than
        # 500 candles won't work right"): through ccxt a page is 1000.
        page_limit=1000,
    ),
    "okx": dict(_OKX, **_market("spot", "spot")),
    "okx_futures": dict(
        _OKX,
        **_market("swap", "swap"),
        # 100 a page, as history-candles here; OKX has no premium-index candles
        price_kinds={
            "mark": PriceCandles("mark", ("public", "get", "market/history-mark-price-candles")),
            "index": PriceCandles("index", ("public", "get", "market/history-index-candles")),
        },
        # funding-rate-history: at most 100 a page (the newest of the span), the last 3 months
        funding=FundingHistory(
            100,
            newest_first=True,
            endpoint=("public", "get", "public/funding-rate-history"),
            until_param="after",
            until_offset=0,
            depth_ms=90 * DAY,
        ),
        # rubik/stat/contracts/open-interest-history: 100 a request, newest first; ccxt
        # takes 5m, 1h and 1d. OKX's trading statistics keep 5m for 2 days, 1H for 30
        # days, 1D for 180 days.
        open_interest=OpenInterestHistory(
            ("5m", "1h", "1d"),
            100,
            ("public", "get", "rubik/stat/contracts/open-interest-history"),
            depth_ms={"5m": 2 * DAY, "1h": 30 * DAY, "1d": 180 * DAY},
        ),
    ),
    "bybit": dict(_BYBIT, **_market("spot", "spot"), trades_page_limit=60),
    "bybit_futures": dict(
        _BYBIT,
        **_market("swap", "linear", defaultSubType="linear"),
        trades_page_limit=1000,
        price_kinds={
            "mark": PriceCandles("mark", ("public", "get", "v5/market/mark-price-kline")),
            "index": PriceCandles("index", ("public", "get", "v5/market/index-price-kline")),
            "premium": PriceCandles(
                "premiumIndex", ("public", "get", "v5/market/premium-index-price-kline")
            ),
        },
        # market/funding/history: 200 a page, the newest between startTime and endTime
        funding=FundingHistory(
            200, newest_first=True, endpoint=("public", "get", "v5/market/funding/history")
        ),
        # market/open-interest: 200 a request, newest first from endTime (a cursor pages
        # further back), back to the listing
        open_interest=OpenInterestHistory(
            ("5m", "15m", "30m", "1h", "4h", "1d"),
            200,
            ("public", "get", "v5/market/open-interest"),
        ),
    ),
    "kraken": dict(
        ccxt_id="kraken",
        ohlcv_endpoint=("public", "get", "OHLC"),
        trades_endpoint=("public", "get", "Trades"),
        page_limit=720,
        deep_history=False,
        timeframes_unserved={"2w": "ccxt sends Kraken's 21600-minute interval: 15 days"},
        trades_page_limit=1000,
        trades_cursor=TradesCursor("since", _kraken_last),
        first_candle="none",
        # OHLC: [time, o, h, l, c, vwap, volume, count]
        candle_fields={"vwap": 5, "trades": 7},
    ),
    # Coinbase Advanced Trade (spot). Candles: at most 300 a request, only at ccxt's
    # eight granularities (1m 5m 15m 30m 1h 2h 6h 1d), from the product's listing on,
    # none for intervals without trades. The products list has no listing time and
    # candles asked from the epoch answer nothing: the first candle after a range's
    # start is found from there, a page of days, then of hours, then of minutes.
    # Trades: the newest `limit` (at most 1000) of a span, newest first, with no
    # cursor: a busy span's older trades cannot be reached, so no trade history.
    # Rate limit: 10 public requests a second per IP, which ccxt's throttler already
    # keeps (rateLimit 34 ms x cost 3), so no budget of our own.
    "coinbase": dict(
        ccxt_id="coinbase",
        market_type="spot",
        ohlcv_endpoint=("v3", "public", "get", "brokerage/market/products/{product_id}/candles"),
        trades_endpoint=("v3", "public", "get", "brokerage/market/products/{product_id}/ticker"),
        page_limit=300,
        ohlcv_until=True,
        trades_page_limit=1000,
        trades_since=False,
        first_candle="day_scan",
    ),
}


def exchange_info(key: str) -> ExchangeInfo:
    """The :class:`ExchangeInfo` of an exchange key (a ccxt id or an alias).

    >>> exchange_info("okx_futures").options["defaultType"]
    'swap'

    Raises :class:`~mdcollect.InvalidRequest` naming close matches for an unknown key.
    """
    if not isinstance(key, str) or (key not in _KNOWN and not is_ccxt_id(key)):
        raise InvalidRequest(_unknown_key_message(key))
    return _exchange_info(key)


@functools.cache
def _exchange_info(key: str) -> ExchangeInfo:
    facts = _KNOWN.get(key) or {"ccxt_id": key}
    info = ExchangeInfo(key=key, **facts)
    timeframes, limit = class_facts(info.ccxt_id, info.market_type)
    if "page_limit" not in facts and limit is not None:
        info = evolve(info, page_limit=limit)
    served = tuple(t for t in timeframes if t not in info.timeframes_unserved and _representable(t))
    return evolve(info, timeframes=served)


def _representable(timeframe: str) -> bool:
    try:
        Timeframe.parse(timeframe)
    except InvalidRequest:
        return False
    return True


def request_seconds(info: ExchangeInfo, endpoint: tuple[str, ...], limit: int) -> float | None:
    """Seconds one request to ``endpoint`` with ``limit`` rows costs under ccxt's rate
    limiter, at the share of the limit an :class:`ExchangeClient` uses; ``None`` when
    ccxt does not define the endpoint.

    >>> request_seconds(exchange_info("binance"), ("public", "get", "klines"), 1000)
    0.021...
    """
    from ._client import RATE_LIMIT_SHARE

    rate_limit, api = _ccxt_costs(info.ccxt_id)
    node: Any = api
    for part in endpoint:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    cost = 1.0
    if isinstance(node, Mapping):
        cost = float(node.get("cost", 1.0))
        for upto, weight in node.get("byLimit") or ():
            if limit <= upto:
                cost = float(weight)
                break
    elif isinstance(node, int | float):
        cost = float(node)
    return cost * rate_limit / RATE_LIMIT_SHARE / 1000.0


@functools.cache
def _ccxt_costs(ccxt_id: str) -> tuple[float, Mapping[str, Any]]:
    import ccxt

    exchange = getattr(ccxt, ccxt_id)()
    return float(exchange.rateLimit or 0), exchange.describe().get("api") or {}


def _days(ms: int | None) -> float | None:
    return None if ms is None else round(ms / DAY, 2)


def described_exchanges() -> list[str]:
    """The exchange keys mdcollect knows in detail (page sizes, depths, kinds beyond
    candles): those ``mdcollect exchanges`` lists; any other ccxt id works with
    ccxt's defaults.

    >>> "binance_futures" in described_exchanges()
    True
    """
    return sorted(_KNOWN)


def exchange_keys() -> list[str]:
    """Every exchange key: the ccxt ids and mdcollect's aliases, sorted.

    >>> "binance_futures" in exchange_keys() and "kraken" in exchange_keys()
    True
    """
    import ccxt

    return sorted({*ccxt.exchanges, *_KNOWN})


def _unknown_key_message(key: object) -> str:
    close = difflib.get_close_matches(str(key), exchange_keys(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"exchange {key!r} is not known{hint}; use a ccxt id such as 'binance' or an "
        "alias: binance_futures, bybit_futures, okx_futures (see exchange_keys())"
    )
