"""Safe storage names for hostile symbol strings, and back.

Every character outside ``[A-Za-z0-9_-]`` becomes ``%XX`` per UTF-8 byte, so
``../../etc`` or ``BTC/USDT:USDT`` turn into one inert path component or object
name that never contains ``/``, ``.``, ``:`` or NUL, and decode back exactly.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, unquote

from .._errors import InvalidRequest
from .._keys import DatasetKey

_SAFE: Final = "_-"
_MAX_NAME: Final = 200
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_%-]+$")


def encode_name(text: str) -> str:
    """Encode any string into ``[A-Za-z0-9_%-]+`` (reversible with :func:`decode_name`)."""
    encoded = quote(text, safe=_SAFE, encoding="utf-8", errors="strict").replace(".", "%2E")
    encoded = encoded.replace("~", "%7E")
    if not encoded:
        raise InvalidRequest("an empty name cannot be stored")
    if len(encoded) > _MAX_NAME:
        raise InvalidRequest(
            f"name {text[:40]!r}... is too long to store ({len(encoded)} > {_MAX_NAME} "
            "characters once encoded)"
        )
    return encoded


def decode_name(name: str) -> str:
    """Inverse of :func:`encode_name`."""
    if not _NAME_RE.match(name):
        raise ValueError(f"not an encoded name: {name!r}")
    return unquote(name, encoding="utf-8", errors="strict")


def key_parts(key: DatasetKey) -> tuple[str, str, str, str]:
    """``(exchange, kind, timeframe or '-', encoded symbol)``: all safe as path parts."""
    return key.exchange, key.kind, key.timeframe or "-", encode_name(key.symbol)


def key_name(key: DatasetKey, sep: str = ".") -> str:
    """One flat safe name for ``key`` (the parts joined by ``sep``, which must not be in them)."""
    return sep.join(key_parts(key))


def parse_key_name(name: str, sep: str = ".") -> DatasetKey | None:
    """Inverse of :func:`key_name`; ``None`` for names that are not dataset names."""
    parts = name.split(sep)
    if len(parts) != 4:
        return None
    exchange, kind, tf, sym = parts
    try:
        return DatasetKey(exchange, decode_name(sym), kind, None if tf == "-" else tf)  # type: ignore[arg-type]
    except (ValueError, InvalidRequest):
        return None
