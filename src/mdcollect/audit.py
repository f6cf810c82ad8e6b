"""``audit``: check the rows a store holds, score each dataset, repair what can be refetched.

Coverage says which ranges mdcollect believes complete; the audit checks the rows
themselves, per dataset, with exact timestamps:

* structure: holes inside coverage (candle kinds: grid rows missing; funding: more
  than 8 hours without a settlement), candles off their timeframe's grid, duplicate
  timestamps (trades: duplicate ids), unsorted rows; rows outside coverage (a
  warning: coverage may lag data);
* values: OHLC invariants (high is the max and low the min of open, high, low,
  close), negative prices or sizes, NaN where a value is required;
* suspicious values (warnings): zero-volume runs longer than ``zero_volume_run``
  candles, price jumps beyond ``jump_mads`` median absolute deviations of the log
  returns of close;
* across kinds, where both are stored: candles equal the candles re-aggregated from
  stored trades (:func:`mdcollect.aggregate.trades_to_ohlcv`), mark and last
  closes within ``mark_band`` (a warning), funding rows on the exchange's
  settlement times (the registry's :attr:`FundingHistory.settles_on
  <mdcollect.exchanges.FundingHistory>`: every interval, 1 h to 8 h, lands on it,
  so a symbol whose interval changed stays exact).

Every check is vectorised over the dataset's arrays (numpy), so a year of 1m candles
is audited in a fraction of a second, reading included (``bench/audit.py``).

The score of a dataset is ``max(0, 1 - (E + W / 4) / N)``: ``E`` rows (or missing
rows) affected by error findings, ``W`` by warnings, ``N`` the rows stored in the
range plus the rows missing from its holes; an empty, clean dataset scores 1.

``repair=True`` deletes each error finding's span (rows and coverage, aligned to
whole candles) and refetches exactly those spans through the backfill engine, then
audits again. What the exchange cannot give back (before a listing, older than it
keeps) stays in the report; a span whose refetch failed keeps its findings with the
reason.

>>> report = audit(storage)
>>> report.ok, report.datasets[0].score
(True, 1.0)
>>> audit(storage, ["binance:ohlcv:1m:BTC/USDT"], "2024-01-01", "2024-01-31",
...       repair=True, exchange="binance")
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import types
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeAlias

from attrs import evolve

from ._audit import (
    CHECKS,
    JUMP_MADS,
    MARK_BAND,
    MAX_FINDINGS,
    WARNING_CHECKS,
    WARNING_WEIGHT,
    ZERO_VOLUME_RUN,
    AuditParams,
    AuditReport,
    Check,
    DatasetAudit,
    Finding,
    audit_datasets,
    in_ranges,
    repair_span,
    score,
    sorted_unique,
)
from ._errors import ExchangeError, InvalidRequest
from ._human import plural
from ._intervals import Interval, IntervalSet
from ._keys import HISTORY_KINDS, DatasetKey
from ._rules import check_number
from ._sync import run_sync
from ._time import index_ms, time_range
from .ensure import backfill_async, emulate_default, releasing
from .exchanges import ExchangeClient, exchange_info
from .storage import DataCollectionStorage, default_storage, emulated_storage_url, open_storage

__all__ = [
    "CHECKS",
    "JUMP_MADS",
    "MARK_BAND",
    "MAX_FINDINGS",
    "WARNING_CHECKS",
    "WARNING_WEIGHT",
    "ZERO_VOLUME_RUN",
    "AuditReport",
    "Check",
    "DatasetAudit",
    "Finding",
    "audit",
    "audit_async",
]

log = logging.getLogger("mdcollect.audit")

#: A storage or its URL; ``None`` is :func:`mdcollect.default_storage`.
Storage: TypeAlias = DataCollectionStorage | str | None

# -- repair --------------------------------------------------------------------------------


def _rewrite_sorted(store: DataCollectionStorage, key: DatasetKey, bad: IntervalSet) -> None:
    """Unsorted or duplicate rows: keep the good rows sorted, without the bad spans.

    A span cannot be deleted from unsorted rows reliably (a backend slices by binary
    search), so the dataset is rewritten once: the good rows, sorted, with their
    coverage; the bad spans are then refetched like any other.
    """
    frame = store.read(key)
    cov = store.coverage(key)
    ts = index_ms(frame)
    keep = ~in_ranges(ts, bad)
    good = sorted_unique(frame[keep])
    store.delete(key)
    rest = cov - bad
    store.write(key, good, covered=rest if rest else None)


async def _client(name: str, emulate: bool) -> ExchangeClient:
    """A client of exchange ``name``: of the shared emulator when emulating."""
    if not emulate:
        return ExchangeClient(name)
    from .testing import shared_emulator

    emu = await asyncio.to_thread(shared_emulator)  # starts a server: off the loop
    return emu.client(name)


async def _repair(
    store: DataCollectionStorage,
    datasets: Sequence[DatasetAudit],
    exchange: ExchangeClient | str | None,
    clock: Callable[[], int] | None,
    emulate: bool,
) -> dict[DatasetKey, list[tuple[Interval, str]]]:
    """Delete and refetch every error finding's span; returns the spans that failed."""
    failed: dict[DatasetKey, list[tuple[Interval, str]]] = {}
    async with AsyncExitStack() as stack:
        clients: dict[str, ExchangeClient] = {}
        for d in datasets:
            errors = [f for f in d.findings if f.severity == "error"]
            if not errors:
                continue
            key = d.key
            bad = IntervalSet([repair_span(f) for f in errors])
            if any(f.check in ("unsorted", "duplicate") for f in errors):
                await asyncio.to_thread(_rewrite_sorted, store, key, bad)
            else:
                for span in bad:
                    await asyncio.to_thread(store.delete, key, span.start, span.end)
            if isinstance(exchange, ExchangeClient):
                client = exchange
            else:
                name = exchange or key.exchange
                if name not in clients:
                    made = await _client(name, emulate)
                    clients[name] = await stack.enter_async_context(made)
                client = clients[name]
            log.info("%s: refetching %s", key, plural(len(bad), "span"))
            for span in bad:
                try:
                    report = await backfill_async(
                        [key.symbol], key.timeframe, span.start, span.end, client, store,
                        kind=key.kind, progress=False, clock=clock,  # type: ignore[arg-type]
                    )  # fmt: skip
                except (InvalidRequest, ExchangeError) as exc:
                    failed.setdefault(key, []).append((span, str(exc)))
                    continue
                if not report.ok:
                    errors_ = [e for s in report.symbols for e in s.errors]
                    failed.setdefault(key, []).append((span, "; ".join(errors_) or "failed"))
    return failed


