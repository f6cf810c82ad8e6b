"""``load_collectors``: collectors (and the storage URL) from a TOML file or a dict."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from attrs import frozen

from .._errors import InvalidRequest
from .._rules import check_number, is_symbol_pattern
from ._alerts import as_alerts
from ._base import DataSourceCollector
from ._kinds import (
    FundingRateCollector,
    LiquidationsCollector,
    OHLCVCollector,
    OpenInterestCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)
from ._options import CollectorOptions, SupervisorOptions, option_names

__all__ = [
    "CONFIG_KEYS",
    "LiveConfig",
    "load_collectors",
    "load_config",
    "shard_config",
    "shard_symbols",
]

_KINDS: dict[str, type[DataSourceCollector]] = {
    "trades": TradesCollector,
    "ohlcv": OHLCVCollector,
    "ticker": TickerCollector,
    "orderbook": OrderBookCollector,
    "funding": FundingRateCollector,
    "open_interest": OpenInterestCollector,
    "liquidations": LiquidationsCollector,
}
# what a section names beside its options: where, what and which collector
_SECTION = frozenset({"exchange", "symbols", "kinds", "kind", "name"})
#: DataCollector options a config may set (its options class's fields).
_OPTIONS = option_names(SupervisorOptions)
#: The top-level keys of a collection config: ``storage``, ``[[collectors]]`` and the
#: DataCollector options. A jobs file (:func:`mdcollect.load_jobs`) may hold them too.
CONFIG_KEYS: Final = frozenset({"storage", "collectors", *_OPTIONS})
# [[jobs]] is `mdcollect ensure --config`'s part of a shared file: ignored here
_TOP = {*CONFIG_KEYS, "jobs"}


def _kind_options(kind: str) -> frozenset[str]:
    """The options a section may set for ``kind``: every collector's and the kind's own."""
    extra = _KINDS[kind].kind_options
    return option_names(CollectorOptions) | (option_names(extra) if extra else frozenset())


@frozen
class LiveConfig:
    """What a collection config describes: the collectors, the storage URL (``None``:
    the default store) and the :class:`~mdcollect.DataCollector` options."""

    collectors: list[DataSourceCollector]
    storage: str | None = None
    options: Mapping[str, Any] = {}


def load_config(config: str | Path | Mapping[str, Any]) -> LiveConfig:
    """Read a collection config (a TOML file path or a dict of the same shape).

    .. code-block:: toml

        storage = "arctic+lmdb:///data/md"    # optional: the default store otherwise
        max_silence = 60                      # optional DataCollector options (any
        resume_window = 21600                 #   of its keyword options, such as
        restart_backoff = {initial = 1, maximum = 60}   # max_crashes, stop_timeout)

        [[collectors]]
        exchange = "binance"
        symbols = ["BTC/USDT", "ETH/USDT"]
        kinds = ["trades", "ticker"]          # one collector per kind
        mode = "auto"                         # "ws" | "poll" | "auto"
        candles = ["1s", "1m"]                # trades: candles built from them

    Anything unknown or invalid raises :class:`~mdcollect.InvalidRequest` naming it.

    >>> cfg = load_config({"collectors": [{"exchange": "binance", "symbols": ["BTC/USDT"],
    ...                                    "kinds": ["trades"], "candles": ["1m"]}]})
    >>> cfg.collectors
    [TradesCollector('binance', ['BTC/USDT'], mode='auto')]
    """
    data = _read(config)
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise InvalidRequest(f"unknown collector config key(s) {unknown}; allowed: {sorted(_TOP)}")
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise InvalidRequest(f"storage must be a storage URL string, got {storage!r}")
    sections = data.get("collectors")
    if not isinstance(sections, list) or not sections:
        raise InvalidRequest(
            f"collectors must be a non-empty list of tables ([[collectors]]), got {sections!r}"
        )
    collectors: list[DataSourceCollector] = []
    for i, section in enumerate(sections):
        collectors += _section(i, section)
    options = {k: v for k, v in data.items() if k in _OPTIONS}
    if "alerts" in options:
        # checked now, and held as WebhookAlerts: the webhook URL is a secret that a
        # printed config must not show
        options["alerts"] = as_alerts(options["alerts"])
    return LiveConfig(collectors, storage, options)


def _read(config: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """The table a config file (TOML) or dict holds, before its keys are checked."""
    data: Any
    if isinstance(config, str | Path):
        path = Path(config)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidRequest(f"cannot read collector config {str(path)!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequest(
                f"collector config {str(path)!r} is not valid TOML: {exc}"
            ) from exc
    else:
        data = config
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"collector config must be a table/dict, got {type(data).__name__}")
    return data


def load_collectors(config: str | Path | Mapping[str, Any]) -> list[DataSourceCollector]:
    """The collectors a TOML file or a dict describes (see :func:`load_config`).

    >>> load_collectors("collect.toml")
    [TradesCollector('binance', ['BTC/USDT'], mode='auto'), ...]
    """
    return load_config(config).collectors


def _section(i: int, section: object) -> list[DataSourceCollector]:
    where = f"collectors[{i}]"
    if not isinstance(section, Mapping):
        raise InvalidRequest(f"{where} must be a table, got {section!r}")
    exchange = section.get("exchange")
    if not isinstance(exchange, str) or not exchange:
        raise InvalidRequest(f"{where}.exchange must be an exchange key, got {exchange!r}")
    symbols = section.get("symbols")
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise InvalidRequest(
            f"{where}.symbols must be a non-empty list of symbols, got {symbols!r}"
        )
    patterns = [s for s in symbols if is_symbol_pattern(s)]
    if patterns:
        # a collector's name, lease and per-symbol feeds are fixed when it is made
        raise InvalidRequest(
            f"{where}.symbols has the pattern(s) {patterns}; collectors take exact symbols "
            "(patterns are resolved for [[jobs]], by mdcollect ensure --config)"
        )
    kinds = section.get("kinds", section.get("kind", ["trades"]))
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds:
        raise InvalidRequest(f"{where}.kinds must be a non-empty list, got {kinds!r}")
    bad = [k for k in kinds if k not in _KINDS]
    if bad:
        raise InvalidRequest(f"{where}.kinds has {bad}; allowed: {', '.join(_KINDS)}")
    allowed = set(_SECTION)
    for k in kinds:
        allowed |= _kind_options(k)
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise InvalidRequest(f"{where} has unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    out = []
    for kind in kinds:
        own = _kind_options(kind)
        opts = {k: v for k, v in section.items() if k in own}
        try:
            out.append(_KINDS[kind](exchange, symbols, **opts))
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where} ({kind}): {exc}") from exc
    return out


def shard_symbols(config: str | Path | Mapping[str, Any], workers: int) -> list[list[str]]:
    """How ``mdcollect collect --workers N`` splits a config's symbols over ``workers``
    processes: the ``"exchange:symbol"`` pairs each one collects.

    The config's distinct (exchange, symbol) pairs are sorted and dealt out in turn, so
    the split depends on the config alone (the same symbol goes to the same worker on
    every start), the workers' symbol counts differ by one at most, a collector of many
    symbols is split, and every kind of one symbol is collected by one worker. More
    workers than symbols is refused: a worker would collect nothing.

    >>> shard_symbols({"collectors": [{"exchange": "binance", "symbols": ["BTC/USDT",
    ...     "ETH/USDT", "SOL/USDT"]}]}, 2)
    [['binance:BTC/USDT', 'binance:SOL/USDT'], ['binance:ETH/USDT']]
    """
    data = _read(config)
    load_config(data)  # a mistake in the config is named before anything is split
    check_number("workers", workers, integer=True)
    pairs = sorted({(s["exchange"], sym) for s in data["collectors"] for sym in _symbols_of(s)})
    if workers > len(pairs):
        raise InvalidRequest(
            f"workers is {workers} but the config has {len(pairs)} symbol(s); a worker"
            f" collects one symbol at least, so run at most {len(pairs)}"
        )
    return [[f"{e}:{s}" for e, s in pairs[i::workers]] for i in range(workers)]


def shard_config(
    config: str | Path | Mapping[str, Any], workers: int, index: int
) -> dict[str, Any]:
    """The config worker ``index`` (0-based) of ``workers`` runs: the same options, each
    collector keeping the symbols :func:`shard_symbols` gives that worker (collectors left
    with none are dropped). A split collector's default name names its symbols, so
    the workers' collector names stay distinct.

    >>> shard_config({"collectors": [{"exchange": "binance", "symbols": ["BTC/USDT",
    ...     "ETH/USDT"]}]}, 2, 1)["collectors"]
    [{'exchange': 'binance', 'symbols': ['ETH/USDT']}]
    """
    shards = shard_symbols(config, workers)
    check_number("index", index, integer=True, strict=False, maximum=workers - 1)
    mine = set(shards[index])
    data = dict(_read(config))
    sections = []
    for section in data["collectors"]:
        symbols = _symbols_of(section)
        kept = [s for s in symbols if f"{section['exchange']}:{s}" in mine]
        if not kept:
            continue
        sections.append({**section, "symbols": kept})
    data["collectors"] = sections
    return data


def _symbols_of(section: Mapping[str, Any]) -> list[str]:
    symbols = section["symbols"]
    return [symbols] if isinstance(symbols, str) else list(symbols)
