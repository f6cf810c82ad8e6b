"""Dataset identity: which exchange, symbol, kind of data and timeframe."""

from __future__ import annotations

from typing import Final, Literal, get_args

from attrs import field, frozen

from ._errors import InvalidRequest
from ._rules import check_exchange_key
from ._time import Timeframe

__all__ = [
    "CANDLE_KINDS",
    "HISTORY_KINDS",
    "KINDS",
    "LIVE_ONLY_KINDS",
    "TIMEFRAME_KINDS",
    "CandleKind",
    "DatasetKey",
    "HistoryKind",
    "Kind",
]

Kind = Literal[
    "ohlcv",
    "trades",
    "ticker",
    "orderbook",
    "funding",
    "funding_snapshot",
    "mark",
    "index",
    "premium",
    "open_interest",
    "liquidations",
    "raw",
]
#: Every kind of dataset mdcollect stores.
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
#: The kinds that are candles (the ``ohlcv`` columns, with a timeframe): last price,
#: mark price, index price and premium index.
CandleKind = Literal["ohlcv", "mark", "index", "premium"]
CANDLE_KINDS: Final[tuple[CandleKind, ...]] = get_args(CandleKind)
#: The kinds whose history mdcollect backfills (``ensure_data(kinds=...)``, ``load(kind)``):
#: the candle kinds, trades, funding and open interest; :data:`mdcollect.backfill.JOBS`
#: says which job fills each.
HistoryKind = Literal["ohlcv", "trades", "funding", "mark", "index", "premium", "open_interest"]
HISTORY_KINDS: Final[tuple[HistoryKind, ...]] = get_args(HistoryKind)
#: The kinds whose datasets have a timeframe: the candle kinds, and ``open_interest``
#: (one row per exchange period, ``5m`` to ``1d``), which is not a candle.
TIMEFRAME_KINDS: Final[tuple[Kind, ...]] = (*CANDLE_KINDS, "open_interest")
#: The kinds that only live collection fills (no exchange serves their history), with
#: how to collect each: what ``ensure_data(kinds=...)`` says when asked for one.
LIVE_ONLY_KINDS: Final[dict[Kind, str]] = {
    "liquidations": "mdcollect.collectors.LiquidationsCollector (websockets)",
    "raw": "DataCollector(..., raw=True) (websocket frames; mdcollect.replay turns them into rows)",
}


def _check_symbol(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(
            f"symbol {value!r} is not valid; use a ccxt unified symbol such as 'BTC/USDT'"
        )
    if "\x00" in value:
        raise InvalidRequest(f"symbol {value!r} contains a NUL character")
    return value


def _check_kind(value: object) -> Kind:
    if value not in KINDS:
        raise InvalidRequest(f"kind {value!r} is not valid; allowed: {', '.join(KINDS)}")
    return value  # type: ignore[return-value]


def _conv_timeframe(value: object) -> str | None:
    if value is None:
        return None
    return str(Timeframe.parse(value))  # type: ignore[arg-type]


@frozen(order=True)
class DatasetKey:
    """What a dataset is: ``DatasetKey(exchange, symbol, kind, timeframe=None)``.

    ``timeframe`` is required for the kinds of :data:`TIMEFRAME_KINDS` (the candle kinds
    ``ohlcv``, ``mark``, ``index``, ``premium``, and ``open_interest``: the exchange's
    period) and refused for the other kinds. The
    string form ``exchange:kind:timeframe:symbol`` is stable and parses back;
    the symbol comes last so it may contain ``:`` (``BTC/USDT:USDT``).

    >>> key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    >>> str(key)
    'binance:ohlcv:1m:BTC/USDT'
    >>> DatasetKey.parse(str(key)) == key
    True
    """

    exchange: str = field(converter=check_exchange_key)
    symbol: str = field(converter=_check_symbol)
    kind: Kind = field(converter=_check_kind)
    timeframe: str | None = field(default=None, converter=_conv_timeframe)

    def __attrs_post_init__(self) -> None:
        timed = self.kind in TIMEFRAME_KINDS
        if timed and self.timeframe is None:
            raise InvalidRequest(f"a {self.kind} DatasetKey needs a timeframe such as '1m'")
        if not timed and self.timeframe is not None:
            raise InvalidRequest(
                f"kind {self.kind!r} takes no timeframe (got {self.timeframe!r}); "
                f"only these kinds have one: {', '.join(TIMEFRAME_KINDS)}"
            )

    @property
    def tf(self) -> Timeframe | None:
        """The timeframe parsed, or ``None``."""
        return Timeframe.parse(self.timeframe) if self.timeframe else None

    def __str__(self) -> str:
        return f"{self.exchange}:{self.kind}:{self.timeframe or ''}:{self.symbol}"

    @classmethod
    def parse(cls, text: str) -> DatasetKey:
        """Inverse of ``str(key)``."""
        parts = text.split(":", 3) if isinstance(text, str) else []
        if len(parts) != 4:
            raise InvalidRequest(
                f"dataset key {text!r} is not of the form 'exchange:kind:timeframe:symbol' "
                "(e.g. 'binance:ohlcv:1m:BTC/USDT', 'binance:trades::BTC/USDT')"
            )
        exchange, kind, timeframe, symbol = parts
        return cls(exchange, symbol, kind, timeframe or None)  # type: ignore[arg-type]
