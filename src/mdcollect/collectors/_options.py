"""The options of collectors and of the supervisor, as attrs classes: one place each.

Every option a constructor takes by keyword (beside what it collects: exchange,
symbols, name, clock) is a field here, with its default and its rule
(:func:`~mdcollect._rules.positive`, :func:`~mdcollect._rules.non_negative`, ...),
so a bad value raises :class:`~mdcollect.InvalidRequest` naming it and what is
allowed. The config loader (``_config.py``) takes its allowed keys from these
fields (:func:`option_names`): an option added here is loadable from TOML at once.

* :class:`CollectorOptions`: what every :class:`~mdcollect.collectors.DataSourceCollector`
  takes (mode, batching, queue and buffer bounds, polling, the final flush);
* :class:`TradesOptions`, :class:`OHLCVOptions`, :class:`SnapshotOptions`,
  :class:`OrderBookOptions`, :class:`OpenInterestOptions`: what each kind adds (``kind_options`` on its class);
* :class:`SupervisorOptions`: what :class:`~mdcollect.DataCollector` takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, get_args

import attrs
from attrs import field, frozen

from .._backoff import Backoff
from .._errors import InvalidRequest
from .._rules import check_number, non_negative, positive
from ._alerts import WebhookAlerts, as_alerts

__all__ = [
    "CollectorOptions",
    "LiquidationsOptions",
    "Mode",
    "OHLCVOptions",
    "OpenInterestOptions",
    "OrderBookOptions",
    "SnapshotOptions",
    "SupervisorOptions",
    "TradesOptions",
    "option_names",
]

#: How a collector reads the exchange: websockets, REST polling, or websockets when available.
Mode = Literal["auto", "ws", "poll"]
_MODES: Final = get_args(Mode)


def option_names(cls: type) -> frozenset[str]:
    """The keyword options an options class holds (its attrs fields)."""
    return frozenset(a.name for a in attrs.fields(cls))


def _mode(_instance: Any, _attribute: Any, value: Any) -> None:
    if value not in _MODES:
        allowed = ", ".join(repr(m) for m in _MODES)
        raise InvalidRequest(f"mode {value!r} is not valid; allowed: {allowed}")


def _flag(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{attribute.name} must be true or false, got {value!r}")


def _timeframes(_instance: Any, attribute: Any, value: Any) -> None:
    ok = isinstance(value, str) or (
        isinstance(value, Sequence) and all(isinstance(t, str) for t in value)
    )
    if not ok:
        raise InvalidRequest(
            f"{attribute.name} must be a timeframe or a list of timeframes such as"
            f" ['1s', '1m'], got {value!r}"
        )


def _optional_seconds(_instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    try:
        check_number(attribute.name, value)
    except InvalidRequest:
        raise InvalidRequest(
            f"{attribute.name} must be a positive number (seconds) or None, got {value!r}"
        ) from None


@frozen(kw_only=True)
class CollectorOptions:
    """Options every collector takes: how it reads, batches, queues, buffers and flushes.

    See :class:`~mdcollect.collectors.DataSourceCollector` for what each does.

    >>> CollectorOptions(batch_rows=0)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: batch_rows must be a positive integer, got 0
    """

    mode: Mode = field(default="auto", validator=_mode)
    batch_rows: int = field(default=5_000, validator=positive(integer=True))
    batch_seconds: float = field(default=1.0, validator=positive())
    queue_size: int = field(default=10_000, validator=positive(integer=True))
    queue_rows: int = field(default=100_000, validator=positive(integer=True))
    buffer_rows: int = field(default=1_000_000, validator=positive(integer=True))
    poll_interval: float = field(default=1.0, validator=positive())
    flush_timeout: float = field(default=30.0, validator=positive())
    #: store the exchange's websocket frames too (``raw`` kind, see ``_raw.py``)
    raw: bool = field(default=False, validator=_flag)


@frozen(kw_only=True)
class TradesOptions:
    """What :class:`~mdcollect.collectors.TradesCollector` adds: candles built from the
    trades, flat candles for empty intervals, how far behind now polling reads."""

    candles: Sequence[str] | str = field(default=(), validator=_timeframes)
    fill_empty: bool = field(default=True, validator=_flag)
    poll_lag: float = field(default=1.0, validator=non_negative())


@frozen(kw_only=True)
class OHLCVOptions:
    """What :class:`~mdcollect.collectors.OHLCVCollector` adds: the candle timeframes."""

    timeframes: Sequence[str] | str = field(default=("1m",), validator=_timeframes)


def _period(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            f"{attribute.name} must be the exchange's open-interest period such as '5m', "
            f"got {value!r}"
        )


@frozen(kw_only=True)
class OpenInterestOptions:
    """What :class:`~mdcollect.collectors.OpenInterestCollector` adds: the exchange's
    ``period`` (``5m`` ... ``1d``) and ``poll_lag``, seconds after a period closes
    before it is asked for (exchanges publish it a moment late)."""

    period: str = field(default="5m", validator=_period)
    poll_lag: float = field(default=5.0, validator=non_negative())


@frozen(kw_only=True)
class SnapshotOptions:
    """What ticker and funding collectors add: at most one row every ``interval``
    seconds (``None``: every update on websockets, every poll otherwise)."""

    interval: float | None = field(default=None, validator=_optional_seconds)


@frozen(kw_only=True)
class OrderBookOptions(SnapshotOptions):
    """What :class:`~mdcollect.collectors.OrderBookCollector` adds: the book depth, and
    a snapshot every second by default."""

    depth: int = field(default=5, validator=positive(integer=True))
    interval: float | None = field(default=1.0, validator=_optional_seconds)


def _optional_count(_instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{attribute.name} must be a positive integer or None, got {value!r}")


@frozen(kw_only=True)
class LiquidationsOptions:
    """What :class:`~mdcollect.collectors.LiquidationsCollector` adds: nothing (a config
    section of kind ``liquidations`` takes the common options only)."""


def _to_backoff(value: Any) -> Backoff:
    """A :class:`Backoff`, from itself, from seconds (its ``initial``), or from a
    table of its fields (a TOML config's ``restart_backoff = {initial = 1}``)."""
    if isinstance(value, Backoff):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Backoff(initial=float(value))
    if isinstance(value, Mapping):
        fields = option_names(Backoff)
        unknown = sorted(set(value) - fields)
        if unknown:
            raise InvalidRequest(
                f"restart_backoff has unknown field(s) {unknown}; allowed: {sorted(fields)}"
            )
        return Backoff(**value)
    raise InvalidRequest(
        f"restart_backoff must be a Backoff, seconds or a table of Backoff fields, got {value!r}"
    )


@frozen(kw_only=True)
class SupervisorOptions:
    """Options of :class:`~mdcollect.DataCollector` (see it for what each does).

    ``max_crashes`` is how many crashes in a row, with nothing stored in between,
    a collector may have before it is marked ``failed`` rather than restarted
    (a transient exchange error, such as a dropped connection, is not a crash:
    it is retried as long as it lasts). ``max_restarts`` (``None``: no cap) is how
    many automatic restarts, for whatever cause, a collector may have within
    ``restart_window`` seconds before it is marked ``failed``.

    >>> SupervisorOptions(max_silence=0)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: max_silence must be a positive number, got 0
    """

    restart_backoff: Backoff = field(factory=Backoff, converter=_to_backoff)
    max_silence: float = field(default=60.0, validator=positive())
    backfill_gaps: bool = field(default=True, validator=_flag)
    stop_timeout: float = field(default=30.0, validator=non_negative())
    check_interval: float | None = field(default=None, validator=_optional_seconds)
    max_permanent_errors: int = field(default=3, validator=positive(integer=True))
    max_crashes: int = field(default=10, validator=positive(integer=True))
    resume_window: float = field(default=6 * 3600.0, validator=non_negative())
    first_data_grace: float = field(default=60.0, validator=non_negative())
    max_restarts: int | None = field(default=None, validator=_optional_count)
    restart_window: float = field(default=3600.0, validator=positive())
    alerts: WebhookAlerts | None = field(default=None, converter=as_alerts)
    audit_interval: float = field(default=0.0, validator=non_negative())
    audit_max_refills: int = field(default=4, validator=positive(integer=True))
    audit_min_gap: float = field(default=0.0, validator=non_negative())
    raw: bool = field(default=False, validator=_flag)
