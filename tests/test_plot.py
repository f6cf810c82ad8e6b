"""The coverage picture, checked by its pixels: a hole is drawn where the hole is.

A store with known coverage is drawn on the Agg canvas; data coordinates (a time on
the x axis, a lane on the y axis) are mapped to pixels through the axes' transform
and the RGBA buffer is read at that pixel.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sys
from pathlib import Path

import attrs
import matplotlib.colors
import matplotlib.dates
import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

import mdcollect
from mdcollect import DatasetKey, Interval, InvalidRequest, MdcollectError, open_storage
from mdcollect.cli import main
from mdcollect.plot import COLORS
from tests.conftest import T0, candles, run_python

HOUR = 3_600_000
BTC = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
ETH = DatasetKey("binance", "ETH/USDT", "ohlcv", "1h")


@attrs.frozen
class Finding:
    """A stand-in for ``mdcollect.audit.Finding``: the fields the picture reads."""

    key: DatasetKey
    check: str
    severity: str
    start: int
    end: int


@attrs.frozen
class Report:
    findings: tuple[Finding, ...]


def _store_with_a_hole() -> mdcollect.DataCollectionStorage:
    """BTC 1h on 2024-01-01 with a hole from 10:00 to 14:00; ETH complete that day."""
    st = open_storage("memory://")
    st.write(BTC, candles(T0, 10, HOUR), covered=Interval(T0, T0 + 10 * HOUR))
    st.write(
        BTC, candles(T0 + 14 * HOUR, 10, HOUR), covered=Interval(T0 + 14 * HOUR, T0 + 24 * HOUR)
    )
    st.write(ETH, candles(T0, 24, HOUR), covered=Interval(T0, T0 + 24 * HOUR))
    return st


def _rgb(name: str) -> tuple[int, int, int]:
    r, g, b, _ = (round(255 * v) for v in matplotlib.colors.to_rgba(COLORS[name]))
    return (r, g, b)


def _lanes(fig: Figure) -> dict[str, float]:
    """Each lane's label and the y of its middle, in data coordinates."""
    return {t.get_text(): t.get_position()[1] for t in fig.axes[0].texts}


def _pixel(fig: Figure, pixels: np.ndarray, ms: int, y: float) -> tuple[int, int, int]:
    """The colour drawn at time ``ms`` (UTC) and lane height ``y``."""
    x = matplotlib.dates.date2num(dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))
    px, py = fig.axes[0].transData.transform((x, y))
    row, col = int(pixels.shape[0] - py), int(px)
    r, g, b = (int(v) for v in pixels[row, col, :3])
    return (r, g, b)


def _render(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]


def test_a_hole_is_drawn_where_the_hole_is_and_coverage_around_it() -> None:
    fig = mdcollect.plot_coverage(_store_with_a_hole())
    pixels = _render(fig)
    lanes = _lanes(fig)
    assert list(lanes) == [str(BTC), str(ETH)]
    covered, hole = _rgb("covered"), _rgb("hole")
    assert covered != hole
    btc, eth = lanes[str(BTC)], lanes[str(ETH)]
    for minutes in (30, 5 * 60, 9 * 60 + 30, 14 * 60 + 30, 20 * 60, 23 * 60 + 30):
        at = T0 + minutes * 60_000
        assert _pixel(fig, pixels, at, btc) == covered, minutes
        assert _pixel(fig, pixels, at, eth) == covered, minutes
    for minutes in (10 * 60 + 20, 12 * 60, 13 * 60 + 40):
        assert _pixel(fig, pixels, T0 + minutes * 60_000, btc) == hole, minutes
        assert _pixel(fig, pixels, T0 + minutes * 60_000, eth) == covered, minutes
    # between the lanes: the background
    assert _pixel(fig, pixels, T0 + 12 * HOUR, (btc + eth) / 2) == (255, 255, 255)


def test_a_one_minute_hole_in_a_year_is_still_seen() -> None:
    st = open_storage("memory://")
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    minute, year = 60_000, 365 * 24 * HOUR
    hole = T0 + year // 2
    empty = candles(T0, 0)  # coverage only: the exchange had no rows (keeps the test fast)
    st.write(key, empty, covered=Interval(T0, hole))
    st.write(key, empty, covered=Interval(hole + minute, T0 + year))
    fig = mdcollect.plot_coverage(st)
    pixels = _render(fig)
    y = _lanes(fig)[str(key)]
    assert _pixel(fig, pixels, hole, y) == _rgb("hole")
    assert _pixel(fig, pixels, hole - 30 * 24 * HOUR, y) == _rgb("covered")


