"""ccxt's class facts kept on disk (``exchanges/_ccxt_facts.py``): a later process checks
exchange keys and timeframes without importing ccxt, and gets exactly what ccxt says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdcollect.exchanges import _ccxt_facts, described_exchanges
from mdcollect.exchanges._ccxt_facts import ccxt_identity, class_facts, facts_path

#: Prints each key's capabilities as JSON, then whether ccxt was imported.
DESCRIBE = """
import json, sys
from mdcollect.exchanges import exchange_info
keys = sys.argv[1:]
print(json.dumps({k: exchange_info(k).capabilities() for k in keys}, sort_keys=True))
print("ccxt" in sys.modules)
"""
KEYS = [*described_exchanges(), "kucoin"]  # every key with facts of its own, and a plain id


def python(code: str, home: Path, *args: str, path: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MDCOLLECT_HOME=str(home))
    if path:
        env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip


def test_a_later_process_reads_the_same_facts_without_ccxt(tmp_path: Path) -> None:
    first = python(DESCRIBE, tmp_path, *KEYS)
    assert first.returncode == 0, first.stderr
    described, imported = first.stdout.splitlines()
    assert imported == "True"  # read from ccxt, then kept
    assert (tmp_path / "cache" / "ccxt-facts.json").is_file()
    second = python(DESCRIBE, tmp_path, *KEYS)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [described, "False"]
    facts = json.loads(described)
    assert facts["binance"]["timeframes"][:2] == ["1s", "1m"]  # ccxt's list, as it gives it
    assert facts["okx"]["candles_per_request"] == 100


@pytest.fixture
def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The facts file of this test's own home."""
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path))
    path = facts_path()
    assert path == tmp_path / "cache" / "ccxt-facts.json"
    path.parent.mkdir()
    return path


def test_facts_of_another_ccxt_are_not_used(kept: Path) -> None:
    identity = ccxt_identity()
    assert identity is not None
    bogus = {"timeframes": ["7m"], "limit": 7}
    # as kept by another ccxt: the same files elsewhere, or these files before an upgrade
    for other in (
        [[f"/elsewhere{p}", size, mtime] for p, size, mtime in identity],
        [[p, size, mtime - 1] for p, size, mtime in identity],
    ):
        kept.write_text(json.dumps({"ccxt": other, "facts": {"binance:spot": bogus}}))
        timeframes, limit = class_facts("binance", "spot")
        assert timeframes[:2] == ("1s", "1m") and limit == 1000
        doc = json.loads(kept.read_text())  # replaced by this ccxt's
        assert doc["ccxt"] == identity and doc["facts"]["binance:spot"]["limit"] == 1000
    # this ccxt's own facts are what it reads back
    doc["facts"]["binance:spot"] = bogus
    kept.write_text(json.dumps(doc))
    assert class_facts("binance", "spot") == (("7m",), 7)


def test_a_broken_file_is_read_from_ccxt_again(kept: Path) -> None:
    identity = ccxt_identity()
    for text in (
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"ccxt": identity, "facts": ["a list"]}),
        json.dumps({"ccxt": identity, "facts": {"binance:spot": {"timeframes": "1m"}}}),
        json.dumps({"ccxt": identity, "facts": {"binance:spot": {"timeframes": [], "limit": -1}}}),
        json.dumps({"ccxt": identity, "facts": {"binance:spot": {"timeframes": [1], "limit": 5}}}),
    ):
        kept.write_text(text)
        timeframes, limit = class_facts("binance", "spot")
        assert "1h" in timeframes and limit == 1000, text
        assert json.loads(kept.read_text())["facts"]["binance:spot"]["limit"] == 1000


def test_an_upgraded_ccxt_has_another_identity(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "ccxt"
    (fake / "base").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '4.0.0'\n")
    (fake / "base" / "exchange.py").write_text("")
    # the module alone (stdlib and platformdirs), without mdcollect's import of pandas
    code = (
        "import importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('facts', {_ccxt_facts.__file__!r})\n"
        "facts = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(facts)\n"
        "print(json.dumps(facts.ccxt_identity()))"
    )
    before = python(code, tmp_path, path=str(tmp_path / "site"))
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)[0][0] == str(fake / "__init__.py")
    (fake / "__init__.py").write_text("__version__ = '4.0.10'\n")
    after = python(code, tmp_path, path=str(tmp_path / "site"))
    assert json.loads(after.stdout) != json.loads(before.stdout)


def test_an_unwritable_cache_only_costs_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("MDCOLLECT_HOME", str(not_a_dir))
    timeframes, limit = class_facts("binance", "spot")
    assert "1h" in timeframes and limit == 1000
    assert not facts_path().exists()
