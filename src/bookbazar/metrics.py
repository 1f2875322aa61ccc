"""Prometheus metrics, one registry per process kind.

The API's `/metrics` renders `API`; the worker's metrics port (WORKER_METRICS_PORT)
renders `WORKER`. A gauge lives in one of them only, so a dashboard that sums over all
scraped processes never counts a gauge twice; counters that both kinds move (events
emitted, stock audits run) are in both and count each process's own work.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from bookbazar import __version__

# No `<name>_created` series: they double the series count and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

API = CollectorRegistry(auto_describe=True)
WORKER = CollectorRegistry(auto_describe=True)
BOTH = (API, WORKER)

for _registry in BOTH:
    ProcessCollector(registry=_registry)  # process_cpu_seconds_total, RSS, open fds
    Gauge(
        "bookbazar_build_info", "The running version (always 1)", ["version"], registry=_registry
    ).labels(__version__).set(1)


def _in_both(metric: Counter) -> Counter:
    for registry in BOTH:
        registry.register(metric)
    return metric


# ---------------------------------------------------------------- API
HTTP_REQUESTS = Counter(
    "bookbazar_http_requests_total",
    "HTTP requests",
    ["method", "route", "status"],
    registry=API,
)
HTTP_LATENCY = Histogram(
    "bookbazar_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=API,
)
SOCKETS_CONNECTED = Gauge(
    "bookbazar_sockets_connected", "Connected Socket.IO clients", registry=API
)

# ---------------------------------------------------------------- worker
ORDERS_BY_STATUS = Gauge("bookbazar_orders", "Orders by status", ["status"], registry=WORKER)
ACTIVE_RESERVATIONS = Gauge(
    "bookbazar_active_reservations", "Orders holding a reservation", registry=WORKER
)
RESERVED_UNITS = Gauge("bookbazar_reserved_units", "Units held by reservations", registry=WORKER)
EXPIRY_LAG = Histogram(
    "bookbazar_expiry_lag_seconds",
    "Delay between an order's expiresAt and its expiry",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=WORKER,
)
JOBS = Counter(
    "bookbazar_jobs_total", "Jobs processed", ["queue", "name", "outcome"], registry=WORKER
)
STOCK_DRIFT_UNITS = Gauge(
    "bookbazar_stock_drift_units",
    "Units by which stock counters were wrong at the last scheduled audit",
    registry=WORKER,
)
STOCK_AUDIT_LAST = Gauge(
    "bookbazar_stock_audit_last_timestamp_seconds",
    "When the last scheduled stock audit started",
    registry=WORKER,
)

# ---------------------------------------------------------------- both
EVENTS_EMITTED = _in_both(
    Counter("bookbazar_events_emitted_total", "Realtime events emitted", ["event"], registry=None)
)
STOCK_AUDITS = _in_both(
    Counter("bookbazar_stock_audits_total", "Stock audits by result", ["result"], registry=None)
)
