"""Pre-hook benchmark: ``mdcollect ensure`` when everything is already stored.

    .venv/bin/python bench/prehook.py [--repeat 15] [--symbols BTC/USDT ETH/USDT]
                                      [--compare OTHER/src]

A fresh ArcticDB store (the default kind) is filled once from the built-in exchange
emulator (``mdcollect --emulate ensure ...``), in a fresh ``MDCOLLECT_HOME``. Then the
covered ``mdcollect ensure`` (the console script, as a backtest's pre-hook calls it)
runs once cold (the first run after install reads ccxt's facts of the exchange and
keeps them), and then in rounds with its baselines, each round running, one after
the other so that all see the same machine load:

* ``python -c pass``: the interpreter alone;
* ``python -c "import mdcollect"``: the library's import;
* ``python -c "import mdcollect, arcticdb"``: the least a covered ensure on the
  default store imports (coverage is in ArcticDB's metadata);
* ``mdcollect ensure ...``: the no-op pre-hook (checked: exit 0, 0 requests);
* ``python -c "import mdcollect, ccxt, aiohttp"``: what the pre-hook paid at least
  while it imported the exchange stack;
* with ``--compare OTHER/src``: the same ``mdcollect ensure`` run from another source
  tree (e.g. ``git archive`` of an older commit), for a before/after in one run.

Printed: the median wall time of each, the pre-hook's ratios to the baselines, and
whether the target (issue 18: under 0.8 s) is met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.8


def mdcollect_command() -> list[str]:
    """The console script beside this interpreter (what users run), else ``-m``."""
    script = Path(sys.executable).with_name("mdcollect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mdcollect.cli"]


def timed(
    cmd: list[str], env: dict[str, str], src: str | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    if src is not None:
        env = dict(env, PYTHONPATH=src)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    return time.perf_counter() - t, done


def checked(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeat", type=int, default=15, help="rounds of the commands")
    p.add_argument("--symbols", nargs="+", default=["BTC/USDT", "ETH/USDT"])
    p.add_argument("--timeframe", default="1h")
    p.add_argument("--start", default="2024-01-01")
    p.add_argument("--end", default="2024-03-31")
    p.add_argument("-x", "--exchange", default="binance")
    p.add_argument("--compare", metavar="SRC", help="another source tree to time ensure from")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="mdcollect-prehook-") as tmp:
        env = dict(os.environ, MDCOLLECT_HOME=str(Path(tmp) / "home"))
        url = f"arctic+lmdb://{Path(tmp) / 'store'}"
        ensure = [*mdcollect_command(), "--storage", url, "--no-progress", "ensure",
                  *args.symbols, "-t", args.timeframe, "--start", args.start, "--end",
                  args.end, "-x", args.exchange]  # fmt: skip
        seconds, done = timed([*ensure[:1], "--emulate", *ensure[1:]], env)
        checked(done, "filling the store from the emulator")
        print(f"filled {url} from the emulator in {seconds:.1f} s:")
        print("  " + done.stdout.strip().splitlines()[-1])
        cold, done = timed(ensure, env)
        checked(done, "the first covered ensure")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import mdcollect": [sys.executable, "-c", "import mdcollect"],
            "import mdcollect, arcticdb": [sys.executable, "-c", "import mdcollect, arcticdb"],
            "mdcollect ensure (covered)": ensure,
            "import mdcollect, ccxt, aiohttp": [
                sys.executable, "-c", "import mdcollect, ccxt, aiohttp"
            ],
        }  # fmt: skip
        sources = dict.fromkeys(commands)
        if args.compare:
            name = f"mdcollect ensure, {Path(args.compare).name or args.compare}"
            commands[name], sources[name] = ensure, str(Path(args.compare).resolve())
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                seconds, done = timed(cmd, env, sources[name])
                checked(done, name)
                if cmd is ensure and "0 rows, 0 requests" not in done.stdout:
                    raise SystemExit(f"the covered ensure fetched something:\n{done.stdout}")
                times[name].append(seconds)

    median = {name: statistics.median(ts) for name, ts in times.items()}
    hook = median["mdcollect ensure (covered)"]
    print(f"\nmedians of {args.repeat} rounds (wall time, each a fresh process):")
    for name, value in median.items():
        print(f"  {name:34} {value:6.3f} s   (min {min(times[name]):.3f})")
    print(f"  {'first covered ensure (cold facts)':34} {cold:6.3f} s   (once)")
    print("\nthe covered ensure:")
    print(f"  {hook / median['python -c pass']:6.1f} x python -c pass")
    print(f"  {hook / median['import mdcollect']:6.2f} x import mdcollect "
          f"({hook - median['import mdcollect']:+.3f} s)")  # fmt: skip
    print(f"  {hook / median['import mdcollect, arcticdb']:6.2f} x import mdcollect, arcticdb "
          f"({hook - median['import mdcollect, arcticdb']:+.3f} s)")  # fmt: skip
    print(f"  {hook / median['import mdcollect, ccxt, aiohttp']:6.2f} x import mdcollect, ccxt, "
          "aiohttp")  # fmt: skip
    ok = hook < TARGET_S
    print(f"target: under {TARGET_S} s: {'met' if ok else 'NOT met'} ({hook:.3f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
