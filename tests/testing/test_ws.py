"""The emulator's websockets, driven by unmodified ccxt.pro and a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest

from mdcollect.exchanges._urls import redirect_urls, redirect_ws_url
from mdcollect.testing import ExchangeEmulator, MarketSpec
from mdcollect.testing._live import LIQUIDATION_LAG_MS

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "realdata" / "exchange_ws_samples"

#: Busy markets (10 trades a second) so a few seconds show plenty of trades.
BUSY = [
    MarketSpec(
        "BTC/USDT",
        30_000.0,
        price_decimals=2,
        amount_decimals=5,
        trades_per_minute=600,
        exchange="binance",
    ),
    MarketSpec(
        "BTC/USDT:USDT",
        30_000.0,
        price_decimals=2,
        tick=10,
        amount_decimals=3,
        mean_amount=0.05,
        trades_per_minute=600,
        exchange="binance",
    ),
    MarketSpec(
        "BTC/USDT",
        30_000.0,
        price_decimals=1,
        amount_decimals=8,
        trades_per_minute=600,
        exchange="okx",
    ),
    MarketSpec(
        "BTC/USDT:USDT",
        30_000.0,
        price_decimals=1,
        amount_decimals=4,
        trades_per_minute=600,
        exchange="okx",
    ),
]


@pytest.fixture(scope="module")
def emu_live() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(seed=11, markets=BUSY, rate_limits=False) as emu:
        yield emu


@pytest.fixture
def emu(emu_live: ExchangeEmulator) -> Iterator[ExchangeEmulator]:
    emu_live.ws.reset()
    yield emu_live
    emu_live.ws.reset()


@pytest.fixture
async def pro(emu: ExchangeEmulator, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    ex = emu.ccxt(request.param, pro=True, timeout=5_000)
    await ex.load_markets()
    try:
        yield ex
    finally:
        await ex.close()


def _ws(emu: ExchangeEmulator, host: str, path: str) -> str:
    return f"ws://127.0.0.1:{emu.port}/_ws/{host}{path}"


async def _recv_json(ws: aiohttp.ClientWebSocketResponse, wait: float = 5.0) -> Any:
    msg = await asyncio.wait_for(ws.receive(), wait)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data) if msg.data not in ("pong",) else msg.data


def _last_subscription(emu: ExchangeEmulator, stream: str) -> int:
    subs = [s for s in emu.ws.subscriptions if s.stream == stream and s.action == "subscribe"]
    assert subs, f"no subscription to {stream}: {emu.ws.subscriptions}"
    return subs[-1].time


async def _collect_trades(ex: Any, symbol: str, seconds: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await asyncio.wait_for(ex.watch_trades(symbol), 5)
    return got


# --------------------------------------------------------------------------- URLs


def test_ws_urls_keep_the_original_host() -> None:
    assert (
        redirect_ws_url("wss://fstream.binance.com/ws", "http://127.0.0.1:9")
        == "ws://127.0.0.1:9/_ws/fstream.binance.com/ws"
    )
    ex = ccxt.pro.binance()
    redirect_urls(ex, "http://127.0.0.1:9")
    ws = ex.urls["api"]["ws"]
    assert ws["spot"] == "ws://127.0.0.1:9/_ws/stream.binance.com/ws"
    assert ws["linear"] == "ws://127.0.0.1:9/_ws/fstream.binance.com/ws"
    assert ws["ws-api"]["spot"] == "ws://127.0.0.1:9/_ws/ws-api.binance.com/ws-api/v3"
    assert ex.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    okx = ccxt.pro.okx()
    redirect_urls(okx, "http://127.0.0.1:9")
    assert okx.urls["api"]["ws"] == "ws://127.0.0.1:9/_ws/ws.okx.com/ws/v5"


async def test_unknown_host_is_404(emu: ExchangeEmulator) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(_ws(emu, "stream.unknown-venue.example", "/v5/public/spot"))


# --------------------------------------------------------------------------- trades


@pytest.mark.parametrize(
    ("pro", "symbol", "stream"),
    [
        ("binance", "BTC/USDT", "btcusdt@trade"),
        ("binanceusdm", "BTC/USDT:USDT", "btcusdt@trade"),
        ("okx", "BTC/USDT", "trades:BTC-USDT"),
    ],
    indirect=["pro"],
)
async def test_watch_trades_equal_the_market(
    emu: ExchangeEmulator, pro: Any, symbol: str, stream: str
) -> None:
    got = await asyncio.wait_for(pro.watch_trades(symbol), 5)  # first, wait for the day's trades
    got += await _collect_trades(pro, symbol, 1.5)
    since = _last_subscription(emu, stream)
    assert len(got) >= 5
    truth = emu.market.trades(pro.id, symbol, since, got[-1]["timestamp"] + 1)
    assert [t["id"] for t in got] == [str(i) for i in truth.id]
    assert [t["timestamp"] for t in got] == truth.timestamp.tolist()
    assert [t["price"] for t in got] == truth.price.tolist()
    assert [t["side"] for t in got] == truth.side.tolist()
    if ":" not in symbol or pro.id != "okx":
        assert [t["amount"] for t in got] == truth.amount.tolist()


# --------------------------------------------------------------------------- candles


async def test_binance_closed_kline_equals_rest(emu: ExchangeEmulator) -> None:
    async with aiohttp.ClientSession() as s:
        url = _ws(emu, "stream.binance.com", "/stream?streams=btcusdt@kline_1s")
        async with s.ws_connect(url) as ws:
            updates = []
            while True:
                msg = await _recv_json(ws)
                assert msg["stream"] == "btcusdt@kline_1s"
                updates.append(msg["data"]["k"])
                if msg["data"]["k"]["x"]:
                    break
    final = updates[-1]
    truth = emu.market.candles("binance", "BTC/USDT", "1s", final["t"], final["t"] + 1)
    row = [final["t"], *(float(final[f]) for f in "ohlcv")]
    assert row == truth.to_list()[0]
    assert final["n"] == int(truth.trades[0])
    assert final["T"] == final["t"] + 999
    ex = emu.ccxt("binance", async_=False)
    rest = ex.fetch_ohlcv("BTC/USDT", "1s", since=final["t"], limit=1)
    assert rest == [row]


async def test_okx_confirmed_candle_equals_rest(emu: ExchangeEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "ws.okx.com", "/ws/v5/business")) as ws,
    ):
        arg = {"channel": "candle1s", "instId": "BTC-USDT"}
        await ws.send_str(json.dumps({"op": "subscribe", "args": [arg]}))
        ack = await _recv_json(ws)
        assert ack["event"] == "subscribe" and ack["arg"] == arg
        while True:
            msg = await _recv_json(ws)
            row = msg["data"][0]
            if row[8] == "1":
                break
    truth = emu.market.candles("okx", "BTC/USDT", "1s", int(row[0]), int(row[0]) + 1)
    assert [int(row[0]), *(float(x) for x in row[1:6])] == truth.to_list()[0]


async def test_okx_candles_only_on_business(emu: ExchangeEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "ws.okx.com", "/ws/v5/public")) as ws,
    ):
        arg = {"channel": "candle1m", "instId": "BTC-USDT"}
        await ws.send_str(json.dumps({"op": "subscribe", "args": [arg]}))
        err = await _recv_json(ws)
        assert err["event"] == "error" and err["code"] == "60018"
        await ws.send_str("ping")
        assert await _recv_json(ws) == "pong"


@pytest.mark.parametrize(
    ("pro", "symbol"), [("binance", "BTC/USDT"), ("okx", "BTC/USDT")], indirect=["pro"]
)
async def test_watch_ohlcv(emu: ExchangeEmulator, pro: Any, symbol: str) -> None:
    candles = await asyncio.wait_for(pro.watch_ohlcv(symbol, "1m"), 5)
    t = candles[-1][0]
    assert (
        t == emu.market.now() // 60_000 * 60_000 or t == (emu.market.now() // 60_000 - 1) * 60_000
    )
    assert candles[-1][5] > 0


# --------------------------------------------------------------------------- tickers, books, funding


@pytest.mark.parametrize(
    ("pro", "symbol"),
    [("binance", "BTC/USDT"), ("binanceusdm", "BTC/USDT:USDT"), ("okx", "BTC/USDT")],
    indirect=["pro"],
)
async def test_watch_ticker(emu: ExchangeEmulator, pro: Any, symbol: str) -> None:
    ticker = await asyncio.wait_for(pro.watch_ticker(symbol), 5)
    assert ticker["symbol"] == symbol
    assert ticker["last"] > 0 and ticker["high"] >= ticker["low"]
    last = emu.market.trades(pro.id, symbol, emu.market.now() - 60_000, emu.market.now())
    assert abs(ticker["last"] - last.price[-1]) / ticker["last"] < 0.01


@pytest.mark.parametrize(
    ("pro", "symbol", "limit"),
    [
        ("binance", "BTC/USDT", None),
        ("binanceusdm", "BTC/USDT:USDT", None),
        ("okx", "BTC/USDT", None),
        ("okx", "BTC/USDT:USDT", 5),
    ],
    indirect=["pro"],
)
async def test_watch_order_book(
    emu: ExchangeEmulator, pro: Any, symbol: str, limit: int | None
) -> None:
    for _ in range(5):  # several diffs applied on top of the snapshot without a nonce error
        book = await asyncio.wait_for(pro.watch_order_book(symbol, limit), 5)
    bids, asks = book["bids"], book["asks"]
    assert bids and asks and bids[0][0] < asks[0][0]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    if pro.id == "binance" or pro.id == "binanceusdm":
        # the diff-maintained book equals a fresh REST snapshot at the same update id
        from mdcollect.testing._book import book_at

        truth = book_at(emu.market, "binance", symbol, book["nonce"] * 100)
        spec = emu.market.spec("binance", symbol)
        px = 10**spec.price_decimals
        assert bids[0][0] == truth.bids[0][0] / px and asks[0][0] == truth.asks[0][0] / px


@pytest.mark.parametrize("pro", ["okx"], indirect=True)
async def test_okx_watch_funding_rate(emu: ExchangeEmulator, pro: Any) -> None:
    fr = await asyncio.wait_for(pro.watch_funding_rate("BTC/USDT:USDT"), 5)
    now = emu.market.now()
    assert fr["symbol"] == "BTC/USDT:USDT"
    assert fr["fundingRate"] == pytest.approx(emu.market.funding_rate("okx", "BTC/USDT:USDT", now))


@pytest.mark.parametrize("pro", ["binanceusdm"], indirect=True)
async def test_binance_watch_mark_price(emu: ExchangeEmulator, pro: Any) -> None:
    tick = await asyncio.wait_for(pro.watch_mark_price("BTC/USDT:USDT"), 5)
    mark = emu.market.mark_price("binance", "BTC/USDT:USDT", tick["timestamp"])
    assert tick["markPrice"] == pytest.approx(mark, rel=1e-9)
    assert float(tick["info"]["r"]) == pytest.approx(
        emu.market.funding_rate("binance", "BTC/USDT:USDT", tick["timestamp"])
    )


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("pro", ["binance"], indirect=True)
async def test_drop_rejects_then_reconnects_without_replay(emu: ExchangeEmulator, pro: Any) -> None:
    await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 5)
    before = len(emu.ws.connections)
    emu.ws.pause(venue="binance")  # so that the watch below is pending when the drop comes
    await asyncio.sleep(0.2)  # let messages in flight land
    pending = asyncio.ensure_future(pro.watch_trades("BTC/USDT"))
    await asyncio.sleep(0.1)
    dropped = emu.market.now()
    assert emu.ws.drop(venue="binance") >= 1
    emu.ws.resume()
    # ccxt rejects a pending watch with NetworkError (a watch made after the drop
    # reconnects silently instead)
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, 5)
    # trades made while disconnected are lost to the ws client: wait until there are some
    deadline = time.monotonic() + 10
    while len(emu.market.trades("binance", "BTC/USDT", dropped + 100, emu.market.now())) < 3:
        assert time.monotonic() < deadline, "no trades while disconnected"
        await asyncio.sleep(0.05)
    got = await _collect_trades(pro, "BTC/USDT", 1.0)  # ccxt reconnects on the next watch
    assert len(emu.ws.connections) == before + 1
    since = _last_subscription(emu, "btcusdt@trade")
    new = [t for t in got if t["timestamp"] >= since]  # ccxt also returns cached old trades
    truth = emu.market.trades("binance", "BTC/USDT", since, new[-1]["timestamp"] + 1)
    assert [t["id"] for t in new] == [str(i) for i in truth.id]
    lost = emu.market.trades("binance", "BTC/USDT", dropped + 100, since)
    assert len(lost) > 0
    assert not {str(i) for i in lost.id} & {t["id"] for t in got}  # not replayed


async def test_silence_times_out_ccxt_keepalive(emu: ExchangeEmulator) -> None:
    ex = emu.ccxt("binance", pro=True, streaming={"keepAlive": 300})
    try:
        await asyncio.wait_for(ex.watch_trades("BTC/USDT"), 5)
        emu.ws.silence(3)
        started = time.monotonic()
        with pytest.raises(ccxt.RequestTimeout):
            for _ in range(100):
                await asyncio.wait_for(ex.watch_trades("BTC/USDT"), 5)
        assert time.monotonic() - started < 2.5  # two missed pongs, not the silence's end
    finally:
        await ex.close()


async def test_silence_raw_sends_nothing(emu: ExchangeEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "stream.binance.com", "/ws/btcusdt@trade")) as ws,
    ):
        await _recv_json(ws)
        conn = emu.ws.open_connections[-1].id
        emu.ws.silence(0.6, connection=conn)
        await ws.ping()
        while True:  # drain what was in flight
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.15)
            except TimeoutError:
                break
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PONG)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)
        after = await _recv_json(ws, 2)  # data flows again, from later trades only
        assert after["e"] == "trade"


@pytest.mark.parametrize("pro", ["binance"], indirect=True)
async def test_malformed_frame_in_ccxt(emu: ExchangeEmulator, pro: Any) -> None:
    await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 5)
    emu.ws.send_malformed(1, venue="binance")
    # ccxt's receive loop dies on a frame that starts like JSON but does not parse:
    # the connection stays open yet nothing is delivered any more, so the caller
    # must notice the stale feed (a timeout) and reconnect.
    with pytest.raises(TimeoutError):
        for _ in range(100):
            await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 1.0)


async def test_malformed_raw(emu: ExchangeEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "stream.binance.com", "/ws/btcusdt@aggTrade")) as ws,
    ):
        await _recv_json(ws)
        emu.ws.send_malformed(1, connection=emu.ws.open_connections[-1].id)
        texts = [(await asyncio.wait_for(ws.receive(), 5)).data for _ in range(8)]
    bad = [t for t in texts if not _parses(t)]
    assert len(bad) == 1
    good = texts[texts.index(bad[0]) + 1]
    assert good.startswith(bad[0])


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("pro", ["binance"], indirect=True)
async def test_duplicates_reach_ccxt(emu: ExchangeEmulator, pro: Any) -> None:
    await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 5)
    emu.ws.duplicate(1.0, venue="binance")
    got = await _collect_trades(pro, "BTC/USDT", 1.0)
    ids = [t["id"] for t in got]
    assert len(ids) > len(set(ids))  # ccxt passes duplicates on: consumers must dedupe by id
    emu.ws.duplicate(0, venue="binance")


@pytest.mark.parametrize("pro", ["okx"], indirect=True)
async def test_pause_holds_then_delivers_everything(emu: ExchangeEmulator, pro: Any) -> None:
    await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 5)
    since = _last_subscription(emu, "trades:BTC-USDT")
    got: list[dict[str, Any]] = []
    emu.ws.pause(venue="okx")
    await asyncio.sleep(0.2)  # let in-flight messages land
    with pytest.raises(TimeoutError):
        while True:
            await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 0.6)
    emu.ws.resume(venue="okx")
    got = await _collect_trades(pro, "BTC/USDT", 0.5)
    assert len(emu.ws.open_connections) >= 1
    truth = emu.market.trades("okx", "BTC/USDT", since, got[-1]["timestamp"] + 1)
    ids = [str(i) for i in truth.id]
    first = ids.index(got[0]["id"])
    assert [t["id"] for t in got] == ids[first:]  # the held backlog, nothing missing


# --------------------------------------------------------------------------- recorded formats


def _samples(name: str) -> list[Any]:
    return [json.loads(line)["msg"] for line in (SAMPLES / name).read_text().splitlines() if line]


def _shape(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(obj[0])] if obj else []
    return type(obj).__name__


def _by_event(msgs: list[Any]) -> dict[str, Any]:
    return {m["data"]["e"]: _shape(m) for m in msgs}


@pytest.mark.parametrize(
    ("host", "sample"),
    [
        ("stream.binance.com", "binance_spot_aggTrade_kline1m_2021-10-12.jsonl"),
        ("fstream.binance.com", "binance_futures_aggTrade_kline1m_2021-07-22.jsonl"),
    ],
)
async def test_binance_formats_match_recordings(
    emu: ExchangeEmulator, host: str, sample: str
) -> None:
    expected = _by_event(_samples(sample))
    url = _ws(emu, host, "/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m")
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        while len({m["data"]["e"] for m in got}) < 2:
            got.append(await _recv_json(ws))
    shapes = _by_event(got)
    assert shapes == expected
    for m in got:
        assert m["stream"] in ("btcusdt@aggTrade", "btcusdt@kline_1m")
        assert list(m["data"]) == list(_first(sample, m["data"]["e"])["data"])


def _first(sample: str, event: str) -> Any:
    return next(m for m in _samples(sample) if m["data"]["e"] == event)


async def test_okx_trades_format_matches_recording(emu: ExchangeEmulator) -> None:
    expected = _samples("okx_v5_trades_2022-05-13.jsonl")[0]
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "ws.okx.com", "/ws/v5/public")) as ws,
    ):
        arg = {"channel": "trades", "instId": "BTC-USDT"}
        await ws.send_str(json.dumps({"op": "subscribe", "args": [arg]}))
        await _recv_json(ws)
        msg = await _recv_json(ws)
    assert _shape(msg) == _shape(expected)
    assert list(msg["data"][0]) == list(expected["data"][0])


# --------------------------------------------------------------------------- heartbeats


async def _pings(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> int:
    """Ping frames received (and answered) within ``seconds``; data frames are skipped."""
    n = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.PING:
            n += 1
            await ws.pong(msg.data)
    return n


async def test_server_pings_follow_the_venue_and_the_switch(emu: ExchangeEmulator) -> None:
    url = _ws(emu, "stream.binance.com", "/ws")
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, autoping=False) as ws:
            assert await _pings(ws, 0.6) == 0  # Binance spot pings every 20 s
            emu.ws.server_pings(0.1, venue="binance")
            assert 3 <= await _pings(ws, 0.7) <= 8
            conn = emu.ws.open_connections[-1].id
            emu.ws.silence(0.6)
            assert await _pings(ws, 0.5) == 0  # a silent connection does not ping either
            emu.ws.server_pings(None)
            await asyncio.sleep(0.2)
            sent = emu.ws.pings_sent(conn)
            assert await _pings(ws, 0.5) == 0 and emu.ws.pings_sent(conn) == sent
        emu.ws.server_pings(0.1)  # without a venue: every venue, OKX included
        async with s.ws_connect(_ws(emu, "ws.okx.com", "/ws/v5/public"), autoping=False) as ws:
            assert await _pings(ws, 0.6) >= 3


async def test_server_pings_are_a_heartbeat_of_a_quiet_feed(emu: ExchangeEmulator) -> None:
    """ccxt pings Binance only every 180 s; the server's own pings keep the heartbeat fresh."""
    from mdcollect.exchanges import ExchangeClient

    client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
    try:
        await asyncio.wait_for(client.watch_trades("BTC/USDT"), 5)
        emu.ws.pause(venue="binance")
        await asyncio.sleep(1.0)  # a quiet second: nothing but server pings from now on
        switched = emu.market.now()
        emu.ws.server_pings(0.2, venue="binance")
        # the heartbeat moves on with every ping (waited for: no fixed sleep)
        beats: list[int] = []
        deadline = time.monotonic() + 10
        while len(beats) < 3 and time.monotonic() < deadline:
            last = client.ws_last_message()
            if last is not None and last > switched and (not beats or last > beats[-1]):
                beats.append(last)
            await asyncio.sleep(0.02)
        assert len(beats) == 3, beats
        emu.ws.server_pings(None)
        await asyncio.sleep(1.0)
        last = client.ws_last_message()
        assert last is not None and emu.market.now() - last >= 900  # truly quiet now
    finally:
        emu.ws.resume()
        await client.close()


