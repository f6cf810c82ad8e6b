"""``python -m mdcollect.testing``: serve the emulator until killed; prints its URL first.

``--market`` adds or replaces a market, given as the JSON of a :class:`MarketSpec`::

    python -m mdcollect.testing --market '{"symbol": "SOL/USDT", "trades_per_minute": 60000}'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from mdcollect.testing._emulator import ExchangeEmulator
from mdcollect.testing._faults import Fault
from mdcollect.testing._market import MarketSpec


def _market(text: str) -> MarketSpec:
    try:
        fields = json.loads(text)
        return MarketSpec(**fields)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"not a MarketSpec as JSON: {text!r} ({exc})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdcollect.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--now", type=int, default=None, help="freeze the market clock at this ms")
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:ROUTE[:RATE]]",
        help="inject a fault, e.g. 503:klines:0.1 (repeatable)",
    )
    parser.add_argument(
        "--market",
        action="append",
        default=[],
        type=_market,
        metavar="JSON",
        help='add a market, e.g. \'{"symbol": "SOL/USDT", "trades_per_minute": 60000}\' '
        "(repeatable)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one dies (even by kill -9)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    frozen = args.now
    emu = ExchangeEmulator(
        seed=args.seed,
        markets=args.market,
        clock=(lambda: frozen) if frozen is not None else None,
        rate_limits=not args.no_rate_limits,
        host=args.host,
        port=args.port,
    )
    for spec in args.fault:
        kind, _, rest = spec.partition(":")
        route, _, rate = rest.partition(":")
        emu.faults.add(Fault(kind, rate=float(rate) if rate else 1.0, route=route or None))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    with emu:
        print(emu.url, flush=True)
        while not stop.is_set():
            # an orphan is re-parented (to init or a subreaper): its parent is gone
            if args.exit_with_parent and os.getppid() != parent:
                break
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
