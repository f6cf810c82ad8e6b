"""Candle pages rendered once: closed candles' rows cached as encoded JSON.

A closed candle never changes: the market is a pure function of ``(seed, venue,
spec, time)``, and once now has passed a candle's end no later clock changes it. So
a dialect renders each closed candle's row once, keeps its JSON bytes, and answers
a page by joining cached rows (``orjson`` inlines them as :class:`orjson.Fragment`)
instead of formatting and encoding every number again. The still-open candle, and
any row not cached, is rendered as before, so a page is byte for byte what the
uncached path (:data:`CACHE` off) answers.

Faults still apply: row faults (:meth:`Ctx.mangle_candles`) duplicate or prepend
rows after this, on the cached fragments, and garbled bodies cut the encoded
bytes, exactly as they cut the uncached encoding.

Memory: at most :data:`ROW_CACHE_ROWS` rows, held as one block per (renderer,
market, timeframe, UTC day of the open time), least recently used blocks dropped
first. A Binance spot row is about 160 bytes of JSON, about 200 in memory with its
key: an emulator serving 60 days of 1m candles for each of 50 symbols levels off
at 300 MiB RSS (238 MiB without this cache), whatever the number of symbols or years.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

import numpy as np
import orjson

from mdcollect.testing._market import DAY, RawCandles
from mdcollect.testing._market.cache import LRU

__all__ = ["CACHE", "ROWS", "Encoded", "cached_rows", "encode_body", "page"]

#: Rows the cache holds (over all blocks): a little more than 200 days of 1m candles.
ROW_CACHE_ROWS: Final = 300_000

#: Whether candle handlers use the cache and pre-encoded bodies. Off only to compare
#: the cached path with the plain one (tests/testing/test_render.py).
CACHE = True

#: (renderer tag, seed, spec, frame, day) -> {open time: encoded row}, by row count
ROWS = LRU(ROW_CACHE_ROWS, weigh=len)


class Encoded(bytes):
    """A reply body already encoded as JSON (sent as is)."""


def encode_body(body: Any) -> bytes:
    """The JSON bytes of a reply body, compact as the venues write it."""
    if isinstance(body, Encoded):
        return bytes(body)
    return json.dumps(body, separators=(",", ":")).encode()


def page(body: Any) -> Any:
    """A candle reply's body, encoded now when its rows are cached fragments.

    ``body`` holds only ints, ASCII strings, lists and dicts besides the fragments,
    which ``orjson`` and ``json.dumps`` encode alike."""
    return Encoded(orjson.dumps(body)) if CACHE else body


def cached_rows(
    tag: Hashable,
    seed: int,
    raw: RawCandles,
    render: Callable[[RawCandles], Sequence[Any]],
) -> list[Any]:
    """``render(raw)`` as encoded rows, closed candles taken from (and added to) the cache.

    ``tag`` names the renderer and everything it depends on besides ``raw`` (the
    dialect, the market type); ``render`` must render each row from that row alone.
    With :data:`CACHE` off this is ``list(render(raw))``.
    """
    if not CACHE:
        return list(render(raw))
    n = len(raw)
    if n == 0:
        return []
    starts = raw.agg.start.tolist()
    closed = raw.confirmed().tolist()
    spec, frame = raw.spec, raw.frame
    out: list[Any] = [None] * n
    missing: list[int] = []
    blocks: dict[int, dict[int, orjson.Fragment]] = {}
    # one cache lookup per UTC day the page spans, then plain dict lookups per row
    cuts = (np.flatnonzero(np.diff(raw.agg.start // DAY)) + 1).tolist()
    for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
        day = starts[lo] // DAY
        block = ROWS.get((tag, seed, spec, frame, day))
        if block is None:
            missing.extend(range(lo, hi))
            continue
        blocks[day] = block
        for i, row in enumerate(map(block.get, starts[lo:hi]), lo):
            # a row cached while closed is stale if the clock was set back since
            if row is None or not closed[i]:
                missing.append(i)
            else:
                out[i] = row
    if not missing:
        return out
    rendered = render(raw.take(np.asarray(missing, dtype=np.int64)))
    fragments = list(map(orjson.Fragment, _encode_rows(rendered)))
    grown: set[int] = set()
    if len(missing) == n:
        # a page seen for the first time: its closed rows (a prefix: all but perhaps
        # the last) go into their day's block in one update per day
        out = fragments
        k = closed.count(True)
        for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
            if lo < k:
                day = starts[lo] // DAY
                top = min(hi, k)
                blocks.setdefault(day, {}).update(zip(starts[lo:top], out[lo:top], strict=True))
                grown.add(day)
    else:
        for i, fragment in zip(missing, fragments, strict=True):
            out[i] = fragment
            if closed[i]:
                day = starts[i] // DAY
                blocks.setdefault(day, {})[starts[i]] = fragment
                grown.add(day)
    for day in grown:
        # put again so the LRU weighs the block at its new size
        ROWS.put((tag, seed, spec, frame, day), blocks[day])
    return out


def _encode_rows(rows: Sequence[Any]) -> list[bytes]:
    """Each row's JSON: one encoding of the whole list cut at the row boundaries, which
    is safe for flat rows of numbers and decimal strings (no ``],[`` inside a row, and
    orjson never writes a NUL byte); anything else is encoded row by row."""
    if not rows:
        return []
    pieces = orjson.dumps(rows)[1:-1].replace(b"],[", b"]\0[").split(b"\0")
    if len(pieces) != len(rows) or not all(isinstance(r, (list, tuple)) for r in rows):
        return [orjson.dumps(r) for r in rows]
    return pieces
