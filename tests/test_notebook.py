"""A new user's first notebook, executed for real by nbclient in an ipykernel.

The notebook starts the exchange emulator, makes one ``ExchangeClient`` and
runs ``ensure_data`` twice with it: the first call draws progress bars
(ipywidgets, through ``tqdm.auto``) and shows the report as an HTML table; the
second asks the exchange nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

import mdcollect

WIDGET = "application/vnd.jupyter.widget-view+json"

CELLS = [
    """\
import mdcollect
from mdcollect.testing import ExchangeEmulator

emu = ExchangeEmulator().start()
client = mdcollect.ExchangeClient("binance", base_url=emu.url)
store = mdcollect.open_storage("memory://")
args = (["BTC/USDT", "ETH/USDT"], "1h", "2024-01-01", "2024-01-31")""",
    """\
first = mdcollect.ensure_data(*args, exchange=client, storage=store)
assert first.ok and first.requests > 0 and first.candles_fetched == 2 * 61 * 24, repr(first)
first""",
    """\
second = mdcollect.ensure_data(*args, exchange=client, storage=store)
assert second.ok and second.requests == 0 and second.candles_fetched == 0, repr(second)
second""",
    """\
print(second)""",
    """\
import gc

await client.close()
emu.stop()
_ = gc.collect()  # an unclosed aiohttp session would say so now""",
]


def _kernel_manager(tmp_path: Path) -> KernelManager:
    """An ipykernel on this interpreter, importing the mdcollect under test."""
    src = str(Path(mdcollect.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    spec_dir = tmp_path / "kernels" / "mdcollect-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mdcollect test",
                "language": "python",
                "env": {"PYTHONPATH": path},
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="mdcollect-test", kernel_spec_manager=specs)


def _run(tmp_path: Path) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=120,  # per cell
        startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any error output
    return nb


def test_first_notebook_shows_progress_widgets_and_html_reports(tmp_path: Path) -> None:
    nb = _run(tmp_path)
    outputs = [cell.outputs for cell in nb.cells]
    every = [o for cell in outputs for o in cell]
    assert not [o for o in every if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in every if o.output_type == "stream")
    assert "Unclosed client session" not in streams
    assert "Unclosed connector" not in streams

    # the first call drew one bar per symbol as a widget; the second drew none
    widgets = [o for o in outputs[1] if WIDGET in o.get("data", {})]
    assert len(widgets) == 2
    assert not [o for o in outputs[2] if WIDGET in o.get("data", {})]

    first_html = _result(outputs[1])["text/html"]
    assert first_html.startswith("<table") and first_html.count("<tr>") == 3  # head + 2
    assert "<td>BTC/USDT</td>" in first_html and "<td>ETH/USDT</td>" in first_html
    assert "[2023-12-02, 2024-02-01) (61 days)" in first_html  # 30 days of padding
    assert first_html.count("<td>1,464</td>") == 2
    second_html = _result(outputs[2])["text/html"]
    assert second_html.count("<td>61 days in [2023-12-02, 2024-02-01)</td>") == 2
    assert "0 requests" in second_html
    assert len(_result(outputs[2])["text/plain"]) < 400  # repr, bounded

    printed = "".join(o.text for o in outputs[3] if o.output_type == "stream")
    assert printed.startswith("binance 1h: ensured [2023-12-02, 2024-02-01) UTC (61 days)\n")
    assert "binance:ohlcv:1h:BTC/USDT: had 61 days in [2023-12-02, 2024-02-01)" in printed


def _result(outputs: list[Any]) -> dict[str, str]:
    (result,) = [o for o in outputs if o.output_type == "execute_result"]
    return dict(result.data)
