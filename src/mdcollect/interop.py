"""Writing stored data where other tools read it: freqtrade's data directory.

:func:`export_freqtrade` writes candles, funding rates and mark candles as the
feather files of freqtrade's ``FeatherDataHandler``, named and laid out as its
``IDataHandler._pair_data_filename`` computes them, so ``freqtrade backtesting``
reads them without downloading. The format is freqtrade's (commit c9ae5e1 of
github.com/freqtrade/freqtrade): ``freqtrade/data/history/datahandlers/``
``featherdatahandler.py`` and ``idatahandler.py``, ``freqtrade/enums/candletype.py``,
``freqtrade/misc.py`` (``pair_to_filename``) and ``freqtrade/exchange/exchange.py``
(funding rates as candles: ``[timestamp, fundingRate, 0, 0, 0, 0]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd

from ._errors import InvalidRequest
from ._keys import DatasetKey
from ._rules import check_choices, check_exchange_key, check_symbols, check_timeframe
from .exchanges import exchange_info
from .storage import DataCollectionStorage, open_storage

__all__ = ["FREQTRADE_KINDS", "export_freqtrade"]

log = logging.getLogger("mdcollect.interop")

#: The kinds :func:`export_freqtrade` writes, with freqtrade's ``CandleType`` of each on a
#: futures exchange (spot candles have the type ``spot``: no suffix, no ``futures/``).
FREQTRADE_KINDS: Final[dict[str, str]] = {
    "ohlcv": "futures",
    "funding": "funding_rate",
    "mark": "mark",
}
#: freqtrade's ``DEFAULT_DATAFRAME_COLUMNS`` (freqtrade/constants.py).
_COLUMNS: Final = ["date", "open", "high", "low", "close", "volume"]
#: The timeframe in funding-rate file names: ``funding_fee_timeframe`` of freqtrade's
#: exchange classes, ``8h`` for every exchange it supports (exchange.py, okx.py, bybit.py).
_FUNDING_TIMEFRAME: Final = "8h"
#: freqtrade names its exchange folder by its own exchange name; USD-M futures are
#: ``binance`` with ``trading_mode: futures`` there, not ccxt's ``binanceusdm``.
_FREQTRADE_EXCHANGE: Final = {"binanceusdm": "binance"}


def _pair_to_filename(pair: str) -> str:
    """freqtrade's ``misc.pair_to_filename``: ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``."""
    for ch in ("/", " ", ".", "@", "$", "+", ":"):
        pair = pair.replace(ch, "_")
    return pair


def _filename(folder: Path, symbol: str, timeframe: str, candle_type: str) -> Path:
    """freqtrade's ``IDataHandler._pair_data_filename`` for the feather handler."""
    timeframe = timeframe.replace("M", "Mo")  # timeframe_to_file: 1M vs 1m on case-blind disks
    suffix = ""
    if candle_type != "spot":
        folder = folder / "futures"
        suffix = f"-{candle_type}"
    return folder / f"{_pair_to_filename(symbol)}-{timeframe}{suffix}.feather"


def _is_contract(key: DatasetKey, market_type: str) -> bool:
    """Whether ``key`` is a futures market for freqtrade: the key's market type, or a
    ccxt contract symbol (``BTC/USDT:USDT``) under a plain ccxt id such as ``binanceusdm``."""
    return market_type != "spot" or ":" in key.symbol


def _frame(storage: DataCollectionStorage, key: DatasetKey) -> pd.DataFrame:
    """The stored rows of ``key`` in freqtrade's columns and dtypes."""
    stored = storage.read(key)
    if key.kind == "funding":
        # freqtrade's funding-rate candles: the rate as open, the rest 0
        rate = stored["rate"].to_numpy(dtype="float64")
        zeros = [0.0] * len(stored)
        values = {"open": rate, "high": zeros, "low": zeros, "close": zeros, "volume": zeros}
    else:
        values = {c: stored[c].to_numpy(dtype="float64") for c in _COLUMNS[1:]}
    return pd.DataFrame({"date": pd.DatetimeIndex(stored.index), **values}, columns=_COLUMNS)


