"""Point a ccxt exchange at another base URL (the emulator, a proxy, a recorder).

Only ``exchange.urls['api']`` is rewritten: the scheme and host of every HTTP URL
in it (recursively, including ``https://{hostname}``-style templates) become
``base_url`` and the path is kept. Websocket URLs (``ws://``, ``wss://``, as
ccxt.pro keeps under ``urls['api']['ws']``) keep their original host inside the
path, ``wss://HOST[:PORT]/PATH`` -> ``ws://BASE/_ws/HOST/PATH``, so that hosts
sharing a path (Binance spot ``stream.binance.com/ws`` and USD-M
``fstream.binance.com/ws``) stay apart. Nothing else about ccxt is patched.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redirect_url", "redirect_urls", "redirect_ws_url"]

_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")
_WS = re.compile(r"^wss?://([^/:]*)(?::\d+)?(/.*)?$", re.IGNORECASE)


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


def redirect_ws_url(url: str, base_url: str) -> str:
    """Send a websocket URL to ``base_url``, keeping its original host as a path segment.

    >>> redirect_ws_url("wss://stream.binance.com:9443/ws", "http://127.0.0.1:8080")
    'ws://127.0.0.1:8080/_ws/stream.binance.com/ws'
    >>> redirect_ws_url("wss://ws.okx.com:443/ws/v5", "https://proxy.example")
    'wss://proxy.example/_ws/ws.okx.com/ws/v5'

    URLs that are not ``ws://``/``wss://`` are returned unchanged.
    """
    m = _WS.match(url)
    if m is None:
        return url
    base = base_url.rstrip("/")
    origin = _ORIGIN.match(base)
    if origin is None:
        return url
    scheme, _, hostport = origin.group(0).partition("://")
    ws_scheme = "wss" if scheme.lower() in ("https", "wss") else "ws"
    rest = base[origin.end() :]
    return f"{ws_scheme}://{hostport}{rest}/_ws/{m.group(1).lower()}{m.group(2) or ''}"


def _rewrite(node: Any, base_url: str) -> Any:
    if isinstance(node, str):
        if _WS.match(node):
            return redirect_ws_url(node, base_url)
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
    Websocket URLs go through :func:`redirect_ws_url`.

    Example::

        ex = ccxt.pro.binance()
        redirect_urls(ex, "http://127.0.0.1:8080")
        ex.urls["api"]["public"]  # 'http://127.0.0.1:8080/api/v3'
        ex.urls["api"]["ws"]["spot"]  # 'ws://127.0.0.1:8080/_ws/stream.binance.com/ws'
    """
    urls = exchange.urls
    if "api_original" not in urls:
        urls["api_original"] = urls.get("api")
    urls["api"] = _rewrite(urls["api_original"], base_url)