def test_start_and_end_make_every_uncovered_part_of_the_range_a_hole() -> None:
    # a bare end date includes its day: the axis is [2023-12-31, 2024-01-03)
    fig = mdcollect.plot_coverage(_store_with_a_hole(), start="2023-12-31", end="2024-01-02")
    pixels = _render(fig)
    btc = _lanes(fig)[str(BTC)]
    covered, hole = _rgb("covered"), _rgb("hole")
    assert _pixel(fig, pixels, T0 - 12 * HOUR, btc) == hole  # before the first row
    assert _pixel(fig, pixels, T0 + 2 * HOUR, btc) == covered
    assert _pixel(fig, pixels, T0 + 12 * HOUR, btc) == hole
    assert _pixel(fig, pixels, T0 + 36 * HOUR, btc) == hole  # after the last row
    x0, x1 = fig.axes[0].get_xlim()
    days = matplotlib.dates.num2date(x0), matplotlib.dates.num2date(x1)
    assert [d.strftime("%Y-%m-%d %H:%M") for d in days] == ["2023-12-31 00:00", "2024-01-03 00:00"]


def test_audit_findings_are_marked_over_their_span_by_severity() -> None:
    report = Report((
        Finding(ETH, "invalid_ohlc", "error", T0 + 3 * HOUR, T0 + 4 * HOUR),
        Finding(ETH, "price_jump", "warning", T0 + 20 * HOUR, T0 + 21 * HOUR),
        Finding(BTC, "hole", "error", T0 + 10 * HOUR, T0 + 14 * HOUR),
    ))  # fmt: skip
    fig = mdcollect.plot_coverage(_store_with_a_hole(), report=report)
    pixels = _render(fig)
    lanes = _lanes(fig)
    btc, eth = lanes[str(BTC)], lanes[str(ETH)]
    error, warning, covered, hole = (_rgb(c) for c in ("error", "warning", "covered", "hole"))
    assert len({error, warning, covered, hole}) == 4
    assert _pixel(fig, pixels, T0 + 3 * HOUR + 30 * 60_000, eth) == error
    assert _pixel(fig, pixels, T0 + 20 * HOUR + 30 * 60_000, eth) == warning
    assert _pixel(fig, pixels, T0 + 12 * HOUR, btc) == error
    # the finding is a band over the lane's middle: above it, what lies under it shows
    assert _pixel(fig, pixels, T0 + 3 * HOUR + 30 * 60_000, eth - 0.3) == covered
    assert _pixel(fig, pixels, T0 + 12 * HOUR, btc - 0.3) == hole
    # elsewhere, nothing marked
    assert _pixel(fig, pixels, T0 + 8 * HOUR, eth) == covered
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["covered", "hole", "audit error", "audit warning"]


def test_keys_choose_the_lanes_in_the_order_given() -> None:
    st = _store_with_a_hole()
    fig = mdcollect.plot_coverage(st, [str(ETH), BTC, ETH])
    assert list(_lanes(fig)) == [str(ETH), str(BTC)]
    assert list(_lanes(mdcollect.plot_coverage(st, BTC))) == [str(BTC)]


def test_bad_input_is_refused_naming_the_value() -> None:
    st = _store_with_a_hole()
    with pytest.raises(InvalidRequest, match=r"no dataset 'binance:ohlcv:1h:SOL/USDT'.*stored: "):
        mdcollect.plot_coverage(st, ["binance:ohlcv:1h:SOL/USDT"])
    with pytest.raises(InvalidRequest, match="end 'yesterday' is not a date"):
        mdcollect.plot_coverage(st, end="yesterday")
    with pytest.raises(InvalidRequest, match=r"report must be an AuditReport .*got dict"):
        mdcollect.plot_coverage(st, report={"findings": []})
    with pytest.raises(InvalidRequest, match="has no key, severity, start, end"):
        mdcollect.plot_coverage(st, report=Report((BTC,)))  # type: ignore[arg-type]
    bad = Finding(BTC, "hole", "fatal", T0, T0 + HOUR)
    with pytest.raises(InvalidRequest, match="severity 'fatal' is not valid; allowed: error"):
        mdcollect.plot_coverage(st, report=Report((bad,)))
    late = Finding(BTC, "hole", "error", T0, "2024-01-02")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="finding end '2024-01-02' is not valid; a finding"):
        mdcollect.plot_coverage(st, report=Report((late,)))
    with pytest.raises(InvalidRequest, match="keys must be a DatasetKey, a key string"):
        mdcollect.plot_coverage(st, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="storage must be a DataCollectionStorage"):
        mdcollect.plot_coverage(42)  # type: ignore[arg-type]


def test_one_to_two_hundred_datasets_stay_readable() -> None:
    st = open_storage("memory://")
    empty = candles(T0, 0, HOUR)
    keys = [DatasetKey("binance_futures", f"C{i:03d}/USDT:USDT", "ohlcv", "1m") for i in range(200)]
    for i, key in enumerate(keys):
        st.write(key, empty, covered=Interval(T0 + i * HOUR, T0 + 300 * HOUR))
    one = mdcollect.plot_coverage(st, keys[:1])
    many = mdcollect.plot_coverage(st, start="2024-01-01", end="2024-01-14")
    assert len(_lanes(many)) == 200
    assert one.get_size_inches()[1] < 3 < 20 < many.get_size_inches()[1]
    renderer = many.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [t.get_window_extent(renderer) for t in many.axes[0].texts]
    assert min(t.get_fontsize() for t in many.axes[0].texts) >= 5
    width, height = many.bbox.width, many.bbox.height
    for above, below in itertools.pairwise(boxes):
        assert below.y1 <= above.y0  # no two labels overlap
    assert all(b.x0 >= 0 and b.x1 <= width and b.y0 >= 0 and b.y1 <= height for b in boxes)
    axes = many.axes[0].get_window_extent(renderer)
    assert all(b.x1 <= axes.x0 for b in boxes)  # labels left of the lanes


