"""A tiny real HTTP server on loopback that answers from a script."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Answer:
    """What the server answers to one request: a status, JSON body and extra ``headers``,
    after ``delay`` s."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.body, self.delay = status, {} if body is None else body, delay
        self.headers = headers or {}


class ScriptedServer:
    """Answers requests with ``script`` in order, then from ``routes`` by path (else 404).

    ``requests`` keeps ``(method, path_with_query, body_bytes)`` of every request,
    ``headers`` their headers (lower-case names).
    """

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.routes: dict[str, Answer] = {}
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, body))
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if server.script:
                    answer = server.script.pop(0)
                else:
                    answer = server.routes.get(self.path.split("?")[0], Answer(404, {"error": "not found"}))  # fmt: skip
                if answer.delay:
                    time.sleep(answer.delay)
                payload = json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout)
                    pass

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATA_COLLECTION_URL", "SERVICE_DISCOVERY_NAMESPACE", "REQUEST_TIMEOUT", "MAX_RETRIES",
        "MDCOLLECT_API_TOKEN", "ENVIRONMENT",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
