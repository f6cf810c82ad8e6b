"""Secrets never reach output: every surface that shows a storage URL or a token.

Each test uses a recognisable secret, captures everything the surface produces (its
return values, stdout and stderr at the file-descriptor level, every log record at DEBUG,
the files it writes, the HTTP answers) and asserts the secret appears nowhere, while
the credential still works: the raw URL is used to connect.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mdcollect import DatasetKey, Interval, InvalidRequest, StorageError, open_storage
from mdcollect._redact import redact, secrets_in
from mdcollect.cli import main
from mdcollect.remote import DataCollectionClient, ListEmitter, make_handler
from mdcollect.service import create_app
from tests.conftest import T0, RedisServer, candles, free_port, make_bucket
from tests.service.conftest import LiveServer

SECRET = "S3CRET-abc123"
KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")


def _everything(caplog: pytest.LogCaptureFixture, *texts: object) -> str:
    """All captured log records (message and arguments formatted) plus ``texts``; an
    exception among ``texts`` counts with its whole chain of causes, as a traceback shows."""
    logged = [f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    shown: list[str] = []
    for text in texts:
        while isinstance(text, BaseException):
            shown.append(f"{type(text).__name__}: {text}")
            text = text.__cause__ or text.__context__
        if text is not None:
            shown.append(str(text))
    return "\n".join([*logged, *shown])


@pytest.fixture(scope="module")
def pw_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server that requires the password ``SECRET``."""
    import redis

    server = RedisServer(tmp_path_factory.mktemp("redis-pw"))
    server.start()
    redis.Redis(host="127.0.0.1", port=server.port).config_set("requirepass", SECRET)
    yield server
    server.stop()


@pytest.fixture
def redis_url(pw_redis: RedisServer) -> str:
    import redis

    redis.Redis(host="127.0.0.1", port=pw_redis.port, password=SECRET).flushall()
    return f"redis://default:{SECRET}@127.0.0.1:{pw_redis.port}/0?prefix=t:"


@pytest.fixture
def s3_url(s3_server: dict[str, str | int]) -> str:
    # moto checks no signature: any access key and secret are accepted
    bucket = make_bucket(s3_server)
    return (
        f"arctic+s3://{s3_server['host']}:{bucket}?port={s3_server['port']}"
        f"&access=AK-{SECRET}&secret={SECRET}"
    )


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# -- the one redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host/0?prefix=md:", "redis://:***@host/0?prefix=md:"),
        ("rediss://u:p@ss/w@host/0", "rediss://u:***@ss/w@host/0"),
        ("redis://u:p@ss@host/0", "redis://u:***@host/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        (
            "arctic+s3://h:b?port=1&access=k&secret=s&path_prefix=x",
            "arctic+s3://h:b?port=1&access=***&secret=***&path_prefix=x",
        ),
        (
            "arctic+s3://h:b?aws_access_key_id=A&token=T",
            "arctic+s3://h:b?aws_access_key_id=***&token=***",
        ),
        ("redis://h/0?password=p&socket_timeout=5", "redis://h/0?password=***&socket_timeout=5"),
        ("http://h:8002/api?api_key=K#f", "http://h:8002/api?api_key=***#f"),
        ("redis://h/0?password=a,b&x=1", "redis://h/0?password=***&x=1"),
        ("Connection<host=h,password=p,db=0>", "Connection<host=h,password=***,db=0>"),
        ("retry: password=p refused", "retry: password=*** refused"),
        ("parquet:///data/token=1/md", "parquet:///data/token=1/md"),
        ("parquet:///data/md", "parquet:///data/md"),
        ("arctic+lmdb:///data/a:b/c?map_size=2GB", "arctic+lmdb:///data/a:b/c?map_size=2GB"),
        ("memory://", "memory://"),
    ],
)
def test_redact_masks_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown  # idempotent


def test_redact_masks_the_bare_values_a_url_carries() -> None:
    url = f"redis://app:{SECRET.replace('-', '%2D')}@db/0"
    assert secrets_in(url) == {SECRET.replace("-", "%2D"), SECRET}
    message = f"AUTH {SECRET} refused; quoted: 'redis://app:{SECRET}@db/0'"
    assert redact(message, secrets_in(url)) == "AUTH *** refused; quoted: 'redis://app:***@db/0'"


def test_there_is_one_redaction() -> None:
    import mdcollect.service._app as app_mod
    import mdcollect.storage.arctic as arctic_mod

    assert not hasattr(arctic_mod, "_redact") and not hasattr(app_mod, "_redact")


# -- storages: url, repr, errors, logs ------------------------------------------------------


