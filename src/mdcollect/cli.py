"""The ``mdcollect`` command.

::

    mdcollect ensure BTC/USDT -t 1h --start 2024-01-01 --end 2024-02-01 -x binance
    mdcollect backfill BTC/USDT --kind trades --start 2024-01-01 --end 2024-01-02 -x binance
    mdcollect ls
    mdcollect export binance:ohlcv:1h:BTC/USDT -o btc.parquet
    mdcollect --emulate ensure BTC/USDT -t 1h --start 2024-01-01 --end 2024-01-31 -x binance
    mdcollect collect collect.toml --status-file /run/mdcollect.json
    mdcollect status /run/mdcollect.json
    mdcollect serve --storage parquet:///data/md --host 127.0.0.1 --port 8002 [--emulate]

Exit codes: 0 ok, 1 partial failure (some windows failed), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from ._errors import InvalidRequest, MdcollectError
from ._intervals import Interval
from ._keys import DatasetKey
from ._time import to_ms
from .storage import (
    DataCollectionStorage,
    default_storage_url,
    emulated_storage_url,
    open_storage,
)

if TYPE_CHECKING:
    from .ensure import EnsureReport

log = logging.getLogger("mdcollect.cli")

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT = 0, 1, 2


def _fmt_ms(ts: int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdcollect", description="Collect and store cryptocurrency market data."
    )
    p.add_argument("--version", action="version", version=f"mdcollect {__version__}")
    p.add_argument(
        "--storage", metavar="URL", help="storage URL (default: the embedded ArcticDB store)"
    )
    p.add_argument(
        "--emulate",
        action="store_true",
        help="start the built-in exchange emulator and fetch from it (no network needed)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="show the windows and requests, fetch nothing"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def fetch_args(sp: argparse.ArgumentParser, default_tf: str) -> None:
        sp.add_argument("symbols", nargs="+", metavar="SYMBOL")
        sp.add_argument("-t", "--timeframe", default=default_tf)
        sp.add_argument("--start", required=True, help="YYYY-MM-DD (or YYYYMMDD)")
        sp.add_argument("--end", required=True, help="YYYY-MM-DD, inclusive of its whole day")
        sp.add_argument("-x", "--exchange", default="binance_futures")
        sp.add_argument("--concurrency", type=int, default=4)
        sp.add_argument(
            "--strategy",
            choices=["auto", "ohlcv", "trades"],
            default="auto",
            help="candles from the candle endpoint or resampled trades",
        )

    e = sub.add_parser("ensure", help="make sure candles are stored; fetch only what is missing")
    fetch_args(e, "1h")
    e.add_argument(
        "--padding-days",
        type=int,
        default=0,
        help="also ensure this many days before --start (default 0)",
    )
    b = sub.add_parser("backfill", help="fetch candles or raw trades over a range")
    fetch_args(b, "1m")
    b.add_argument("--kind", choices=["ohlcv", "trades"], default="ohlcv")
    sub.add_parser("ls", help="list datasets: rows, first/last, coverage and holes")
    x = sub.add_parser("export", help="write a dataset to CSV or Parquet")
    x.add_argument("key", help="dataset key, e.g. binance:ohlcv:1h:BTC/USDT")
    x.add_argument("-o", "--output", required=True, help="file.csv or file.parquet")
    x.add_argument("--start")
    x.add_argument("--end")
    _serve_args(sub)
    _collect_args(sub)
    return p


def _storage_url(args: argparse.Namespace) -> str:
    if args.storage:
        return str(args.storage)
    # synthetic data never mixes with real data in the default store
    return emulated_storage_url() if args.emulate else default_storage_url()


@contextlib.contextmanager
def _exchange(args: argparse.Namespace) -> Iterator[Any]:
    if not args.emulate:
        yield args.exchange
        return
    from .exchanges import ExchangeClient
    from .testing import ExchangeEmulator

    with ExchangeEmulator() as emu:
        log.info("emulator serving on %s", emu.url)
        yield ExchangeClient(args.exchange, base_url=emu.url)


def _print_report(report: EnsureReport, quiet: bool) -> None:
    if report.dry_run:
        total, seconds = 0, 0.0
        for plan in report.plans:
            total += plan.requests
            seconds += plan.seconds or 0.0
            print(f"{plan.key}: missing {plan.missing}, {len(plan.windows)} window(s)")
            for w in plan.windows[:20]:
                print(f"    {w}")
            if len(plan.windows) > 20:
                print(f"    ... {len(plan.windows) - 20} more")
        print(
            f"{total} window(s), at least {total} page request(s) (+1 markets and +1 listing "
            f"request per symbol), about {seconds:.1f}s at {report.exchange}'s rate limit"
        )
        return
    if quiet:
        return
    for s in report.symbols:
        state = "ok" if s.ok else f"FAILED {len(s.windows_failed)} window(s)"
        print(
            f"{s.key}: required {s.required}, had {s.already_covered.total // 1000}s covered, "
            f"fetched {s.candles_fetched} rows, {s.requests} request(s), {s.seconds:.1f}s: {state}"
        )
        for err in s.errors[:5]:
            print(f"    {err}")
    print(
        f"{report.exchange} {report.timeframe}: {report.requests} request(s) in {report.seconds:.1f}s"
    )


async def _fetch(args: argparse.Namespace) -> int:
    from .ensure import backfill_async, ensure_data_async

    storage = open_storage(_storage_url(args))
    try:
        with _exchange(args) as exchange:
            if args.command == "ensure":
                if args.padding_days < 0:
                    raise InvalidRequest(f"--padding-days must be >= 0, got {args.padding_days}")
                report = await ensure_data_async(
                    args.symbols, args.timeframe, args.start, args.end, exchange,
                    args.padding_days, storage, progress=not args.no_progress,
                    concurrency=args.concurrency, dry_run=args.dry_run, strategy=args.strategy,
                )  # fmt: skip
            else:
                report = await backfill_async(
                    args.symbols, args.timeframe if args.kind == "ohlcv" else None,
                    args.start, args.end, exchange, storage, kind=args.kind,
                    strategy=args.strategy, progress=not args.no_progress,
                    concurrency=args.concurrency, dry_run=args.dry_run,
                )  # fmt: skip
            if not isinstance(exchange, str):
                await exchange.close()
    finally:
        storage.close()
    _print_report(report, args.quiet)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _ls(storage: DataCollectionStorage) -> int:
    keys = storage.keys()
    if not keys:
        print(f"no datasets in {storage.url}")
        return EXIT_OK
    for key in keys:
        frame = storage.read(key, columns=[])
        cov = storage.coverage(key)
        first = int(frame.index[0].value // 1_000_000) if len(frame) else None
        last = int(frame.index[-1].value // 1_000_000) if len(frame) else None
        holes = cov.gaps(Interval(cov.start, cov.end)) if cov else cov
        print(
            f"{key}  rows={len(frame)}  first={_fmt_ms(first)}  last={_fmt_ms(last)}  "
            f"coverage={cov}  holes={len(holes)}"
        )
        for h in list(holes)[:10]:
            print(f"    hole {h}")
    return EXIT_OK


def _export(storage: DataCollectionStorage, args: argparse.Namespace) -> int:
    key = DatasetKey.parse(args.key)
    start = to_ms(args.start, name="--start") if args.start else None
    end = to_ms(args.end, name="--end") if args.end else None
    frame = storage.read(key, start, end)
    out = Path(args.output)
    if out.suffix == ".csv":
        frame.to_csv(out)
    elif out.suffix == ".parquet":
        frame.to_parquet(out)
    else:
        raise InvalidRequest(f"output {str(out)!r} must end in .csv or .parquet")
    print(f"wrote {len(frame)} rows of {key} to {out}")
    return EXIT_OK


def _serve_args(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the data-collection HTTP service (mdcollect[service])")
    # SUPPRESS: given after `serve` or before it, the global options keep their value
    s.add_argument("--storage", metavar="URL", default=argparse.SUPPRESS, help="storage URL")
    s.add_argument("--emulate", action="store_true", default=argparse.SUPPRESS,
                   help="sync from the built-in exchange emulator (no network needed)")  # fmt: skip
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8002)


def _serve(args: argparse.Namespace) -> int:
    """``mdcollect serve``: the service of :mod:`mdcollect.service` under uvicorn."""
    try:
        import uvicorn

        from .service import create_app
    except ImportError as exc:
        raise InvalidRequest(
            f"mdcollect serve needs the service extra: pip install 'mdcollect[service]' ({exc})"
        ) from exc
    with contextlib.ExitStack() as stack:
        factory = None
        if args.emulate:
            from .exchanges import ExchangeClient
            from .testing import ExchangeEmulator

            emu = stack.enter_context(ExchangeEmulator())
            log.warning("syncing from the exchange emulator at %s", emu.url)

            def factory(key: str) -> Any:
                return ExchangeClient(key, base_url=emu.url)

        storage = stack.enter_context(open_storage(_storage_url(args)))
        app = create_app(storage, exchange_factory=factory)
        uvicorn.run(
            app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info"
        )
    return EXIT_OK


def _collect_args(sub: Any) -> None:
    c = sub.add_parser("collect", help="collect live data as a TOML config describes")
    c.add_argument("config", help="collector config (TOML), see mdcollect.collectors.load_config")
    c.add_argument("--storage", metavar="URL", default=argparse.SUPPRESS, help="storage URL")
    c.add_argument("--emulate", action="store_true", default=argparse.SUPPRESS,
                   help="collect from the built-in exchange emulator (no network needed)")  # fmt: skip
    c.add_argument("--status-every", type=float, default=10.0, metavar="SECONDS",
                   help="print a status line this often (0: never)")  # fmt: skip
    c.add_argument("--status-file", metavar="PATH", default=None,
                   help="also write the status as JSON to PATH (read by 'mdcollect status')")  # fmt: skip
    c.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    st = sub.add_parser("status", help="show the status a running 'collect --status-file' wrote")
    st.add_argument("status_file", metavar="PATH", help="the file given to collect --status-file")
    st.add_argument("--json", action="store_true", help="print the raw JSON")


async def _collect(args: argparse.Namespace) -> int:
    """``mdcollect collect``: run collectors until SIGINT/SIGTERM, then stop gracefully."""
    import signal

    from .collector import DataCollector
    from .collectors import load_config

    cfg = load_config(args.config)
    url = args.storage or cfg.storage or _storage_url(args)
    every = args.status_every
    if isinstance(every, float) and every < 0:
        raise InvalidRequest(f"--status-every must be seconds >= 0, got {every}")
    status_file = _StatusFile(Path(args.status_file), every or 10.0) if args.status_file else None
    tick = every or (None if status_file is None else status_file.interval)
    with contextlib.ExitStack() as stack:
        if args.emulate:
            from .exchanges import ExchangeClient
            from .testing import ExchangeEmulator

            emu = stack.enter_context(ExchangeEmulator(rate_limits=False))
            clients = {
                c.exchange: ExchangeClient(c.exchange, base_url=emu.url, enableRateLimit=False)
                for c in cfg.collectors
            }
            for c in cfg.collectors:
                c.use_client(clients[c.exchange])
        dc = DataCollector(cfg.collectors, url, **cfg.options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        try:
            async with dc:
                if status_file is not None:
                    status_file.write(dc.status(), args.config, url)
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), tick)
                    if status_file is not None:
                        status_file.write(dc.status(), args.config, url)
                    if every and not args.quiet:
                        print(_status_line(dc.status()), flush=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            dc.close()
            if args.emulate:
                for client in clients.values():
                    await client.close()
        st = dc.status()
        if status_file is not None:
            status_file.write(st, args.config, url, stopped=True)
        if not args.quiet:
            print(_status_line(st) + " (stopped)", flush=True)
        dropped = sum(c["rows_dropped"] for c in st["collectors"].values())
        return EXIT_PARTIAL if dropped else EXIT_OK


def _status_line(st: dict[str, Any]) -> str:
    parts = []
    for name, c in st["collectors"].items():
        age = c["time_since_data"]
        parts.append(
            f"{name} {c['state']} rows={c['rows_stored']} restarts={c['restarts']}"
            f" dropped={c['rows_dropped']} fresh={'-' if age is None else f'{age:.1f}s'}"
        )
    # the verdict `mdcollect status` gives too: the same field, with the same reasons
    health = "healthy" if st["is_healthy"] else "UNHEALTHY"
    line = f"[{health}] " + "; ".join(parts)
    issues = st.get("issues") or []
    return f"{line} | issues: {'; '.join(issues)}" if issues else line


class _StatusFile:
    """The status of a running ``collect``, as JSON, replaced atomically."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path, self.interval = path, interval
        if path.is_dir():
            raise InvalidRequest(f"--status-file must be a file path, got the directory {path}")

    def write(
        self, status: dict[str, Any], config: str, storage: str, stopped: bool = False
    ) -> None:
        import json
        import os
        import time

        doc = {
            "written": time.time(),
            "pid": os.getpid(),
            "config": str(config),
            "storage": storage,
            "interval": self.interval,
            "stopped": stopped,
            "status": status,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, default=str, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:  # a status file must never stop the collection
            log.warning("could not write the status file %s: %s", self.path, exc)


def _status(args: argparse.Namespace) -> int:
    """``mdcollect status PATH``: exit 0 when the collection runs and is healthy, else 1."""
    import json
    import time

    path = Path(args.status_file)
    try:
        doc = json.loads(path.read_text())
        st = doc["status"]
        written, interval = float(doc["written"]), float(doc["interval"])
    except FileNotFoundError:
        raise InvalidRequest(
            f"no status file at {path}; start 'mdcollect collect CONFIG --status-file {path}'"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(
            f"{path} is not a status file written by mdcollect collect: {exc}"
        ) from exc
    if args.json:
        print(json.dumps(doc, indent=1))
    age = time.time() - written
    if doc.get("stopped"):
        state, ok = "stopped", False
    elif age > 3 * interval + 5:
        state, ok = (
            f"not running? the status is {age:.0f}s old (written every {interval:g}s)",
            False,
        )
    else:
        # the verdict of the periodic status line: DataCollector.status()'s is_healthy
        state = "healthy" if st["is_healthy"] else "UNHEALTHY"
        ok = bool(st["is_healthy"])
    if not args.json:
        print(f"mdcollect collect {doc.get('config')} (pid {doc.get('pid')}): {state}")
        print(f"  storage {doc.get('storage')}, written {age:.1f}s ago")
        for name, c in st["collectors"].items():
            since = c["time_since_data"]
            print(
                f"  {name}: {c['state']}, {c['rows_stored']} rows stored,"
                f" {c['restarts']} restarts, {c['errors']} errors, {c['rows_dropped']} dropped,"
                f" last data {'-' if since is None else f'{since:.1f}s'} ago"
            )
            for issue in c["issues"]:
                print(f"    issue: {issue}")
    return EXIT_OK if ok else EXIT_PARTIAL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mdcollect`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command in ("ensure", "backfill"):
            return asyncio.run(_fetch(args))
        if args.command == "serve":
            return _serve(args)
        if args.command == "collect":
            return asyncio.run(_collect(args))
        if args.command == "status":
            return _status(args)
        with open_storage(_storage_url(args)) as storage:
            if args.command == "ls":
                return _ls(storage)
            return _export(storage, args)
    except InvalidRequest as exc:
        print(f"mdcollect: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MdcollectError as exc:
        print(f"mdcollect: failed: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        print("mdcollect: interrupted; what was written is kept and covered", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
