"""A team service: one ``mdcollect serve`` keeps the data, and a Step Functions task
asks it for a range through the Lambda proxy before a backtest reads it.

    python examples/team_service.py               # starts `mdcollect serve` here, calls it
    python examples/team_service.py --url http://data-collection.tradai.local:8002

Without ``--url`` it starts ``mdcollect serve --storage parquet://team-store`` on a free
port (with ``--emulate`` when ``MDCOLLECT_EMULATE=1``: offline) and stops it at the end.
The calls are what ``mdcollect.remote.lambda_handler`` answers in AWS, where
``DATA_COLLECTION_URL`` is set in the function's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

import mdcollect.remote

SYMBOL, TIMEFRAME, EXCHANGE = "BTC/USDT:USDT", "1h", "binance_futures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def service(storage: str, emulate: bool) -> Iterator[str]:
    """``mdcollect serve`` in a child process, until the block ends (SIGINT, as Ctrl-C)."""
    port = free_port()
    argv = [sys.executable, "-m", "mdcollect.cli", "serve", "--storage", storage,
            "--port", str(port), "--quiet"] + ["--emulate"] * emulate  # fmt: skip
    proc = subprocess.Popen(argv)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # nothing waits forever
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"mdcollect serve exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v1/health", timeout=2).is_success:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"mdcollect serve did not answer at {url} within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def step(operation: str, **params: object) -> object:
    """One Step Functions task: the Lambda proxy's input and the result it answers.

    ``mdcollect.remote.lambda_handler`` reads its settings from the environment when it
    is first looked up, as at a Lambda cold start: after ``DATA_COLLECTION_URL`` is set.
    """
    answer = mdcollect.remote.lambda_handler({"operation": operation, "params": params}, None)
    assert answer["statusCode"] == 200 and answer["body"]["success"], answer
    result = answer["body"]["data"]["result"]
    if isinstance(result, dict) and result.get("error"):
        raise SystemExit(f"{operation} failed: {result['error']}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=None, help="a running service (default: start one)")
    p.add_argument("--storage", default="parquet://team-store", help="the started one's store")
    args = p.parse_args()
    emulate = os.environ.get("MDCOLLECT_EMULATE", "").lower() in ("1", "true", "yes", "on")
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(service(args.storage, emulate))
        os.environ["DATA_COLLECTION_URL"] = url  # the Lambda function's configuration
        print("health:", step("health"))
        sync = step("ensure-data", symbols=[SYMBOL], timeframe=TIMEFRAME, exchange=EXCHANGE,
                    start_date="20240101", end_date="20240107", padding_days=0)  # fmt: skip
        assert isinstance(sync, dict), sync
        deadline = time.monotonic() + 300
        while sync["status"] == "running":  # a long sync: poll it, as a Wait state would
            assert time.monotonic() < deadline, sync
            time.sleep(2)
            sync = step("sync_status", job_id=sync["job_id"])
            assert isinstance(sync, dict), sync
        assert sync["status"] == "completed", sync
        report = sync["report"]
        print(f"ensure-data: ok={report['ok']}, {report['candles_fetched']} candles fetched "
              f"in {report['requests']} requests")  # fmt: skip
        candles = step("fetch_ohlcv", symbol=SYMBOL, timeframe=TIMEFRAME, exchange=EXCHANGE,
                       start="2024-01-01", end="2024-01-08", limit=1000)  # fmt: skip
        assert isinstance(candles, dict), candles
        first, last = candles["data"][0], candles["data"][-1]
        print(f"fetch_ohlcv: {candles['count']} candles {candles['columns']}")
        print(f"  first {first}\n  last  {last}")


if __name__ == "__main__":
    main()
