"""What a user sees of ensure_data's result: the report's str, repr and HTML."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, ensure_data, open_storage
from mdcollect.backfill import OHLCVBackfill
from mdcollect.ensure import EnsureReport, SymbolReport
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

DAY = 86_400_000
HOUR = 3_600_000
T2024 = 1_704_067_200_000  # 2024-01-01
PAIR = ["BTC/USDT", "ETH/USDT"]


def client(emu: ExchangeEmulator) -> ExchangeClient:
    retry = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False, retry=retry)


# -- str(): the summary the CLI prints --------------------------------------------------


def test_summary_names_the_padded_range_and_what_each_dataset_had(emu: ExchangeEmulator) -> None:
    store, c = open_storage("memory://"), client(emu)
    args: tuple[Any, ...] = (PAIR, "1h", "2024-01-01", "2024-01-31", c, 30, store)
    first = ensure_data(*args, progress=False)
    lines = str(first).splitlines()
    assert lines[0] == "binance 1h: ensured [2023-12-02, 2024-02-01) UTC (61 days)"
    for line, sym in zip(lines[1:3], PAIR, strict=True):
        n = first[sym].requests
        assert n > 0
        assert re.fullmatch(
            rf"  binance:ohlcv:1h:{sym}: had nothing, fetched 1464 rows in {n} requests "
            r"\([^)]+ s\): ok",
            line,
        ), line
    assert re.fullmatch(rf"2928 rows, {first.requests} requests in [^:]+ s: ok", lines[3])
    assert len(lines) == 4

    second = ensure_data(*args, progress=False)
    assert second.requests == 0
    lines = str(second).splitlines()
    assert lines[1].startswith(
        "  binance:ohlcv:1h:BTC/USDT: had 61 days in [2023-12-02, 2024-02-01), "
        "fetched 0 rows in 0 requests ("
    )
    assert lines[3].startswith("0 rows, 0 requests in ")


def test_coverage_with_holes_is_shown_as_date_ranges(emu: ExchangeEmulator) -> None:
    store, c = open_storage("memory://"), client(emu)
    ensure_data(["BTC/USDT"], "1h", "2024-01-10", "2024-01-12", c, 0, store, progress=False)
    ensure_data(["BTC/USDT"], "1h", "2024-01-20", "2024-01-21", c, 0, store, progress=False)
    r = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-31", c, 0, store, progress=False)
    assert r["BTC/USDT"].candles_fetched == (31 - 5) * 24
    line = str(r).splitlines()[1]
    assert line.startswith(
        "  binance:ohlcv:1h:BTC/USDT: had 5 days in [2024-01-10, 2024-01-13), "
        "[2024-01-20, 2024-01-22), fetched 624 rows in "
    )


def test_many_holes_are_counted_not_listed(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    even = IntervalSet([Interval(t, t + HOUR) for t in range(T2024, T2024 + 8 * DAY, 2 * HOUR)])
    rows = emu.market.candles("binance", "BTC/USDT", "1h", T2024, T2024 + 8 * DAY).to_frame()
    rows = rows[[int(t.value // 1_000_000) in even for t in rows.index]]
    store.write(key, rows[["open", "high", "low", "close", "volume"]], covered=even)
    r = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-08", client(emu), 0, store,
                    progress=False, dry_run=True)  # fmt: skip
    assert emu.requests == []
    line = str(r).splitlines()[1]
    assert line == (
        "  binance:ohlcv:1h:BTC/USDT: had 4 days in [2024-01-01, 2024-01-01 01:00:00), "
        "[2024-01-01 02:00:00, 2024-01-01 03:00:00), [2024-01-01 04:00:00, 2024-01-01 05:00:00) "
        "and 93 more ranges, missing 4 days in [2024-01-01 01:00:00, 2024-01-01 02:00:00), "
        "[2024-01-01 03:00:00, 2024-01-01 04:00:00), [2024-01-01 05:00:00, 2024-01-01 06:00:00) "
        "and 93 more ranges: 96 window(s)"
    )
    assert repr(r["BTC/USDT"]) == (
        "SymbolReport(binance:ohlcv:1h:BTC/USDT, required=[2024-01-01, 2024-01-09), "
        "already_covered=<96 ranges, 4 days>, missing=<96 ranges, 4 days>, candles_fetched=0, "
        "windows_failed=0, requests=0, ok=True)"
    )


def test_failed_windows_and_their_errors_are_in_the_summary(
    emu: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one window at a time, so that the 4 failures below all hit the first window
    monkeypatch.setattr(OHLCVBackfill, "windows_in_flight", 1)
    store, c = open_storage("memory://"), client(emu)
    # the day before is stored, so no listing request is needed below
    ensure_data(["BTC/USDT"], "1m", "2023-02-28", "2023-02-28", c, 0, store, progress=False)
    emu.faults.add(Fault("503", route="klines", count=4))  # the first page, all its attempts
    r = ensure_data(["BTC/USDT"], "1m", "2023-03-01", "2023-03-02", c, 0, store, progress=False,
                    concurrency=1)  # fmt: skip
    lines = str(r).splitlines()
    assert re.fullmatch(
        r"  binance:ohlcv:1m:BTC/USDT: had nothing, fetched 1880 rows in \d+ requests "
        r"\([^)]+\): FAILED 1 window",
        lines[1],
    ), lines[1]
    assert lines[2].startswith("      [2023-03-01, 2023-03-01 16:40:00): ") and "503" in lines[2]
    assert lines[-1].endswith(": FAILED for 1 symbol")
    html = r._repr_html_()
    assert re.search(r'<td title="\[2023-03-01, [^"]*503[^"]*">FAILED 1 window</td>', html), html


# -- repr() and the dry run: bounded ----------------------------------------------------


def test_dry_run_of_a_year_of_1m_is_bounded(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    r = ensure_data(["BTC/USDT"], "1m", "2023-01-01", "2023-12-31", client(emu), 30, store,
                    progress=False, dry_run=True)  # fmt: skip
    assert emu.requests == []
    assert len(r.plans[0].windows) == 569  # 395 days of 1m in pages of 1000
    assert len(repr(r)) < 1000
    assert re.fullmatch(
        r"EnsureReport\(binance 1m, required=\[2022-12-02, 2024-01-01\), symbols=1, ok=True, "
        r"requests=0, candles_fetched=0, seconds=\d+\.\d, dry_run=True, plans=1, windows=569\)",
        repr(r),
    ), repr(r)
    lines = str(r).splitlines()
    assert lines[:3] == [
        "binance 1m: would ensure [2022-12-02, 2024-01-01) UTC (395 days)",
        "  binance:ohlcv:1m:BTC/USDT: had nothing, missing 395 days in [2022-12-02, 2024-01-01): "
        "569 window(s)",
        "      [2022-12-02, 2022-12-02 16:40:00)",
    ]
    assert len(lines) == 2 + 20 + 2
    assert lines[-2] == "      ... 549 more"
    assert re.fullmatch(
        r"569 window\(s\), at least 569 page request\(s\) \(\+1 markets and \+1 listing request "
        r"per symbol\), about .+ at binance's rate limit: dry run, nothing fetched",
        lines[-1],
    )
    html = r._repr_html_()
    assert len(html) < 2000
    assert "<td>dry run: 569 windows to fetch</td>" in html


# -- _repr_html_ --------------------------------------------------------------------------


def test_html_is_a_table_a_row_per_symbol(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    r = ensure_data(PAIR, "1h", "2024-01-01", "2024-01-02", client(emu), 1, store, progress=False)
    html = r._repr_html_()
    heads = re.findall(r"<th>([^<]*)</th>", html)
    assert heads == ["symbol", "required (UTC)", "had", "fetched rows", "requests", "state"]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", html)
    assert [row.split("</td><td>") for row in rows] == [
        [sym, "[2023-12-31, 2024-01-03) (3 days)", "nothing", "72", str(r[sym].requests), "ok"]
        for sym in PAIR
    ]
    caption = re.search(r"<caption>(.*)</caption>", html)
    assert caption is not None
    assert caption.group(1).startswith(
        f"binance 1h: ensured [2023-12-31, 2024-01-03) UTC (3 days); {r.requests} requests in "
    )


def test_html_escapes_what_it_shows() -> None:
    key = DatasetKey("binance", "<b>X&Y/USDT", "ohlcv", "1h")
    failed = Interval(T2024, T2024 + HOUR)
    sym = SymbolReport(key.symbol, key, Interval(T2024, T2024 + DAY), IntervalSet(),
                       IntervalSet([Interval(T2024, T2024 + DAY)]), 23, [failed],
                       ['bad "reply" <html>'], 3, 0.5)  # fmt: skip
    html = EnsureReport("binance", "1h", sym.required, [sym], requests=3)._repr_html_()
    assert "<td>&lt;b&gt;X&amp;Y/USDT</td>" in html
    assert 'title="bad &quot;reply&quot; &lt;html&gt;"' in html
    assert "<b>" not in html and "<html>" not in html
