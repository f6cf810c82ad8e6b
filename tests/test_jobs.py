"""Backfill jobs from a file: ``load_jobs``, ``ensure_jobs`` and ``mdcollect ensure --config``,
against the emulator (patterns resolve from its market listings)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import (
    DatasetKey,
    InvalidRequest,
    ensure_data,
    ensure_jobs,
    load_jobs,
    open_storage,
)
from mdcollect.cli import main
from mdcollect.collectors import load_config
from mdcollect.testing import ExchangeEmulator, Fault, shared_emulator

T2024 = 1_704_067_200_000
DAY = 86_400_000
HOUR = 3_600_000


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def _listed(emu: ExchangeEmulator, key: str) -> list[str]:
    """The emulator's active markets of ``key``, as ccxt lists them (the oracle)."""
    import asyncio

    async def markets() -> list[str]:
        async with emu.client(key) as c:
            return [s for s, m in (await c.load_markets()).items() if m.get("active") is not False]

    return asyncio.run(markets())


def _write(tmp_path: Path, text: str, name: str = "jobs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _keys(reports: list) -> list[DatasetKey]:  # type: ignore[type-arg]
    return [s.key for r in reports for s in r.symbols]


# -- load_jobs: fields, defaults, validation ------------------------------------------------


def test_defaults_of_an_entry(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = "BTC/USDT"\n')
    [job] = load_jobs(path)
    assert job.exchange == "binance" and job.symbols == ("BTC/USDT",)
    assert job.kinds == ("ohlcv",) and job.timeframes == ("1h",)
    assert job.start == 1_577_836_800_000  # 2020-01-01
    assert job.end is None and job.padding == 0
    assert job.include == () and job.exclude == ()
    assert job.where == f"{path}: jobs[0]"


def test_toml_dates_times_and_strings_follow_the_one_date_rule(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nstart = 2024-01-01\n'
        "end = 2024-01-02\n"
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nstart = "20240101"\n'
        "end = 2024-01-02T06:00:00Z\npadding = 3\n",
    )
    first, second = load_jobs(path)
    assert (first.start, first.end) == (T2024, T2024 + 2 * DAY)  # a bare end date counts whole
    assert (second.start, second.end, second.padding) == (T2024, T2024 + DAY + 6 * HOUR, 3)


BAD = [
    ('exchange = "nope"', "jobs[0].exchange", "nope"),
    ("exchange = 3", "jobs[0].exchange", "3"),
    ('symbols = ["BTCUSDT"]', "jobs[0].symbols", "BTCUSDT"),
    ("symbols = []", "jobs[0].symbols", "non-empty"),
    ('exclude = [""]', "jobs[0].exclude", "''"),
    ('kinds = ["candles"]', "jobs[0].kinds", "candles"),
    ('kinds = ["liquidations"]', "jobs[0].kinds", "live-only"),
    ('timeframes = ["1H"]', "jobs[0].timeframes", "did you mean '1h'"),
    ('kinds = ["funding"]\ntimeframes = ["1h"]', "jobs[0].timeframes", "take no timeframe"),
    ('start = "01/02/2024"', "jobs[0].start", "01/02/2024"),
    ('end = "yesterday"', "jobs[0].end", "yesterday"),
    ("start = 2024-02-01\nend = 2024-01-01", "jobs[0].end", "must be after"),
    ("padding = -1", "jobs[0].padding", "[0, 3650]"),
    ("padding_days = 3", "jobs[0]: unknown field(s) ['padding_days']", "padding"),
]


@pytest.mark.parametrize(("line", "where", "says"), BAD)
def test_every_bad_field_names_the_file_entry_and_field_before_any_request(
    tmp_path: Path, emu: ExchangeEmulator, line: str, where: str, says: str
) -> None:
    base = {"exchange": '"binance_futures"', "symbols": '["*/USDT:USDT"]'}
    key = line.split("=")[0].strip()
    fields = [f"{k} = {v}" for k, v in base.items() if k != key] + [line]
    path = _write(tmp_path, "[[jobs]]\n" + "\n".join(fields) + "\n")
    with pytest.raises(InvalidRequest) as err:
        ensure_jobs(path, "memory://", clients={"binance_futures": emu.client("binance_futures")})
    assert f"{path}: {where}" in str(err.value) and says in str(err.value)
    assert emu.requests == []


def test_the_second_entry_is_named_with_its_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\n'
        '[[jobs]]\nname = "majors"\nexchange = "binance"\nsymbols = ["ETH/USDT"]\n'
        'timeframes = ["7m"]\n',
    )
    with pytest.raises(InvalidRequest, match=r"jobs\[1\] \('majors'\)\.timeframes: timeframe '7m'"):
        load_jobs(path)


def test_file_level_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="cannot read jobs file"):
        load_jobs(tmp_path / "missing.toml")
    with pytest.raises(InvalidRequest, match="is not valid TOML"):
        load_jobs(_write(tmp_path, "[[jobs]\n"))
    path = _write(
        tmp_path, 'storge = "memory://"\n[[jobs]]\nexchange = "binance"\nsymbols = "BTC/USDT"\n'
    )
    with pytest.raises(InvalidRequest, match=r"unknown key\(s\) \['storge'\]"):
        load_jobs(path)
    with pytest.raises(InvalidRequest, match=r"jobs must be a non-empty list of tables"):
        load_jobs(_write(tmp_path, '[[collectors]]\nexchange = "binance"\nsymbols = "BTC/USDT"\n'))


