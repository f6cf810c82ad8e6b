"""Progress bars of ensure_data: labelled per dataset, shown only where someone watches."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import termios
import threading
from collections.abc import Iterator

import pytest

from mdcollect import ensure_data, open_storage
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator

PAIR = ["BTC/USDT", "ETH/USDT"]


def client(emu: ExchangeEmulator) -> ExchangeClient:
    retry = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False, retry=retry)


@contextlib.contextmanager
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``sys.stderr`` is a real terminal (a pty, 100 columns); what was drawn on it is
    in the yielded list once the block ends."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # so that a full pty buffer never blocks the writer
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    tty = os.fdopen(slave, "w", encoding="utf-8")
    drawn: list[str] = []
    try:
        with monkeypatch.context() as m:
            m.setattr(sys, "stderr", tty)
            yield drawn
    finally:
        tty.close()
        reader.join(timeout=30)
        os.close(master)
    assert not reader.is_alive()
    drawn.append(b"".join(chunks).decode("utf-8", "replace"))


def test_progress_bars_on_a_terminal_are_labelled_per_dataset(
    emu: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_storage("memory://")
    with terminal_stderr(monkeypatch) as drawn:
        r = ensure_data(PAIR, "1h", "2024-01-01", "2024-01-31", client(emu), 0, store)
    assert r.ok and r.candles_fetched == 2 * 744
    assert "binance BTC/USDT 1h:   0%" in drawn[0]
    assert "binance ETH/USDT 1h:   0%" in drawn[0]
    assert "0/744 [" in drawn[0] and "candle/s" in drawn[0]


def test_no_progress_bar_with_progress_false(
    emu: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_storage("memory://")
    with terminal_stderr(monkeypatch) as drawn:
        r = ensure_data(PAIR, "1h", "2024-01-01", "2024-01-31", client(emu), 0, store,
                        progress=False)  # fmt: skip
    assert r.candles_fetched == 2 * 744
    assert drawn == [""]


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    emu: ExchangeEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = open_storage("memory://")
    r = ensure_data(PAIR, "1h", "2024-01-01", "2024-01-31", client(emu), 0, store)
    assert r.candles_fetched == 2 * 744
    assert capfd.readouterr() == ("", "")


def test_progress_callback_counts_each_datasets_candles(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    seen: dict[str, list[tuple[int, int]]] = {}
    r = ensure_data(PAIR, "1m", "2024-01-01", "2024-01-01", client(emu), 0, store,
                    progress=False, concurrency=2,
                    progress_callback=lambda job, done, total: seen.setdefault(
                        job.key.symbol, []).append((done, total)))  # fmt: skip
    assert r.ok
    # windows of a page (1000 candles): 1000 + 440
    assert seen == {sym: [(1000, 1440), (1440, 1440)] for sym in PAIR}
