"""An exchange that cannot be reached: one line saying why, markets loaded once per call,
permanent failures not retried, nothing chained to internals, no unclosed sessions."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import mdcollect
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(client: ExchangeClient) -> BaseException:
    """``load_ohlcv`` of two symbols, as a user calls it; returns what it raised."""
    with pytest.raises(mdcollect.ExchangeError) as info:
        mdcollect.load_ohlcv(SYMBOLS, "1h", "2024-01-01", "2024-01-02", exchange=client,
                             storage=mdcollect.open_storage("memory://"), progress=False)  # fmt: skip
    return info.value


def chain(exc: BaseException) -> list[BaseException]:
    out, cur = [], exc
    while cur is not None:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__  # type: ignore[assignment]
    return out


def check_one_line(exc: BaseException, *needles: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text
    # the sync wrapper's loop probe is not part of the story
    assert not any("no running event loop" in str(e) for e in chain(exc))
    shown = "".join(traceback.format_exception_only(type(exc), exc))
    assert shown.startswith("mdcollect.ExchangeError: "), shown


def test_connection_refused_names_host_and_port_and_loads_markets_once() -> None:
    port = closed_port()
    c = ExchangeClient("binance", base_url=f"http://127.0.0.1:{port}", retry=FAST)
    exc = load(c)
    check_one_line(exc, f"connection refused by 127.0.0.1:{port}")
    # markets once for the call, with its retries; not once per symbol (was 2 x 5)
    assert c.request_count == FAST.max_attempts


def test_tls_failure_is_permanent_and_says_tls(emu: ExchangeEmulator) -> None:
    c = ExchangeClient("binance", base_url=emu.url.replace("http://", "https://"), retry=FAST)
    exc = load(c)
    check_one_line(exc, f"TLS handshake with 127.0.0.1:{emu.port} failed")
    assert c.request_count == 1


def test_unresolvable_host_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # a DNS failure cannot be produced for real without a resolver to ask (and this
    # machine's is not on loopback): the lookup itself is the fault injected here
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    c = ExchangeClient("binance", base_url="http://api.binance.invalid", retry=FAST)
    exc = load(c)
    check_one_line(exc, "cannot resolve host api.binance.invalid", "DNS")
    assert c.request_count == 1


@pytest.mark.parametrize(
    ("key", "kind", "status"),
    [("binance", "451", 451), ("bybit", "403", 403), ("binance", "403", 403)],
)
def test_geo_block_says_so_and_is_not_retried(
    emu: ExchangeEmulator, key: str, kind: str, status: int
) -> None:
    emu.faults.add(Fault(kind, exchange=key))
    c = ExchangeClient(key, base_url=emu.url, retry=FAST, enableRateLimit=False)
    exc = load(c)
    check_one_line(exc, f"HTTP {status} from 127.0.0.1", "geo-blocked")
    assert not exc.transient  # type: ignore[attr-defined]
    assert c.request_count == 1
    assert [r.status for r in emu.requests] == [status]


def test_exceptions_are_shown_under_their_public_module() -> None:
    for cls in (mdcollect.MdcollectError, mdcollect.InvalidRequest, mdcollect.StorageError,
                mdcollect.ExchangeError, mdcollect.RemoteError):  # fmt: skip
        assert cls.__module__ == "mdcollect"
        assert getattr(mdcollect, cls.__name__) is cls


SCRIPT = """
import asyncio, gc, socket, mdcollect
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator
fast = RetryPolicy(max_attempts=2, base_delay=0.001)
kw = dict(storage="memory://", progress=False)
with ExchangeEmulator(rate_limits=False) as emu:
    for call in (
        lambda: mdcollect.ensure_data(["NOPE/USDT"], "1h", "2024-01-01", "2024-01-02",
                                      exchange="binance", emulate=True, **kw),
        lambda: mdcollect.load_ohlcv("NOPE/USDT", "1h", "2024-01-01", "2024-01-02",
                                     exchange=emu.client("binance"), **kw),
        lambda: mdcollect.load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02",
                                     exchange=ExchangeClient("binance", retry=fast,
                                         base_url="http://127.0.0.1:%d"), **kw),
    ):
        try:
            call()
        except mdcollect.MdcollectError as exc:
            print("raised", type(exc).__name__)
    async def in_loop():
        try:
            await mdcollect.ensure_data_async(["NOPE/USDT"], "1h", "2024-01-01", "2024-01-02",
                                              exchange="binance", emulate=True, **kw)
        except mdcollect.InvalidRequest:
            print("raised InvalidRequest")
    asyncio.run(in_loop())
    gc.collect()
"""


def test_refused_symbol_and_clean_errors_leave_nothing_unclosed(tmp_path: Any) -> None:
    script = textwrap.dedent(SCRIPT) % closed_port()
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=120,
        env={"MDCOLLECT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["raised InvalidRequest", "raised InvalidRequest",
                                           "raised ExchangeError", "raised InvalidRequest"]  # fmt: skip
    for needle in ("Unclosed", "release all resources", "was never awaited"):
        assert needle not in proc.stderr, proc.stderr