# --------------------------------------------------------------------------- liquidations


async def test_bybit_protocol_acks_pings_and_unknown_topics(emu: ExchangeEmulator) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(_ws(emu, "stream.bybit.com", "/v5/public/linear")) as ws,
    ):
        await ws.send_str(json.dumps({"op": "ping", "req_id": "1"}))
        pong = await _recv_json(ws)
        assert pong["ret_msg"] == "pong" and pong["success"] and pong["req_id"] == "1"
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "2", "args": ["nope.X"]}))
        err = await _recv_json(ws)
        assert not err["success"] and "nope.X" in err["ret_msg"]
        topic = "allLiquidation.BTCUSDT"
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "3", "args": [topic]}))
        ack = await _recv_json(ws)
        assert ack == {**ack, "success": True, "op": "subscribe", "req_id": "3"}
        since = _last_subscription(emu, topic)
        msg = await _recv_json(ws)
    # what was pushed: every forced order since the subscription, up to the push
    assert msg["topic"] == topic and msg["type"] == "snapshot"
    published = msg["ts"] - LIQUIDATION_LAG_MS
    truth = emu.market.raw_liquidations("bybit", "BTC/USDT:USDT", since, published)
    assert [(d["T"], d["S"]) for d in msg["data"]] == [
        (t, "Sell" if buy else "Buy") for t, buy, _, _ in truth.rows()
    ]


