"""The input rules (``mdcollect._rules``) and the ``/api/v1`` contract (``mdcollect._api``):
one model-level place, no ccxt, the exchange's own timeframe rule passed in."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

import mdcollect
from mdcollect import InvalidRequest
from mdcollect._api import ohlcv_query, sync_request
from mdcollect._rules import (
    check_choice,
    check_exchange_key,
    check_padding,
    check_symbols,
    check_timeframe,
    date_range,
    digits_as_ms,
    required_range,
)
from mdcollect.exchanges import exchange_info
from tests.conftest import run_python

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
DAY = 86_400_000
SRC = Path(mdcollect.__file__).parent


@pytest.mark.parametrize(
    "module",
    [
        "mdcollect._rules", "mdcollect._api", "mdcollect.remote",
        # what a no-op ``mdcollect ensure`` imports: ccxt and aiohttp only once it fetches
        "mdcollect", "mdcollect.exchanges", "mdcollect.backfill", "mdcollect.ensure",
        "mdcollect.cli",
    ],
)  # fmt: skip
def test_importing_does_not_import_ccxt(module: str) -> None:
    result = run_python(
        f"import sys, {module}\nprint('ccxt' in sys.modules, 'aiohttp' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


def test_the_remote_client_checks_its_inputs_without_ccxt() -> None:
    # the checks once imported mdcollect.ensure (and ccxt, ~1.5 s) on first use
    code = (
        "import sys\n"
        "from mdcollect import InvalidRequest\n"
        "from mdcollect.remote import DataCollectionClient\n"
        "client = DataCollectionClient('http://127.0.0.1:9')\n"
        "for call in (lambda: client.ensure_data(['BTC/USDT:USDT'], '1H', '20240201', '20240202'),\n"
        "             lambda: client.fetch_ohlcv('BTC/USDT:USDT', '7m')):\n"
        "    try:\n"
        "        call()\n"
        "    except InvalidRequest as exc:\n"
        "        print(exc)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('ccxt')}))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('mdcollect.exchanges', 'mdcollect.ensure'))))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "timeframe '1H' is not supported (did you mean '1h'?); allowed: 1s, 1m" in lines[0]
    assert "timeframe '7m' is not supported; allowed: 1s, 1m" in lines[1]
    assert lines[2:] == ["[]", "[]"]


def test_the_service_imports_nothing_private_of_remote() -> None:
    bad = []
    for path in sorted((SRC / "service").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("remote"):
                bad.append(f"{path.name}:{node.lineno} from {'.' * node.level}{node.module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "mdcollect.remote"
            ):
                bad.append(f"{path.name}:{node.lineno} from {node.module}")
    assert bad == []


# -- timeframes: one rule, the exchange's allowed set passed in ------------------------------


def test_the_exchange_rule_is_the_shared_rule_with_its_own_set() -> None:
    info = exchange_info("binance_futures")
    for value in ("1H", "60m", "1 hour", "7m", "1x", 60):
        with pytest.raises(InvalidRequest) as ours:
            check_timeframe(value, info.timeframes, by=info.key, unserved=info.timeframes_unserved)
        with pytest.raises(InvalidRequest) as theirs:
            info.check_timeframe(value)
        assert str(ours.value) == str(theirs.value)
    assert check_timeframe("1w", info.timeframes, by=info.key) == info.check_timeframe("1w")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1H", "(did you mean '1h'?)"),
        ("60m", "(did you mean '1h'?)"),
        ("1 month", "(did you mean '1M'?)"),
        ("7m", "timeframe '7m' is not supported; allowed: 1s, 1m, 3m"),
        (None, "timeframe must be a string such as '1h', got None"),
    ],
)
def test_without_an_exchange_a_timeframe_is_one_of_ccxts(value: object, needle: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_timeframe(value)
    assert needle in str(err.value)
    assert str(check_timeframe("1M")) == "1M"


def test_the_service_passes_the_exchange_rule_in() -> None:
    def served(timeframe: object, exchange: str) -> object:
        return exchange_info(exchange).check_timeframe(timeframe)

    with pytest.raises(InvalidRequest, match="'1s' is not supported by binance_futures"):
        ohlcv_query("BTC/USDT:USDT", "1s", check_timeframe=served)  # type: ignore[arg-type]
    assert ohlcv_query("BTC/USDT:USDT", "1s").timeframe == "1s"  # ccxt's set: the service says


# -- dates, ranges, symbols, padding -------------------------------------------------------


def test_date_range_is_ensure_datas_rule() -> None:
    assert date_range("2024-01-01", "20240101") == (T0, T0 + DAY)
    assert date_range(dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 6)) == (T0, T0 + DAY // 4)
    with pytest.raises(InvalidRequest, match="are required"):
        date_range(None, "2024-01-01")
    with pytest.raises(InvalidRequest, match="'2023-12-31' is before start_date '2024-01-01'"):
        date_range("2024-01-01", "2023-12-31")
    with pytest.raises(InvalidRequest, match="must be a string YYYYMMDD or YYYY-MM-DD"):
        date_range(T0 // 1000, "2024-01-01")


def test_a_sync_request_covers_the_days_of_the_range() -> None:
    noon = dt.datetime(2024, 2, 1, 12, tzinfo=dt.UTC)
    req = sync_request(["BTC/USDT:USDT"], "1h", noon, "2024-02-03", padding_days=2)
    assert (req.start_date, req.end_date, req.padding_days, req.days) == (
        "2024-02-01", "2024-02-03", 2, 5,
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match="out of range"):
        sync_request(["BTC/USDT:USDT"], "1h", "1969-12-31", "2024-01-01")


def test_required_range_and_query_times() -> None:
    assert required_range("2024-01-01", "2024-01-01") == (T0, T0 + DAY)
    with pytest.raises(InvalidRequest, match="start and end are required"):
        required_range("2024-01-01", None)
    assert digits_as_ms(str(T0)) == T0 and digits_as_ms(float(T0)) == T0
    assert digits_as_ms("20240101") == "20240101"  # YYYYMMDD, not ms
    q = ohlcv_query("BTC/USDT:USDT", "1h", "10", str(T0), "2024-01-01")
    assert (q.limit, q.start, q.end) == (10, T0, T0 + DAY)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("BTC/USDT", "non-empty list of symbols"),
        ([], "non-empty list; got an empty list"),
        (["BTC/USDT", "BTC/USDT"], "listed twice: ['BTC/USDT']"),
        ([7], "symbol 7 is not valid"),
        (["A" * 60 + "/B"], "is 62 characters long; at most 50"),
    ],
)
def test_symbol_lists(value: object, needle: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_symbols(value, max_length=50)
    assert needle in str(err.value)
    assert check_symbols(["A" * 60 + "/B"]) == ["A" * 60 + "/B"]  # no length bound by default


@pytest.mark.parametrize("value", [-1, 3651, 1.5, True, "3"])
def test_padding_days(value: object) -> None:
    with pytest.raises(InvalidRequest, match=rf"padding_days must be an integer in \[0, 3650\], got {value!r}"):  # fmt: skip
        check_padding(value)
    assert check_padding(0) == 0 and check_padding(3650) == 3650


def test_choices_and_exchange_keys() -> None:
    assert check_choice("kind", "trades", ("ohlcv", "trades")) == "trades"
    with pytest.raises(
        InvalidRequest, match="kind 'book' is not valid; allowed: 'ohlcv', 'trades'"
    ):
        check_choice("kind", "book", ("ohlcv", "trades"))
    assert check_exchange_key("okx_futures") == "okx_futures"
    with pytest.raises(InvalidRequest, match="'Binance' is not a valid exchange key"):
        check_exchange_key("Binance")
