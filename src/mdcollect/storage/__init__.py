"""Storage backends behind one interface, :class:`DataCollectionStorage`.

Open one by URL with :func:`open_storage`:

=========================== ===================================================
``arctic+lmdb://PATH``      ArcticDB on LMDB, the embedded default
``arctic+s3://HOST:BUCKET`` ArcticDB on S3-compatible storage
                            (``?port=N&access=K&secret=S``, as ArcticDB's URIs)
``parquet://PATH``          Parquet files, atomic writes, partitioned by month
``redis://HOST:PORT/DB``    a Redis server (``redis`` extra)
``memory://``               in-process, for tests and notebooks
=========================== ===================================================

>>> storage = open_storage("memory://")
>>> default_storage().url  # doctest: +SKIP
'arctic+lmdb:///home/me/.local/share/mdcollect/arctic'

Credentials in a URL (``redis://user:PASSWORD@...``, ``?access=K&secret=S``) never reach
output: ``storage.url``, ``repr(storage)``, error messages and logs show them as ``***``;
the URL as given is kept private and used only to connect.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Final

import platformdirs

from .._errors import InvalidRequest
from .._redact import redact
from ._base import DataCollectionStorage, DatasetInfo, Stamp

__all__ = [
    "DataCollectionStorage",
    "DatasetInfo",
    "Stamp",
    "default_storage",
    "default_storage_url",
    "emulated_storage_url",
    "open_storage",
]

# scheme -> "module:Class"; adding a backend is one module plus one line here.
_BACKENDS: Final = {
    "memory": "mdcollect.storage.memory:MemoryStorage",
    "parquet": "mdcollect.storage.parquet:ParquetStorage",
    "arctic+lmdb": "mdcollect.storage.arctic:ArcticStorage",
    "arctic+s3": "mdcollect.storage.arctic:ArcticStorage",
    "arctic+s3s": "mdcollect.storage.arctic:ArcticStorage",
    "redis": "mdcollect.storage.redis:RedisStorage",
}


def open_storage(url: str | DataCollectionStorage) -> DataCollectionStorage:
    """Open the backend a URL names (a storage passed in is returned as it is).

    Raises :class:`InvalidRequest` for an unknown scheme or a malformed URL.
    """
    if isinstance(url, DataCollectionStorage):
        return url
    if not isinstance(url, str) or "://" not in url:
        raise InvalidRequest(
            f"storage URL {redact(url) if isinstance(url, str) else url!r} is not valid; use one of "
            + ", ".join(f"{s}://..." for s in _BACKENDS)
        )
    scheme = url.split("://", 1)[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        raise InvalidRequest(
            f"storage URL scheme {scheme!r} is not known; allowed: {', '.join(_BACKENDS)}"
        )
    module_name, cls_name = target.split(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name)
    storage = cls.from_url(url)
    assert isinstance(storage, DataCollectionStorage)
    return storage


def default_storage_url() -> str:
    """``arctic+lmdb://`` under ``$MDCOLLECT_HOME``, else the user data dir
    (``~/.local/share/mdcollect`` on Linux, as ``platformdirs`` finds it)."""
    home = os.environ.get("MDCOLLECT_HOME")
    base = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("mdcollect"))
    return f"arctic+lmdb://{(base / 'arctic').resolve()}"


def emulated_storage_url() -> str:
    """The store for data from the exchange emulator: beside the default store, never
    in it, so synthetic candles cannot be mistaken for real ones (``--emulate``,
    ``ensure_data(..., emulate=True)``)."""
    return default_storage_url().rstrip("/") + "-emulated"


def default_storage() -> DataCollectionStorage:
    """The embedded default: ArcticDB on LMDB at :func:`default_storage_url`."""
    return open_storage(default_storage_url())
