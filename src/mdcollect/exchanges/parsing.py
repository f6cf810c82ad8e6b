"""ccxt's unified structures as schema rows and frames: the one place they are parsed.

Every parser takes what ccxt returns after parsing an exchange's message (a
unified ticker, order book, funding rate, trade or OHLCV list, see ccxt's
manual) and gives rows ``(timestamp, *columns)`` or a frame in the kind's
schema (:mod:`mdcollect._schema`), so REST pages, websocket updates and live
collectors store the same values:

* times are int ms since the epoch (the exchange's time; the receipt time where
  the structure has none, and in the trades' ``received`` column);
* a missing number is NaN;
* trade amounts of contract markets (``market["contract"]`` with a
  ``contractSize`` other than 1, e.g. OKX swaps, 0.01 BTC a contract) are
  converted from contracts to base units, exactly (``Decimal``: 3 contracts of
  0.01 are 0.03, not 0.030000000000000002);
* the columns of each kind's rows are :func:`row_columns`, read from the schema.

These functions take no exchange and make no request; :class:`ExchangeClient`
calls them on what ccxt returns, and so can a test on a recorded message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from .._keys import CANDLE_KINDS, CandleKind, Kind
from .._schema import SCHEMAS, _book_columns, empty_frame, normalize_frame
from .._time import Timeframe

__all__ = [
    "book_row",
    "candle_columns",
    "contract_size",
    "funding_history_rows",
    "funding_row",
    "funding_snapshot_row",
    "liquidation_rows",
    "ohlcv_frame",
    "ohlcv_row",
    "open_interest_rows",
    "row_columns",
    "rows_frame",
    "ticker_row",
    "trade_id",
    "trade_rows",
    "trades_frame",
]


def row_columns(kind: Kind, depth: int = 0) -> list[str]:
    """The columns after ``timestamp`` of the rows this module builds for ``kind``.

    The schema's columns (:data:`mdcollect._schema.SCHEMAS`), minus those ccxt's
    structure does not carry: a ccxt candle has no trade count, so ``ohlcv`` rows
    stop at ``volume``. ``orderbook`` has ``depth`` levels a side.

    >>> row_columns("ticker")
    ['bid', 'ask', 'last', 'bid_size', 'ask_size', 'base_volume']
    >>> row_columns("orderbook", 1)
    ['bid_px_0', 'bid_sz_0', 'ask_px_0', 'ask_sz_0']
    """
    if kind == "orderbook":
        return _book_columns(depth)
    schema = SCHEMAS[kind]
    if kind in CANDLE_KINDS:
        return list(schema.required)
    return schema.columns()


def contract_size(market: Mapping[str, Any]) -> Decimal | None:
    """The base units one contract of ``market`` (a ccxt market) stands for, or ``None``
    when amounts need no conversion (spot, or a contract size of 1).

    >>> contract_size({"contract": True, "contractSize": 0.01})   # OKX BTC-USDT-SWAP
    Decimal('0.01')
    >>> contract_size({"contract": False, "contractSize": None}) is None
    True
    """
    size = market.get("contractSize")
    if not market.get("contract") or size is None or size == 1:
        return None
    return Decimal(str(size))


def trade_id(trade: Mapping[str, Any]) -> str:
    """The identity of a ccxt trade: the exchange's id, or, when it has none, the
    trade's content (``"timestamp:price:amount:side"``).

    >>> trade_id({"id": "497859870", "timestamp": 1710327658374})   # OKX tradeId
    '497859870'
    >>> trade_id({"id": None, "timestamp": 1, "price": 2.0, "amount": 3.0, "side": "buy"})
    '1:2.0:3.0:buy'
    """
    tid = trade.get("id")
    if tid is not None and tid != "":
        return str(tid)
    # no exchange id: the trade's content is the best identity there is
    return f"{trade['timestamp']}:{trade.get('price')}:{trade.get('amount')}:{trade.get('side')}"


def _amount(amount: Any, contract: Decimal | None) -> Any:
    if contract is None or amount is None:
        return amount
    # ccxt gives contracts; the schema's amount is in base units. Decimal keeps
    # 3 * 0.01 == 0.03, the double a decimal string would parse to.
    return float(Decimal(str(amount)) * contract)


def trade_rows(
    trades: Sequence[Mapping[str, Any]], contract: Decimal | None, received: int
) -> list[tuple[Any, ...]]:
    """ccxt trades as rows ``(timestamp, id, price, amount, side, received)``, amounts in
    base units (``contract``: :func:`contract_size`); trades without a timestamp are
    left out.

    OKX's ``{"instId": "BTC-USDT", "side": "sell", "sz": "0.0009478", "px": "73239.3",
    "tradeId": "497859870", "ts": "1710327658374"}``, as ccxt parses it:

    >>> t = {"timestamp": 1710327658374, "id": "497859870", "price": 73239.3,
    ...      "amount": 0.0009478, "side": "sell"}
    >>> trade_rows([t], None, 1710327658400)
    [(1710327658374, '497859870', 73239.3, 0.0009478, 'sell', 1710327658400)]
    """
    return [
        (int(ts), trade_id(t), t.get("price"), _amount(t.get("amount"), contract), t.get("side"),
         received)
        for t in trades
        if (ts := t.get("timestamp")) is not None
    ]  # fmt: skip


def liquidation_rows(
    liquidations: Sequence[Mapping[str, Any]],
    contract: Decimal | None,
    received: int,
    *,
    position_side: bool = False,
) -> list[tuple[Any, ...]]:
    """ccxt liquidations (``watch_liquidations``) as ``liquidations`` rows ``(timestamp,
    id, side, price, amount, received)``: amounts in base units (``contract``:
    :func:`contract_size`), ``side`` the forced order's (a liquidated long is a
    ``sell``), ``id`` as :func:`trade_id` makes it (no venue gives liquidations an
    id: their content, so one delivered twice is stored once while two at the same
    millisecond both stay). ``position_side``: ccxt's ``side`` is the liquidated
    position's (Bybit's ``S``: "Buy" means a long was liquidated), so it is flipped.
    Entries without a timestamp are left out.

    Binance USD-M ``forceOrder`` ``{"s": "BTCUSDT", "S": "SELL", "q": "0.014", "ap":
    "9910", "l": "0.014", "T": 1568014460893, ...}``, as ccxt parses it:

    >>> liq = {"timestamp": 1568014460893, "contracts": 0.014, "price": 9910.0,
    ...        "side": "sell"}
    >>> liquidation_rows([liq], None, 1568014461000)
    [(1568014460893, '1568014460893:9910.0:0.014:sell', 'sell', 9910.0, 0.014, 1568014461000)]
    """
    flip = {"buy": "sell", "sell": "buy"}
    rows = []
    for liq in liquidations:
        ts = liq.get("timestamp")
        if ts is None:
            continue
        side = liq.get("side")
        if position_side and side in flip:
            side = flip[side]
        price, amount = liq.get("price"), _amount(liq.get("contracts"), contract)
        ident = trade_id({"timestamp": ts, "price": price, "amount": amount, "side": side})
        rows.append((int(ts), ident, side, price, amount, received))
    return rows


def trades_frame(
    trades: Sequence[Mapping[str, Any]],
    contract: Decimal | None,
    *,
    received: int | None = None,
    since: int | None = None,
    until: int | None = None,
) -> pd.DataFrame:
    """ccxt trades as a ``trades`` frame, amounts in base units (see :func:`trade_rows`).

    With ``received`` (ms) every row gets that ``received`` time; ``since`` and
    ``until`` keep the trades with ``since <= timestamp < until``. Rows are
    deduplicated by ``(timestamp, id)`` and sorted.

    The OKX trade of :func:`trade_rows`; then the same numbers as 6.8 contracts of
    BTC-USDT-SWAP, 0.01 BTC each:

    >>> t = {"timestamp": 1710327658374, "id": "497859870", "price": 73239.3,
    ...      "amount": 0.0009478, "side": "sell"}
    >>> frame = trades_frame([t], None, received=1710327658400)
    >>> frame.index[0]
    Timestamp('2024-03-13 11:00:58.374000+0000', tz='UTC')
    >>> frame.to_dict("records")
    [{'id': '497859870', 'price': 73239.3, 'amount': 0.0009478, 'side': 'sell', 'received': 1710327658400}]
    >>> float(trades_frame([dict(t, amount=6.8)], Decimal("0.01"))["amount"].iloc[0])
    0.068
    """
    rows = [
        r
        for r in trade_rows(trades, contract, 0 if received is None else received)
        if (since is None or r[0] >= since) and (until is None or r[0] < until)
    ]
    columns = row_columns("trades")
    if received is None:
        columns = columns[:-1]
        rows = [r[:-1] for r in rows]
    if not rows:
        return empty_frame("trades", columns)
    frame = pd.DataFrame.from_records(rows, columns=["timestamp", *columns])
    return normalize_frame("trades", frame)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def ticker_row(t: Mapping[str, Any], received: int) -> tuple[Any, ...]:
    """A ccxt ticker as ``(timestamp, bid, ask, last, bid_size, ask_size, base_volume)``;
    ``received`` stands in for a ticker without a timestamp.

    Binance's 24h ticker ``{"symbol": "BTCUSDT", "lastPrice": "73369.84000000",
    "bidPrice": "73369.83000000", "bidQty": "6.27086000", "askPrice": "73369.84000000",
    "askQty": "0.03321000", "volume": "72140.34862800", "closeTime": "1710328245391",
    ...}``, as ccxt parses it:

    >>> ticker_row({"timestamp": 1710328245391, "bid": 73369.83, "ask": 73369.84,
    ...             "last": 73369.84, "bidVolume": 6.27086, "askVolume": 0.03321,
    ...             "baseVolume": 72140.348628}, 1710328245400)
    (1710328245391, 73369.83, 73369.84, 73369.84, 6.27086, 0.03321, 72140.348628)
    """
    ts = t.get("timestamp") or received
    return (
        int(ts), _num(t.get("bid")), _num(t.get("ask")), _num(t.get("last")),
        _num(t.get("bidVolume")), _num(t.get("askVolume")), _num(t.get("baseVolume")),
    )  # fmt: skip


def book_row(ob: Mapping[str, Any], depth: int, received: int) -> tuple[Any, ...]:
    """A ccxt order book as ``(timestamp, bid px.., bid sz.., ask px.., ask sz..)`` to
    ``depth`` levels (missing levels are NaN); ``received`` stands in for a book without
    a timestamp. Sizes are as ccxt gives them (contracts on contract markets).

    OKX's ``{"asks": [["43466.4", "14881", "0", "1"], ...], "bids": [["43466.3", "13807",
    "0", "1"], ...], "ts": "1706612067750"}`` (BTC-USDT-SWAP), as ccxt parses it:

    >>> book_row({"timestamp": 1706612067750, "bids": [[43466.3, 13807.0, 0], [43466.2, 17151.0, 0]],
    ...           "asks": [[43466.4, 14881.0, 0], [43466.5, 14624.0, 0]]}, 1, 1706612067800)
    (1706612067750, 43466.3, 13807.0, 43466.4, 14881.0)
    """
    out: list[Any] = [int(ob.get("timestamp") or received)]
    for side in ("bids", "asks"):
        levels = list(ob.get(side) or [])[:depth]
        levels += [[float("nan"), float("nan")]] * (depth - len(levels))
        out += [_num(lv[0]) for lv in levels]
        out += [_num(lv[1]) for lv in levels]
    return tuple(out)


def funding_row(fr: Mapping[str, Any], received: int) -> tuple[Any, ...]:
    """A ccxt funding rate as ``(timestamp, rate, mark_price, index_price)``; ``received``
    stands in for a funding rate without a timestamp.

    Bybit's linear ticker ``{"symbol": "BTCUSDT", "markPrice": "68591.46", "indexPrice":
    "68599.90", "fundingRate": "0.0001", "nextFundingTime": "1730736000000",
    "timestamp": 1730730080834, ...}``, as ccxt parses it:

    >>> funding_row({"timestamp": 1730730080834, "fundingRate": 0.0001,
    ...              "markPrice": 68591.46, "indexPrice": 68599.9}, 1730730081000)
    (1730730080834, 0.0001, 68591.46, 68599.9)
    """
    ts = fr.get("timestamp") or received
    return (
        int(ts),
        _num(fr.get("fundingRate")),
        _num(fr.get("markPrice")),
        _num(fr.get("indexPrice")),
    )


def funding_snapshot_row(fr: Mapping[str, Any], received: int) -> tuple[Any, ...]:
    """A ccxt funding rate as a live ``funding_snapshot`` row: :func:`funding_row` and
    ``funding_time``, the settlement the rate is announced for (ccxt's
    ``fundingTimestamp``; 0 when the exchange does not say).

    >>> funding_snapshot_row({"timestamp": 1730730080834, "fundingRate": 0.0001,
    ...     "markPrice": 68591.46, "indexPrice": 68599.9, "fundingTimestamp": 1730736000000},
    ...     1730730081000)
    (1730730080834, 0.0001, 68591.46, 68599.9, 1730736000000)
    """
    return (*funding_row(fr, received), int(fr.get("fundingTimestamp") or 0))


def funding_history_rows(rates: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """ccxt funding rate history entries as settlement rows ``(timestamp, rate,
    mark_price, index_price)``, sorted and one per settlement time.

    ccxt keeps only the time and rate; the mark price at the settlement, where the
    exchange gives one (Binance USD-M ``fundingRate``), is read from ``info``.
    Binance's ``[{"symbol": "BTCUSDT", "fundingRate": "-0.03750000", "fundingTime":
    1570608000000, "markPrice": "34287.54619963"}]`` as ccxt parses it:

    >>> funding_history_rows([{"timestamp": 1570608000000, "fundingRate": -0.0375,
    ...     "info": {"fundingTime": 1570608000000, "markPrice": "34287.54619963"}}])
    [(1570608000000, -0.0375, 34287.54619963, nan)]

    OKX (``{"fundingTime": "1703059200000", "realizedRate": "0.0001", ...}``) and Bybit
    give no mark price: NaN.
    """
    rows: dict[int, tuple[Any, ...]] = {}
    for r in rates:
        ts = r.get("timestamp")
        if ts is None:
            continue
        info = r.get("info")
        mark = info.get("markPrice") if isinstance(info, Mapping) else None
        mark_price = _num(mark) if mark not in (None, "") else float("nan")
        rows[int(ts)] = (int(ts), _num(r.get("fundingRate")), mark_price, float("nan"))
    return [rows[t] for t in sorted(rows)]


def open_interest_rows(interests: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """ccxt open interest history entries as rows ``(timestamp, open_interest,
    open_interest_value)``, sorted and one per period start.

    ``open_interest`` is ccxt's ``openInterestAmount`` (contracts: base units on Binance
    and Bybit linear perpetuals, OKX's contracts of ``ctVal``), ``open_interest_value``
    its ``openInterestValue`` (quote), NaN where the exchange gives none (Bybit).
    Binance's ``{"symbol": "BTCUSDT", "sumOpenInterest": "75375.61700000",
    "sumOpenInterestValue": "3248828883.71251440", "timestamp": 1642179900000}`` as ccxt
    parses it:

    >>> open_interest_rows([{"timestamp": 1642179900000, "openInterestAmount": 75375.617,
    ...     "openInterestValue": 3248828883.7125144}])
    [(1642179900000, 75375.617, 3248828883.7125144)]

    Bybit's ``{"openInterest": "461134384.00000000", "timestamp": "1669571400000"}``:

    >>> open_interest_rows([{"timestamp": 1669571400000, "openInterestAmount": 461134384.0,
    ...     "openInterestValue": None}])
    [(1669571400000, 461134384.0, nan)]
    """
    rows: dict[int, tuple[Any, ...]] = {}
    for r in interests:
        ts = r.get("timestamp")
        if ts is None:
            continue
        amount = r.get("openInterestAmount")
        if amount is None:  # an entry without the amount is no row of this schema
            continue
        rows[int(ts)] = (int(ts), _num(amount), _num(r.get("openInterestValue")))
    return [rows[t] for t in sorted(rows)]


def rows_frame(kind: Kind, rows: Sequence[Sequence[Any]], *, depth: int = 0) -> pd.DataFrame:
    """Rows ``(timestamp, *row_columns(kind, depth))`` as a schema frame of ``kind``
    (sorted; the last row wins per timestamp).

    >>> rows_frame("funding", [(1730730080834, 0.0001, 68591.46, 68599.9)])
                                        rate  mark_price  index_price
    timestamp
    2024-11-04 14:21:20.834000+00:00  0.0001    68591.46      68599.9
    """
    if not rows:
        return empty_frame(kind, row_columns(kind, depth))
    frame = pd.DataFrame.from_records(
        [tuple(r) for r in rows], columns=["timestamp", *row_columns(kind, depth)]
    )
    return normalize_frame(kind, frame)


def ohlcv_row(candle: Sequence[Any]) -> tuple[Any, ...]:
    """A ccxt candle ``[timestamp, open, high, low, close, volume]`` as a row of floats.

    Binance's kline ``[1706630400000, "43519.34000000", "43936.00000000",
    "43171.00000000", "43488.71000000", "20.55495000", 1706633999999, ...]``, as ccxt
    parses it:

    >>> ohlcv_row([1706630400000, 43519.34, 43936, 43171, 43488.71, 20.55495])
    (1706630400000, 43519.34, 43936.0, 43171.0, 43488.71, 20.55495)
    """
    return (int(candle[0]), *(float(x) for x in candle[1:6]))


def candle_columns(
    raws: Sequence[Sequence[Any]], fields: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """The optional ``ohlcv`` columns an exchange's raw candle rows carry, read at the
    positions ``fields`` gives (:attr:`ExchangeInfo.candle_fields`): what ccxt's
    ``parse_ohlcv`` leaves out. In schema order, with the schema's dtypes; a column
    some row lacks (or leaves empty) is left out.

    Binance's kline (quote volume, trade count, taker-buy base and quote volumes):

    >>> kline = [1706630400000, "43519.34000000", "43936.00000000", "43171.00000000",
    ...          "43488.71000000", "20.55495000", 1706633999999, "891428.42858070", 3743,
    ...          "10.91428000", "473782.95739920", "0"]
    >>> cols = candle_columns([kline], {"quote_volume": 7, "trades": 8,
    ...                                 "taker_buy_volume": 9, "taker_buy_quote_volume": 10})
    >>> {c: v.tolist() for c, v in cols.items()}
    {'quote_volume': [891428.4285807], 'trades': [3743], 'taker_buy_volume': [10.91428], \
'taker_buy_quote_volume': [473782.9573992]}

    Kraken's OHLC row ``[time, open, high, low, close, vwap, volume, count]``:

    >>> cols = candle_columns([[1706630400, "43366.3", "43529.2", "43234.2", "43485.0",
    ...                         "43435.3", "12.51327406", 126]], {"vwap": 5, "trades": 7})
    >>> {c: v.tolist() for c, v in cols.items()}
    {'trades': [126], 'vwap': [43435.3]}
    """
    schema = SCHEMAS["ohlcv"]
    out: dict[str, np.ndarray] = {}
    shortest = min(map(len, raws), default=0)
    for name in schema.optional:
        at = fields.get(name)
        if at is None or at >= shortest:
            continue
        values = list(map(itemgetter(at), raws))
        if None in values or "" in values:
            continue
        out[name] = np.array(values, dtype=schema.dtype(name))
    return out


def ohlcv_frame(
    candles: Sequence[Sequence[Any]],
    tf: Timeframe,
    since: int,
    until: int,
    now: int,
    kind: CandleKind = "ohlcv",
    fields: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """ccxt candles as a frame of the candle ``kind``: those with ``since <= timestamp <
    until`` that are closed at ``now`` (their end is not after it), deduplicated and
    sorted. A volume ccxt leaves ``None`` (mark and index candles on OKX, Bybit) is NaN.

    A candle may carry, after ccxt's six values, the exchange's raw row (which
    :class:`ExchangeClient` adds to what ccxt parses): with ``fields``, the optional
    ``ohlcv`` columns are read from it (:func:`candle_columns`), for ``kind="ohlcv"``.

    >>> ohlcv_frame([[1706630400000, 43519.34, 43936, 43171, 43488.71, 20.55495]],
    ...             Timeframe.parse("1h"), 1706630400000, 1706634000000, 1706634000000)
                                   open     high      low     close    volume
    timestamp
    2024-01-30 16:00:00+00:00  43519.34  43936.0  43171.0  43488.71  20.55495
    """
    if not candles:
        return empty_frame(kind)
    raws = [r[6] for r in candles if len(r) > 6 and isinstance(r[6], list | tuple)]
    try:
        if raws:
            raise ValueError("candles carry their raw rows")
        arr = np.array(candles, dtype="float64")  # None -> NaN
    except ValueError:  # ragged rows: keep ccxt's six columns
        arr = np.array([r[:6] for r in candles], dtype="float64")
    arr = arr[:, :6]
    ts = arr[:, 0].astype("int64")
    more = {}
    if fields and kind == "ohlcv" and len(raws) == len(candles):
        more = candle_columns(raws, fields)
    # a candle is closed when its end is not after now
    if tf.is_calendar:
        ends = np.array([tf.add(int(t), 1) for t in ts], dtype="int64")
    else:
        ends = ts + tf.ms
    keep = (ts >= since) & (ts < until) & (ends <= now)
    arr, ts = arr[keep], ts[keep]
    columns = row_columns("ohlcv")
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        # duplicated or overlapping rows: the schema's dedupe-and-sort
        frame = pd.DataFrame({"timestamp": ts})
        for i, c in enumerate(columns):
            frame[c] = arr[:, i + 1]
        for c, values in more.items():
            frame[c] = values[keep]
        return normalize_frame(kind, frame)
    # already sorted and unique: build the normalised frame directly (the hot path)
    index = pd.DatetimeIndex(ts.astype("datetime64[ms]").astype("datetime64[ns]"))
    index = index.tz_localize("UTC").rename("timestamp")
    if not more:
        return pd.DataFrame(arr[:, 1:], index=index, columns=columns)
    data = {c: arr[:, i + 1] for i, c in enumerate(columns)}
    return pd.DataFrame({**data, **{c: v[keep] for c, v in more.items()}}, index=index)
