"""The ``mdcollect`` command.

::

    mdcollect ensure BTC/USDT -t 1h --start 2024-01-01 --end 2024-02-01 -x binance
    mdcollect backfill BTC/USDT --kind trades --start 2024-01-01 --end 2024-01-02 -x binance
    mdcollect backfill BTC/USDT:USDT --kind funding --start 2024-01-01 --end 2024-12-31
    mdcollect backfill BTC/USDT:USDT -t 1h --kind mark --start 2024-01-01 --end 2024-01-31
    mdcollect ensure BTC/USDT:USDT -t 1h --kinds ohlcv,funding --start 2024-01-01 --end 2024-02-01
    mdcollect backfill BTC/USDT:USDT -t 1h --kind open_interest --start 2024-12-01 --end 2024-12-20
    mdcollect ls
    mdcollect ls --plot coverage.png
    mdcollect export binance:ohlcv:1h:BTC/USDT -o btc.parquet
    mdcollect export --format freqtrade --datadir user_data/data -x binance_futures
    mdcollect --emulate ensure BTC/USDT -t 1h --start 2024-01-01 --end 2024-01-31 -x binance
    mdcollect ensure --config jobs.toml [--dry-run]    # the [[jobs]] of a jobs file
    mdcollect ensure BTC/USDT -t 1h --start 2024-01-01 --end 2024-01-31 --emulate --dry-run -q
    mdcollect collect collect.toml --status-file /run/mdcollect.json
    mdcollect collect collect.toml --lease redis://db:6379/0    # a second one stands by
    mdcollect status /run/mdcollect.json
    mdcollect serve --storage parquet:///data/md --host 127.0.0.1 --port 8002 [--emulate]
    mdcollect audit binance:ohlcv:1m:BTC/USDT --start 2024-01-01 --end 2024-12-31 [--repair] [--json]
    mdcollect replay binance trades 2024-03-13 --into parquet:///data/replayed

The global options (``--storage``, ``--emulate``, ``--dry-run``, ``--no-progress``,
``-v``, ``-q``) go before or after the subcommand. Dates follow one rule everywhere: a
bare date as ``--end`` includes that day; a time of day is an exclusive bound.

Exit codes: 0 ok, 1 partial failure (some windows failed), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from ._errors import InvalidRequest, MdcollectError
from ._keys import TIMEFRAME_KINDS, DatasetKey
from ._redact import redact
from ._rules import check_number, check_padding
from ._time import DEFAULT_PADDING_DAYS, format_ms, time_range
from .catalog import catalog, records
from .storage import (
    DataCollectionStorage,
    default_storage_url,
    emulated_storage_url,
    open_storage,
)

if TYPE_CHECKING:
    from .collectors import CollectorWorkers, DataCollector, Leadership, Lease
    from .ensure import EnsureReport

log = logging.getLogger("mdcollect.cli")

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT = 0, 1, 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default; options without one say in words what
    leaving them out means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _global_options(p: argparse.ArgumentParser, *, after_subcommand: bool = False) -> None:
    """The options every command takes, before or after the subcommand.

    After the subcommand, their default is SUPPRESS (shown in ``--help`` from the
    help text) so that the subcommand's parser never overwrites a value given
    before it.
    """
    group = p.add_argument_group("global options (before or after the subcommand)")

    def add(*flags: str, default: Any, help: str, **kwargs: Any) -> None:
        if after_subcommand:
            shown = "" if default is None else f" (default: {default})"
            group.add_argument(*flags, default=argparse.SUPPRESS, help=help + shown, **kwargs)
        else:
            group.add_argument(*flags, default=default, help=help, **kwargs)

    add(
        "--storage",
        metavar="URL",
        default=None,
        help="storage URL (default: the embedded ArcticDB store, a separate one with --emulate)",
    )
    add(
        "--emulate",
        action="store_true",
        default=False,
        help="start the built-in exchange emulator and fetch from it (no network needed)",
    )
    add(
        "--dry-run",
        action="store_true",
        default=False,
        help="show the windows and requests, fetch nothing",
    )
    add("--no-progress", action="store_true", default=False, help="no progress bars")
    add(
        "--tz",
        metavar="ZONE",
        default=None,
        help="read dates without an offset in this time zone, e.g. Europe/Berlin (default: UTC)",
    )
    add("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    add("-q", "--quiet", action="store_true", default=False, help="print errors only")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdcollect",
        description="Collect and store cryptocurrency market data.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mdcollect {__version__}")
    _global_options(p)
    sub = p.add_subparsers(dest="command", required=True)

    def fetch_args(sp: argparse.ArgumentParser, default_tf: str, config: bool = False) -> None:
        # with a --config, the symbols and dates come from the jobs file
        sp.add_argument(
            "symbols", nargs="*" if config else "+", metavar="SYMBOL",
            help="ccxt symbols: BTC/USDT, BTC/USDT:USDT" + (" (or --config)" if config else ""),
        )  # fmt: skip
        sp.add_argument("-t", "--timeframe", default=default_tf, help="candle timeframe")
        given = " (required without --config)" if config else ""
        sp.add_argument("--start", required=not config, help="YYYY-MM-DD (or YYYYMMDD)" + given)
        sp.add_argument(
            "--end", required=not config, help="YYYY-MM-DD, inclusive of its whole day" + given
        )
        sp.add_argument("-x", "--exchange", default="binance_futures", help="exchange key")
        sp.add_argument("--concurrency", type=int, default=4, help="datasets fetched at once")
        sp.add_argument(
            "--lease", metavar="URL", default=None,
            help="share an arctic+s3 store with other machines: hold each dataset's lease in "
            "Redis (redis://HOST:PORT/DB) or in the bucket (s3)",
        )  # fmt: skip
        sp.add_argument(
            "--strategy",
            choices=["auto", "ohlcv", "trades"],
            default="auto",
            help="candles from the candle endpoint or resampled trades",
        )

    e = sub.add_parser("ensure", help="make sure candles are stored; fetch only what is missing")
    fetch_args(e, "1h", config=True)
    e.add_argument(
        "--padding-days",
        type=int,
        default=DEFAULT_PADDING_DAYS,
        help="also ensure this many days before --start",
    )
    e.add_argument(
        "--kinds",
        nargs="+",
        default=["ohlcv"],
        metavar="KIND",
        help="kinds of history to ensure, each over the padded range: ohlcv (candles of "
        "--timeframe), trades, funding (settlements of perpetuals), mark, index, premium "
        "(perpetuals' price candles of --timeframe), open_interest (perpetuals, at the "
        "exchange's period --timeframe); e.g. --kinds ohlcv,funding,mark",
    )
    e.add_argument(
        "--config", metavar="FILE", default=None,
        help="ensure the [[jobs]] of a jobs file (TOML) instead of SYMBOLs: each entry's "
        "exchange, symbols or patterns (*/USDT:USDT), kinds, timeframes, start, end, padding",
    )  # fmt: skip
    # what --config is checked against: an option away from its default belongs to a
    # single ensure
    e.set_defaults(per_job_defaults={name: e.get_default(name) for name, _ in _PER_JOB_OPTIONS})
    e.add_argument(
        "--scheduler", metavar="ADDRESS", default=None,
        help="run the jobs on a Dask cluster (tcp://HOST:PORT; needs mdcollect[dask]); the "
        "store must be one every worker reaches (arctic+s3://...?lease=redis://...)",
    )  # fmt: skip
    b = sub.add_parser(
        "backfill", help="fetch candles, raw trades, funding or price candles over a range"
    )
    fetch_args(b, "1m")
    b.add_argument(
        "--kind",
        default="ohlcv",
        help="what to fetch: ohlcv (candles of --timeframe), trades, funding (perpetuals), "
        "mark, index, premium (perpetuals' price candles of --timeframe), open_interest "
        "(perpetuals, at the exchange's period --timeframe: 5m ... 1d)",
    )
    ls = sub.add_parser("ls", help="list datasets: rows, first/last, coverage and holes")
    ls.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw the coverage picture, one lane per dataset, to FILE (.png, .svg or "
        ".pdf; needs mdcollect[plot])",
    )
    ls.add_argument("--exchange", help="only datasets of this exchange key")
    ls.add_argument("--symbol", help="only datasets of this symbol (BTC/USDT, BTC/USDT:USDT)")
    ls.add_argument("--kind", help="only datasets of this kind (ohlcv, trades, funding, ...)")
    ls.add_argument(
        "--json", action="store_true", help="print the catalog as JSON (stable keys, times in ms)"
    )
    xs = sub.add_parser(
        "exchanges", help="list the exchange keys: kinds, timeframes, page sizes, depths"
    )
    xs.add_argument(
        "keys", nargs="*", metavar="KEY",
        help="exchange keys to describe (any ccxt id; default: those mdcollect knows in detail)",
    )  # fmt: skip
    xs.add_argument("--json", action="store_true", help="print the descriptions as JSON")
    x = sub.add_parser(
        "export",
        help="write a dataset to CSV or Parquet, or an exchange's data as freqtrade's",
    )
    x.add_argument("key", nargs="?", help="dataset key, e.g. binance:ohlcv:1h:BTC/USDT")
    x.add_argument("-o", "--output", help="file.csv or file.parquet (with a KEY)")
    x.add_argument(
        "--format",
        choices=("file", "freqtrade"),
        default="file",
        help="file: one dataset to -o; freqtrade: candles, funding and mark candles of "
        "--exchange as freqtrade's feather files under --datadir",
    )
    x.add_argument(
        "--datadir",
        help="freqtrade's data folder (e.g. user_data/data); files go to DATADIR/<exchange>/",
    )
    x.add_argument(
        "-x", "--exchange", default="binance_futures", help="exchange key (--format freqtrade)"
    )
    x.add_argument("--symbols", nargs="+", metavar="SYMBOL",
                   help="only these symbols (--format freqtrade; default: all stored)")  # fmt: skip
    x.add_argument("--timeframes", nargs="+", metavar="TF",
                   help="only candles of these timeframes (--format freqtrade)")  # fmt: skip
    x.add_argument("--kinds", nargs="+", default=["ohlcv,funding,mark"],
                   help="what to write (--format freqtrade): ohlcv, funding, mark")  # fmt: skip
    x.add_argument("--start", help="YYYY-MM-DD or ISO 8601 time (default: the first row)")
    x.add_argument(
        "--end",
        help="YYYY-MM-DD, inclusive of its whole day, or an exclusive ISO 8601 time "
        "(default: the last row)",
    )
    _serve_args(sub)
    _collect_args(sub)
    _audit_args(sub)
    _replay_args(sub)
    for sp in sub.choices.values():
        sp.formatter_class = _HelpFormatter
        _global_options(sp, after_subcommand=True)
    return p


def _storage_url(args: argparse.Namespace) -> str:
    if args.storage:
        return str(args.storage)
    # synthetic data never mixes with real data in the default store
    return emulated_storage_url() if args.emulate else default_storage_url()


def _print_report(report: EnsureReport, quiet: bool) -> None:
    # the one summary (EnsureReport.__str__): the padded range ensured, per dataset
    # what was there and what was fetched; a dry run's plan is printed even when quiet
    if quiet and not report.dry_run:
        return
    print(report)


def _leased(url: str, lease: str | None) -> str:
    """``url`` with ``lease=`` added (``--lease``); only a shared S3 store takes one."""
    if lease is None:
        return url
    if not url.lower().startswith(("arctic+s3://", "arctic+s3s://")):
        raise InvalidRequest(
            f"--lease is for a store that several machines write (arctic+s3://...); "
            f"the store here is {redact(url)!r}, whose writers are serialised on this machine"
        )
    return f"{url}{'&' if '?' in url else '?'}lease={lease}"


async def _fetch(args: argparse.Namespace) -> int:
    from .ensure import backfill_async, ensure_data_async

    if args.command == "ensure":
        _check_ensure_args(args)
        if args.config is not None:
            return await _ensure_config(args)
    storage = open_storage(_leased(_storage_url(args), args.lease))
    # with --emulate the library serves the exchange from its emulator and closes the
    # client it makes, also when the call fails
    cluster = None
    try:
        if args.command == "ensure":
            check_padding(args.padding_days, "--padding-days")
            cluster = await _cluster(args.scheduler)
            report = await ensure_data_async(
                args.symbols, args.timeframe, args.start, args.end, args.exchange,
                args.padding_days, storage, progress=not args.no_progress,
                concurrency=args.concurrency, dry_run=args.dry_run, strategy=args.strategy,
                emulate=args.emulate, kinds=_split_kinds(args.kinds), tz=args.tz,
                executor=cluster,
            )  # fmt: skip
        else:
            report = await backfill_async(
                args.symbols, args.timeframe if args.kind in TIMEFRAME_KINDS else None,
                args.start, args.end, args.exchange, storage, kind=args.kind,
                strategy=args.strategy, progress=not args.no_progress,
                concurrency=args.concurrency, dry_run=args.dry_run, emulate=args.emulate,
                tz=args.tz,
            )  # fmt: skip
    finally:
        storage.close()
        if cluster is not None:
            await asyncio.to_thread(cluster.close)
    _print_report(report, args.quiet)
    return EXIT_OK if report.ok else EXIT_PARTIAL


#: ``ensure`` options a jobs file sets per entry: refused beside ``--config`` unless at
#: their defaults (which the file's own defaults replace).
_PER_JOB_OPTIONS = (("timeframe", "-t"), ("exchange", "-x"), ("padding_days", "--padding-days"),
                    ("kinds", "--kinds"), ("strategy", "--strategy"))  # fmt: skip


def _check_ensure_args(args: argparse.Namespace) -> None:
    """``ensure`` takes SYMBOLs with --start and --end, or a --config jobs file."""
    if args.config is None:
        if not args.symbols or args.start is None or args.end is None:
            raise InvalidRequest(
                "ensure needs SYMBOL... with --start and --end, or --config FILE (a jobs file)"
            )
        return
    given = [args.symbols and "SYMBOL", args.start and "--start", args.end and "--end"]
    given += [flag for name, flag in _PER_JOB_OPTIONS
              if getattr(args, name) != args.per_job_defaults[name]]  # fmt: skip
    misplaced = [g for g in given if g]
    if misplaced:
        raise InvalidRequest(
            f"--config {args.config} takes the symbols, dates and options from its [[jobs]] "
            f"entries; {', '.join(misplaced)} belong to a single ensure without --config"
        )


async def _ensure_config(args: argparse.Namespace) -> int:
    """``ensure --config FILE``: every dataset of the jobs file, once; one summary per
    group of datasets (exchange, timeframe, range); exit 1 when any window failed."""
    from .ensure import ensure_jobs_async

    reports = await ensure_jobs_async(
        args.config, args.storage, dry_run=args.dry_run, progress=not args.no_progress,
        concurrency=args.concurrency, emulate=args.emulate,
    )  # fmt: skip
    if args.dry_run or not args.quiet:
        datasets = sum(len(r.symbols) for r in reports)
        verb = "would ensure" if args.dry_run else "ensured"
        print(f"{args.config}: {verb} {datasets} dataset(s) in {len(reports)} group(s)")
    for report in reports:
        _print_report(report, args.quiet)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PARTIAL


async def _cluster(scheduler: str | None) -> Any:
    """The Dask client of ``--scheduler`` (None without it); connecting blocks: off the loop."""
    if scheduler is None:
        return None
    from .distributed import connect

    return await asyncio.to_thread(connect, scheduler)


def _split_kinds(values: Sequence[str]) -> list[Any]:
    """``--kinds ohlcv funding`` and ``--kinds ohlcv,funding`` alike; unchecked strings, as
    ``--kind``: the library refuses a bad one naming those allowed (exit 2)."""
    return [k.strip() for v in values for k in v.split(",") if k.strip()]


def _emulated_note(args: argparse.Namespace) -> str | None:
    """When the default store is used, say where data fetched with ``--emulate`` is."""
    if args.storage or args.emulate:
        return None
    url = emulated_storage_url()
    if not Path(url.split("://", 1)[1]).exists():  # opening the store would create it
        return None
    with open_storage(url) as emulated:
        n = len(emulated.keys())
    if not n:
        return None
    return (
        f"note: {n} dataset(s) fetched with --emulate are in the separate emulated store "
        f"{url}; list them with 'mdcollect --emulate ls'"
    )


def _ls(storage: DataCollectionStorage, args: argparse.Namespace) -> int:
    if args.plot:
        _plot(storage, _output(args.plot, _PLOT_SUFFIXES))
    frame = catalog(storage, exchange=args.exchange, symbol=args.symbol, kind=args.kind)
    if args.json:
        print(json.dumps(records(frame), indent=1))
        return EXIT_OK
    if not len(frame):
        filters = {"exchange": args.exchange, "symbol": args.symbol, "kind": args.kind}
        given = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None)
        print(f"no datasets in {storage.url}" + (f" with {given}" if given else ""))
    for item in records(frame):
        first, last = ("-" if item[c] is None else format_ms(item[c]) for c in ("first", "last"))
        covered = (
            "coverage=-"
            if item["covered_from"] is None
            else f"coverage={format_ms(item['covered_from'])}..{format_ms(item['covered_to'])}"
        )
        fraction = item["covered_fraction"]
        print(
            f"{item['key']}  rows={item['rows']}  first={first}  last={last}  {covered}"
            f"  covered={'-' if fraction is None else f'{fraction:.1%}'}  holes={item['holes']}"
            f"  bytes={'-' if item['bytes'] is None else item['bytes']}"
            f"  written={'-' if item['last_write'] is None else format_ms(item['last_write'])}"
            f"  lineage={item['lineage'] or '-'}"
        )
    note = _emulated_note(args)
    if note:
        print(note)
    return EXIT_OK


_PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _plot(storage: DataCollectionStorage, out: Path) -> None:
    """``ls --plot``: the coverage picture of every dataset, written to ``out``."""
    from .plot import plot_coverage

    keys = storage.keys()
    fig = plot_coverage(storage, keys)
    try:
        fig.savefig(out)
    except OSError as exc:
        raise InvalidRequest(f"cannot write {str(out)!r}: {exc.strerror or exc}") from exc
    # on stderr: stdout stays the listing
    print(f"wrote the coverage picture of {len(keys)} dataset(s) to {out}",
          file=sys.stderr)  # fmt: skip


def _output(path: str, suffixes: tuple[str, ...] = (".csv", ".parquet")) -> Path:
    """The file to write (an export, a picture), checked before anything is read."""
    out = Path(path)
    if out.suffix not in suffixes:
        raise InvalidRequest(f"output {path!r} must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise InvalidRequest(
            f"output {path!r} is a folder; give a file name such as {out / ('data' + suffixes[0])}"
        )
    folder = out.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidRequest(
            f"output folder {str(folder)!r} {what}; create it or choose another -o"
        )
    return out


def _existing_key(
    storage: DataCollectionStorage, text: str, args: argparse.Namespace
) -> DatasetKey:
    """The stored dataset ``text`` names, else :class:`InvalidRequest` with the closest keys."""
    keys = storage.keys()
    try:
        key: DatasetKey | None = DatasetKey.parse(text)
        problem = f"no dataset {text!r} in {storage.url}"
    except InvalidRequest as exc:
        key, problem = None, str(exc)
    if key is not None and key in keys:
        return key
    names = [str(k) for k in keys]
    close = [n for n in names if text.lower() in n.lower()]
    close += [n for n in difflib.get_close_matches(text, names, n=5, cutoff=0.6) if n not in close]
    if close:
        hint = "closest: " + ", ".join(close[:5])
    else:
        where = (
            f" --storage {redact(args.storage)}" if args.storage else " --emulate" * args.emulate
        )
        hint = f"{len(names)} dataset(s) stored; 'mdcollect{where} ls' lists them"
    note = _emulated_note(args)
    raise InvalidRequest(f"{problem}; {hint}" + (f"\n{note}" if note else ""))


def _export(args: argparse.Namespace) -> int:
    if args.format == "freqtrade":
        return _export_freqtrade(args)
    if args.key is None or args.output is None:
        raise InvalidRequest("export needs a dataset KEY and -o FILE (or --format freqtrade)")
    out = _output(args.output)
    start, end = time_range(args.start, args.end, names=("--start", "--end"), tz=args.tz)
    with open_storage(_storage_url(args)) as storage:
        key = _existing_key(storage, args.key, args)
        frame = storage.read(key, start, end)
    try:
        if out.suffix == ".csv":
            frame.to_csv(out)
        else:
            frame.to_parquet(out)
    except OSError as exc:
        raise InvalidRequest(f"cannot write {str(out)!r}: {exc.strerror or exc}") from exc
    print(f"wrote {len(frame)} rows of {key} to {out}")
    return EXIT_OK


def _export_freqtrade(args: argparse.Namespace) -> int:
    """``mdcollect export --format freqtrade``: :func:`mdcollect.export_freqtrade`."""
    from .interop import export_freqtrade

    misplaced = [o for o, v in (("KEY", args.key), ("-o", args.output),
                                ("--start", args.start), ("--end", args.end)) if v is not None]  # fmt: skip
    if misplaced:
        raise InvalidRequest(
            f"--format freqtrade writes every stored row of --exchange; {', '.join(misplaced)} "
            "belong to the single-dataset export (select with --symbols, --timeframes, --kinds)"
        )
    if not args.datadir:
        raise InvalidRequest("--format freqtrade needs --datadir DIR (e.g. user_data/data)")
    with open_storage(_storage_url(args)) as storage:
        written = export_freqtrade(
            storage, args.datadir, exchange=args.exchange, symbols=args.symbols,
            timeframes=args.timeframes, kinds=_split_kinds(args.kinds),
        )  # fmt: skip
    for path in written:
        print(path)
    print(f"wrote {len(written)} freqtrade file(s) under {args.datadir}", file=sys.stderr)
    return EXIT_OK


def _serve_args(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the data-collection HTTP service (mdcollect[service])")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8002, help="port to listen on")
    s.add_argument("--max-jobs", type=int, default=None, metavar="N",
                   help="sync jobs running at once; more are answered 503 (default: 4)")  # fmt: skip
    s.add_argument("--collect", metavar="CONFIG", default=None,
                   help="also run the collectors of this TOML config, writing to the served "
                   "storage (status: GET /api/v1/collectors and the page at /)")  # fmt: skip


def _serve(args: argparse.Namespace) -> int:
    """``mdcollect serve``: the service of :mod:`mdcollect.service` under uvicorn."""
    try:
        import uvicorn  # noqa: F401 - missing: the message below

        from .service import DEFAULT_MAX_JOBS, create_app, serve
    except ImportError as exc:
        from ._errors import missing_extra

        raise InvalidRequest(missing_extra("mdcollect serve", "service", exc)) from exc
    max_jobs = DEFAULT_MAX_JOBS if args.max_jobs is None else args.max_jobs
    if max_jobs < 1:  # before the store is opened (which may create it)
        raise InvalidRequest(f"--max-jobs must be >= 1, got {max_jobs}")
    cfg = None
    if args.collect is not None:
        from .collectors import load_config

        cfg = load_config(args.collect)  # checked before anything starts
    with contextlib.ExitStack() as stack:
        factory = None
        if args.emulate:
            from .exchanges import ExchangeClient
            from .testing import ExchangeEmulator

            emu = stack.enter_context(ExchangeEmulator())
            log.warning("syncing from the exchange emulator at %s", emu.url)

            def factory(key: str) -> Any:
                return ExchangeClient(key, base_url=emu.url)

        url = args.storage or (cfg.storage if cfg is not None else None) or _storage_url(args)
        storage = stack.enter_context(open_storage(url))
        collector = None
        clients: dict[str, Any] = {}
        if cfg is not None:
            from .collectors import DataCollector

            if args.emulate:
                for c in cfg.collectors:
                    if c.exchange not in clients:
                        clients[c.exchange] = ExchangeClient(c.exchange, base_url=emu.url)
                    c.use_client(clients[c.exchange])
            collector = DataCollector(cfg.collectors, storage, **cfg.options)
        app = create_app(storage, exchange_factory=factory, max_jobs=max_jobs, collector=collector)
        serve(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return EXIT_OK


def _collect_args(sub: Any) -> None:
    c = sub.add_parser("collect", help="collect live data as a TOML config describes")
    c.add_argument("config", help="collector config (TOML), see mdcollect.collectors.load_config")
    c.add_argument("--status-every", type=float, default=10.0, metavar="SECONDS",
                   help="print a status line this often (0: never)")  # fmt: skip
    c.add_argument("--status-file", metavar="PATH", default=None,
                   help="also write the status as JSON to PATH (read by 'mdcollect status')")  # fmt: skip
    c.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics on PORT (/metrics; 0: any free port, printed)")  # fmt: skip
    c.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics listen on (default 127.0.0.1: this machine only)")  # fmt: skip
    c.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    lease = c.add_mutually_exclusive_group()
    lease.add_argument(
        "--lease", metavar="URL", default=None,
        help="one leader among processes running this config on this store: the lease in "
        "Redis (redis://HOST:PORT/DB) or a lock file (file:PATH); default: in Redis for a "
        "Redis store, else a lock file beside the local store (or in the user state dir); "
        "the others stand by and take over when the leader dies",
    )  # fmt: skip
    lease.add_argument("--no-lease", action="store_true",
                       help="collect without electing a leader (no lease, no standby)")  # fmt: skip
    c.add_argument("--lease-ttl", type=float, default=None, metavar="SECONDS",
                   help="seconds a lease lasts unrenewed (default 10; the leader renews every "
                   "third of it; a Redis standby takes over within ttl + ttl/5)")  # fmt: skip
    # a running emulator to fetch from (tests: several processes must see one market)
    c.add_argument("--emulate-url", default=None, help=argparse.SUPPRESS)
    c.add_argument("--workers", type=int, default=None, metavar="N",
                   help="shard the config's symbols over N worker processes (each its own "
                   "exchange session and writer), run as one daemon: one status, one metrics "
                   "endpoint, one lease; a worker that dies is restarted; at most one worker "
                   "per symbol")  # fmt: skip
    # I/N: this process is worker I of 'collect --workers N' (its shard of the config)
    c.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    st = sub.add_parser("status", help="show the status a running 'collect --status-file' wrote")
    st.add_argument("status_file", metavar="PATH", help="the file given to collect --status-file")
    st.add_argument("--json", action="store_true", help="print the raw JSON")


async def _collect(args: argparse.Namespace) -> int:
    """``mdcollect collect``: run collectors until SIGINT/SIGTERM, then stop gracefully.

    With a lease (the default on a store other processes can share), only the leader
    collects; the others stand by and take over when it dies."""
    import signal

    from .collectors import DataCollector, Leadership, load_config, shard_config

    cfg = load_config(args.config)
    shards = _collect_shards(args)
    if args.shard is not None:  # worker I of 'collect --workers N': its symbols only
        index, _, n = args.shard.partition("/")
        cfg = load_config(shard_config(args.config, int(n), int(index)))
    url = args.storage or cfg.storage or _storage_url(args)
    if shards is not None and url.startswith("memory:"):
        raise InvalidRequest(
            "--workers needs a store the worker processes share; memory:// is private to"
            " each process: use arctic+lmdb://, parquet://, redis:// or arctic+s3://"
        )
    every = args.status_every
    check_number("--status-every", every, strict=False)
    status_file = _StatusFile(Path(args.status_file), every or 10.0) if args.status_file else None
    tick = every or (None if status_file is None else status_file.interval)
    lease = _collect_lease(args, cfg.collectors, url)
    leadership = None if lease is None else Leadership(lease)
    emulate_url = args.emulate_url
    with contextlib.ExitStack() as stack:
        if lease is not None:
            stack.callback(lease.close)
        if args.emulate or emulate_url:
            from .exchanges import ExchangeClient

            if emulate_url is None:
                from .testing import ExchangeEmulator

                emulate_url = stack.enter_context(ExchangeEmulator(rate_limits=False)).url
            clients = {
                c.exchange: ExchangeClient(c.exchange, base_url=emulate_url, enableRateLimit=False)
                for c in cfg.collectors
            }
            for c in cfg.collectors:
                c.use_client(clients[c.exchange])
        dc: DataCollector | CollectorWorkers
        if shards is None:
            dc = DataCollector(cfg.collectors, url, **cfg.options)
        else:
            dc = _workers(args, shards, emulate_url, tick, stack)
        if args.metrics_port is not None:
            from .metrics import start_metrics_server

            server, _ = start_metrics_server(args.metrics_port, dc, addr=args.metrics_addr)
            stack.callback(server.shutdown)
            if status_file is not None:  # where the parent of a worker scrapes it
                status_file.extra["metrics_port"] = server.server_port
            if args.shard is None:
                print(
                    f"metrics on http://{args.metrics_addr}:{server.server_port}/metrics",
                    flush=True,
                )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.shard is not None:
            _stop_with_parent(loop, stop)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        term = _Term(args, dc, leadership, status_file, url, tick)
        try:
            await term.run(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if leadership is not None:
                term.released = await leadership.release()
            dc.close()
            if args.emulate or args.emulate_url:
                for client in clients.values():
                    await client.close()
        st = dc.status()
        if status_file is not None:
            status_file.write(st, args.config, url, stopped=True, lease=term.stopped_lease_doc())
        if not args.quiet:
            print(_status_line(st) + " (stopped)", flush=True)
        dropped = sum(c["rows_dropped"] for c in st["collectors"].values())
        return EXIT_PARTIAL if dropped else EXIT_OK


def _collect_shards(args: argparse.Namespace) -> list[list[str]] | None:
    """``--workers N``: each worker's symbols, checked before anything starts."""
    from .collectors import shard_symbols

    if args.workers is None:
        return None
    check_number("--workers", args.workers, integer=True)
    if args.shard is not None:
        raise InvalidRequest("--workers and --shard exclude each other")
    return shard_symbols(args.config, args.workers)


