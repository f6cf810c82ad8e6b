"""Input rules: the checks every public entry point applies to what a user passes.

One place for them, so the library, the CLI, the HTTP service and its client
refuse the same values with the same words. Every failure is an
:class:`~mdcollect.InvalidRequest` naming the bad value and what is allowed, raised
before any network call or write. This module does not import ccxt: the remote
client uses it without the exchange stack.

Numbers (options of collectors, clients, the service) are checked with
:func:`check_number`, or, on attrs options classes, with the validators
:func:`positive` and :func:`non_negative`::

    @frozen
    class Options:
        batch_rows: int = field(default=1000, validator=positive(integer=True))
        poll_lag: float = field(default=0.0, validator=non_negative())
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._errors import InvalidRequest

__all__ = ["check_number", "non_negative", "positive"]

Validator = Callable[[Any, Any, Any], None]


def check_number(
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float = 0.0,
    strict: bool = True,
    maximum: float | None = None,
) -> None:
    """Refuse ``value`` unless it is a number above ``minimum`` (``>=`` when not ``strict``).

    ``bool`` and NaN are never numbers here; ``integer`` asks for an ``int``.

    >>> check_number("batch_rows", 0, integer=True)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: batch_rows must be a positive integer, got 0
    >>> check_number("poll_lag", 0.0, strict=False)
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and not math.isnan(value)  # type: ignore[arg-type]
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = number > minimum if strict else number >= minimum
        if maximum is not None:
            ok = ok and number <= maximum
    if not ok:
        raise InvalidRequest(
            f"{name} must be {_allowed(integer, minimum, strict, maximum)}, got {value!r}"
        )


def _allowed(integer: bool, minimum: float, strict: bool, maximum: float | None) -> str:
    noun = "integer" if integer else "number"
    low = f"{minimum:g}"
    if maximum is not None:
        return f"{'an' if integer else 'a'} {noun} in {'(' if strict else '['}{low}, {maximum:g}]"
    if minimum == 0:
        return f"a positive {noun}" if strict else f"{'an' if integer else 'a'} {noun} >= 0"
    return f"{'an' if integer else 'a'} {noun} {'>' if strict else '>='} {low}"


def positive(*, integer: bool = False) -> Validator:
    """An attrs validator: the field must be a number > 0 (an ``int`` with ``integer``)."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        check_number(attribute.name, value, integer=integer)

    return validate


def non_negative(*, integer: bool = False, maximum: float | None = None) -> Validator:
    """An attrs validator: the field must be a number >= 0 (at most ``maximum``)."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        check_number(attribute.name, value, integer=integer, strict=False, maximum=maximum)

    return validate
