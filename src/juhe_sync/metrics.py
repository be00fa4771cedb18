"""Every Prometheus metric juhe-sync keeps, declared once (``GET /metrics`` serves them).

Each layer counts what it does here and knows nothing of how metrics are exposed. Under several
worker processes ``juhe-sync serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start,
so each process writes its values to files there and a scrape sums them (prometheus-client's
multiprocess mode): counters and histograms add up, gauges say how they combine.

Label values are from small fixed sets (routes, results, SaaS paths, configured devices), never
from what a caller sent, so that nobody can grow the series without bound.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


@functools.cache
def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: ``labels()`` takes a lock on every call, and the
    request and callback paths count on every request. Label values come from small fixed sets."""
    return metric.labels(*values)


#: Latency buckets (seconds) for requests, commits and SaaS calls: 1 ms to 30 s.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CALLBACKS = Counter(
    "juhe_sync_callbacks",
    "Callbacks by source (callback, websocket, import) and result: stored; duplicate (stored "
    "before, nothing changed); failed (journalled, but not applied: replay retries it); rejected "
    "(refused: bad input, wrong secret, too large); unavailable (the database could not store it: "
    "nothing acknowledged, the sender retries).",
    ["source", "result"],
)
MESSAGES_STORED = Counter(
    "juhe_sync_messages_stored",
    "Messages newly stored, by source (callback, websocket, import, pull).",
    ["source"],
)

HTTP_SECONDS = Histogram(
    "juhe_sync_http_request_duration_seconds",
    "Time from a request's head to its answer's last byte, by route template and method.",
    ["route", "method"],
    buckets=SECONDS,
)
HTTP_REQUESTS = Counter(
    "juhe_sync_http_requests",
    "Answered requests by route template, method and status.",
    ["route", "method", "status"],
)

WRITE_BATCH_JOBS = Histogram(
    "juhe_sync_write_batch_jobs",
    "Jobs (callbacks, pulled pages, token changes) committed together in one write transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITE_TRANSACTION_SECONDS = Histogram(
    "juhe_sync_write_transaction_seconds",
    "A write transaction, from BEGIN to the end of COMMIT.",
    buckets=SECONDS,
)
WRITE_COMMIT_SECONDS = Histogram(
    "juhe_sync_write_commit_seconds", "COMMIT alone: the durable flush a callback waits for.", buckets=SECONDS
)
WRITE_QUEUE_DEPTH = Gauge(
    "juhe_sync_write_queue_depth",
    "Write jobs waiting for their writer, sampled as each batch starts and ends (summed over processes).",
    ["writer"],
    multiprocess_mode="livesum",
)
WRITE_RETRIES = Counter(
    "juhe_sync_write_retries", "Write transactions tried again after a transient database error."
)
WRITE_FAILURES = Counter(
    "juhe_sync_write_failures", "Write transactions given up: none of their jobs was stored."
)
CALLBACK_WRITER_EXITS = Counter(
    "juhe_sync_callback_writer_exits",
    "Times the callback writer process exited unexpectedly (its callbacks in flight were answered 503; "
    "another is started for the next callback).",
)
READ_FAILURES = Counter("juhe_sync_read_failures", "Reads answered 503 because the database did not answer.")

PURGED_MESSAGES = Counter("juhe_sync_purged_messages", "Messages deleted by retention, purge and forget.")
SYNC_RUNS = Counter(
    "juhe_sync_sync_runs",
    "Pull sync runs by kind (profile, contacts, rooms, room_changes, messages) and result (ok, error, stopped).",
    ["kind", "result"],
)
SAAS_CALLS = Counter(
    "juhe_sync_saas_calls",
    "Calls to the SaaS pull API (each attempt) by path and result (ok, retryable, refused).",
    ["path", "result"],
)
SAAS_RETRIES = Counter(
    "juhe_sync_saas_retries", "SaaS calls tried again after a retryable failure.", ["path"]
)
SAAS_SECONDS = Histogram(
    "juhe_sync_saas_call_duration_seconds", "One attempt of a SaaS call.", ["path"], buckets=SECONDS
)

WEBSOCKET_CONNECTED = Gauge(
    "juhe_sync_websocket_connected",
    "1 while a process holds this device's authenticated WebSocket connection.",
    ["guid"],
    multiprocess_mode="livemax",
)
WEBSOCKET_CONNECTS = Counter(
    "juhe_sync_websocket_connects", "WebSocket connections opened (reconnects included).", ["guid"]
)
