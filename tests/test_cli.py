"""The mdcollect command, end to end against the built-in emulator."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, load_ohlcv, open_storage
from mdcollect.cli import _parser, main

T2024 = 1_704_067_200_000
DAY = 86_400_000


def test_ensure_emulated_then_ls_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    args = ["--storage", url, "--emulate", "--no-progress", "ensure", "BTC/USDT", "ETH/USDT",
            "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-31", "-x", "binance",
            "--padding-days", "0"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "binance:ohlcv:1h:BTC/USDT" in out and "ok" in out
    with open_storage(url) as st:
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
        assert len(st.read(key)) == 31 * 24
        assert st.coverage(key) == IntervalSet([Interval(T2024, T2024 + 31 * DAY)])
    assert main(["--storage", url, "ls"]) == 0
    listing = capsys.readouterr().out
    assert "binance:ohlcv:1h:ETH/USDT" in listing and "rows=744" in listing and "holes=0" in listing
    csv = tmp_path / "btc.csv"
    assert main(["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(csv)]) == 0
    exported = pd.read_csv(csv, index_col="timestamp")
    assert len(exported) == 744 and list(exported.columns) == [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",  # Binance klines' optional columns are exported with them
        "trades",
        "taker_buy_volume",
        "taker_buy_quote_volume",
    ]
    pq = tmp_path / "btc.parquet"
    assert main(["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(pq),
                 "--start", "2024-01-02", "--end", "2024-01-03"]) == 0  # fmt: skip
    assert len(pd.read_parquet(pq)) == 48  # a bare date as --end includes that day, as in ensure


def test_dry_run_lists_windows_and_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    code = main(["--storage", url, "--emulate", "--dry-run", "ensure", "BTC/USDT", "-t", "1m",
                 "--start", "2024-01-01", "--end", "2024-01-02", "-x", "binance",
                 "--padding-days", "0"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "3 window(s)" in out  # 2 days of 1m = 2880 candles = 3 pages of 1000
    # Binance spot klines cost 0.4 x 50 ms in ccxt, at 95% of the limit: 3 x 21 ms
    assert "about 0.1 s at binance's rate limit" in out
    with open_storage(url) as st:
        assert st.keys() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["ensure", "BTCUSDT", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1x", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1h", "--start", "2024-02-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1h", "--start", "01/02/2024", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-x", "nope", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["export", "not-a-key", "-o", "x.csv"],
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--storage", f"parquet://{tmp_path / 's'}", "--emulate", *argv]) == 2
    assert "error" in capsys.readouterr().err


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("mdcollect")
    res = subprocess.run(
        [str(exe), "--storage", f"parquet://{tmp_path / 's'}", "--emulate", "-q", "ensure", "BTC/USDT:USDT",
         "-t", "4h", "--start", "2024-01-01", "--end", "2024-01-10"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


# -- options before or after the subcommand; --help shows defaults ------------------------

COMMANDS = {
    "ensure": ["ensure", "BTC/USDT", "--start", "2024-01-01", "--end", "2024-01-02"],
    "backfill": ["backfill", "BTC/USDT", "--start", "2024-01-01", "--end", "2024-01-02"],
    "ls": ["ls"],
    "export": ["export", "binance:ohlcv:1h:BTC/USDT", "-o", "x.csv"],
    "collect": ["collect", "collect.toml"],
    "serve": ["serve"],
    "status": ["status", "status.json"],
    "audit": ["audit", "binance:ohlcv:1h:BTC/USDT", "--repair", "--json"],
}
GLOBAL = ["--storage", "memory://", "--emulate", "--dry-run", "--no-progress", "-v", "-q"]
GIVEN = {"storage": "memory://", "emulate": True, "dry_run": True, "no_progress": True,
         "verbose": 1, "quiet": True}  # fmt: skip
DEFAULTS = {"storage": None, "emulate": False, "dry_run": False, "no_progress": False,
            "verbose": 0, "quiet": False}  # fmt: skip


def _globals(args: object) -> dict[str, object]:
    return {name: getattr(args, name) for name in GIVEN}


@pytest.mark.parametrize("command", COMMANDS)
def test_global_options_before_or_after_every_subcommand(command: str) -> None:
    argv = COMMANDS[command]
    assert _globals(_parser().parse_args([*GLOBAL, *argv])) == GIVEN
    assert _globals(_parser().parse_args([*argv, *GLOBAL])) == GIVEN
    mixed = _parser().parse_args(["--storage", "memory://", "-q", *argv, "--emulate", "--dry-run"])
    assert _globals(mixed) == {**DEFAULTS, "storage": "memory://", "quiet": True,
                               "emulate": True, "dry_run": True}  # fmt: skip
    assert _globals(_parser().parse_args(argv)) == DEFAULTS


def test_readme_command_with_options_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    code = main(["ensure", "BTC/USDT", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02",
                 "-x", "binance", "--storage", url, "--emulate", "--dry-run", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "window" in capsys.readouterr().out  # a dry run shows its plan, even with -q
    with open_storage(url) as st:
        assert st.keys() == []


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_shows_the_defaults(
    command: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _parser()
    top = {a.dest: a.default for a in parser._actions}
    sub = parser if command is None else parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    text = _help([] if command is None else [command], capsys)
    shown = 0
    for action in sub._actions:
        if action.default is argparse.SUPPRESS:  # a global option after the subcommand
            default, line = top.get(action.dest), str(action.help)
        else:
            default, line = action.default, f"{action.help} (default: {action.default})"
        if not action.option_strings or action.help == argparse.SUPPRESS or default is None:
            continue
        if action.dest in ("help", "version"):
            continue
        assert f"(default: {default})" in line and line in text, (action.dest, text)
        shown += 1
    # the global options: shown with their defaults after any subcommand too
    assert "(no network needed) (default: False)" in text
    assert "storage URL (default: the embedded ArcticDB store" in text
    assert shown >= 5


def test_help_names_the_subcommand_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    ensure = _help(["ensure"], capsys)
    assert "--timeframe TIMEFRAME candle timeframe (default: 1h)" in ensure
    assert "(default: binance_futures)" in ensure
    assert "--strategy {auto,ohlcv,trades} candles from the candle endpoint or resampled trades (default: auto)" in ensure  # fmt: skip
    assert "(default: 1m)" in _help(["backfill"], capsys)
    serve = _help(["serve"], capsys)
    assert "(default: 127.0.0.1)" in serve and "(default: 8002)" in serve


# -- one date rule; dates in messages ------------------------------------------------------


def _stored(tmp_path: Path) -> str:
    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", "-q", "--no-progress", "ensure", "BTC/USDT",
                 "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-03", "-x", "binance",
                 "--padding-days", "0"]) == 0  # fmt: skip
    return url


def test_export_dates_follow_the_ensure_rule(tmp_path: Path) -> None:
    url = _stored(tmp_path)
    out = tmp_path / "out.parquet"

    def export(*dates: str) -> pd.DatetimeIndex:
        argv = ["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(out), *dates]
        assert main(argv) == 0
        return pd.read_parquet(out).index

    # the same --start/--end as ensure gives exactly what ensure stored
    assert len(export("--start", "2024-01-01", "--end", "2024-01-03")) == 3 * 24
    one_day = export("--start", "20240102", "--end", "20240102")
    assert (one_day[0], one_day[-1], len(one_day)) == (
        pd.Timestamp("2024-01-02 00:00", tz="UTC"), pd.Timestamp("2024-01-02 23:00", tz="UTC"), 24,
    )  # fmt: skip
    # a time of day is an exclusive bound
    assert len(export("--start", "2024-01-02", "--end", "2024-01-02T06:00")) == 6
    assert export("--end", "2024-01-01")[-1] == pd.Timestamp("2024-01-01 23:00", tz="UTC")


def test_export_end_before_start_names_the_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _stored(tmp_path)
    argv = ["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(tmp_path / "x.csv"),
            "--start", "2024-01-03", "--end", "2024-01-01"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--end '2024-01-01' must be after --start '2024-01-03'" in err
    assert "1704" not in err
    assert not (tmp_path / "x.csv").exists()


def test_errors_show_dates_not_epoch_ms() -> None:
    from mdcollect.backfill import OHLCVBackfill
    from mdcollect.exchanges import ExchangeClient
    from mdcollect.testing import ExchangeEmulator

    jan2 = T2024 + DAY
    with pytest.raises(InvalidRequest, match="end 2024-01-01 must be after start 2024-01-02"):
        Interval(jan2, T2024)
    with pytest.raises(InvalidRequest, match="end 2024-01-01 must be after start 2024-01-02 "):
        open_storage("memory://").read(
            DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"), jan2, T2024
        )
    with pytest.raises(InvalidRequest, match=r"end 2024-01-01 must be after start 2024-01-02$"):
        OHLCVBackfill("binance", "BTC/USDT", "1h", jan2, T2024)
    with pytest.raises(
        InvalidRequest, match=r"end 2024-01-01 06:00:00 must be after start 2024-01-02$"
    ):
        load_ohlcv("BTC/USDT", "1h", jan2, T2024 + 6 * 3_600_000, exchange="binance",
                   storage="memory://")  # fmt: skip

    async def fetch_backwards(url: str) -> None:
        async with ExchangeClient("binance", base_url=url) as client:
            await client.fetch_ohlcv("BTC/USDT", "1h", jan2, T2024)

    with (
        ExchangeEmulator() as emu,
        pytest.raises(InvalidRequest, match=r"until 2024-01-01 is before since 2024-01-02$"),
    ):
        asyncio.run(fetch_backwards(emu.url))


# -- export: unknown keys, output folders; ls: the emulated store --------------------------


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("binance:ohlcv:1h:BTC/USDC", "binance:ohlcv:1h:BTC/USDT"),
        ("binance:ohlcv:4h:BTC/USDT", "binance:ohlcv:1h:BTC/USDT"),
        ("BTC/USDT", "binance:ohlcv:1h:BTC/USDT"),  # not a key at all: still the closest
    ],
)
def test_export_of_a_missing_key_names_the_closest(
    tmp_path: Path, key: str, closest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _stored(tmp_path)
    out = tmp_path / "x.csv"
    assert main(["--storage", url, "export", key, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{key!r}" in err and f"closest: {closest}" in err
    assert not out.exists()


def test_export_to_a_missing_folder_is_a_clear_error_before_any_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "never-opened"
    base = ["--storage", f"parquet://{store}", "export", "binance:ohlcv:1h:BTC/USDT", "-o"]
    assert main([*base, str(tmp_path / "nope" / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert f"output folder {str(tmp_path / 'nope')!r} does not exist" in err
    assert "Traceback" not in err
    (tmp_path / "file").write_text("")
    assert main([*base, str(tmp_path / "file" / "x.parquet")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main([*base, str(tmp_path)]) == 2  # a folder, not a file name
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert not store.exists(), "the store must not be opened before the output is checked"


def test_ls_of_the_default_store_points_to_the_emulated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path / "home"))
    assert main(["ls"]) == 0
    assert "--emulate" not in capsys.readouterr().out  # nothing emulated yet: no note
    assert main(["--emulate", "-q", "--no-progress", "ensure", "BTC/USDT", "-x", "binance",
                 "-t", "1d", "--start", "2024-01-01", "--end", "2024-01-02",
                 "--padding-days", "0"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["ls"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"no datasets in arctic+lmdb://{tmp_path / 'home' / 'arctic'}" in out
    assert "1 dataset(s) fetched with --emulate are in the separate emulated store" in out
    assert "list them with 'mdcollect --emulate ls'" in out
    assert main(["ls", "--emulate"]) == 0
    emulated = capsys.readouterr().out
    assert "binance:ohlcv:1d:BTC/USDT  rows=2" in emulated and "note" not in emulated


# -- padding_days: one default (30) ----------------------------------------------------------


def test_ensure_pads_30_days_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", "-q", "--no-progress", "ensure", "BTC/USDT",
                 "-x", "binance", "-t", "1d", "--start", "2024-02-01", "--end", "2024-02-01"]) == 0  # fmt: skip
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1d")
    with open_storage(url) as st:  # 2024-01-02 .. 2024-02-01, whole days
        assert st.coverage(key) == IntervalSet([Interval(T2024 + DAY, T2024 + 32 * DAY)])
        assert len(st.read(key)) == 31
    assert "also ensure this many days before --start (default: 30)" in _help(["ensure"], capsys)


@pytest.mark.parametrize("days", ["-1", "20000"])
def test_bad_padding_days_names_the_flag_and_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", "-q", "--no-progress", "ensure", "BTC/USDT",
                 "-x", "binance", "-t", "1d", "--start", "2024-02-01", "--end", "2024-02-01",
                 "--padding-days", days]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"--padding-days must be an integer in [0, 3650], got {days}" in err
    assert not (tmp_path / "store").exists() or not open_storage(url).keys()


def test_negative_status_every_is_refused_by_the_number_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "collect.toml"
    config.write_text(
        'storage = "memory://"\n[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\n'
        'kinds = ["trades"]\n'
    )
    assert main(["collect", str(config), "--status-every", "-1"]) == 2
    assert "--status-every must be a number >= 0, got -1.0" in capsys.readouterr().err


def test_ensure_on_the_emulated_coinbase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdcollect.testing import shared_emulator

    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", "--no-progress", "ensure", "BTC/USD", "-x",
                 "coinbase", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-03",
                 "--padding-days", "0"]) == 0  # fmt: skip
    assert "coinbase:ohlcv:1h:BTC/USD" in capsys.readouterr().out
    key = DatasetKey("coinbase", "BTC/USD", "ohlcv", "1h")
    want = shared_emulator().market.candles("coinbase", "BTC/USD", "1h", T2024, T2024 + 3 * DAY)
    with open_storage(url) as st:
        assert st.coverage(key) == IntervalSet([Interval(T2024, T2024 + 3 * DAY)])
        got = st.read(key)
        assert len(got) == 72
        cols = ["open", "high", "low", "close", "volume"]
        pd.testing.assert_frame_equal(got[cols], want.to_frame()[cols], check_freq=False)
    # a timeframe Coinbase does not serve: refused, naming those it does
    assert main(["--storage", url, "--emulate", "-q", "ensure", "BTC/USD", "-x", "coinbase",
                 "-t", "4h", "--start", "2024-01-01", "--end", "2024-01-03"]) == 2  # fmt: skip
    assert "allowed: 1m, 5m, 15m, 30m, 1h, 2h, 6h, 1d" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["ensure", "backfill"])
def test_emulate_with_an_exchange_it_does_not_serve_names_those_it_does(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    argv = ["--storage", url, "--emulate", "-q", "--no-progress", command, "BTC/USDT",
            "-x", "kucoin", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exchange 'kucoin' is not served by the exchange emulator" in err
    served = "binance, binance_futures, binancecoinm, binanceusdm, bybit, bybit_futures, coinbase"
    assert served in err and "okx_futures" in err
    assert not (tmp_path / "store").exists() or not open_storage(url).keys()
    with pytest.raises(InvalidRequest, match="it serves: binance, "):
        load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02", exchange="kucoin",
                   storage=url, emulate=True)  # fmt: skip


def test_exchanges_lists_what_each_key_serves(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from mdcollect.exchanges import described_exchanges, exchange_info

    assert main(["exchanges", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["key"] for d in listed] == described_exchanges()
    binance = next(d for d in listed if d["key"] == "binance_futures")
    assert binance == exchange_info("binance_futures").capabilities()
    assert binance["kinds"] == [
        "ohlcv",
        "trades",
        "funding",
        "mark",
        "index",
        "premium",
        "open_interest",
    ]
    assert binance["funding"] == {"per_request": 1000, "depth_days": None}
    assert binance["open_interest"]["per_request"] == 500
    assert binance["open_interest"]["depth_days"]["1h"] == 30
    assert main(["exchanges", "coinbase", "kraken"]) == 0
    out = capsys.readouterr().out
    assert (
        "coinbase (ccxt coinbase, spot)\n  kinds       ohlcv\n  timeframes  1m 5m 15m 30m 1h 2h 6h 1d"
        in out
    )
    assert "kraken (ccxt kraken, spot)" in out and "recent only (trades resampled)" in out
    assert main(["exchanges", "binanse"]) == 2
    assert "exchange 'binanse' is not known (did you mean 'binance'" in capsys.readouterr().err