def test_a_job_the_exchange_cannot_serve_is_refused_before_any_page_request(
    tmp_path: Path, emu: ExchangeEmulator
) -> None:
    # the first entry is fine; the second asks spot Binance for funding: nothing is fetched
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nstart = 2024-01-01\n'
        "end = 2024-01-01\n"
        '[[jobs]]\nexchange = "binance"\nsymbols = ["ETH/USDT"]\nkinds = ["funding"]\n'
        "start = 2024-01-01\nend = 2024-01-01\n",
    )
    store = open_storage("memory://")
    with pytest.raises(
        InvalidRequest, match=r"jobs\[1\] \(binance ETH/USDT\): binance has no funding"
    ):
        ensure_jobs(path, store, clients={"binance": emu.client("binance")}, progress=False)
    assert emu.requests == [] and store.keys() == []


# -- patterns, include/exclude, dedupe -------------------------------------------------------


def test_patterns_resolve_against_the_markets_with_include_and_exclude(
    tmp_path: Path, emu: ExchangeEmulator
) -> None:
    perps = _listed(emu, "binance_futures")
    spot = _listed(emu, "binance")
    emu.clear_requests()
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance_futures"\nsymbols = ["*/USDT:USDT"]\n'
        'exclude = ["ETH/*", "[LX]*"]\ninclude = ["BTC/USDC:USDC"]\n'
        "start = 2024-01-01\nend = 2024-01-01\n"
        '[[jobs]]\nexchange = "binance"\nsymbols = ["B??/USDT"]\nstart = 2024-01-01\n'
        "end = 2024-01-01\n",
    )
    clients = {k: emu.client(k) for k in ("binance_futures", "binance")}
    reports = ensure_jobs(path, "memory://", clients=clients, dry_run=True, progress=False)
    matched = sorted(
        s for s in perps if s.endswith("/USDT:USDT") and not s.startswith(("ETH/", "L", "X"))
    )
    want_perps = [*matched, "BTC/USDC:USDC"]
    want_spot = sorted(s for s in spot if len(s) == 8 and s.startswith("B") and s.endswith("/USDT"))
    assert len(want_perps) > 3 and "BTC/USDT:USDT" in want_perps and len(want_spot) >= 2
    assert _keys(reports) == [
        DatasetKey("binance_futures", s, "ohlcv", "1h") for s in want_perps
    ] + [DatasetKey("binance", s, "ohlcv", "1h") for s in want_spot]
    # resolving asked each exchange for its markets once, and nothing else (a dry run)
    assert len(emu.requests) == 2 and all("Info" in q.path for q in emu.requests)


