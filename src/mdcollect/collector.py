"""Deprecated: the live-data code lives in :mod:`mdcollect.collectors`.

``mdcollect.collector.DataCollector`` (and ``Backoff``, ``load_collectors``,
``load_config``) still work, with a :class:`DeprecationWarning` on first use of
each name; import them from ``mdcollect`` or ``mdcollect.collectors`` instead.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

from .collectors import Backoff as _Backoff
from .collectors import DataCollector as _DataCollector
from .collectors import load_collectors as _load_collectors
from .collectors import load_config as _load_config

__all__ = ["Backoff", "DataCollector", "load_collectors", "load_config"]  # noqa: F822

_MOVED: Final[dict[str, Any]] = {
    "Backoff": _Backoff,
    "DataCollector": _DataCollector,
    "load_collectors": _load_collectors,
    "load_config": _load_config,
}
_warned: set[str] = set()


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'mdcollect.collector' has no attribute {name!r}")
    if name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"mdcollect.collector.{name} moved: import it from mdcollect.collectors",
            DeprecationWarning,
            stacklevel=2,
        )
    return _MOVED[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
