"""Logs where a host application wants them (``log_callback``) and dates in local time
(``tz``): the dccd design's two small options."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from mdcollect import (
    DataCollector,
    Interval,
    InvalidRequest,
    ensure_data,
    ensure_data_async,
    load_ohlcv,
    open_storage,
)
from mdcollect._logs import forwarding_logs
from mdcollect._time import end_ms, time_range, time_zone, to_ms
from mdcollect.cli import main
from mdcollect.collectors import ManualClock
from mdcollect.ensure import backfill_async
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator

HOUR = 3_600_000
NOW = 1_710_000_000_000  # 2024-03-09T16:00Z: everything asked for below is closed
TOKYO_JAN_1 = 1_704_034_800_000  # 2024-01-01T00:00+09:00 = 2023-12-31T15:00Z


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def client(emu: ExchangeEmulator) -> ExchangeClient:
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)


# -- tz -------------------------------------------------------------------------------------


def test_naive_dates_are_read_in_the_zone_given() -> None:
    assert to_ms("2024-01-01", tz="Asia/Tokyo") == TOKYO_JAN_1
    assert to_ms("20240101", tz="Asia/Tokyo") == TOKYO_JAN_1
    assert to_ms(dt.date(2024, 1, 1), tz="Asia/Tokyo") == TOKYO_JAN_1
    assert to_ms(dt.datetime(2024, 1, 1, 9), tz="Asia/Tokyo") == TOKYO_JAN_1 + 9 * HOUR
    assert to_ms("2024-01-01T09:00", tz="Asia/Tokyo") == TOKYO_JAN_1 + 9 * HOUR
    # a value that says its offset keeps it; ms are ms
    assert to_ms("2024-01-01T00:00Z", tz="Asia/Tokyo") == TOKYO_JAN_1 + 9 * HOUR
    assert to_ms(TOKYO_JAN_1, tz="Asia/Tokyo") == TOKYO_JAN_1
    # the default and "UTC" are UTC
    assert to_ms("2024-01-01") == to_ms("2024-01-01", tz="UTC") == TOKYO_JAN_1 + 9 * HOUR


def test_a_local_day_ends_at_the_next_local_midnight_across_the_clock_change() -> None:
    berlin = "Europe/Berlin"
    # 2024-03-31 has 23 hours in Berlin, 2024-10-27 has 25
    assert end_ms("2024-03-31", tz=berlin) - to_ms("2024-03-31", tz=berlin) == 23 * HOUR
    assert end_ms("2024-10-27", tz=berlin) - to_ms("2024-10-27", tz=berlin) == 25 * HOUR
    assert time_range("2024-01-01", "2024-01-01", tz=berlin) == (
        to_ms("2023-12-31T23:00Z"),
        to_ms("2024-01-01T23:00Z"),
    )


@pytest.mark.parametrize("bad", ["Mars/Olympus", "", "  ", 5, "CEST+2"])
def test_an_unknown_zone_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(InvalidRequest, match=r"tz .* is not a time zone; use an IANA name"):
        time_zone(bad)
    with pytest.raises(InvalidRequest, match="is not a time zone"):
        ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", "binance",
                    storage="memory://", tz=bad)  # fmt: skip


@pytest.mark.parametrize("when", ["2024-03-31T02:30", "2024-10-27T02:30"])
def test_a_time_the_clock_skips_or_repeats_is_refused(when: str) -> None:
    with pytest.raises(InvalidRequest, match=r"is not one time in Europe/Berlin.*offset"):
        to_ms(when, tz="Europe/Berlin")


def test_ensure_and_load_read_dates_in_tz(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-01", cl, 0, store,
                         progress=False, clock=lambda: NOW, tz="Asia/Tokyo")  # fmt: skip
    assert report.ok
    assert report.required == Interval(TOKYO_JAN_1, TOKYO_JAN_1 + 24 * HOUR)
    frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-01", exchange=cl,
                       storage=store, ensure=False, tz="Asia/Tokyo")  # fmt: skip
    assert len(frame) == 24
    assert frame.index[0].value // 1_000_000 == TOKYO_JAN_1
    utc = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-01", exchange=cl,
                     storage=store, ensure=False)  # fmt: skip
    assert len(utc) == 15  # 15:00Z .. 24:00Z of the UTC day was stored


def test_cli_tz_option(
    emu: ExchangeEmulator, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path}/s"
    argv = ["--storage", url, "--emulate", "--no-progress", "--dry-run", "ensure", "BTC/USDT",
            "-t", "1h", "-x", "binance", "--start", "2024-01-01", "--end", "2024-01-01",
            "--padding-days", "0"]  # fmt: skip
    assert main([*argv, "--tz", "Asia/Tokyo"]) == 0
    tokyo = capsys.readouterr().out
    assert "2023-12-31 15:00" in tokyo, tokyo
    assert main(argv) == 0
    assert "2023-12-31 15:00" not in capsys.readouterr().out
    assert main([*argv, "--tz", "Nowhere/Land"]) == 2
    assert "tz 'Nowhere/Land' is not a time zone" in capsys.readouterr().err


# -- log_callback ---------------------------------------------------------------------------


def test_ensure_lines_reach_the_callback(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    lines: list[str] = []
    report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", client(emu), 0, store,
                         progress=False, clock=lambda: NOW, log_callback=lines.append)  # fmt: skip
    assert report.ok and report.requests >= 1
    key = "binance:ohlcv:1h:BTC/USDT"
    assert lines[0].startswith(f"INFO mdcollect.backfill: {key}: fetching ")
    assert lines[-1] == (
        f"INFO mdcollect.backfill: {key}: stored 48 row(s) in "
        f"{report.symbols[0].requests} request(s)"
    )
    again: list[str] = []
    ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", client(emu), 0, store,
                progress=False, clock=lambda: NOW, log_callback=again.append)  # fmt: skip
    assert again == ["INFO mdcollect.ensure: binance 1h: all 1 dataset(s) stored; nothing to fetch"]


async def test_calls_side_by_side_get_only_their_own_lines(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    btc: list[str] = []
    eth: list[str] = []
    cl = client(emu)
    try:
        await asyncio.gather(
            ensure_data_async(["BTC/USDT"], "1h", "2024-01-01", "2024-01-03", cl, 0, store,
                              progress=False, clock=lambda: NOW, log_callback=btc.append),
            backfill_async(["ETH/USDT"], "1h", "2024-01-01", "2024-01-03", cl, store,
                           progress=False, clock=lambda: NOW, log_callback=eth.append),
        )  # fmt: skip
    finally:
        await cl.close()
    assert btc and eth
    assert all("BTC/USDT" in line for line in btc), btc
    assert all("ETH/USDT" in line for line in eth), eth


def test_application_handlers_see_what_they_saw_before() -> None:
    """With ``logging.basicConfig()`` (root WARNING, handler NOTSET) the root handler gets
    no INFO line of mdcollect because a callback listens, and still gets the warnings;
    afterwards the logger is as it was."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    old = root.level
    root.setLevel(logging.WARNING)
    logger = logging.getLogger("mdcollect")
    before = (logger.level, logger.propagate, list(logger.handlers))
    lines: list[str] = []
    try:
        with forwarding_logs(lines.append):
            logging.getLogger("mdcollect.backfill").info("fetching")
            logging.getLogger("mdcollect.backfill").warning("window failed")
            logging.getLogger("mdcollect.backfill").debug("detail")
        logging.getLogger("mdcollect.backfill").info("after")
    finally:
        root.removeHandler(keep)
        root.setLevel(old)
    assert lines == [
        "INFO mdcollect.backfill: fetching",
        "WARNING mdcollect.backfill: window failed",
    ]
    assert [r.getMessage() for r in seen if r.name.startswith("mdcollect")] == ["window failed"]
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_a_level_the_application_set_is_respected() -> None:
    logger = logging.getLogger("mdcollect")
    logger.setLevel(logging.ERROR)
    lines: list[str] = []
    try:
        with forwarding_logs(lines.append):
            logging.getLogger("mdcollect.collector").warning("quiet, please")
            logging.getLogger("mdcollect.collector").error("loud")
    finally:
        logger.setLevel(logging.NOTSET)
    assert lines == ["ERROR mdcollect.collector: loud"]