@pytest.mark.parametrize("which", ["redis", "s3"])
def test_storage_url_and_repr_hide_the_secret_and_it_still_connects(
    which: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = request.getfixturevalue(f"{which}_url")
    with open_storage(url) as st:
        assert st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * 60_000)) == 10
        assert len(st.read(KEY)) == 10
        shown, text = st.url, repr(st)
        assert st.keys() == [KEY]
    with open_storage(url) as again:  # the raw URL, not the shown one, connects
        assert len(again.read(KEY)) == 10
    assert SECRET not in _everything(caplog, shown, text)
    assert shown == redact(url) and "***" in shown and shown in text


def test_a_wrong_redis_password_fails_with_a_redacted_message(
    pw_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"WRONG-{SECRET}"
    st = open_storage(f"redis://default:{wrong}@127.0.0.1:{pw_redis.port}/0")
    with pytest.raises(StorageError) as failed:
        st.keys()
    message = str(failed.value)
    assert f"127.0.0.1:{pw_redis.port}" in message and "password" in message
    st.close()
    with pytest.raises(StorageError, match="closed") as closed:
        st.keys()
    assert SECRET not in _everything(caplog, failed.value, closed.value, st, st.url)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@/0",
        f"redis://:{SECRET}@127.0.0.1:6379/0?compression=snappy",
        f"redis://:{SECRET}@127.0.0.1:6379/0?prefix=",
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
        f"arctic+s3://nobucket?access=AK&secret={SECRET}",
        f"arctic+lmdb://?secret={SECRET}",
        f"arctic+lmdb:///tmp/x?secret={SECRET}",
        f"nosuch://user:{SECRET}@host",
        f"user:{SECRET}@host",
    ],
)
def test_bad_storage_urls_are_refused_without_the_secret(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        open_storage(url).close()
    assert SECRET not in _everything(caplog, refused.value)


def test_closed_s3_storage_error_hides_the_secret(
    s3_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    st = open_storage(s3_url)
    st.close()
    with pytest.raises(StorageError, match="closed") as closed:
        st.coverage(KEY)
    assert SECRET not in _everything(caplog, closed.value)


def test_an_s3_storage_that_cannot_open_fails_with_a_redacted_message(
    s3_server: dict[str, str | int],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = (
        f"arctic+s3://127.0.0.1:nosuchbucket?port={s3_server['port']}"
        f"&access=AK-{SECRET}&secret={SECRET}"
    )
    with pytest.raises(StorageError, match="NoSuchBucket") as failed:
        open_storage(url).close()
    message = str(failed.value)
    assert message.startswith(f"ArcticDB could not open {redact(url)}")
    printed = capfd.readouterr()  # ArcticDB's own log lines go to stderr
    assert SECRET not in _everything(caplog, failed.value, printed.out, printed.err)


# -- the command line ---------------------------------------------------------------------


def test_cli_ls_export_and_ensure_never_print_the_secret(
    redis_url: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert main(["--storage", redis_url, "ls"]) == 0  # empty: "no datasets in URL"
    empty = capfd.readouterr()
    assert "no datasets in redis://default:***@" in empty.out
    args = ["--storage", redis_url, "--emulate", "--no-progress", "-v", "ensure", "BTC/USDT",
            "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02", "-x", "binance",
            "--padding-days", "0"]  # fmt: skip
    assert main(args) == 0
    ensured = capfd.readouterr()
    assert main(["--storage", redis_url, "ls"]) == 0
    listing = capfd.readouterr()
    assert "binance:ohlcv:1h:BTC/USDT  rows=48" in listing.out
    out = tmp_path / "btc.csv"
    assert (
        main(["--storage", redis_url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(out)]) == 0
    )
    exported = capfd.readouterr()
    assert main(["--storage", redis_url, "export", "nothing:here", "-o", str(out)]) == 2
    missing = capfd.readouterr()
    assert "mdcollect --storage redis://default:***@" in missing.err
    assert (
        main(["--storage", redis_url, "export", "binance:ohlcv:1h:ETH/USDT", "-o", str(out)]) == 2
    )
    unknown = capfd.readouterr()
    assert "no dataset 'binance:ohlcv:1h:ETH/USDT' in redis://default:***@" in unknown.err
    wrong = redis_url.replace(SECRET, f"WRONG-{SECRET}")
    assert main(["--storage", wrong, "ls"]) == 1
    failed = capfd.readouterr()
    assert "mdcollect: failed:" in failed.err
    captured = [empty, ensured, listing, exported, missing, unknown, failed]
    everything = _everything(caplog, *(c.out + c.err for c in captured), out.read_text())
    assert SECRET not in everything


COLLECT = """
[[collectors]]
exchange = "binance"
symbols = ["BTC/USDT"]
kinds = ["trades"]
mode = "ws"
"""


def test_cli_collect_status_file_is_private_and_redacted(
    redis_url: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "collect.toml"
    config.write_text(COLLECT)
    status = tmp_path / "run" / "status.json"
    code = main(["--storage", redis_url, "--emulate", "collect", str(config), "--status-every",
                 "0.2", "--status-file", str(status), "--duration", "1"])  # fmt: skip
    collected = capfd.readouterr()
    assert code == 0, collected.err
    assert "(stopped)" in collected.out
    assert stat.S_IMODE(status.stat().st_mode) == 0o600
    written = status.read_text()
    assert json.loads(written)["storage"] == redact(redis_url)
    assert main(["status", str(status)]) == 1  # stopped
    shown = capfd.readouterr()
    assert "storage redis://default:***@" in shown.out
    assert main(["status", str(status), "--json"]) == 1
    raw = capfd.readouterr()
    everything = _everything(
        caplog, collected.out, collected.err, written, shown.out, shown.err, raw.out, raw.err
    )
    assert SECRET not in everything
    assert not list(status.parent.glob(".*.tmp"))


def test_cli_status_redacts_a_file_an_older_version_wrote(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    status = tmp_path / "status.json"
    doc = {"written": 0, "pid": 1, "config": "c.toml", "interval": 10, "stopped": True,
           "storage": f"redis://:{SECRET}@db/0", "status": {"is_healthy": True, "collectors": {}}}  # fmt: skip
    status.write_text(json.dumps(doc))
    assert main(["status", str(status)]) == 1
    assert main(["status", str(status), "--json"]) == 1
    printed = capfd.readouterr()
    assert "redis://:***@db/0" in printed.out and SECRET not in printed.out + printed.err


# -- the service and the remote client --------------------------------------------------------


def test_service_status_errors_and_logs_hide_the_secret(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    st = open_storage(redis_url)
    st.write(KEY, candles(T0, 3), covered=Interval(T0, T0 + 3 * 60_000))
    bodies = []
    with LiveServer(create_app(st, api_token=f"TOKEN-{SECRET}")) as server:
        headers = {"Authorization": f"Bearer TOKEN-{SECRET}"}
        status = httpx.get(f"{server.url}/api/v1/status", headers=headers, timeout=30)
        assert status.status_code == 200 and status.json()["storage"] == redact(redis_url)
        assert status.json()["datasets"] == 1
        bodies.append(status.text)
        wrong = httpx.get(f"{server.url}/api/v1/status", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401
        bodies.append(wrong.text)
        st.close()  # the storage fails from now on: the error answer must not leak
        failed = httpx.get(f"{server.url}/api/v1/symbols", headers=headers, timeout=30)
        assert failed.status_code >= 500 and "closed" in failed.json()["error"]
        bodies.append(failed.text)
    everything = _everything(caplog, *bodies)
    assert f"service up: storage {redact(redis_url)}" in everything  # the logs are captured
    assert SECRET not in everything


def test_remote_client_and_proxy_hide_token_and_url_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://user:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    client = DataCollectionClient(
        base, api_token=f"TOKEN-{SECRET}", max_retries=1, backoff=lambda a: 0.0
    )
    with client:
        shown = (repr(client), client.base_url)
        with pytest.raises(Exception) as unreachable:
            client.health()
    assert "unreachable" in str(unreachable.value)
    with pytest.raises(InvalidRequest) as bad:
        DataCollectionClient(f"ftp://user:{SECRET}@host")
    monkeypatch.setenv("DATA_COLLECTION_URL", base)
    monkeypatch.setenv("MDCOLLECT_API_TOKEN", f"TOKEN-{SECRET}")
    monkeypatch.setenv("MAX_RETRIES", "0")
    metrics = ListEmitter()
    answer = make_handler(emitter=metrics)({"operation": "health"}, None)
    assert "unreachable" in answer["body"]["data"]["result"]["error"]
    everything = _everything(
        caplog,
        *shown,
        unreachable.value,
        bad.value,
        json.dumps(answer),
        json.dumps(metrics.documents),
    )
    assert SECRET not in everything
    assert shown[1] == f"http://user:***@127.0.0.1:{base.rsplit(':', 1)[1]}"


def test_remote_client_still_sends_its_credentials(caplog: pytest.LogCaptureFixture) -> None:
    # what the client shows is redacted; what it sends carries the real credentials
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "healthy"})

    transport = httpx.MockTransport(answer)
    clients = [
        DataCollectionClient(f"http://user:{SECRET}@dc.example:8002", transport=transport),
        DataCollectionClient("http://dc.example:8002", api_token=f"TOKEN-{SECRET}",
                             transport=transport),
    ]  # fmt: skip
    for client in clients:
        with client:
            assert client.health() == {"status": "healthy"}
    basic = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert seen[0].headers["authorization"] == f"Basic {basic}"
    assert seen[1].headers["authorization"] == f"Bearer TOKEN-{SECRET}"
    assert all(r.url.host == "dc.example" for r in seen)
    shown = [(repr(c), c.base_url) for c in clients]
    assert SECRET not in _everything(caplog, *shown)
