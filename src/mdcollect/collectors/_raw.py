"""Raw capture: websocket frames as ``raw`` rows, compressed, and back.

A collector with ``raw=True`` stores every websocket frame its client receives in
``DatasetKey(exchange, channel, "raw")``: the symbol field names the **channel**,
the collector's kind (``trades``, ``ohlcv``, ``ticker``, ``orderbook``,
``funding_snapshot``, ``liquidations``), the ccxt.pro watch the frames answered.
Each flush writes one row: at the receipt time of its first frame, ``frames`` the
number of frames, ``data`` the batch (a header line saying which collector
captured it, then one JSON array ``[receipt ms, connection path, text]`` a frame;
an empty path marks where a watch of the collector returned, ``text`` its ccxt
message hash: see :meth:`mdcollect.exchanges.ExchangeClient.capture_ws`),
zlib-compressed and base64-encoded (every backend stores text), and ``id`` a
digest of ``data``: a batch written twice (a retried write) is one row.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import pandas as pd
from attrs import frozen

from .._errors import StorageError
from .._keys import DatasetKey
from .._time import index_ms, ms_to_index

__all__ = ["FrameMerger", "RawBatch", "decode_raw", "encode_raw", "raw_key"]

#: The format of the header line (a reader refuses a newer one).
_VERSION: Final = 1
#: zlib level: 6 packs exchange JSON about as tight as 9 at half the time.
_LEVEL: Final = 6


def raw_key(exchange: str, channel: str) -> DatasetKey:
    """The dataset of ``exchange``'s raw frames of ``channel`` (a collector kind).

    >>> raw_key("binance", "trades")
    DatasetKey('binance', 'trades', 'raw')
    """
    return DatasetKey(exchange, channel, "raw")


@frozen
class RawBatch:
    """One stored batch: who captured it (``kind``, ``symbols``, the kind's
    ``options``), its ``frames`` ``(receipt ms, connection path, text)`` and the
    ``streams`` (ccxt subscription keys) each connection path carried."""

    exchange: str
    kind: str
    symbols: list[str]
    options: Mapping[str, Any]
    frames: list[tuple[int, str, str]]
    streams: Mapping[str, list[str]] = {}


def encode_raw(
    exchange: str,
    kind: str,
    symbols: Sequence[str],
    options: Mapping[str, Any],
    frames: Sequence[tuple[int, str, str]],
    streams: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """``frames`` as one ``raw`` row (see the module docstring)."""
    head = {
        "v": _VERSION, "exchange": exchange, "kind": kind, "symbols": list(symbols),
        "options": dict(options), "streams": {p: list(h) for p, h in (streams or {}).items()},
    }  # fmt: skip
    lines = [json.dumps(head, separators=(",", ":"))]
    lines += [json.dumps(f, separators=(",", ":")) for f in frames]
    packed = zlib.compress("\n".join(lines).encode("utf-8"), _LEVEL)
    data = base64.b64encode(packed).decode("ascii")
    return pd.DataFrame(
        {
            "id": [hashlib.blake2b(packed, digest_size=12).hexdigest()],
            "frames": [sum(1 for f in frames if f[1])],
            "data": [data],
        },
        index=ms_to_index([int(frames[0][0])]),
    )


def decode_raw(rows: pd.DataFrame, *, heads_only: bool = False) -> list[RawBatch]:
    """The batches of stored ``raw`` rows, in row order; ``heads_only``: without their
    frames (only as much of each row is decompressed as its header takes).

    >>> row = encode_raw("binance", "trades", ["BTC/USDT"], {}, [(1, "/ws", '{"e":1}')])
    >>> decode_raw(row)[0].frames
    [(1, '/ws', '{"e":1}')]
    """
    return [
        _decode(when, data, heads_only)
        for when, data in zip(index_ms(rows).tolist(), rows["data"], strict=True)
    ]


def _decode(when: int, data: str, heads_only: bool) -> RawBatch:
    try:
        packed = base64.b64decode(data)
        if heads_only:
            unpack = zlib.decompressobj()
            text = unpack.decompress(packed, 4096)
            while b"\n" not in text and unpack.unconsumed_tail:
                text += unpack.decompress(unpack.unconsumed_tail, 4096)
            if b"\n" not in text:
                text += unpack.flush()
            lines = [text.split(b"\n", 1)[0].decode("utf-8")]
        else:
            lines = zlib.decompress(packed).decode("utf-8").split("\n")
        head = json.loads(lines[0])
        frames = [(int(t), str(p), str(x)) for t, p, x in map(json.loads, lines[1:])]
    except (ValueError, zlib.error, TypeError) as exc:
        raise StorageError(f"raw row at {when} ms is not a readable capture: {exc}") from exc
    if head.get("v") != _VERSION:
        raise StorageError(
            f"raw row at {when} ms has capture format {head.get('v')!r}; this mdcollect"
            f" reads format {_VERSION}"
        )
    return RawBatch(head["exchange"], head["kind"], list(head["symbols"]), head["options"],
                    frames, head.get("streams") or {})  # fmt: skip


class FrameMerger:
    """The frames of batches in receipt order, decoding a batch only when its time
    comes: rows are added window by window (sorted by their first frame), and
    :meth:`until` yields the frames received before a time no later row can precede.
    A batch's own frames keep their order (a read mark after the frames it read)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, list[tuple[int, str, str]]]] = []
        self._seq = 0

    def add(self, rows: pd.DataFrame) -> None:
        """Add stored ``raw`` rows."""
        for batch in decode_raw(rows):
            if batch.frames:
                heapq.heappush(self._heap, (batch.frames[0][0], self._seq, 0, batch.frames))
                self._seq += 1

    def until(self, end: int | None) -> Iterator[tuple[int, str, str]]:
        """The frames received before ``end`` (``None``: all that were added)."""
        while self._heap and (end is None or self._heap[0][0] < end):
            _, seq, i, frames = heapq.heappop(self._heap)
            yield frames[i]
            if i + 1 < len(frames):
                heapq.heappush(self._heap, (frames[i + 1][0], seq, i + 1, frames))
