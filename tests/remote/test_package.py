"""Packaging: optional extras stay out of ``import mdcollect``; exports match ``__all__``."""

from __future__ import annotations

from types import FunctionType

import mdcollect.remote
import mdcollect.service
from tests.conftest import run_python


def test_import_mdcollect_imports_neither_remote_nor_service() -> None:
    code = (
        "import sys, mdcollect\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('httpx', 'starlette', 'uvicorn')"
        " or m.startswith(('mdcollect.remote', 'mdcollect.service'))]\n"
        "print(bad)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_remote_does_not_import_the_service_or_ccxt() -> None:
    result = run_python(
        "import sys, mdcollect.remote\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ccxt', 'starlette', 'mdcollect.service'))))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_all_matches_exports() -> None:
    for module in (mdcollect.remote, mdcollect.service):
        assert len(set(module.__all__)) == len(module.__all__)
        public = {n for n in vars(module) if not n.startswith("_")}
        lazy = {"lambda_handler"} if module is mdcollect.remote else set()  # made on access
        assert set(module.__all__) - lazy <= public
        assert all(callable(getattr(module, n)) for n in lazy)
        undocumented = [
            n
            for n in module.__all__
            if isinstance(getattr(module, n), type | FunctionType)
            and not getattr(module, n).__doc__
        ]
        assert undocumented == []
