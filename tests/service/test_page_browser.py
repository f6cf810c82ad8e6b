"""The status page in a real headless browser (Debian's ``chromium``; ``.ci/run``
installs it): the collector rows and their state, a restart through the API showing
after a reload, text that looks like markup staying text, and a screenshot kept as
the test's artifact. Every browser run has a deadline."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from mdcollect import DataCollectionStorage, DataCollector, DatasetKey, Interval
from mdcollect._time import HOUR, MINUTE, now_ms
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer
from .test_collectors_route import AUTH, NAME, TOKEN, ticker
from .test_load import wait_until
from .test_page import EVIL, candles

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)"
)
#: Seconds a browser run may take at most.
BROWSER_DEADLINE = 60
WIDTH, HEIGHT = 1200, 900


def chromium(profile: Path, *args: str) -> str:
    """Run headless chromium once (its own profile: tests may run side by side)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=BROWSER_DEADLINE, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def elements(dom: str) -> set[str]:
    """The names of the elements in the serialised DOM."""
    names: set[str] = set()

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            names.add(tag)

    Tags().feed(dom)
    return names


def row(dom: str, name: str) -> dict[str, str]:
    """The cells of collector ``name``'s row in the DOM, by class, as text."""
    found = re.search(rf'<tr data-collector="{re.escape(html.escape(name))}"[^>]*>(.*?)</tr>', dom)
    assert found is not None, dom[:3000]
    cells = re.findall(r'<td class="([^"]*)">(.*?)</td>', found.group(1))
    return {cls.split()[-1]: html.unescape(re.sub(r"<[^>]+>", "", text)) for cls, text in cells}


@pytest.mark.slow  # three browser runs
def test_the_page_in_chromium_shows_a_restart(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, storage: DataCollectionStorage,
    tmp_path: Path,
) -> None:  # fmt: skip
    evil_name = f"{EVIL}<marquee>moving</marquee>"
    bad = ticker(emu, f"{EVIL}/USDT", name=evil_name)
    dc = DataCollector([ticker(emu), bad], storage, restart_backoff=0.05)
    start = (now_ms() - 12 * HOUR) // MINUTE * MINUTE  # half of the last 24 h covered
    storage.write(
        DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"), candles(start, 12 * 60),
        covered=Interval(start, start + 12 * HOUR),
    )  # fmt: skip
    live = serve(api_token=TOKEN, collector=dc)
    wait_until(lambda: dc.status()["collectors"][NAME]["rows_stored"] > 0, "rows stored")
    wait_until(lambda: dc.failed() == [evil_name], "the unknown symbol fails its collector")
    # the browser logs in with the token as the Basic password, as a person would
    url = f"http://ops:{TOKEN}@127.0.0.1:{live.port}/"
    profile = tmp_path / "profile"

    before = chromium(profile, "--dump-dom", url)
    cells = row(before, NAME)
    assert cells["state-running"] == "running" and cells["restarts"] == "0"
    assert cells["last-restart"] == "-" and float(cells["rate"]) > 0
    # markup in a name or an error is text in the DOM: no element was made of it
    assert {"table", "svg", "rect"} <= elements(before)
    assert not {"script", "marquee", "img"} & elements(before)
    evil = row(before, evil_name)
    assert evil["state-failed"] == "failed" and f"{EVIL}/USDT" in evil["last-error"]

    r = httpx.post(f"{live.url}/api/v1/collectors/{NAME}/restart", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    after = row(chromium(profile, "--dump-dom", url), NAME)
    assert after["restarts"] == "1" and after["last-restart"] == "restarted by hand"

    shot = tmp_path / "status-page.png"
    chromium(profile, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
             "--hide-scrollbars", url)  # fmt: skip
    print(f"status page screenshot: {shot}")
    from PIL import Image

    with Image.open(shot) as img:
        assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)
        colors = img.convert("RGB").getcolors(maxcolors=WIDTH * HEIGHT)
    assert colors is not None
    # text, tables and the green coverage bars: many colours, and white not all of it
    assert len(colors) > 50
    assert max(count for count, _ in colors) < 0.97 * WIDTH * HEIGHT
    assert (0x2E, 0x7D, 0x32) in {c for _, c in colors}  # the coverage bar's green
