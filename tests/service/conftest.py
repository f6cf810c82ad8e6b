"""The service on a real loopback port (uvicorn in a thread), backed by the emulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mdcollect import DataCollectionStorage, open_storage
from mdcollect.exchanges import ExchangeClient
from mdcollect.service import create_app
from mdcollect.testing import ExchangeEmulator
from tests.conftest import free_port


class Received:
    """One request as the server received it."""

    def __init__(self, method: str, path: str, query: str, body: bytes) -> None:
        self.method, self.path, self.query, self.body = method, path, query, body

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """ASGI middleware keeping every HTTP request the server received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[Received] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.requests.append(
                        Received(scope["method"], scope["path"],
                                 scope["query_string"].decode(), b"".join(chunks))
                    )  # fmt: skip
            return message

        if scope["method"] == "GET":
            self.requests.append(
                Received(scope["method"], scope["path"], scope["query_string"].decode(), b"")
            )
            await self.app(scope, receive, send)
        else:
            await self.app(scope, recording_receive, send)


class LiveServer:
    """``app`` under uvicorn on 127.0.0.1 in a thread; ``.url``, ``.requests``."""

    def __init__(self, app: ASGIApp) -> None:
        self.recorder = Recorder(app)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.recorder, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def requests(self) -> list[Received]:
        return self.recorder.requests

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def emulated(emu: ExchangeEmulator) -> Callable[[str], ExchangeClient]:
    """An exchange factory sending every sync's requests to the emulator."""

    def factory(key: str) -> ExchangeClient:
        return ExchangeClient(key, base_url=emu.url, enableRateLimit=False)

    return factory


@pytest.fixture
def storage() -> DataCollectionStorage:
    return open_storage("memory://")


@pytest.fixture
def serve(
    emu: ExchangeEmulator, storage: DataCollectionStorage
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**create_app_kwargs)`` starts the service on the test's storage and emulator."""
    started: list[LiveServer] = []

    def _serve(**kwargs: Any) -> LiveServer:
        kwargs.setdefault("exchange_factory", emulated(emu))
        kwargs.setdefault("api_token", "")
        server = LiveServer(create_app(kwargs.pop("storage", storage), **kwargs))
        started.append(server.__enter__())
        return server

    yield _serve
    for server in started:
        server.__exit__()


@pytest.fixture
def live(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve()


@pytest.fixture(scope="module")
def shared(emu: ExchangeEmulator) -> Iterator[LiveServer]:
    """One service per module (memory storage) for tests that never change its state."""
    app = create_app(
        open_storage("memory://"), exchange_factory=emulated(emu), api_token="",
        max_sync_candles=1_000_000,
    )  # fmt: skip
    with LiveServer(app) as server:
        yield server