def export_freqtrade(
    storage: DataCollectionStorage | str,
    datadir: str | Path,
    *,
    exchange: str,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    kinds: Sequence[str] = ("ohlcv", "funding", "mark"),
) -> list[Path]:
    """Write the stored datasets of ``exchange`` under ``datadir`` as freqtrade's feather
    data; returns the files written, sorted.

    Files go to ``<datadir>/<freqtrade exchange>/`` as freqtrade lays them out: spot
    candles ``BTC_USDT-1h.feather``; on a futures key (``binance_futures``: folder
    ``binance``) ``futures/BTC_USDT_USDT-1h-futures.feather``, mark candles
    ``...-1h-mark.feather`` and funding rates ``...-8h-funding_rate.feather``. Columns
    ``date`` (``datetime64[ns, UTC]``), ``open high low close volume`` (float64); a
    funding rate is a candle with the rate as ``open`` and zeros elsewhere, as freqtrade
    stores it. An existing file of the same name is replaced. ``symbols`` and
    ``timeframes`` (of the candles; funding has none) select datasets, all by default.

    Bad input (an unknown exchange, kind, symbol or timeframe, a ``datadir`` that is a
    file, nothing stored to export) raises :class:`InvalidRequest` before any file is
    written.

    Example: ``export_freqtrade("parquet://data", "user_data/data",
    exchange="binance_futures")`` writes ``user_data/data/binance/futures/...``.
    """
    exchange = check_exchange_key(exchange)
    info = exchange_info(exchange)
    wanted_kinds = check_choices("kinds", kinds, tuple(FREQTRADE_KINDS))
    wanted_symbols = None if symbols is None else set(check_symbols(symbols))
    wanted_tfs = None if timeframes is None else set(_check_timeframes(timeframes))
    if not isinstance(datadir, str | Path):
        raise InvalidRequest(f"datadir must be a folder path, got {datadir!r}")
    root = Path(datadir)
    if root.exists() and not root.is_dir():
        raise InvalidRequest(f"datadir {str(root)!r} is a file; give a folder")
    folder = root / _FREQTRADE_EXCHANGE.get(info.ccxt_id, info.ccxt_id)

    store = open_storage(storage)
    try:
        stored = store.keys(exchange=exchange)
        keys = [
            k
            for k in stored
            if k.kind in wanted_kinds
            and (_is_contract(k, info.market_type) or k.kind == "ohlcv")  # spot: candles only
            and (wanted_symbols is None or k.symbol in wanted_symbols)
            and (wanted_tfs is None or k.timeframe is None or k.timeframe in wanted_tfs)
        ]
        if not keys:
            raise InvalidRequest(
                f"nothing to export: no {'/'.join(wanted_kinds)} dataset of {exchange!r}"
                + (f" for {sorted(wanted_symbols)}" if wanted_symbols else "")
                + (f" at {sorted(wanted_tfs)}" if wanted_tfs else "")
                + f" in {store.url} ({len(stored)} dataset(s) of {exchange!r} stored)"
            )
        written: list[Path] = []
        for key in keys:
            if key.kind == "funding":
                path = _filename(folder, key.symbol, _FUNDING_TIMEFRAME, "funding_rate")
            else:
                contract = _is_contract(key, info.market_type)
                candle_type = FREQTRADE_KINDS[key.kind] if contract else "spot"
                path = _filename(folder, key.symbol, str(key.timeframe), candle_type)
            frame = _frame(store, key)
            # a freqtrade reading the folder meanwhile sees the old file or the new, whole
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_feather(tmp, compression_level=9, compression="lz4")
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise InvalidRequest(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
            log.info("wrote %d rows of %s to %s", len(frame), key, path)
            written.append(path)
    finally:
        if store is not storage:
            store.close()
    return sorted(written)


def _check_timeframes(values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidRequest(f"timeframes must be a non-empty list such as ['1h'], got {values!r}")
    return [str(check_timeframe(v)) for v in values]
