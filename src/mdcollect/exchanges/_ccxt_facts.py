"""What ccxt's exchange classes say (timeframes, candles per request), remembered on disk.

``import ccxt`` takes about 0.4 s, most of what a no-op ``mdcollect ensure`` (all
stored already) would otherwise spend, yet checking its input needs only a few facts
of one ccxt class: the timeframes it lists and its ``fetchOHLCV`` page limit. They
are read from ccxt once and kept in ``ccxt-facts.json`` (under ``$MDCOLLECT_HOME/cache``,
else the user cache dir), keyed by the identity of the installed ccxt: the path,
size and modification time of its package files. Another ccxt (an upgrade, another
virtualenv) does not match the key, so its facts are read from it again: what is
remembered is always what the installed ccxt itself says. A missing, unreadable or
unwritable file only costs the import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Final, TypeAlias

import platformdirs

log = logging.getLogger("mdcollect.exchanges")

#: A ccxt class's timeframes and its ``fetchOHLCV`` page limit (``None``: not given).
Facts: TypeAlias = tuple[tuple[str, ...], int | None]

FILE_NAME: Final = "ccxt-facts.json"
#: ccxt's files whose identity keys the remembered facts: the package (its version)
#: and the base class every exchange class merges its description into.
_IDENTITY_FILES: Final = ("__init__.py", "base/exchange.py")


def facts_path() -> Path:
    """Where the facts are kept: ``$MDCOLLECT_HOME/cache/ccxt-facts.json``, else the
    user cache dir (``~/.cache/mdcollect`` on Linux)."""
    home = os.environ.get("MDCOLLECT_HOME")
    if home:
        return Path(home).expanduser() / "cache" / FILE_NAME
    return Path(platformdirs.user_cache_dir("mdcollect")) / FILE_NAME


def ccxt_identity() -> list[Any] | None:
    """The installed ccxt's identity (its files' paths, sizes and mtimes), found without
    importing it; ``None`` when it cannot be told (no ccxt, no source files)."""
    try:
        spec = importlib.util.find_spec("ccxt")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    identity: list[Any] = []
    for name in _IDENTITY_FILES:
        path = root / name
        try:
            st = path.stat()
        except OSError:
            return None
        identity.append([str(path), st.st_size, st.st_mtime_ns])
    return identity


def _remembered(identity: list[Any]) -> dict[str, Any]:
    """The facts kept for this ccxt (empty when the file is missing, broken or another's)."""
    try:
        doc = json.loads(facts_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("ccxt") != identity:
        return {}
    entries = doc.get("facts")
    return entries if isinstance(entries, dict) else {}


def _parse(entry: object) -> Facts | None:
    if not isinstance(entry, dict):
        return None
    timeframes, limit = entry.get("timeframes"), entry.get("limit")
    if not isinstance(timeframes, list) or not all(isinstance(t, str) for t in timeframes):
        return None
    if limit is not None and (type(limit) is not int or limit <= 0):
        return None
    return tuple(timeframes), limit


def _remember(identity: list[Any], name: str, value: Facts) -> None:
    """Add one class's facts to the file, replaced atomically (a concurrent writer's
    entry may be lost: it is read from ccxt again, never wrong)."""
    entries = dict(_remembered(identity))
    entries[name] = {"timeframes": list(value[0]), "limit": value[1]}
    path = facts_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"ccxt": identity, "facts": entries}, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not keep ccxt's facts in %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def _read(ccxt_id: str, market_type: str) -> Facts:
    import ccxt

    # Instantiating a sync ccxt class makes no request; it only merges describe().
    exchange = getattr(ccxt, ccxt_id)()
    timeframes = tuple(exchange.timeframes or ())
    features = exchange.features or {}
    section = features.get(market_type) or {}
    if market_type == "swap":
        section = section.get("linear") or {}
    ohlcv = section.get("fetchOHLCV") or {}
    limit = ohlcv.get("limit")
    return timeframes, (int(limit) if isinstance(limit, int) and limit > 0 else None)


def class_facts(ccxt_id: str, market_type: str) -> Facts:
    """The timeframes and candle page limit of ccxt's ``ccxt_id`` class for
    ``market_type`` markets, as the installed ccxt gives them (from disk when they
    were read from this very ccxt before)."""
    name = f"{ccxt_id}:{market_type}"
    identity = ccxt_identity()
    if identity is not None:
        kept = _parse(_remembered(identity).get(name))
        if kept is not None:
            return kept
    value = _read(ccxt_id, market_type)
    if identity is not None:
        _remember(identity, name, value)
    return value


def is_ccxt_id(name: str) -> bool:
    """Whether ``name`` is one of ``ccxt.exchanges`` (known without importing ccxt when
    its facts were kept)."""
    identity = ccxt_identity()
    kept = {} if identity is None or "ccxt" in sys.modules else _remembered(identity)
    if any(k.partition(":")[0] == name for k in kept):
        return True
    import ccxt

    return name in ccxt.exchanges
