"""Historical data: fill exactly what storage lacks, window by window.

Strategies share one loop (:func:`run_jobs`): split each missing range into
windows, fetch each with retries, write it with ``covered=`` the range it
confirmed, report progress, stop cleanly when cancelled, resume from coverage.

* :class:`OHLCVBackfill` pages the exchange's candle endpoint.
* :class:`TradesBackfill` pages trades, storing them or resampling them into
  candles (for exchanges with shallow candle history, such as Kraken).
* :func:`make_job` picks one; ``make_job(..., kind="mark")`` (or ``"index"``,
  ``"premium"``: :data:`CANDLE_KINDS`) pages that price's candle endpoint.

>>> from mdcollect.backfill import backfill
>>> reports = await backfill(client, storage, ["BTC/USDT"], "1m", start_ms, end_ms)
"""

from __future__ import annotations

from .._keys import CANDLE_KINDS, CandleKind
from ._engine import (
    BackfillJob,
    Chunk,
    JobReport,
    Plan,
    ProgressCallback,
    initial_reports,
    plan_jobs,
    run_jobs,
    split_windows,
)
from ._strategies import (
    STRATEGIES,
    OHLCVBackfill,
    Strategy,
    TradesBackfill,
    check_strategy,
    make_job,
)

__all__ = [
    "CANDLE_KINDS",
    "STRATEGIES",
    "BackfillJob",
    "CandleKind",
    "Chunk",
    "JobReport",
    "OHLCVBackfill",
    "Plan",
    "ProgressCallback",
    "Strategy",
    "TradesBackfill",
    "check_strategy",
    "initial_reports",
    "make_job",
    "plan_jobs",
    "run_jobs",
    "split_windows",
]
