"""The status page at ``/`` over HTTP: what it shows with and without collectors, that
everything from outside is escaped, that it loads nothing from elsewhere, and how a
browser logs in to a service with a token."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import httpx
import pandas as pd

from mdcollect import DataCollectionStorage, DataCollector, DatasetKey, Interval
from mdcollect._time import HOUR, MINUTE, now_ms
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer
from .test_collectors_route import AUTH, NAME, TOKEN, ticker
from .test_load import BTC, body, wait_until

EVIL = "<script>alert(1)</script>"


def basic(password: str, user: str = "ops") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def candles(start: int, n: int) -> pd.DataFrame:
    stamps = [start + i * MINUTE for i in range(n)]
    return pd.DataFrame(
        {"timestamp": stamps, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    )


def test_without_collectors_the_page_shows_datasets_and_jobs(
    serve: Callable[..., LiveServer], storage: DataCollectionStorage
) -> None:
    live = serve()
    now = now_ms()
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    start = (now - 6 * HOUR) // MINUTE * MINUTE  # the last 6 h of 24 are covered
    storage.write(key, candles(start, 6 * 60), covered=Interval(start, start + 6 * HOUR))
    r = httpx.post(f"{live.url}/api/v1/sync", json=body([BTC], "2024-02-01", "2024-02-02"), timeout=30)  # fmt: skip
    assert r.status_code == 200
    page = httpx.get(f"{live.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # so: none allowed
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert 'id="no-collectors"' in text and "mdcollect serve --collect" in text
    row = re.search(r'<tr data-dataset="binance:ohlcv:1m:BTC/USDT">(.*?)</tr>', text)
    assert row is not None
    assert "<svg" in row.group(1) and re.search(r">2[45]\.\d%<", row.group(1)), row.group(1)
    assert f'data-job="{r.json()["job_id"]}"' in text and "completed" in text
    assert '<meta http-equiv="refresh" content="5">' in text
    # nothing is fetched from elsewhere: no script, link, image or font reference at all
    assert not re.search(r"<(script|link|img|iframe)\b|\b(src|href)=|@import|url\(", text)


def test_names_symbols_and_errors_render_as_text(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, storage: DataCollectionStorage
) -> None:
    bad = ticker(emu, f"{EVIL}/USDT", name=f'"><img src=x onerror=alert(2)>{EVIL}')
    dc = DataCollector([bad], storage, restart_backoff=0.05)
    storage.write(
        DatasetKey("binance", f"{EVIL}/USDT", "ohlcv", "1m"), candles(0, 1),
        covered=Interval(0, MINUTE),
    )  # fmt: skip
    live = serve(collector=dc)
    wait_until(lambda: dc.failed() == [bad.name], "the unknown symbol fails the collector")
    assert EVIL in dc.status()["collectors"][bad.name]["last_error"]
    text = httpx.get(f"{live.url}/", timeout=10).text
    assert "<script" not in text and "<img" not in text
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"&quot;&gt;&lt;img src=x onerror=alert(2)&gt;{escaped}" in text  # the name
    assert f"{escaped}/USDT" in re.search(r'class="err last-error">([^<]*)<', text).group(1)  # type: ignore[union-attr]
    assert f'data-dataset="binance:ohlcv:1m:{escaped}/USDT"' in text
    assert 'data-state="failed"' in text


def test_a_browser_logs_in_with_the_token_as_password(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, storage: DataCollectionStorage
) -> None:
    live = serve(api_token=TOKEN, collector=DataCollector([ticker(emu)], storage))
    refused = httpx.get(f"{live.url}/", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Basic realm="mdcollect"')
    assert httpx.get(f"{live.url}/", headers=basic("wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{live.url}/", headers=basic("x:y"), timeout=10).status_code == 401
    page = httpx.get(f"{live.url}/", headers=basic(TOKEN), timeout=10)
    assert page.status_code == 200 and f'data-collector="{NAME}"' in page.text
    assert httpx.get(f"{live.url}/", headers=AUTH, timeout=10).status_code == 200
    # Basic is for the page only: the API still wants the bearer token
    api = httpx.get(f"{live.url}/api/v1/collectors", headers=basic(TOKEN), timeout=10)
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
