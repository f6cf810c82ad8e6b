"""Names vulture reports as unused that are used: read by vulture, never imported.

``tests/test_dead_code.py`` runs ``vulture src/mdcollect vulture_whitelist.py
--min-confidence 60`` and fails on any finding not listed here. Each entry says why it
stays.

Not shipped: the package is ``src/mdcollect`` only.
"""
# ruff: noqa: B018, F821

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# -- protocols: called by Python, Jupyter, argparse, atexit or a library, not by name
__getattr__  # mdcollect/__init__.py: lazy loading of names that import ccxt (PEP 562)
__dir__  # mdcollect/__init__.py: lists the lazy names too (PEP 562)
_.__module__  # _errors.py: exceptions shown as mdcollect.X, not mdcollect._errors.X
_._repr_html_  # ensure.py: Jupyter's rich display of a report
_.formatter_class  # cli.py: argparse reads it
_remove_snapshots  # storage/arctic.py: registered with @atexit.register
exc_type  # __exit__ / __aexit__ parameters the protocol requires
tb  # __exit__ / __aexit__ parameters the protocol requires

cancel_futures  # _sync.py: Executor.shutdown's signature, overridden to keep the pool

# -- attributes another library reads
_.collect  # metrics.py: prometheus_client calls a registered collector's collect() on scrape
retries  # exchanges/_http.py ExchangeTotals: read by metrics.py through getattr
rate_limited  # exchanges/_http.py ExchangeTotals: read by metrics.py through getattr
_.retries  # (the same, incremented)
_.rate_limited  # (the same, incremented)
_.tokenBucket  # exchanges/_client.py: ccxt's rate limiter configuration
_.asyncio_loop  # exchanges/_client.py: ccxt's event loop attribute
_.own_session  # exchanges/_client.py: tells ccxt not to close a shared session
_.content_length  # testing/_emulator.py: aiohttp response header

# -- public API (ARCHITECTURE.md, documented methods), used by users and tests
_.retry_count  # ExchangeClient.retry_count: documented counter, read by tests
_.from_config  # DataCollector.from_config: the collector TOML loader
_.enable  # DataCollector.enable (ARCHITECTURE.md)
_.disable  # DataCollector.disable (ARCHITECTURE.md)
_.restart  # DataCollector.restart (ARCHITECTURE.md)
_.restart_all  # DataCollector.restart_all (ARCHITECTURE.md)
_.on_rows  # DataCollector.on_rows (ARCHITECTURE.md)
_.sync_status  # remote clients: GET /api/v1/sync/{id}
_.last_write  # collectors: CollectorStats.last_write, part of the stats users read
last_write  # (the attrs field of the same)
_.advance  # collectors/_clock.py: the manual clock tests drive
_.configure  # testing: MarketSpec changes from tests (emulator_helpers, test_dialects)
_.clear_requests  # testing: ExchangeEmulator.clear_requests, used by tests
_.spawn  # testing: ExchangeEmulator.spawn, public API of the emulator for users' own tests
_.set_clock  # testing: ExchangeEmulator.set_clock, public API of the emulator for users' own tests
subscriptions  # testing/_ws.py: WsConnection record field, read by tests
_.subscriptions  # testing/_ws.py: read by tests
_.open_connections  # testing/_ws.py: read by tests
_.wait_for_connections  # testing/_ws.py: public API of the emulator for users' own tests
_.silence  # testing/_ws.py: websocket fault control, used by tests
_.resume  # testing/_ws.py: websocket fault control, used by tests
_.send_malformed  # testing/_ws.py: websocket fault control, used by tests
_.duplicate  # testing/_ws.py: websocket fault control, used by tests
_.server_pings  # testing/_ws.py: websocket fault control, used by tests
_.pings_sent  # testing/_ws.py: websocket fault control, used by tests
quote_volume  # testing/_market.py: candle field the Binance dialect serves, read by tests
taker_buy_volume  # testing/_market.py: candle field the dialects serve
taker_buy_quote_volume  # testing/_market.py: candle field the dialects serve
_.by_kind  # ensure.py: EnsureReport.by_kind, public API for ensure_data(kinds=...) reports
_.fetch_data  # remote/_client.py: the clients' GET /api/v1/data, public API
_._write_unchecked  # storage/_base.py: for tests that plant defects an audit must find
_.__class__  # audit.py: the module made callable as audit() (sys.modules[...].__class__)

raw_frames  # collectors: CollectorStats.raw_frames, part of the stats users read
_.raw_frames  # (read by users and tests)
_.connect  # exchanges/_raw.py: ReplayConnection overrides what ccxt.pro calls
_.aiohttp_close  # exchanges/_raw.py: (ccxt.pro's Client.close calls it)
_.isConnected  # exchanges/_raw.py: ccxt.pro's Client state, read by ccxt
_.last_message_at  # exchanges/_raw.py: ccxt.pro's frame stamp, read by ws_last_message

# -- really unused, in files another part owns