def test_a_store_with_nothing_draws_an_empty_picture() -> None:
    fig = mdcollect.plot_coverage(open_storage("memory://"))
    assert [t.get_text() for t in fig.axes[0].texts] == ["nothing stored"]
    _render(fig)


def test_no_pyplot_figure_is_left_behind() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    mdcollect.plot_coverage(_store_with_a_hole())
    assert plt.get_fignums() == before


def test_importing_mdcollect_does_not_import_matplotlib() -> None:
    proc = run_python(
        "import sys, mdcollect\n"
        "assert mdcollect.plot_coverage.__doc__\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "print('ok')"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_without_matplotlib_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what a missing package looks like
    with pytest.raises(MdcollectError, match=r"pip install 'mdcollect\[plot\]'"):
        mdcollect.plot_coverage(_store_with_a_hole())


# -- mdcollect ls --plot ------------------------------------------------------------------
def test_ls_plot_writes_the_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    with open_storage(url) as st:
        for key, frame, covered in (
            (BTC, candles(T0, 10, HOUR), Interval(T0, T0 + 10 * HOUR)),
            (BTC, candles(T0 + 14 * HOUR, 10, HOUR), Interval(T0 + 14 * HOUR, T0 + 24 * HOUR)),
            (ETH, candles(T0, 24, HOUR), Interval(T0, T0 + 24 * HOUR)),
        ):
            st.write(key, frame, covered=covered)
        expected = mdcollect.plot_coverage(st)
    out = tmp_path / "coverage.png"
    assert main(["--storage", url, "ls", "--plot", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote the coverage picture of 2 dataset(s) to {out}" in captured.err
    assert "holes=1" in captured.out  # the listing is still printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    w, h = expected.get_size_inches() * expected.dpi
    assert image.shape[:2] == (round(h), round(w))
    pixels = np.round(image * 255).astype(np.uint8)
    btc = _lanes(expected)[str(BTC)]
    expected.canvas.draw()  # the same layout the file was drawn with
    assert _pixel(expected, pixels, T0 + 12 * HOUR, btc) == _rgb("hole")
    assert _pixel(expected, pixels, T0 + 2 * HOUR, btc) == _rgb("covered")


def test_ls_plot_refuses_a_bad_file_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "ls", "--plot", str(tmp_path / "c.jpg")]) == 2
    assert "must end in .png or .svg or .pdf" in capsys.readouterr().err
    assert main(["--storage", url, "ls", "--plot", str(tmp_path / "no" / "c.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


# -- notebooks --------------------------------------------------------------------------
@pytest.mark.slow  # starts a real ipykernel (a few seconds)
def test_a_notebook_shows_the_picture_once_with_or_without_pyplot(tmp_path: Path) -> None:
    import nbclient
    import nbformat

    from tests.test_notebook import _kernel_manager

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            "import mdcollect\n"
            "store = mdcollect.open_storage('memory://')\n"
            "mdcollect.plot_coverage(store)",
            "%matplotlib inline\nimport matplotlib.pyplot as plt\nmdcollect.plot_coverage(store)",
            "print(plt.get_fignums())",
        )
    ]
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=120,
                                     startup_timeout=120)  # fmt: skip
    client.execute()
    for cell in nb.cells[:2]:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, cell.outputs  # shown, and only once
        assert images[0].output_type == "execute_result"
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert printed.strip() == "[]"  # nothing left open in pyplot


def test_a_real_audit_report_is_drawn() -> None:
    """The picture reads ``mdcollect.audit``'s own report: a planted bad candle (high
    below low) shows as an error over its hour."""
    st = _store_with_a_hole()
    bad = candles(T0 + 3 * HOUR, 1, HOUR)
    bad["high"], bad["low"] = bad["low"] - 1.0, bad["high"] + 1.0
    st._write_unchecked(ETH, bad)
    report = mdcollect.audit(st, [ETH])
    assert not report.ok and {f.check for f in report.findings} >= {"invalid_ohlc"}
    fig = mdcollect.plot_coverage(st, report=report)
    pixels = _render(fig)
    eth = _lanes(fig)[str(ETH)]
    assert _pixel(fig, pixels, T0 + 3 * HOUR + 30 * 60_000, eth) == _rgb("error")
    assert _pixel(fig, pixels, T0 + 8 * HOUR, eth) == _rgb("covered")
