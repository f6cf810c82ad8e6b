"""Raw capture (``raw=True``) and replay: the frames a live run stored, replayed, give
exactly the rows that run stored, against the emulator's websockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import DataCollector, DatasetKey, InvalidRequest, open_storage, replay_async
from mdcollect.collectors import (
    OHLCVCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
    decode_raw,
    encode_raw,
    load_config,
    raw_key,
)
from mdcollect.storage import DataCollectionStorage
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until

SYM = "BTC/USDT"
PERP = "BTC/USDT:USDT"
ONE_S = DatasetKey("binance", SYM, "ohlcv", "1s")
FAST = {"batch_seconds": 0.2, "flush_timeout": 10.0}


def days(store: DataCollectionStorage, key: DatasetKey) -> list[str]:
    return sorted({str(t.date()) for t in store.read(key).index})


async def replay_all(
    emu: ExchangeEmulator, store: DataCollectionStorage, exchange: str, channel: str
) -> DataCollectionStorage:
    """Every captured day of ``channel`` replayed into a fresh store."""
    out = open_storage("memory://")
    cl = client(emu, exchange)
    try:
        for day in days(store, raw_key(exchange, channel)):
            await replay_async(cl, channel, day, storage=store, into=out)
    finally:
        await cl.close()
    return out


def assert_same(
    live: DataCollectionStorage, replayed: DataCollectionStorage, key: DatasetKey
) -> None:
    got, want = replayed.read(key), live.read(key)
    assert len(want) >= 2, (key, want)
    pd.testing.assert_frame_equal(got, want, check_freq=False)
    assert replayed.coverage(key) == live.coverage(key), key


async def live_run(
    stores: list[DataCollectionStorage], groups: list[list[object]], done: object
) -> list[dict[str, object]]:
    """Each group of collectors under its own DataCollector (raw=True) into its store,
    until ``done()``; their status() then."""
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        dcs = []
        for store, group in zip(stores, groups, strict=True):
            dc = DataCollector(group, store, max_silence=10, backfill_gaps=False, raw=True)  # type: ignore[arg-type]
            dcs.append(await stack.enter_async_context(dc))
        await wait_until(done, 30)
        return [dc.status() for dc in dcs]


async def test_replay_reproduces_binance_trades_candles_and_tickers(emu: ExchangeEmulator) -> None:
    stores = [open_storage("memory://"), open_storage("memory://")]
    clients = [client(emu) for _ in range(3)]
    trades = TradesCollector(clients[0], [SYM], mode="ws", candles=["1s"], **FAST)
    tickers = TickerCollector(clients[1], [SYM], mode="ws", **FAST)
    candles = OHLCVCollector(clients[2], [SYM], mode="ws", timeframes=["1s"], **FAST)
    try:
        statuses = await live_run(
            stores, [[trades, tickers], [candles]],
            lambda: all(len(st.read(ONE_S)) >= 2 for st in stores)
            and trades.stats.rows_written >= 10 and tickers.stats.rows_written >= 3,
        )  # fmt: skip
    finally:
        for cl in clients:
            await cl.close()
    store = stores[0]
    # the frames are stored per channel, compressed, with their receipt times
    batches = decode_raw(store.read(raw_key("binance", "trades")))
    frames = [f for b in batches for f in b.frames if f[1]]  # the read marks have no path
    assert trades.stats.raw_frames == len(frames) > 0
    status = statuses[0]["collectors"][trades.name]  # type: ignore[index]
    assert status["raw"] is True and status["raw_frames"] > 0
    assert [f[0] for f in frames] == sorted(f[0] for f in frames)
    assert all(b.kind == "trades" and b.symbols == [SYM] for b in batches)
    assert any("aggTrade" in text or '"trade"' in text for _, _, text in frames)
    assert store.keys(kind="raw") == [raw_key("binance", "ticker"), raw_key("binance", "trades")]

    replayed = await replay_all(emu, store, "binance", "trades")
    assert_same(store, replayed, DatasetKey("binance", SYM, "trades"))
    assert_same(store, replayed, DatasetKey("binance", SYM, "ohlcv", "1s"))
    replayed = await replay_all(emu, store, "binance", "ticker")
    assert_same(store, replayed, DatasetKey("binance", SYM, "ticker"))
    replayed = await replay_all(emu, stores[1], "binance", "ohlcv")
    assert_same(stores[1], replayed, DatasetKey("binance", SYM, "ohlcv", "1s"))


async def test_replay_reproduces_okx_books_and_trades(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    clients = [client(emu, "okx") for _ in range(2)]
    books = OrderBookCollector(clients[0], [SYM], mode="ws", depth=5, interval=None, **FAST)
    trades = TradesCollector(clients[1], [SYM], mode="ws", **FAST)
    try:
        await live_run(
            [store], [[books, trades]],
            lambda: books.stats.rows_written >= 3 and trades.stats.rows_written >= 5,
        )  # fmt: skip
    finally:
        for cl in clients:
            await cl.close()
    replayed = await replay_all(emu, store, "okx", "orderbook")
    assert_same(store, replayed, DatasetKey("okx", SYM, "orderbook"))
    replayed = await replay_all(emu, store, "okx", "trades")
    assert_same(store, replayed, DatasetKey("okx", SYM, "trades"))


async def test_replay_refuses_bad_input_before_any_request(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    frames = [(1_764_547_200_000, "/ws/0", '{"e":"trade"}')]
    store.write(raw_key("binance", "trades"), encode_raw("binance", "trades", [SYM], {}, frames))
    before = len(emu.requests)
    try:
        with pytest.raises(InvalidRequest, match=r"channel 'nope' .*trades.*orderbook"):
            await replay_async(cl, "nope", "2025-12-01", storage=store)
        with pytest.raises(InvalidRequest, match=r"no raw capture of binance 'trades' on "
                           r"2025-12-02.*days of 'trades': 2025-12-01"):  # fmt: skip
            await replay_async(cl, "trades", "2025-12-02", storage=store)
        with pytest.raises(
            InvalidRequest, match=r"no raw capture of binance 'ticker'.*\['trades'\]"
        ):
            await replay_async(cl, "ticker", None, storage=store)
        with pytest.raises(InvalidRequest, match="day 'someday'"):
            await replay_async(cl, "trades", "someday", storage=store)
        with pytest.raises(InvalidRequest, match="binance order books cannot be replayed"):
            await replay_async(cl, "orderbook", None, storage=store)
    finally:
        await cl.close()
    assert len(emu.requests) == before  # refused before any request


def test_raw_is_a_collector_option_and_a_supervisor_option_in_toml() -> None:
    section = {"exchange": "binance", "symbols": [SYM], "kinds": ["trades", "ticker"]}
    cfg = load_config({"collectors": [{**section, "raw": True}, {**section, "kinds": ["ohlcv"]}]})
    assert [c.raw for c in cfg.collectors] == [True, True, False]
    assert cfg.collectors[0].raw_key() == DatasetKey("binance", "trades", "raw")
    cfg = load_config({"raw": True, "collectors": [section]})
    dc = DataCollector(cfg.collectors, open_storage("memory://"), **cfg.options)
    assert [c.raw for c in dc.collectors] == [True, True]
    from mdcollect.metrics import metrics_text

    assert 'mdcollect_collector_raw_frames_total{collector="binance:trades:BTC/USDT"' in (
        metrics_text(dc)
    )
    with pytest.raises(InvalidRequest, match="raw must be true or false"):
        load_config({"collectors": [{**section, "raw": "yes"}]})
    with pytest.raises(InvalidRequest, match="raw=True stores websocket frames, and mode='poll'"):
        load_config({"collectors": [{**section, "raw": True, "mode": "poll"}]})
    # the supervisor's raw=True leaves a polling collector as it is
    polling = TickerCollector("binance", [SYM], mode="poll")
    DataCollector([polling], open_storage("memory://"), raw=True)
    assert polling.raw is False


def test_raw_is_live_only_and_listed_by_the_catalog() -> None:
    import mdcollect

    with pytest.raises(InvalidRequest, match=r"'raw' is live-only.*raw=True"):
        mdcollect.ensure_data([SYM], "1h", "2026-01-01", "2026-01-02", exchange="binance",
                              kinds=("raw",), storage=open_storage("memory://"))  # fmt: skip
    store = open_storage("memory://")
    frames = [(1_764_547_200_000 + i, "/ws/0", f'{{"n":{i}}}') for i in range(3)]
    store.write(raw_key("binance", "trades"), encode_raw("binance", "trades", [SYM], {}, frames))
    cat = mdcollect.catalog(store, kind="raw")
    assert cat[["exchange", "symbol", "kind", "rows"]].to_dict("records") == [
        {"exchange": "binance", "symbol": "trades", "kind": "raw", "rows": 1}
    ]
    # written twice (a retried write) it is still one row
    store.write(raw_key("binance", "trades"), encode_raw("binance", "trades", [SYM], {}, frames))
    assert len(store.read(raw_key("binance", "trades"))) == 1


def is_trade(text: str) -> bool:
    return '"e":"trade"' in text or '"e":"aggTrade"' in text


async def test_a_frame_the_stopping_collector_never_read_is_not_kept(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", raw=True, **FAST)
    run = asyncio.create_task(c.run(store))
    stopped_on: list[str] = []

    def stop_on(received: int, path: str, text: str) -> None:
        # the collector stops as this frame arrives: its trades are never read
        if is_trade(text) and not stopped_on:
            stopped_on.append(text)
            run.cancel()

    try:
        await wait_until(lambda: c.stats.rows_received >= 5, 30)
        cl.capture_ws(stop_on)  # after the collector's own sink: it has the frame first
        await asyncio.gather(run, return_exceptions=True)
    finally:
        await cl.close()
    frames = [f for b in decode_raw(store.read(raw_key("binance", "trades"))) for f in b.frames]
    assert stopped_on and stopped_on[0] not in [f[2] for f in frames]
    assert frames[-1][1] == ""  # the capture ends with the last read
    replayed = await replay_all(emu, store, "binance", "trades")
    assert_same(store, replayed, DatasetKey("binance", SYM, "trades"))


async def test_frames_a_live_read_found_together_are_replayed_together(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", raw=True, **FAST)
    try:
        await live_run([store], [[c]], lambda: c.stats.rows_written >= 10)
    finally:
        await cl.close()
    key = raw_key("binance", "trades")
    batches = decode_raw(store.read(key))
    frames = [f for b in batches for f in b.frames]
    # two trade frames read one by one live; as if the reader had been behind: the
    # mark between them dropped, one read finds both (and stamps them with the first)
    i = next(
        i for i in range(len(frames) - 3)
        if is_trade(frames[i][2]) and frames[i + 1][1] == "" and is_trade(frames[i + 2][2])
        and frames[i + 3][1] == "" and frames[i][0] != frames[i + 2][0]
    )  # fmt: skip
    first, second = json.loads(frames[i][2]), json.loads(frames[i + 2][2])
    merged = open_storage("memory://")
    b = batches[0]
    merged.write(key, encode_raw("binance", "trades", b.symbols, b.options,
                                 frames[: i + 1] + frames[i + 2 :], b.streams))  # fmt: skip
    replayed = open_storage("memory://")
    cl = client(emu)
    try:
        await replay_async(cl, "trades", None, storage=merged, into=replayed)
        # afterwards the client connects for real again
        assert await asyncio.wait_for(cl.watch_trades_raw(SYM), 30)
    finally:
        await cl.close()
    rows = replayed.read(DatasetKey("binance", SYM, "trades"))
    ids = {str(first.get("t", first.get("a"))), str(second.get("t", second.get("a")))}
    found = rows[rows["id"].isin(ids)]
    assert len(found) == 2
    assert set(found["received"]) == {frames[i][0]}


def test_cli_replay_refuses_an_unknown_channel_and_a_missing_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdcollect.cli import main

    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "replay", "binance", "nope", "2025-12-01"]) == 2
    err = capsys.readouterr().err
    assert "channel 'nope' is not valid; allowed: 'trades', 'ohlcv'" in err
    assert main(["--storage", url, "replay", "binance", "trades"]) == 2
    assert "no raw capture of binance 'trades'; captured channels of binance: none" in (
        capsys.readouterr().err
    )


def test_frames_of_interleaved_batches_come_in_receipt_order_lazily() -> None:
    from mdcollect.collectors._raw import FrameMerger

    # two collectors' batches of one channel overlap in time; a read mark keeps its
    # place after the frames it read, even at the same millisecond
    a = encode_raw("x", "trades", ["A/B"], {"n": 1}, [(10, "/a", "1"), (30, "/a", "3"),
                                                      (30, "", "m")], {"/a": ["h"] * 2000})  # fmt: skip
    b = encode_raw("x", "trades", ["C/D"], {}, [(20, "/b", "2"), (25, "/b", "2b"), (40, "/b", "4")])
    rows = pd.concat([a, b]).sort_index()
    heads = decode_raw(rows, heads_only=True)  # a header longer than a decompression step
    assert [(h.symbols, h.frames, len(h.streams["/a"]) if h.streams else 0) for h in heads] == [
        (["A/B"], [], 2000), (["C/D"], [], 0)
    ]  # fmt: skip
    merger = FrameMerger()
    merger.add(rows)
    assert [f[2] for f in merger.until(26)] == ["1", "2", "2b"]
    assert [f[2] for f in merger.until(None)] == ["3", "m", "4"]


async def test_replay_reproduces_binance_usdm_funding_snapshots(emu: ExchangeEmulator) -> None:
    from mdcollect.collectors import FundingRateCollector

    store = open_storage("memory://")
    cl = client(emu, "binance_futures")
    funding = FundingRateCollector(cl, [PERP], mode="ws", **FAST)
    key = DatasetKey("binance_futures", PERP, "funding_snapshot")
    try:
        await live_run([store], [[funding]], lambda: funding.stats.rows_written >= 3)
    finally:
        await cl.close()
    replayed = await replay_all(emu, store, "binance_futures", "funding_snapshot")
    assert_same(store, replayed, key)


def test_a_flush_writes_the_frames_before_the_rows_made_from_them() -> None:
    from mdcollect.collectors._base import _Entry, _write_all

    written: list[str] = []

    class Recording:  # a storage that records which dataset each write went to
        def __init__(self) -> None:
            self.store = open_storage("memory://")

        def write(self, key: DatasetKey, frame: pd.DataFrame, **kw: object) -> int:
            written.append(key.kind)
            return self.store.write(key, frame, **kw)  # type: ignore[arg-type]

    t = 1_764_547_200_000
    trades = DatasetKey("binance", SYM, "trades")
    rows = pd.DataFrame({"timestamp": [t], "id": ["1"], "price": [1.0], "amount": [1.0],
                         "side": ["buy"]})  # fmt: skip
    frames = encode_raw("binance", "trades", [SYM], {}, [(t, "/ws", "{}")])
    pending = {  # in the order the collector buffered them: the rows first
        trades: [_Entry(0, trades, rows, None)],
        raw_key("binance", "trades"): [_Entry(1, raw_key("binance", "trades"), frames, None)],
    }
    _write_all(Recording(), pending)  # type: ignore[arg-type]
    assert written == ["raw", "trades"]


async def test_replay_of_many_symbols_on_one_connection_gives_the_same_trades(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    syms = ["BTC/USDT", "ETH/USDT"]
    c = TradesCollector(cl, syms, mode="ws", candles=["1s"], **FAST)
    keys = [DatasetKey("binance", s, "trades") for s in syms]
    try:
        await live_run(
            [store],
            [[c]],
            lambda: all(k in store.keys(kind="trades") and len(store.read(k)) >= 3 for k in keys),
        )
    finally:
        await cl.close()
    replayed = await replay_all(emu, store, "binance", "trades")
    for key in keys:
        # the same trades and coverage; the receipt stamps may differ where another
        # symbol's reader ran at this one's mark (see docs/raw.md)
        got, want = replayed.read(key), store.read(key)
        pd.testing.assert_frame_equal(got.drop(columns="received"), want.drop(columns="received"),
                                      check_freq=False)  # fmt: skip
        assert replayed.coverage(key) == store.coverage(key), key
        one_s = DatasetKey("binance", key.symbol, "ohlcv", "1s")
        pd.testing.assert_frame_equal(replayed.read(one_s), store.read(one_s), check_freq=False)


async def test_a_faulty_frame_sink_breaks_no_connection(
    emu: ExchangeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", raw=True, **FAST)

    def faulty(received: int, path: str, text: str) -> None:
        raise RuntimeError("a bug in a sink")

    cl.capture_ws(faulty)
    try:
        await live_run([store], [[c]], lambda: c.stats.rows_written >= 10)
    finally:
        await cl.close()
    assert c.stats.raw_frames > 0
    assert "a bug in a sink" in caplog.text