def test_a_raising_callback_never_breaks_the_call(emu: ExchangeEmulator) -> None:
    def broken(line: str) -> None:
        raise RuntimeError("the UI is gone")

    report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-01", client(emu), 0,
                         "memory://", progress=False, clock=lambda: NOW,
                         log_callback=broken)  # fmt: skip
    assert report.ok and report.symbols[0].candles_fetched == 24


def test_a_callback_that_is_not_callable_is_refused_before_anything(
    emu: ExchangeEmulator,
) -> None:
    with pytest.raises(InvalidRequest, match="log_callback must be a function taking one str"):
        ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-01", "binance", 0, "memory://",
                    log_callback="print")  # fmt: skip
    with pytest.raises(InvalidRequest, match="log_callback must be a function"):
        DataCollector([], "memory://", log_callback=42)  # type: ignore[arg-type]


async def test_data_collector_lines_reach_its_callback(emu: ExchangeEmulator) -> None:
    from mdcollect.collectors import TickerCollector

    lines: list[str] = []
    store = open_storage("memory://")
    cl = client(emu)
    # an unknown symbol: the collector's task logs its error and the supervisor its decision
    bad = TickerCollector(cl, ["NOPE/USDT"], mode="ws", batch_rows=1, name="t",  # type: ignore[arg-type]
                          batch_seconds=0.2, poll_interval=0.2)  # fmt: skip
    dc = DataCollector([bad], store, clock=ManualClock(), log_callback=lines.append,
                       max_permanent_errors=1)  # fmt: skip
    try:
        async with dc:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not any("mdcollect.collector: t:" in line for line in lines):
                assert loop.time() < deadline, lines
                await asyncio.sleep(0.05)
    finally:
        await cl.close()
    assert lines[0] == "INFO mdcollect.collector: started 1 collectors"
    assert lines[-1] == "INFO mdcollect.collector: stopped"
    assert any(line.startswith(("WARNING mdcollect.collector: t:", "ERROR mdcollect.collector: t:"))
               for line in lines), lines  # fmt: skip