def test_a_pattern_matching_nothing_names_the_entry(tmp_path: Path, emu: ExchangeEmulator) -> None:
    path = _write(tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["*/EUR"]\n')
    with pytest.raises(InvalidRequest, match=r"jobs\[0\]\.symbols: pattern '\*/EUR' matches no"):
        ensure_jobs(path, "memory://", clients={"binance": emu.client("binance")}, dry_run=True)
    path = _write(
        tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/*"]\nexclude = ["*"]\n'
    )
    with pytest.raises(InvalidRequest, match=r"jobs\[0\]\.exclude: it removes every symbol"):
        ensure_jobs(path, "memory://", clients={"binance": emu.client("binance")}, dry_run=True)


def test_entries_naming_the_same_dataset_run_it_once(tmp_path: Path, emu: ExchangeEmulator) -> None:
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT", "ETH/USDT"]\n'
        'timeframes = ["1h", "1d"]\nstart = 2024-01-01\nend = 2024-01-02\n'
        '[[jobs]]\nexchange = "binance"\nsymbols = ["[B]TC/USDT"]\ntimeframes = "1h"\n'
        "start = 2024-01-01\nend = 2024-01-02\n"
        '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nstart = 2024-01-02\n'
        "end = 2024-01-03\n",
    )
    store = open_storage("memory://")
    reports = ensure_jobs(path, store, clients={"binance": emu.client("binance")}, progress=False)
    keys = _keys(reports)
    assert len(keys) == len(set(keys))
    assert sorted(map(str, keys)) == [
        "binance:ohlcv:1d:BTC/USDT", "binance:ohlcv:1d:ETH/USDT",
        "binance:ohlcv:1h:BTC/USDT", "binance:ohlcv:1h:ETH/USDT",
    ]  # fmt: skip
    # BTC 1h, named three times, once over the span of its entries: 3 days, one page
    btc = [s for r in reports for s in r.symbols if str(s.key) == "binance:ohlcv:1h:BTC/USDT"]
    assert [s.candles_fetched for s in btc] == [72]
    pages = [q for q in emu.requests if q.path.endswith("klines") and q.params["symbol"] == "BTCUSDT"
             and q.params["interval"] == "1h"]  # fmt: skip
    assert len(pages) == 1


# -- a real run equals ensuring each dataset by hand ------------------------------------------


def test_a_run_stores_exactly_what_ensuring_each_dataset_by_hand_stores(
    tmp_path: Path, emu: ExchangeEmulator
) -> None:
    path = _write(
        tmp_path,
        '[[jobs]]\nexchange = "binance_futures"\nsymbols = ["*/USDT:USDT"]\n'
        'exclude = ["[!BE]*", "BNB/*"]\nkinds = ["ohlcv", "funding", "mark"]\ntimeframes = ["1h", "4h"]\n'
        "start = 2024-01-02\nend = 2024-01-03\npadding = 1\n",
    )
    c = emu.client("binance_futures")
    jobs_store, hand_store = open_storage("memory://"), open_storage("memory://")
    reports = ensure_jobs(path, jobs_store, clients={"binance_futures": c}, progress=False)
    assert all(r.ok for r in reports)
    keys = sorted(jobs_store.keys(), key=str)
    assert {k.symbol for k in keys} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert len(keys) == 2 * (2 + 1 + 2)  # ohlcv x2 timeframes, funding, mark x2
    for key in keys:
        r = ensure_data([key.symbol], key.timeframe or "1h", "2024-01-02", "2024-01-03", c, 1,
                        hand_store, progress=False, kinds=(key.kind,))  # type: ignore[arg-type]  # fmt: skip
        assert r.ok
        assert jobs_store.coverage(key) == hand_store.coverage(key), key
        pd.testing.assert_frame_equal(jobs_store.read(key), hand_store.read(key))
        assert len(jobs_store.read(key)) > 0
    # a second run asks the exchange nothing (the client has the markets already)
    emu.clear_requests()
    again = ensure_jobs(path, jobs_store, clients={"binance_futures": c}, progress=False)
    assert sum(r.requests for r in again) == 0 and emu.requests == []


def test_end_defaults_to_now_closed_candles_only(tmp_path: Path, emu: ExchangeEmulator) -> None:
    path = _write(tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\n')
    now = T2024 + 5 * HOUR + 30 * 60_000
    [report] = ensure_jobs(path, "memory://", clients={"binance": emu.client("binance")},
                           dry_run=True, clock=lambda: now, progress=False)  # fmt: skip
    assert report.required is not None
    assert (report.required.start, report.required.end) == (1_577_836_800_000, T2024 + 5 * HOUR)


# -- one file for ensure and collect ------------------------------------------------------------

DEPLOYMENT = """\
storage = "memory://"
max_silence = 60

[[jobs]]
exchange = "binance"
symbols = ["BTC/USDT"]
start = 2024-01-01
end = 2024-01-01

[[collectors]]
exchange = "binance"
symbols = ["ETH/USDT"]
kinds = ["ticker"]
"""


def test_one_file_holds_jobs_and_collectors_each_command_reads_its_part(tmp_path: Path) -> None:
    path = _write(tmp_path, DEPLOYMENT)
    [job] = load_jobs(path)
    assert job.symbols == ("BTC/USDT",)
    cfg = load_config(path)
    assert [c.exchange for c in cfg.collectors] == ["binance"] and cfg.storage == "memory://"
    assert cfg.options == {"max_silence": 60}


# -- the command ------------------------------------------------------------------------------


def test_cli_dry_run_lists_datasets_and_windows_and_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    path = _write(
        tmp_path,
        f'storage = "{url}"\n[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT", "ETH/USDT"]\n'
        'timeframes = ["1m"]\nstart = 2024-01-01\nend = 2024-01-02\n',
    )
    assert main(["--emulate", "--dry-run", "ensure", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: would ensure 2 dataset(s) in 1 group(s)" in out
    assert "binance:ohlcv:1m:BTC/USDT: had nothing, missing 2 days" in out
    assert "binance:ohlcv:1m:ETH/USDT: had nothing" in out
    assert "6 window(s)" in out  # 2 days of 1m = 3 pages of 1000 each
    with open_storage(url) as st:
        assert st.keys() == []


def test_cli_runs_the_file_into_its_storage_then_has_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    path = _write(tmp_path, DEPLOYMENT.replace("memory://", url))
    assert main(["--emulate", "--no-progress", "ensure", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "binance:ohlcv:1h:BTC/USDT: had nothing, fetched 24 rows" in out
    with open_storage(url) as st:
        assert len(st.read(DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"))) == 24
    assert main(["--emulate", "--no-progress", "ensure", "--config", str(path)]) == 0
    assert "fetched 0 rows in 0 requests" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [["BTC/USDT"], ["--start", "2024-01-01"], ["-t", "1d"], ["-x", "okx"], ["--padding-days", "0"]],
)
def test_cli_config_refuses_what_the_file_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    path = _write(tmp_path, DEPLOYMENT)
    assert main(["--emulate", "ensure", "--config", str(path), *extra]) == 2
    assert "belong to a single ensure without --config" in capsys.readouterr().err


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--emulate", "ensure", "--storage", "memory://"]) == 2
    assert (
        "ensure needs SYMBOL... with --start and --end, or --config FILE" in capsys.readouterr().err
    )
    bad = _write(
        tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nkinds = ["x"]\n'
    )
    assert main(["--emulate", "ensure", "--config", str(bad)]) == 2
    assert f"{bad}: jobs[0].kinds: kind 'x' is not valid" in capsys.readouterr().err
    # a window that keeps failing: exit 1, what was fetched is kept
    url = f"parquet://{tmp_path / 'store'}"
    path = _write(tmp_path, DEPLOYMENT.replace("memory://", url).replace(
        'symbols = ["BTC/USDT"]', 'symbols = ["BTC/USDT", "ETH/USDT"]'))  # fmt: skip
    emu = shared_emulator()
    fault = emu.faults.add(Fault("403", route="klines", exchange="binance", count=1))
    try:
        code = main(["--emulate", "--no-progress", "ensure", "--config", str(path),
                     "--concurrency", "1"])  # fmt: skip
    finally:
        emu.faults.remove(fault)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED" in out
    with open_storage(url) as st:
        assert len(st.read(DatasetKey("binance", "ETH/USDT", "ohlcv", "1h"))) == 24


def test_python_dates_in_a_dict(emu: ExchangeEmulator) -> None:
    jobs = load_jobs({"jobs": [{"exchange": "binance", "symbols": ["BTC/USDT"],
                                "start": dt.date(2024, 1, 1), "end": dt.date(2024, 1, 1)}]})  # fmt: skip
    [report] = ensure_jobs(jobs, "memory://", clients={"binance": emu.client("binance")},
                           progress=False)  # fmt: skip
    assert report.ok and report.candles_fetched == 24


def test_patterns_skip_markets_ccxt_marks_inactive(tmp_path: Path, emu: ExchangeEmulator) -> None:
    import asyncio

    # the emulator lists no delisted market: mark one inactive in the client's own
    # (real, loaded) markets, as ccxt does for a delisted one
    client = emu.client("binance")
    markets = asyncio.run(client.load_markets())
    asyncio.run(client.release())
    markets["ETH/USDT"]["active"] = False
    path = _write(tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["*/USDT", "ETH/USDT"]\n')
    reports = ensure_jobs(path, "memory://", clients={"binance": client}, dry_run=True)
    resolved = [k.symbol for k in _keys(reports)]
    # the pattern leaves it out; named exactly, it is kept (a delisted market's history)
    assert "BTC/USDT" in resolved and resolved.count("ETH/USDT") == 1
    pattern_only = _write(
        tmp_path, '[[jobs]]\nexchange = "binance"\nsymbols = ["*/USDT"]\n', "p.toml"
    )
    reports = ensure_jobs(pattern_only, "memory://", clients={"binance": client}, dry_run=True)
    assert "ETH/USDT" not in [k.symbol for k in _keys(reports)]


def test_a_symbol_the_exchange_does_not_list_names_its_entry(
    tmp_path: Path, emu: ExchangeEmulator
) -> None:
    path = _write(
        tmp_path,
        '[[jobs]]\nname = "spot"\nexchange = "binance"\nsymbols = ["NOPE/USDT"]\n'
        "start = 2024-01-01\nend = 2024-01-01\n",
    )
    with pytest.raises(InvalidRequest, match=r"jobs\[0\] \('spot'\): symbol 'NOPE/USDT' is not"):
        ensure_jobs(path, "memory://", clients={"binance": emu.client("binance")}, progress=False)


def test_jobs_made_by_hand_are_checked_before_any_request(emu: ExchangeEmulator) -> None:
    from mdcollect import Job

    good = Job("binance", ("BTC/USDT",), start=T2024, end=T2024 + DAY)
    bad = Job("binance", ("ETH/USDT",), timeframes=("1H",), where="my job")
    with pytest.raises(InvalidRequest, match=r"my job\.timeframes: timeframe '1H'.*'1h'"):
        ensure_jobs([good, bad], "memory://", clients={"binance": emu.client("binance")})
    with pytest.raises(InvalidRequest, match="jobs must be Job objects"):
        ensure_jobs([good, "BTC/USDT"], "memory://")  # type: ignore[list-item]
    assert emu.requests == []
    [report] = ensure_jobs([good], "memory://", clients={"binance": emu.client("binance")},
                           progress=False)  # fmt: skip
    assert report.ok and report.candles_fetched == 24


def test_a_client_of_another_exchange_key_is_refused(emu: ExchangeEmulator) -> None:
    jobs = {"jobs": [{"exchange": "binance", "symbols": ["BTC/USDT"]}]}
    with pytest.raises(InvalidRequest, match=r"clients\['binance'\] is .*binance_futures"):
        ensure_jobs(jobs, "memory://", clients={"binance": emu.client("binance_futures")})
    assert emu.requests == []


def test_exact_symbols_with_an_exclude_pattern_need_no_markets(emu: ExchangeEmulator) -> None:
    jobs = {"jobs": [{"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"],
                      "exclude": ["E*"], "start": "2024-01-01", "end": "2024-01-01"}]}  # fmt: skip
    reports = ensure_jobs(jobs, "memory://", clients={"binance": emu.client("binance")},
                          dry_run=True)  # fmt: skip
    assert [k.symbol for k in _keys(reports)] == ["BTC/USDT"]
    assert emu.requests == []  # a dry run of exact symbols asks the exchange nothing


def test_collector_entries_refuse_patterns_naming_them(tmp_path: Path) -> None:
    # a pattern is a valid-looking symbol ('*/USDT' has a '/'): without this a collector
    # would start and fail on every reconnect
    path = _write(tmp_path, DEPLOYMENT.replace('symbols = ["ETH/USDT"]', 'symbols = ["*/USDT"]'))
    with pytest.raises(
        InvalidRequest, match=r"collectors\[0\]\.symbols has the pattern\(s\) \['\*/USDT'\]"
    ):
        load_config(path)
    assert load_jobs(path)[0].symbols == ("BTC/USDT",)  # the jobs part is not concerned


def test_cli_storage_option_replaces_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_file, given = f"parquet://{tmp_path / 'file'}", f"parquet://{tmp_path / 'given'}"
    path = _write(tmp_path, DEPLOYMENT.replace("memory://", in_file))
    assert main(["--emulate", "-q", "ensure", "--config", str(path), "--storage", given]) == 0
    assert capsys.readouterr().out == ""  # quiet: errors only
    with open_storage(given) as st:
        assert st.keys() == [DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")]
    with open_storage(in_file) as st:
        assert st.keys() == []
