"""Historical data: fill exactly what storage lacks, window by window.

Strategies share one loop (:func:`run_jobs`): split each missing range into
windows, fetch each with retries, write it with ``covered=`` the range it
confirmed, report progress, stop cleanly when cancelled, resume from coverage.

* :class:`OHLCVBackfill` pages the exchange's candle endpoint.
* :class:`TradesBackfill` pages trades, storing them or resampling them into
  candles (for exchanges with shallow candle history, such as Kraken).
* :class:`FundingBackfill` pages the funding history (one row per settlement).
* :class:`OpenInterestBackfill` pages the open-interest history at the exchange's
  period; :func:`open_interest_job` refuses ranges older than the exchange keeps.
* :func:`make_job` picks a candle strategy; ``make_job(..., kind="mark")`` (or
  ``"index"``, ``"premium"``: :data:`CANDLE_KINDS`) pages that price's candle
  endpoint. :data:`JOBS` maps each kind of history (:data:`HISTORY_KINDS`) to the
  job that fills it.

>>> from mdcollect.backfill import backfill
>>> reports = await backfill(client, storage, ["BTC/USDT"], "1m", start_ms, end_ms)
"""

from __future__ import annotations

from .._keys import CANDLE_KINDS, HISTORY_KINDS, TIMEFRAME_KINDS, CandleKind, HistoryKind
from ._engine import (
    BackfillJob,
    Chunk,
    JobReport,
    Plan,
    ProgressCallback,
    ProgressFeed,
    initial_reports,
    plan_jobs,
    run_jobs,
    split_windows,
)
from ._strategies import (
    FUNDING_PERIOD,
    JOBS,
    STRATEGIES,
    FundingBackfill,
    JobMaker,
    OHLCVBackfill,
    OpenInterestBackfill,
    Strategy,
    TradesBackfill,
    check_kind,
    check_kinds,
    check_strategy,
    funding_job,
    history_floor,
    make_job,
    oldest_open_interest,
    open_interest_job,
)

__all__ = [
    "CANDLE_KINDS",
    "FUNDING_PERIOD",
    "HISTORY_KINDS",
    "JOBS",
    "STRATEGIES",
    "TIMEFRAME_KINDS",
    "BackfillJob",
    "CandleKind",
    "Chunk",
    "FundingBackfill",
    "HistoryKind",
    "JobMaker",
    "JobReport",
    "OHLCVBackfill",
    "OpenInterestBackfill",
    "Plan",
    "ProgressCallback",
    "ProgressFeed",
    "Strategy",
    "TradesBackfill",
    "check_kind",
    "check_kinds",
    "check_strategy",
    "funding_job",
    "history_floor",
    "initial_reports",
    "make_job",
    "oldest_open_interest",
    "open_interest_job",
    "plan_jobs",
    "run_jobs",
    "split_windows",
]
