"""Point a ccxt exchange at another base URL (the emulator, a proxy, a recorder).

Only ``exchange.urls['api']`` is rewritten: the scheme and host of every URL in
it (recursively, including ``https://{hostname}``-style templates) become
``base_url`` and the path is kept. Nothing else about ccxt is patched.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redirect_url", "redirect_urls"]

_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")


def redirect_url(url: str, base_url: str) -> str:
    """Replace the scheme and host of ``url`` with ``base_url``, keeping the path.

    >>> redirect_url("https://api.binance.com/api/v3", "http://127.0.0.1:8080")
    'http://127.0.0.1:8080/api/v3'
    >>> redirect_url("https://api.{hostname}", "http://127.0.0.1:8080/")
    'http://127.0.0.1:8080'
    """
    base = base_url.rstrip("/")
    if _ORIGIN.match(url) is None:
        return url
    return _ORIGIN.sub(lambda _: base, url, count=1)


def _rewrite(node: Any, base_url: str) -> Any:
    if isinstance(node, str):
        return redirect_url(node, base_url)
    if isinstance(node, dict):
        return {key: _rewrite(value, base_url) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(value, base_url) for value in node]
    return node


def redirect_urls(exchange: Any, base_url: str) -> None:
    """Send every API request of a ccxt ``exchange`` (sync, async or pro) to ``base_url``.

    Rewrites ``exchange.urls['api']`` in place, recursively through nested dicts;
    the original is kept in ``exchange.urls['api_original']`` on the first call.

    Example::

        ex = ccxt.binance()
        redirect_urls(ex, "http://127.0.0.1:8080")
        ex.urls["api"]["public"]  # 'http://127.0.0.1:8080/api/v3'

    Added in 0.1.0.
    """
    urls = exchange.urls
    if "api_original" not in urls:
        urls["api_original"] = urls.get("api")
    urls["api"] = _rewrite(urls["api_original"], base_url)
