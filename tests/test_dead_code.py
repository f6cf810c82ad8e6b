"""No dead code: vulture finds nothing in ``src/mdcollect`` beyond ``vulture_whitelist.py``.

A new finding is either dead (remove it) or used in a way vulture cannot see (a
protocol method, an attribute another library reads, public API used only by
users and tests): add it to the whitelist with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vulture")

ROOT = Path(__file__).resolve().parents[1]


def test_vulture_finds_no_dead_code() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vulture",
            str(ROOT / "src" / "mdcollect"),
            str(ROOT / "vulture_whitelist.py"),
            "--min-confidence",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"vulture found dead code:\n{result.stdout}{result.stderr}"
