"""Bybit v5 public websockets (``stream.bybit.com/v5/public/{spot,linear}``): the
``op`` protocol (subscribe, unsubscribe, ping) and the ``allLiquidation`` topic."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from mdcollect.testing._live import LIQUIDATION_LAG_MS
from mdcollect.testing._market import MarketSpec, SyntheticMarket
from mdcollect.testing.dialects._base import CallbackFeed, WsFeed, WsSession, find_market, fmt_plain

from ._common import _market_id as market_id

__all__ = ["BybitWs"]

#: ``allLiquidation`` pushes what happened since the last push every 500 ms.
_LIQUIDATION_PUSH_MS = 500


class BybitWs(WsSession):
    """Bybit v5 public websocket protocol: ``{"op": "subscribe", "args": [topics]}``,
    ``{"op": "ping"}``; ``kind`` is the category from the path (``spot``, ``linear``).

    Samples::

        {"success": true, "ret_msg": "", "conn_id": "a4d3ae55", "req_id": "1",
         "op": "subscribe"}
        {"success": true, "ret_msg": "pong", "conn_id": "a4d3ae55", "req_id": "2",
         "op": "ping"}
        {"topic": "allLiquidation.ROSEUSDT", "type": "snapshot", "ts": 1739502303204,
         "data": [{"T": 1739502302929, "s": "ROSEUSDT", "S": "Sell", "v": "20000",
         "p": "0.04499"}]}

    ``S`` in ``allLiquidation`` is the side of the liquidated *position*: ``Buy`` means
    a long was liquidated (by a forced sell).
    """

    def __init__(self, market: SyntheticMarket, venue: str, kind: str, conn_id: int) -> None:
        super().__init__(market, venue, kind, conn_id)
        self.conn_tag = f"{zlib.crc32(str(conn_id).encode()):08x}"

    def receive(self, text: str, now: int) -> list[Any]:
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return [self._reply("", "", False, f"error:request not json, {text[:64]}")]
        op, rid = str(req.get("op", "")), str(req.get("req_id", ""))
        if op == "ping":
            return [self._reply(op, rid, True, "pong")]
        args = req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return [self._reply(op, rid, False, f"error:unknown op or args, {text[:64]}")]
        if op == "unsubscribe":
            for topic in args:
                self.remove(str(topic), now)
            return [self._reply(op, rid, True, "")]
        feeds: list[WsFeed] = []
        for topic in args:
            feed = self._feed(str(topic), now)
            if feed is None:
                return [self._reply(op, rid, False, f"error:handler not found,topic:{topic}")]
            feeds.append(feed)
        for feed in feeds:
            self.add(feed, now)
        return [self._reply(op, rid, True, "")]

    def _reply(self, op: str, rid: str, ok: bool, msg: str) -> dict[str, Any]:
        return {"success": ok, "ret_msg": msg, "conn_id": self.conn_tag, "req_id": rid, "op": op}

    def _feed(self, topic: str, now: int) -> WsFeed | None:
        channel, _, sid = topic.partition(".")
        builder: Callable[[MarketSpec, int], Callable[[int], list[Any]]] | None = None
        if channel == "allLiquidation" and self.kind == "linear":
            builder = self._liquidations
        if builder is None:
            return None
        linear = self.kind == "linear"
        spec = find_market(
            self.market, self.venue, lambda s: s.is_contract == linear and market_id(s) == sid
        )
        if spec is None:
            return None
        poll = builder(spec, now)
        return CallbackFeed(topic, lambda t: [{"topic": topic, **m} for m in poll(t)])

    def _liquidations(self, spec: MarketSpec, start: int) -> Callable[[int], list[Any]]:
        sid = market_id(spec)
        cursor = [start]

        def poll(now: int) -> list[Any]:
            edge = now - LIQUIDATION_LAG_MS  # published by now
            if edge - cursor[0] < _LIQUIDATION_PUSH_MS:
                return []
            raw = self.market.raw_liquidations(self.venue, spec.symbol, cursor[0], edge)
            cursor[0] = edge
            if not len(raw):
                return []
            data = [
                {
                    "T": ts,
                    "s": sid,
                    # the liquidated position's side: a forced buy closes a short
                    "S": "Sell" if buy else "Buy",
                    "v": fmt_plain(qty, spec.amount_decimals),
                    "p": fmt_plain(px, spec.price_decimals),
                }
                for ts, buy, px, qty in raw.rows()
            ]
            return [{"type": "snapshot", "ts": now, "data": data}]

        return poll
