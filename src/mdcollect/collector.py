"""Deprecated: the live-data code lives in :mod:`mdcollect.collectors`.

``mdcollect.collector.DataCollector`` (and ``Backoff``, ``load_collectors``,
``load_config``) still work, with a :class:`DeprecationWarning` on first use of
each name; import them from ``mdcollect`` or ``mdcollect.collectors`` instead.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

__all__ = ["Backoff", "DataCollector", "load_collectors", "load_config"]  # noqa: F822

_MOVED: Final = frozenset(__all__)
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
    from . import collectors

    return getattr(collectors, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _MOVED)