# -- the calls --------------------------------------------------------------------------------


def _check_keys(keys: object) -> list[DatasetKey] | None:
    if keys is None:
        return None
    if isinstance(keys, str | DatasetKey):
        keys = [keys]
    if not isinstance(keys, Sequence | set | frozenset) or isinstance(keys, bytes):
        raise InvalidRequest(
            f"keys must be a list of DatasetKeys or key strings such as "
            f"'binance:ohlcv:1m:BTC/USDT', got {keys!r}"
        )
    out = []
    for k in keys:
        if isinstance(k, DatasetKey):
            out.append(k)
        elif isinstance(k, str):
            out.append(DatasetKey.parse(k))
        else:
            raise InvalidRequest(
                f"key {k!r} is not a DatasetKey or a key string such as 'binance:ohlcv:1m:BTC/USDT'"
            )
    return list(dict.fromkeys(out))


def _check_exchange(exchange: object, keys: Sequence[DatasetKey] | None) -> None:
    if exchange is None or isinstance(exchange, ExchangeClient):
        return
    if not isinstance(exchange, str):
        raise InvalidRequest(
            f"exchange must be an exchange key or an ExchangeClient, got {exchange!r}"
        )
    exchange_info(exchange)  # InvalidRequest naming close matches


def _open(storage: Storage, emulated: bool) -> tuple[DataCollectionStorage, bool]:
    if isinstance(storage, DataCollectionStorage):
        return storage, False
    if storage is None:  # as ensure_data: emulated data has its own store
        return (open_storage(emulated_storage_url()) if emulated else default_storage()), True
    if not isinstance(storage, str):
        raise InvalidRequest(f"storage must be a storage or a URL, got {storage!r}")
    return open_storage(storage), True


