"""Retrying exchange calls: the translation of ccxt errors into transient or permanent.

Transient failures (network errors, timeouts, 5xx, 429 rate limits, garbled
responses) are retried with capped exponential backoff and jitter; a server's
``Retry-After`` is honoured. Permanent ones (bad symbol, bad request, auth, not
supported, other 4xx) are raised at once. The schedule itself is the model's
:class:`~mdcollect._backoff.RetryPolicy`, re-exported here.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any, Final

import aiohttp
import ccxt

from .._backoff import RetryPolicy
from .._errors import ExchangeError

__all__ = ["RetryPolicy", "translate_error"]

log: Final = logging.getLogger("mdcollect.exchanges")

_MAX_MESSAGE: Final = 300


_PERMANENT_CCXT: Final = (
    ccxt.BadRequest,  # includes BadSymbol
    ccxt.AuthenticationError,  # includes PermissionDenied
    ccxt.NotSupported,
    ccxt.ArgumentsRequired,
    ccxt.InvalidNonce,
    ccxt.ExchangeClosedByUser,
)
_TRANSIENT_CCXT: Final = (ccxt.NetworkError, ccxt.BadResponse)


def _is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


# What exchanges answer to a request from a country they do not serve: Binance's 451
# ("Service unavailable from a restricted location"), CloudFront's 403 in front of
# Bybit ("configured to block access from your country").
_GEO_BLOCK_TEXT: Final = ("restricted location", "block access from your country")


def _cause(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The first exception of type ``kind`` in ``exc``'s chain of causes, or None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _connection_failure(exc: BaseException) -> tuple[str, bool] | None:
    """Why no HTTP answer came, in one line naming the host, and whether trying again
    may help: DNS (permanent: a name that does not resolve now will not in the next
    seconds, so an unresolvable host fails fast), TLS (permanent), refused or other
    connection failures (transient)."""
    conn = _cause(exc, aiohttp.ClientConnectorError)
    if conn is not None:
        where = f"{conn.host}:{conn.port}"
        os_error = conn.os_error
        if isinstance(conn, aiohttp.ClientConnectorDNSError) or isinstance(
            os_error, socket.gaierror
        ):
            reason = getattr(os_error, "strerror", None) or str(os_error)
            return f"cannot resolve host {conn.host} (DNS: {reason}); no network, or a typo?", False
        if isinstance(conn, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate of {where} not accepted: {conn.certificate_error}", False
        if isinstance(conn, aiohttp.ClientConnectorSSLError) or isinstance(os_error, ssl.SSLError):
            reason = getattr(os_error, "reason", None) or os_error
            return f"TLS handshake with {where} failed: {reason}", False
        if isinstance(os_error, ConnectionRefusedError):
            return f"connection refused by {where} (is it the right host and port?)", True
        return f"cannot connect to {where}: {os_error}", True
    ssl_error = _cause(exc, ssl.SSLError)
    if ssl_error is not None:
        return f"TLS error: {getattr(ssl_error, 'reason', None) or ssl_error}", False
    gai = _cause(exc, socket.gaierror)
    if gai is not None:
        return f"cannot resolve host (DNS: {gai.strerror or gai}); no network, or a typo?", False
    return None


def translate_error(
    exc: BaseException,
    *,
    where: str,
    status: int | None = None,
    retry_after: float | None = None,
    malformed: bool = False,
    host: str | None = None,
) -> ExchangeError:
    """The :class:`ExchangeError` for a failed ccxt call (raise it ``from exc``).

    ``status`` and ``retry_after`` describe the HTTP response of this very
    request when one arrived; ``malformed`` says its body was not valid JSON.
    ``host`` is the host that answered. In order: a failure to connect is
    described in one line (DNS and TLS failures permanent, a refused or failed
    connection transient); HTTP 451, and a 403 whose body says the country or
    location is blocked, are permanent and say "geo-blocked"; any other 403 that
    ccxt does not call a rate limit is permanent; a malformed body is transient; ccxt's permanent classes
    (``BadRequest``/``BadSymbol``, ``AuthenticationError``, ``NotSupported``,
    ``InvalidNonce``) are permanent; ccxt's rate-limit classes
    (``DDoSProtection``/``RateLimitExceeded``, from 429, Binance's 418, Bybit's
    403) are transient; then the HTTP status (5xx, 408, 425, 429 transient, other
    4xx permanent, whatever class ccxt chose: it maps a bare 400 or 404 to
    ``ExchangeNotAvailable``); then ``NetworkError`` and ``BadResponse`` are
    transient; an aiohttp failure ccxt wrapped as a plain ``ExchangeError`` (a
    truncated body) is transient; anything else is permanent.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the body
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    transient: bool
    connection = _connection_failure(exc) if status is None else None
    from_host = f" from {host}" if host else ""
    if connection is not None:
        text, transient = connection
    elif status == 451 or (
        status in (403, 451) and any(t in str(exc).lower() for t in _GEO_BLOCK_TEXT)
    ):
        transient = False
        text = (
            f"HTTP {status}{from_host}: the exchange refuses requests from this location "
            "(geo-blocked); use a region it serves"
        )
    elif status == 403 and not isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        transient = False
        text = f"HTTP 403{from_host}: access forbidden (geo-blocking, an IP ban or API-key rights) ({text})"
    elif malformed and not isinstance(exc, _PERMANENT_CCXT):
        transient = True
        text = f"malformed JSON response ({type(exc).__name__}: {text})"
    elif isinstance(exc, _PERMANENT_CCXT):
        transient = False
    elif isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        # rate limits come as 429, 418 (Binance) or 403 (Bybit): ccxt knows which
        transient = True
    elif status is not None and status >= 400:
        transient = _is_transient_status(status)
    elif isinstance(exc, _TRANSIENT_CCXT):
        transient = True
    elif isinstance(exc, ccxt.BaseError):
        transient = isinstance(exc.__cause__, aiohttp.ClientError | TimeoutError)
    elif isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError):
        transient = True
    else:
        # ccxt's parser choked: a garbled (non-JSON) body is worth another try,
        # a parser failing on valid JSON is not.
        transient = False
        text = f"unexpected response ({type(exc).__name__}: {text})"
    kind = "transient" if transient else "permanent"
    status_text = f" HTTP {status}" if status is not None else ""
    return ExchangeError(
        f"{where} failed ({kind}{status_text}): {text}",
        transient=transient,
        retry_after=retry_after if transient else None,
    )
