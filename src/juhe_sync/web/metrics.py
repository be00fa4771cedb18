"""Prometheus at the HTTP edge: request latency per route, and the ``GET /metrics`` exposition."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from juhe_sync import metrics
from juhe_sync.storage.sqlstore import SQLStore

#: The exposition format a Prometheus scrape expects.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Methods labelled by name; anything else a client makes up is ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class RequestMetrics:
    """Times every HTTP request, those the edge refuses included, under its route template (never
    the raw path: ids in paths would make a series each)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self._route(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")  # set by the router when the request got that far
        if route is None:  # refused at the edge, or no such route
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", None) or UNMATCHED


class StoreCollector:
    """What the database knows, read at scrape time (the same in every process)."""

    def __init__(self, store: SQLStore):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("juhe_sync_storage_up", "1 when the database answered this scrape.")
        try:
            failed = self.store.failed_events()
        except Exception:  # the scrape still tells the rest, and that the database is away
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "juhe_sync_journal_failed_events",
            "Journalled callbacks not applied (juhe-sync replay retries them; sync-status shows them per device).",
            value=failed,
        )


def exposition(store: SQLStore) -> bytes:
    """The text a scrape gets: this process's metrics (every worker's, summed, in multiprocess
    mode) and the database's."""
    directory = multiprocess_dir()
    if directory is None:
        own = generate_latest(REGISTRY)
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        own = generate_latest(registry)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(StoreCollector(store))
    return own + generate_latest(scrape)


def process_exiting() -> None:
    """A worker stops: its live gauges (queue depth, WebSocket state) no longer count."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