@pytest.mark.parametrize("pro", ["binanceusdm", "okx", "bybit"], indirect=True)
async def test_watch_liquidations_equal_the_truth(emu: ExchangeEmulator, pro: Any) -> None:
    """ccxt.pro parses each venue's stream into the market's liquidations (the ones
    ccxt hands over, a burst's others staying in its cache)."""
    symbol = "BTC/USDT:USDT"
    got = await asyncio.wait_for(pro.watch_liquidations(symbol), 10)
    (liq,) = got
    t = liq["timestamp"]
    truth = emu.market.liquidations(pro.id, symbol, t, t + 1)
    cs = pro.market(symbol)["contractSize"] or 1
    side = liq["side"] if pro.id != "bybit" else {"buy": "sell", "sell": "buy"}[liq["side"]]
    assert (side, liq["price"]) in list(zip(truth["side"], truth["price"], strict=True))
    assert any(abs(liq["contracts"] * cs - a) < 1e-12 for a in truth["amount"])


@pytest.mark.parametrize("pro", ["binanceusdm"], indirect=True)
async def test_binance_all_market_force_orders(emu: ExchangeEmulator, pro: Any) -> None:
    """``!forceOrder@arr`` (ccxt: no symbols) carries every perpetual's forced orders."""
    seen: set[str] = set()
    while len(seen) < 2:
        (liq,) = await asyncio.wait_for(pro.watch_liquidations_for_symbols([]), 10)
        t = liq["timestamp"]
        truth = emu.market.liquidations("binanceusdm", liq["symbol"], t, t + 1)
        assert list(truth["amount"]) == [liq["contracts"]]
        seen.add(liq["symbol"])
    assert seen <= {s for s in emu.market.symbols("binanceusdm") if ":" in s}
    assert any(s.stream == "!forceOrder@arr" for s in emu.ws.subscriptions)
