"""The Step Functions proxy's settings: one object, read from the environment with defaults,
checked when the handler is made (a Lambda's cold start), never on the first call.

=============================== ================================================ ==========================
variable                        meaning                                          default
=============================== ================================================ ==========================
``ENVIRONMENT``                 the name in every answer and metric dimension    ``dev``
``DATA_COLLECTION_URL``         the service's address                            from the namespace below
``SERVICE_DISCOVERY_NAMESPACE`` Cloud Map namespace of ``data-collection:8002``  ``tradai.local``
``REQUEST_TIMEOUT``             seconds for one request to the service           ``30``
``MAX_RETRIES``                 retries of a 5xx/429/transport failure           ``2``
``METRICS_NAMESPACE``           CloudWatch namespace prefix (``/DataProxy`` added) ``mdcollect``
``MDCOLLECT_API_TOKEN``         bearer token for the service (never shown)       none
=============================== ================================================ ==========================

>>> settings = ProxySettings.from_env({"ENVIRONMENT": "prod", "REQUEST_TIMEOUT": "10"})
>>> settings.environment, settings.request_timeout, settings.metrics_namespace
('prod', 10.0, 'mdcollect/DataProxy')
>>> ProxySettings.from_env({"REQUEST_TIMEOUT": "soon"})
Traceback (most recent call last):
...
mdcollect.InvalidRequest: environment variable REQUEST_TIMEOUT='soon' is not valid: REQUEST_TIMEOUT must be a positive number, got 'soon'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from attrs import field, frozen

from .._errors import InvalidRequest
from .._redact import redact
from .._rules import check_number
from ._client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_NAMESPACE,
    DEFAULT_TIMEOUT,
    _check_base_url,
    _env_number,
    default_base_url,
)

__all__ = ["DEFAULT_ENVIRONMENT", "METRICS_SUFFIX", "ProxySettings", "metrics_namespace"]

DEFAULT_ENVIRONMENT: Final = "dev"
#: Every proxy namespace ends so: ``mdcollect`` becomes ``mdcollect/DataProxy``.
METRICS_SUFFIX: Final = "DataProxy"
DEFAULT_METRICS_PREFIX: Final = "mdcollect"
# CloudWatch: 1-255 characters of letters, digits and . - _ / # : (no leading colon)
_CLOUDWATCH_NAMESPACE: Final = re.compile(r"^[A-Za-z0-9.\-_/#][A-Za-z0-9.\-_/#:]{0,254}$")


def metrics_namespace(namespace: str) -> str:
    """The CloudWatch namespace of the proxy's metrics: ``namespace`` with the ``DataProxy``
    suffix (kept as is when it already ends so).

    >>> metrics_namespace("tradai"), metrics_namespace("tradai/DataProxy")
    ('tradai/DataProxy', 'tradai/DataProxy')
    >>> metrics_namespace("bad namespace")
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: namespace 'bad namespace' is not a CloudWatch namespace: use 1-255 letters, digits and . - _ / # :
    """
    if not isinstance(namespace, str) or not _CLOUDWATCH_NAMESPACE.match(namespace.strip("/")):
        raise InvalidRequest(
            f"namespace {namespace!r} is not a CloudWatch namespace: "
            "use 1-255 letters, digits and . - _ / # :"
        )
    name = namespace.strip("/")
    full = name if name.endswith(METRICS_SUFFIX) else f"{name}/{METRICS_SUFFIX}"
    if len(full) > 255:
        raise InvalidRequest(f"namespace {namespace!r} is too long: 255 characters at most")
    return full


def _check_environment(_: object, __: object, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"environment must be a non-empty string, got {value!r}")


def _check_url(_: object, __: object, value: object) -> None:
    _check_base_url(value)
    assert isinstance(value, str)
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port  # a bad port raises ValueError
    except ValueError:
        host = None
    if not host or " " in value:
        raise InvalidRequest(
            f"service_url {redact(value)!r} is not valid; use http://HOST:PORT or https://HOST:PORT"
        )


def _seconds(value: object) -> float:
    # a number of seconds, else the rule's own words (not float()'s TypeError/ValueError)
    if isinstance(value, bool) or not isinstance(value, int | float):
        check_number("request_timeout", value)
    return float(value)  # type: ignore[arg-type]


def _check_timeout(_: object, __: object, value: object) -> None:
    check_number("request_timeout", value)


def _check_retries(_: object, __: object, value: object) -> None:
    check_number("max_retries", value, integer=True, strict=False)


def _check_namespace(_: object, __: object, value: object) -> None:
    metrics_namespace(value)  # type: ignore[arg-type]


@frozen
class ProxySettings:
    """What the proxy needs, checked on construction (see the module's table).

    Build it from the environment with :meth:`from_env`, or directly (tests, custom
    wiring); :func:`~mdcollect.remote.make_handler` takes it as ``settings=``. The API
    token never appears in the repr.
    """

    environment: str = field(default=DEFAULT_ENVIRONMENT, validator=_check_environment)
    service_url: str = field(factory=default_base_url, validator=_check_url, repr=redact)
    request_timeout: float = field(
        default=DEFAULT_TIMEOUT, converter=_seconds, validator=_check_timeout
    )
    max_retries: int = field(default=DEFAULT_MAX_RETRIES, validator=_check_retries)
    #: the prefix; the metrics go to :attr:`metrics_namespace` (``PREFIX/DataProxy``)
    namespace: str = field(default=DEFAULT_METRICS_PREFIX, validator=_check_namespace)
    api_token: str | None = field(default=None, repr=False)

    @property
    def metrics_namespace(self) -> str:
        """The CloudWatch namespace, with the ``DataProxy`` suffix."""
        return metrics_namespace(self.namespace)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """The settings from ``environ`` (default ``os.environ``); a bad value is an
        :class:`~mdcollect.InvalidRequest` naming the variable."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name, "").strip()

        url = get("DATA_COLLECTION_URL") or default_base_url(
            get("SERVICE_DISCOVERY_NAMESPACE") or DEFAULT_NAMESPACE
        )
        try:
            _check_url(None, None, url)
        except InvalidRequest as exc:
            raise InvalidRequest(f"environment variable DATA_COLLECTION_URL: {exc}") from None
        namespace = get("METRICS_NAMESPACE") or DEFAULT_METRICS_PREFIX
        try:
            metrics_namespace(namespace)
        except InvalidRequest as exc:
            raise InvalidRequest(f"environment variable METRICS_NAMESPACE: {exc}") from None
        return cls(
            environment=get("ENVIRONMENT") or DEFAULT_ENVIRONMENT,
            service_url=url,
            request_timeout=_env_number("REQUEST_TIMEOUT", DEFAULT_TIMEOUT, env=env),
            max_retries=int(_env_number("MAX_RETRIES", DEFAULT_MAX_RETRIES, integer=True, env=env)),
            namespace=namespace,
            api_token=get("MDCOLLECT_API_TOKEN") or None,
        )
