"""Prometheus metrics shared by the processes."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "bookbazar_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "bookbazar_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SOCKETS_CONNECTED = Gauge("bookbazar_sockets_connected", "Connected Socket.IO clients")
EVENTS_EMITTED = Counter("bookbazar_events_emitted_total", "Realtime events emitted", ["event"])
ORDERS_BY_STATUS = Gauge("bookbazar_orders", "Orders by status", ["status"])
ACTIVE_RESERVATIONS = Gauge("bookbazar_active_reservations", "Orders holding a reservation")
RESERVED_UNITS = Gauge("bookbazar_reserved_units", "Units held by reservations")
EXPIRY_LAG = Histogram(
    "bookbazar_expiry_lag_seconds",
    "Delay between an order's expiresAt and its expiry",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300),
)
JOBS = Counter("bookbazar_jobs_total", "Jobs processed", ["queue", "name", "outcome"])
STOCK_DRIFT_UNITS = Gauge(
    "bookbazar_stock_drift_units", "Units by which stock counters were wrong at the last audit"
)
STOCK_AUDIT_LAST = Gauge(
    "bookbazar_stock_audit_last_timestamp_seconds", "When the last stock audit started"
)
STOCK_AUDITS = Counter("bookbazar_stock_audits_total", "Stock audits by result", ["result"])