async def audit_async(
    storage: Storage,
    keys: Sequence[DatasetKey | str] | DatasetKey | str | None = None,
    start: object = None,
    end: object = None,
    *,
    repair: bool = False,
    exchange: ExchangeClient | str | None = None,
    zero_volume_run: int = ZERO_VOLUME_RUN,
    jump_mads: float = JUMP_MADS,
    mark_band: float = MARK_BAND,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> AuditReport:
    """Async :func:`audit`."""
    wanted = _check_keys(keys)
    lo, hi = time_range(start, end, tz=tz)
    if not isinstance(repair, bool):
        raise InvalidRequest(f"repair must be True or False, got {repair!r}")
    _check_exchange(exchange, wanted)
    check_number("zero_volume_run", zero_volume_run, integer=True, strict=False)
    check_number("jump_mads", jump_mads)
    check_number("mark_band", mark_band)
    params = AuditParams(lo, hi, int(zero_volume_run), float(jump_mads), float(mark_band))
    if repair and wanted is not None:
        cannot = [k for k in wanted if k.kind not in HISTORY_KINDS]
        if cannot:
            raise InvalidRequest(
                f"cannot repair {', '.join(map(str, cannot))}: only the kinds of history "
                f"can be refetched ({', '.join(HISTORY_KINDS)})"
            )
    emulated = emulate_default(emulate)
    store, opened = await asyncio.to_thread(_open, storage, emulated)
    try:
        t0 = time.perf_counter()
        datasets = await asyncio.to_thread(audit_datasets, store, wanted, params)
        log.info("audited %s in %.3f s", plural(len(datasets), "dataset"), time.perf_counter() - t0)
        if not repair or all(d.ok for d in datasets):
            return AuditReport(tuple(datasets))
        fixable = [d for d in datasets if not d.ok and d.key.kind in HISTORY_KINDS]
        failed = await _repair(store, fixable, exchange, clock, emulated)
        again = await asyncio.to_thread(audit_datasets, store, [d.key for d in datasets], params)
        return _after_repair(datasets, again, failed)
    finally:
        if opened:
            await asyncio.to_thread(store.close)


def _after_repair(
    before: Sequence[DatasetAudit],
    after: Sequence[DatasetAudit],
    failed: dict[DatasetKey, list[tuple[Interval, str]]],
) -> AuditReport:
    """The audit after a repair, with the findings of failed spans kept and those fixed
    listed in ``repaired``."""
    repaired: list[Finding] = []
    out: list[DatasetAudit] = []
    for old, new in zip(before, after, strict=True):
        spans = failed.get(old.key, [])
        kept = []
        for f in old.findings:
            if f.severity != "error":
                continue
            why = next((w for s, w in spans if s.start < f.end and f.start < s.end), None)
            if why is not None:
                kept.append(evolve(f, detail=f"{f.detail} (not repaired: {why})"))
            elif f not in new.findings:
                repaired.append(f)
        if kept:
            findings = tuple(
                sorted({*new.findings, *kept}, key=lambda f: (f.start, f.end, f.check))
            )
            new = DatasetAudit(new.key, new.rows, findings, score(findings, new.rows))
        out.append(new)
    return AuditReport(tuple(out), tuple(repaired))


def audit(
    storage: Storage,
    keys: Sequence[DatasetKey | str] | DatasetKey | str | None = None,
    start: object = None,
    end: object = None,
    *,
    repair: bool = False,
    exchange: ExchangeClient | str | None = None,
    zero_volume_run: int = ZERO_VOLUME_RUN,
    jump_mads: float = JUMP_MADS,
    mark_band: float = MARK_BAND,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> AuditReport:
    """Check the rows of ``keys`` (every stored dataset when ``None``) in ``[start, end)``
    and score each dataset; with ``repair=True``, delete and refetch what is wrong.

    * ``storage``: a storage or a URL (``None``: :func:`mdcollect.default_storage`).
    * ``start``, ``end``: dates, times or ms (``None`` leaves that side open); a bare
      date as ``end`` counts whole.
    * ``repair``: refetch every error finding's span from ``exchange`` (a key or an
      :class:`~mdcollect.ExchangeClient`; default: each dataset's own exchange), then
      audit again. Warnings are never repaired.
    * ``zero_volume_run``: candles of zero volume in a row that are still fine
      (default 60; 0 turns the check off); ``jump_mads``: how many median absolute
      deviations of the log returns of close make a jump (default 25); ``mark_band``:
      how far (a fraction, default 0.02) the mark close may be from the last close.
    * ``clock``: "now" in ms for the refetch (tests); ``emulate``: refetch from the
      built-in exchange emulator, as :func:`mdcollect.ensure_data` (``None``: the
      ``MDCOLLECT_EMULATE`` environment variable); with ``storage=None`` the emulated
      store is audited then.
    * ``tz``: the time zone naive dates are read in (default UTC).

    The checks and the score are those of the module documentation
    (docs/audit.md). Bad input raises :class:`~mdcollect.InvalidRequest` before
    anything is read.

    >>> report = audit("memory://")
    >>> report.ok
    True
    """
    return run_sync(
        releasing(
            exchange,
            audit_async(
                storage, keys, start, end, repair=repair, exchange=exchange,
                zero_volume_run=zero_volume_run, jump_mads=jump_mads, mark_band=mark_band,
                clock=clock, emulate=emulate, tz=tz,
            ),
        )
    )  # fmt: skip


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`audit`.

    Importing ``mdcollect.audit`` (``from mdcollect.audit import Finding``) makes the
    package's ``audit`` attribute this module instead of the function, as Python sets
    a submodule on its package; so ``mdcollect.audit(storage)`` works either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> AuditReport:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
