"""Fixtures for the emulator tests: one emulator per module, its clock frozen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_helpers import NOW

from mdcollect.testing import ExchangeEmulator


@pytest.fixture(scope="module")
def emu_server() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(seed=7, clock=lambda: NOW, rate_limits=False) as emu:
        yield emu


@pytest.fixture
def emu(emu_server: ExchangeEmulator) -> Iterator[ExchangeEmulator]:
    """The module's emulator with faults, limiter state and request log reset."""
    emu_server.faults.clear()
    emu_server.limiter.reset()
    emu_server.clear_requests()
    yield emu_server
    emu_server.faults.clear()
    emu_server.limiter.reset()