def _workers(
    args: argparse.Namespace,
    shards: list[list[str]],
    emulate_url: str | None,
    tick: float | None,
    stack: contextlib.ExitStack,
) -> CollectorWorkers:
    """The worker processes of ``collect --workers N``: ``mdcollect collect`` on their
    shard of a private copy of the config (a restarted worker gets the same shard even
    when the file changed meanwhile), without a lease (the parent holds it)."""
    import shutil
    import tempfile

    from .collectors import CollectorWorkers

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mdcollect-workers-")))
    config = tmp / "config.toml"
    shutil.copyfile(args.config, config)
    config.chmod(0o600)  # it may hold an alert webhook's secret URL
    interval = min(tick or 1.0, 1.0)  # the parent's status is at most this stale
    glob = [*(["--storage", args.storage] if args.storage else []),
            *(["--emulate"] if args.emulate else []),
            *(["-q"] if args.quiet else ["-v"] * args.verbose)]  # fmt: skip
    commands, files = [], []
    for i in range(len(shards)):
        files.append(tmp / f"worker-{i}.json")
        commands.append(
            [sys.executable, "-m", "mdcollect.cli", *glob, "collect", str(config),
             "--shard", f"{i}/{len(shards)}", "--no-lease", "--status-file", str(files[-1]),
             "--status-every", str(interval),
             *(["--metrics-port", "0"] if args.metrics_port is not None else []),
             *(["--emulate-url", emulate_url] if emulate_url else [])]
        )  # fmt: skip
    return CollectorWorkers(commands, files, shards)


