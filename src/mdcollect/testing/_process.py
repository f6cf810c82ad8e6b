"""The emulator in a child process, for tests that kill servers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence

import attrs

from mdcollect.testing._lifecycle import Lifecycle
from mdcollect.testing._market import MarketSpec

__all__ = ["EmulatorProcess"]


class EmulatorProcess(Lifecycle):
    """Run ``python -m mdcollect.testing`` in a child process and expose its ``url``.

    ``markets`` adds or replaces markets as :class:`ExchangeEmulator` does (each is
    passed to the child as ``--market JSON``).

    Example::

        with EmulatorProcess(seed=1) as proc:
            ex = ccxt.binance()
            redirect_urls(ex, proc.url)
            ...
            proc.kill()  # the server dies mid-test
    """

    def __init__(
        self,
        *,
        port: int = 0,
        seed: int = 0,
        now: int | None = None,
        rate_limits: bool = True,
        markets: Iterable[MarketSpec] = (),
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "mdcollect.testing",
            "--port",
            str(port),
            "--seed",
            str(seed),
            "--exit-with-parent",
        ]
        if now is not None:
            self.args += ["--now", str(now)]
        if not rate_limits:
            self.args.append("--no-rate-limits")
        for spec in markets:
            self.args += ["--market", json.dumps(attrs.asdict(spec), separators=(",", ":"))]
        self.args += list(extra_args)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("EmulatorProcess is not started")
        return self._proc.pid

    def start(self) -> EmulatorProcess:
        """Start the child and wait for its URL line."""
        self._proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.kill()
            raise RuntimeError(f"emulator process did not start: {line!r}")
        self.url = line
        return self

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        return None if self._proc is None else self._proc.poll()

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM the child (it stops serving cleanly) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)

    def _shut_down(self) -> None:
        self.terminate()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
