"""Secrets never reach output: the one redaction of URLs, and of text that may quote them.

A URL may carry credentials: a password in its userinfo (``redis://user:PASSWORD@host/0``)
or keys and tokens in its query (``arctic+s3://host:bucket?access=KEY&secret=SECRET``,
``?token=...``). Whatever shows a URL to a person or writes it to a file (``repr``,
``storage.url``, error messages, logs, the CLI, the service, the remote client) shows
:func:`redact` of it; the raw URL is kept private by whoever needs it to connect, which
also passes :func:`secrets_in` of it to :func:`redact` for text it did not write itself
(an error message of the library underneath may quote a credential bare).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, unquote_plus

__all__ = ["MASK", "redact", "secrets_in"]

#: What a credential is replaced with.
MASK: Final = "***"

# A query (or ``name=value``) parameter whose name says it holds a credential. ``key``
# and ``access`` cover ArcticDB's ``access=``, ``aws_access_key_id=``, ``api_key=``...
_SECRET_NAME: Final = re.compile(
    r"pass|pwd|secret|token|key|access|credential|signature|session|^sig$|^auth$", re.I
)
# ``//user:PASSWORD@`` (or ``user:PASSWORD@`` where a word starts: a URL missing its
# ``//``): the password runs to the last ``@`` of the authority (an unencoded ``@`` in it
# is still the password's, as urllib reads it).
_USERINFO: Final = re.compile(
    r"(?P<head>(?://|^|(?<=[\s'\"(]))[^\s/?#@:'\"]*:)(?P<value>[^\s/?#'\"]*)@", re.M
)
# ``name=value`` as a query parameter (after ``?``, ``&`` or ``;``) or a word of text
# (``password=...`` in a message, ``k=v,k=v`` in a repr), never inside a path segment
# (``/data/key=1``); the value stops at the next parameter, whitespace, a fragment or a
# closing quote (at ``,`` only before another ``name=``: a value may hold a comma).
_PARAM: Final = re.compile(
    r"(?P<head>(?:^|(?<=[?&;,\s'\"(]))(?P<name>[\w.\-]+)=)"
    r"(?P<value>(?:[^&;,\s#'\"]|,(?![\w.\-]+=))*)",
    re.M,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL credential in it shown as ``***``.

    Userinfo passwords and the values of parameters named like credentials
    (``password``, ``secret``, ``access``, ``*key*``, ``*token*``...) are masked
    wherever they appear; so is every value in ``secrets`` (the credentials of a URL
    the caller holds, from :func:`secrets_in`). User names, hosts, ports, paths and
    other parameters stay readable.

    >>> redact("redis://app:pw@db:6379/0")
    'redis://app:***@db:6379/0'
    >>> redact("arctic+s3://s3.example:bucket?port=9000&access=AK&secret=SK")
    'arctic+s3://s3.example:bucket?port=9000&access=***&secret=***'
    >>> redact("auth failed for pw", secrets_in("redis://:pw@db/0"))
    'auth failed for ***'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@" if m["value"] else m[0], text)
    text = _PARAM.sub(
        lambda m: (
            f"{m['head']}{MASK}"
            if m["value"] and _SECRET_NAME.search(m["name"]) and m["value"] != MASK
            else m[0]
        ),
        text,
    )
    # the longest first, so that a secret containing another is masked whole
    for secret in sorted({s for s in secrets if s and s != MASK}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secrets_in(url: str) -> frozenset[str]:
    """The credentials a URL carries, as written and percent-decoded (for :func:`redact`).

    >>> sorted(secrets_in("redis://app:p%40ss@db/0?prefix=x:&token=T"))
    ['T', 'p%40ss', 'p@ss']
    """
    found: set[str] = set()
    for m in _USERINFO.finditer(url):
        found.add(m["value"])
    for m in _PARAM.finditer(url):
        if _SECRET_NAME.search(m["name"]):
            found.add(m["value"])
    found |= {unquote(s) for s in found} | {unquote_plus(s) for s in found}
    found.discard("")
    return frozenset(found)
