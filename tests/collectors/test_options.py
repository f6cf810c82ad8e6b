"""The options classes are the one list of options: the config loader takes every
field of them, and refuses anything else naming what is allowed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from mdcollect import DataCollector, InvalidRequest
from mdcollect.collectors import Backoff, WebhookAlerts, load_collectors, load_config
from mdcollect.collectors._config import _KINDS
from mdcollect.collectors._options import CollectorOptions, SupervisorOptions

SECTION = {"exchange": "binance", "symbols": ["BTC/USDT"]}
#: kinds that exist only for perpetuals, on an exchange that keeps them
PERP_SECTION = {"exchange": "binance_futures", "symbols": ["BTC/USDT:USDT"]}
PERP_KINDS = {"open_interest"}
#: a valid value other than the default, per option whose default would prove nothing
OTHER: dict[str, Any] = {
    "mode": "poll",
    "candles": ["1m"],
    "timeframes": ["5m"],
    "interval": 2.5,
    "check_interval": 0.5,
    "restart_backoff": {"initial": 0.5, "maximum": 5.0},
    "max_restarts": 7,
    "alerts": {"url": "https://hooks.example.com/x", "repeat_after": 60.0},
    "period": "1h",
}


def _other(field: attrs.Attribute) -> Any:  # type: ignore[type-arg]
    if field.name in OTHER:
        return OTHER[field.name]
    default = field.default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default * 2 + 1
    raise AssertionError(f"no test value for the new option {field.name!r}: add it to OTHER")


def _attribute(obj: object, name: str) -> Any:
    if name in ("candles", "timeframes"):
        return [str(t) for t in obj.timeframes]  # type: ignore[attr-defined]
    if name == "restart_backoff":
        return obj.backoff  # type: ignore[attr-defined]
    return getattr(obj, name)


def _expected(name: str, value: Any) -> Any:
    if name == "alerts":
        return WebhookAlerts(**value)
    return Backoff(**value) if name == "restart_backoff" else value


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_every_collector_option_is_loadable(kind: str) -> None:
    """Each field of CollectorOptions and of the kind's options class is a config key
    that reaches the collector: a new option needs no change to the loader."""
    cls = _KINDS[kind]
    assert cls.kind_options is not None
    fields = [*attrs.fields(CollectorOptions), *attrs.fields(cls.kind_options)]
    for field in fields:
        value = _other(field)
        if kind == "liquidations" and field.name == "mode":
            value = "auto"  # it has nothing to poll; its default is "ws"
        section = PERP_SECTION if kind in PERP_KINDS else SECTION
        (c,) = load_collectors({"collectors": [{**section, "kinds": [kind], field.name: value}]})
        assert isinstance(c, cls)
        assert _attribute(c, field.name) == value, field.name


def test_every_supervisor_option_is_loadable() -> None:
    """Each field of SupervisorOptions is a top-level config key that reaches the
    DataCollector, through from_config and as the CLI passes them (keywords)."""
    for field in attrs.fields(SupervisorOptions):
        value = _other(field)
        data = {"storage": "memory://", "collectors": [SECTION], field.name: value}
        cfg = load_config(data)
        held = _expected(field.name, value) if field.name == "alerts" else value
        assert cfg.options == {field.name: held}
        for dc in (
            DataCollector.from_config(data),
            DataCollector(cfg.collectors, cfg.storage, **cfg.options),  # as `mdcollect collect`
        ):
            assert _attribute(dc, field.name) == _expected(field.name, value), field.name


def test_unknown_keys_are_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidRequest, match="max_silense") as top:
        load_config({"collectors": [SECTION], "max_silense": 30})
    for field in attrs.fields(SupervisorOptions):
        assert repr(field.name) in str(top.value), field.name
    with pytest.raises(InvalidRequest, match="poll_lagg") as section:
        load_collectors({"collectors": [{**SECTION, "kinds": ["trades"], "poll_lagg": 1}]})
    for field in [*attrs.fields(CollectorOptions), *attrs.fields(_KINDS["trades"].kind_options)]:
        assert repr(field.name) in str(section.value), field.name
    # an option of another kind is not one of this kind's
    with pytest.raises(InvalidRequest, match="depth"):
        load_collectors({"collectors": [{**SECTION, "kinds": ["trades"], "depth": 5}]})


@pytest.mark.parametrize(
    "name",
    [f.name for f in attrs.fields(CollectorOptions) if f.name != "mode" and f.type != "bool"],
)
def test_bad_numbers_are_refused_naming_the_option(name: str) -> None:
    with pytest.raises(InvalidRequest, match=f"{name} must be a positive"):
        load_collectors({"collectors": [{**SECTION, name: 0}]})


def test_snapshot_columns_attribute_is_a_deprecated_alias() -> None:
    from mdcollect.collectors import FundingRateCollector, TickerCollector
    from mdcollect.exchanges import row_columns

    for cls, kind in ((TickerCollector, "ticker"), (FundingRateCollector, "funding_snapshot")):
        c = cls("binance_futures", ["BTC/USDT:USDT"], mode="poll", interval=5)
        with pytest.warns(DeprecationWarning, match=r"\.columns is deprecated"):
            assert c.columns == row_columns(kind)
