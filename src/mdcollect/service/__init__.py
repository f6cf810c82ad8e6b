"""The data-collection service: the API of :mod:`mdcollect.remote`, served from a storage.

Needs the ``service`` extra (``pip install mdcollect[service]``: Starlette, uvicorn).
``import mdcollect`` does not import this package.

=========================== ====== ==================================================
``/api/v1/health``          GET    liveness (never needs a token)
``/api/v1/ohlcv``           GET    stored candles: symbol, timeframe, limit, start, end,
                                   exchange
``/api/v1/symbols``         GET    symbols with stored candles, and their datasets
``/api/v1/status``          GET    storage, datasets, allowed exchanges, sync jobs
``/api/v1/sync``            POST   ``ensure_data`` for symbols, timeframe, start_date,
                                   end_date, exchange; its report, or 202 and a job id
``/api/v1/sync/{job_id}``   GET    a background sync's status and report
``/openapi.json``           GET    the OpenAPI document
=========================== ====== ==================================================

>>> from mdcollect.service import create_app
>>> app = create_app("parquet:///data/md", api_token="s3cret")
>>> # serve(app, host="127.0.0.1", port=8002), or: mdcollect serve --storage URL

At most ``max_jobs`` syncs run at once (503 with ``Retry-After`` beyond); an identical
sync joins the running one; stopping the app cancels running syncs, boundedly.

Requests and failures are logged on the ``mdcollect.service`` logger.
"""

from ._app import DEFAULT_MAX_BODY, DEFAULT_SYNC_TIMEOUT, ServiceOptions, create_app, serve
from ._jobs import DEFAULT_MAX_JOBS, JobStatus, SyncJob

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_JOBS",
    "DEFAULT_SYNC_TIMEOUT",
    "JobStatus",
    "ServiceOptions",
    "SyncJob",
    "create_app",
    "serve",
]