@pytest.mark.parametrize(
    ("day", "zone", "first", "hours"),
    [
        ("2024-04-26", "Africa/Cairo", "2024-04-25T22:00Z", 23),  # midnight skipped: 01:00
        ("2024-10-27", "Atlantic/Azores", "2024-10-27T00:00Z", 25),  # midnight twice: the first
        ("2024-10-26", "Atlantic/Azores", "2024-10-26T00:00Z", 24),
    ],
)
def test_a_local_day_whose_midnight_the_clocks_skip_or_repeat(
    day: str, zone: str, first: str, hours: int
) -> None:
    assert to_ms(day, tz=zone) == to_ms(first)
    assert end_ms(day, tz=zone) - to_ms(day, tz=zone) == hours * HOUR
    assert time_range(day, day, tz=zone) == (to_ms(first), to_ms(first) + hours * HOUR)


def test_a_region_folder_is_not_a_zone() -> None:
    with pytest.raises(InvalidRequest, match="tz 'America' is not a time zone"):
        time_zone("America")


def test_a_level_set_below_mdcollect_keeps_its_lines_for_the_application() -> None:
    """The application asked for DEBUG on mdcollect.backfill: its root handler gets those
    lines whether or not a callback listens; a level it sets during the call stays."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root, keep = logging.getLogger(), Keep()
    root.addHandler(keep)
    old = root.level
    root.setLevel(logging.WARNING)
    backfill = logging.getLogger("mdcollect.backfill")
    backfill.setLevel(logging.DEBUG)
    try:
        with forwarding_logs([].append):
            backfill.info("asked for")
            logging.getLogger("mdcollect").setLevel(logging.ERROR)  # the application, meanwhile
        assert logging.getLogger("mdcollect").level == logging.ERROR
    finally:
        backfill.setLevel(logging.NOTSET)
        logging.getLogger("mdcollect").setLevel(logging.NOTSET)
        root.removeHandler(keep)
        root.setLevel(old)
    assert seen == ["asked for"]


@pytest.mark.parametrize("tz", [None, "Asia/Tokyo"])
def test_the_last_day_a_datetime_holds_still_parses(tz: str | None) -> None:
    """Year 9999 is beyond pandas' ns range: found by the service's fuzz test."""
    from mdcollect._rules import date_range

    lo, hi = date_range("99991231", "99991231", tz=tz)
    assert hi - lo == 24 * HOUR and lo == to_ms("9999-12-31", tz=tz)
