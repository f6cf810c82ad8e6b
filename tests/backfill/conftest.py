"""Fixtures for backfill tests: an emulator and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mdcollect.testing import ExchangeEmulator


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    """The emulator with real rate limits off (tests of limits turn them on themselves)."""
    with ExchangeEmulator(rate_limits=False) as e:
        yield e