def _stop_with_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """A worker stops (flushing) when its stdin closes: its parent stopped or died."""
    import os

    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


def _figures_line(c: dict[str, Any]) -> str:
    """A collector's figures of ``DataCollector.status()``, for a person."""
    lag = c["lag_seconds"]
    return (
        f"{c['rows_per_second']:.1f} rows/s, lag {'-' if lag is None else f'{lag:.1f}s'},"
        f" {c['reconnects']} reconnects, connected {c['connection_uptime']:.0f}s"
    )


def _collect_lease(args: argparse.Namespace, collectors: Sequence[Any], url: str) -> Lease | None:
    """The lease ``collect`` elects its leader with (None: ``--no-lease``, or a store
    only this process sees), checked before anything starts."""
    from .collectors import DEFAULT_TTL, default_lease, lease_name, parse_lease

    if args.no_lease:
        return None
    ttl = DEFAULT_TTL if args.lease_ttl is None else args.lease_ttl
    name = lease_name(url, collectors)
    if args.lease is not None:
        return parse_lease(args.lease, name, ttl)
    return default_lease(url, name, ttl)


class _Term:
    """``collect``'s loop: stand by until this process holds the lease, collect while
    it does, stand by again if it is lost; report the role all along."""

    def __init__(
        self,
        args: argparse.Namespace,
        dc: DataCollector | CollectorWorkers,
        leadership: Leadership | None,
        status_file: _StatusFile | None,
        url: str,
        tick: float | None,
    ) -> None:
        self.args, self.dc, self.leadership = args, dc, leadership
        self.status_file, self.url, self.tick = status_file, url, tick
        self.leading = False
        self._next_report = 0.0  # on the event loop's clock
        #: once stopped: whether the lease was given up (None: not yet tried)
        self.released: bool | None = None

    def lease_doc(self) -> dict[str, Any] | None:
        from .collectors import describe_holder

        ld = self.leadership
        if ld is None:
            return None
        return {
            "role": ld.role,
            "where": ld.lease.where,
            "holder": describe_holder(ld.holder),
            "ttl": ld.lease.ttl,
        }

    def stopped_lease_doc(self) -> dict[str, Any] | None:
        """The lease of a stopped process: no role, no holder, and whether it was released."""
        doc = self.lease_doc()
        if doc is not None:
            doc.update(role=None, holder=None, released=self.released)
        return doc

    def report(self, *, line: bool) -> None:
        if self.leading:
            st = self.dc.status()
            text = _status_line(st)
        else:
            st = {"running": False, "uptime": 0.0, "is_healthy": True, "issues": [],
                  "collectors": {}}  # fmt: skip
            doc = self.lease_doc() or {}
            text = f"[standby] leader is {doc.get('holder')} (lease {doc.get('where')})"
        if self.status_file is not None:
            self.status_file.write(st, self.args.config, self.url, lease=self.lease_doc())
        if line and self.args.status_every and not self.args.quiet:
            print(text, flush=True)

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(text, flush=True)

    async def run(self, stop: asyncio.Event) -> None:
        ld = self.leadership
        announced = None
        while not stop.is_set():
            if ld is not None and not await ld.try_acquire():
                doc = self.lease_doc() or {}
                if doc["holder"] != announced:
                    announced = doc["holder"]
                    self.say(f"standby: leader is {announced} (lease {doc['where']})")
                    self.report(line=False)
                await self._standby(stop, ld.lease.poll)
                continue
            announced = None
            if ld is not None:
                self.say(f"leader: collecting (lease {ld.lease.where})")
            keeper = None if ld is None else asyncio.create_task(ld.keep(), name="lease keeper")
            try:
                await self._lead(stop, keeper)
            finally:
                if keeper is not None and not keeper.done():
                    keeper.cancel()
                    await asyncio.gather(keeper, return_exceptions=True)

    async def _standby(self, stop: asyncio.Event, poll: float) -> None:
        """Wait one poll (or until stopped); report when a tick is due."""
        now = asyncio.get_running_loop().time()
        if now >= self._next_report:
            self.report(line=True)
            self._next_report = now + (self.tick or 10.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)

    async def _lead(self, stop: asyncio.Event, keeper: asyncio.Task[str] | None) -> None:
        """Collect until stopped or until the lease is lost (then flush and return)."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if keeper is not None:
            waits.append(keeper)
        async with self.dc:
            self.leading = True
            try:
                self.report(line=False)
                while not stop.is_set() and not (keeper is not None and keeper.done()):
                    await asyncio.wait(waits, timeout=self.tick, return_when="FIRST_COMPLETED")
                    if stop.is_set() or keeper is None or not keeper.done():
                        self.report(line=True)
            finally:
                self.leading = False
                waits[0].cancel()
        if keeper is not None and keeper.done() and not keeper.cancelled():
            self.say(f"standby: lost the lease ({keeper.result()}); collection stopped")
            self.report(line=False)


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
        self.extra: dict[str, Any] = {}  # more fields of the document
        if path.is_dir():
            raise InvalidRequest(f"--status-file must be a file path, got the directory {path}")

    def write(
        self,
        status: dict[str, Any],
        config: str,
        storage: str,
        stopped: bool = False,
        lease: dict[str, Any] | None = None,
    ) -> None:
        import json
        import os
        import time

        doc = {
            "written": time.time(),
            "pid": os.getpid(),
            "config": str(config),
            "storage": redact(storage),
            "interval": self.interval,
            "stopped": stopped,
            "status": status,
        }
        if lease is not None:  # role (leader/standby), where the lease is, its holder
            doc["lease"] = lease
        doc.update(self.extra)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600 from creation on: the status names the storage and the collectors' errors
            tmp.unlink(missing_ok=True)  # a leftover would keep its old mode
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc, default=str, indent=1))
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
    if "storage" in doc:  # a file written before URLs were redacted
        doc["storage"] = redact(str(doc["storage"]))
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
    elif (doc.get("lease") or {}).get("role") == "standby":
        # waiting to take over is a healthy state of a process that runs
        state, ok = f"standby (leader: {doc['lease'].get('holder')})", True
    else:
        # the verdict of the periodic status line: DataCollector.status()'s is_healthy
        state = "healthy" if st["is_healthy"] else "UNHEALTHY"
        ok = bool(st["is_healthy"])
    if not args.json:
        print(f"mdcollect collect {doc.get('config')} (pid {doc.get('pid')}): {state}")
        print(f"  storage {doc.get('storage')}, written {age:.1f}s ago")
        lease = doc.get("lease")
        if lease and doc.get("stopped"):  # a stopped process holds no role
            released = lease.get("released")
            gone = "released" if released else "not released (it expires after its ttl)"
            print(f"  lease {lease.get('where')}: {gone if released is not None else 'no role'}")
        elif lease:
            print(
                f"  {lease.get('role')}: lease {lease.get('where')}, held by {lease.get('holder')}"
            )
        for name, c in st["collectors"].items():
            since = c["time_since_data"]
            print(
                f"  {name}: {c['state']}, {c['rows_stored']} rows stored,"
                f" {c['restarts']} restarts, {c['errors']} errors, {c['rows_dropped']} dropped,"
                f" last data {'-' if since is None else f'{since:.1f}s'} ago"
            )
            if "rows_per_second" in c:  # files written before the figures lack them
                print(f"    {_figures_line(c)}")
            for issue in c["issues"]:
                print(f"    issue: {issue}")
        for w in st.get("workers") or []:  # collect --workers N: a row per process
            print(
                f"  worker {w['index']}: {'running' if w['running'] else 'not running'}"
                f" (pid {w['pid']}), {len(w['symbols'])} symbols, {w['rows_stored']} rows"
                f" stored, {w['restarts']} restarts, last exit {w['last_exit']}"
            )
        proc = st.get("process")
        if proc:
            print(
                f"  process: {proc['rss_bytes'] / 2**20:.1f} MiB resident,"
                f" {proc['cpu_seconds']:.1f} s CPU"
            )
    return EXIT_OK if ok else EXIT_PARTIAL


def _audit_args(sub: Any) -> None:
    a = sub.add_parser(
        "audit", help="check stored rows (holes, duplicates, bad candles...); exit 1 on problems"
    )
    a.add_argument(
        "keys", nargs="*", metavar="KEY",
        help="dataset keys, e.g. binance:ohlcv:1m:BTC/USDT (default: every stored dataset)",
    )  # fmt: skip
    a.add_argument("--start", help="YYYY-MM-DD or ISO 8601 time (default: the first row)")
    a.add_argument(
        "--end", help="YYYY-MM-DD, inclusive of its whole day, or an exclusive ISO 8601 time"
    )
    a.add_argument(
        "--repair", action="store_true",
        help="delete what is wrong and refetch exactly those spans, then audit again",
    )  # fmt: skip
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.add_argument(
        "-x", "--exchange", default=None,
        help="exchange to refetch from with --repair (default: each dataset's own)",
    )  # fmt: skip


def _audit(args: argparse.Namespace) -> int:
    """``mdcollect audit``: exit 0 when no error is found (or left after --repair), 1
    otherwise, 2 on bad input."""
    import json

    from .audit import audit

    with open_storage(_storage_url(args)) as storage:
        keys = [_existing_key(storage, k, args) for k in args.keys] or None
        report = audit(
            storage, keys, args.start, args.end, repair=args.repair, exchange=args.exchange,
            emulate=args.emulate, tz=args.tz,
        )  # fmt: skip
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet or not report.ok:
        print(report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _exchanges(args: argparse.Namespace) -> int:
    """``mdcollect exchanges``: what each exchange key serves, from the registry (no request)."""
    from .exchanges import described_exchanges, exchange_info

    keys = args.keys or described_exchanges()
    described = [exchange_info(k).capabilities() for k in keys]  # an unknown key: exit 2
    if args.json:
        print(json.dumps(described, indent=1))
        return EXIT_OK
    for d in described:
        funding, oi = d["funding"], d["open_interest"]
        depth = "back to the listing" if funding and funding["depth_days"] is None else (
            f"{funding['depth_days']:g} days" if funding else ""
        )  # fmt: skip
        print(f"{d['key']} (ccxt {d['ccxt_id']}, {d['market_type']})")
        print(f"  kinds       {', '.join(d['kinds'])}")
        print(f"  timeframes  {' '.join(d['timeframes'])}")
        print(f"  candles     {d['candles_per_request']} a request"
              + ("" if d["deep_candle_history"] else ", recent only (trades resampled)"))  # fmt: skip
        if d["trades_per_request"] is not None:
            print(f"  trades      {d['trades_per_request']} a request")
        if funding:
            print(f"  funding     {funding['per_request']} a request, {depth}")
        if oi:
            depths = ", ".join(
                f"{p} {'all' if v is None else f'{v:g} days'}" for p, v in oi["depth_days"].items()
            )
            print(f"  open int.   {oi['per_request']} a request; kept: {depths}")
    return EXIT_OK


def _replay_args(sub: Any) -> None:
    r = sub.add_parser(
        "replay",
        help="turn a day of captured websocket frames (collect with raw = true) back into rows",
    )
    r.add_argument("exchange", help="exchange key of the capture, e.g. binance")
    r.add_argument(
        "channel", help="captured channel: trades, ohlcv, ticker, orderbook, funding_snapshot"
    )
    r.add_argument("day", nargs="?", default=None,
                   help="YYYY-MM-DD (UTC; default: the day of the newest capture)")  # fmt: skip
    r.add_argument(
        "--into", metavar="URL", default=None,
        help="storage URL the rows go to (default: the store holding the capture)",
    )  # fmt: skip
    r.add_argument("--frame-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up when the collector does not take a frame in this long")  # fmt: skip


async def _replay(args: argparse.Namespace) -> int:
    """``mdcollect replay``: the captured day's frames through ccxt and the collector."""
    from .collectors import replay_async
    from .exchanges import ExchangeClient

    check_number("--frame-timeout", args.frame_timeout)
    url = _storage_url(args)
    async with contextlib.AsyncExitStack() as stack:
        exchange: Any = args.exchange
        if args.emulate:
            from .testing import shared_emulator

            emu = await asyncio.to_thread(shared_emulator)
            exchange = await stack.enter_async_context(emu.client(args.exchange))
        elif not isinstance(exchange, str):  # pragma: no cover - argparse gives str
            exchange = ExchangeClient(exchange)
        with open_storage(url) as storage:
            into = open_storage(args.into) if args.into else None
            if into is not None:
                stack.callback(into.close)
            report = await replay_async(
                exchange, args.channel, args.day, storage=storage, into=into,
                frame_timeout=args.frame_timeout,
            )  # fmt: skip
    if not args.quiet:
        print(report)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mdcollect`` console script; returns the exit code."""
    if argv is None:  # the process's own command line: it ends with this command
        _exit_quickly()
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
        if args.command == "export":
            return _export(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "exchanges":
            return _exchanges(args)
        if args.command == "replay":
            return asyncio.run(_replay(args))
        with open_storage(_storage_url(args)) as storage:
            return _ls(storage, args)
    except InvalidRequest as exc:
        print(f"mdcollect: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MdcollectError as exc:
        print(f"mdcollect: failed: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        print("mdcollect: interrupted; what was written is kept and covered", file=sys.stderr)
        return 130


def _exit_quickly() -> None:
    """At exit, spare the interpreter's last garbage collections: they walk every object
    pandas, ArcticDB (and ccxt) made, about a quarter of a no-op ``mdcollect ensure``'s
    time. Frozen objects are still freed by reference counting and ``atexit`` handlers
    still run; only unreachable cycles are left to the OS, as at any process exit."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)  # once, however often main() runs
    atexit.register(gc.freeze)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
