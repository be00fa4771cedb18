"""Prometheus at the HTTP edge: request latency per route, and the ``GET /metrics`` exposition."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

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

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], label: str | None = None):
        """``label``: the route of every request this instance sees (one route's own metrics),
        instead of looking for it among ``routes``."""
        self.app = app
        self.routes = routes
        self.label = label

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
            metrics.child(metrics.HTTP_SECONDS, route, method).observe(time.perf_counter() - started)
            metrics.child(metrics.HTTP_REQUESTS, route, method, str(status)).inc()

    def _route(self, scope: Scope) -> str:
        if self.label is not None:
            return self.label
        route = scope.get("route")  # set by the router when the request got that far
        if route is None:  # refused at the edge, or no such route
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", None) or UNMATCHED


class StoreCollector:
    """What the database knows, read at scrape time (the same in every process). The query gets
    ``timeout`` seconds, well within a scrape's own timeout: a database that does not answer must
    show as ``juhe_sync_storage_up 0``, not make the whole scrape fail."""

    def __init__(self, store: SQLStore, timeout: float = 2.0):
        self.store = store
        self.timeout = timeout
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="juhe-sync-scrape")
        #: A query still running from an earlier scrape: waited for again, never queued twice.
        self._pending: Future[int] | None = None

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("juhe_sync_storage_up", "1 when the database answered this scrape.")
        if self._pending is None:
            self._pending = self._worker.submit(self.store.failed_events)
        try:
            failed = self._pending.result(timeout=self.timeout)
        except Exception as exc:  # the scrape still tells the rest, and that the database is away
            if not isinstance(exc, TimeoutError):
                self._pending = None
            up.add_metric([], 0)
            yield up
            return
        self._pending = None
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "juhe_sync_journal_failed_events",
            "Journalled callbacks not applied (juhe-sync replay retries them; sync-status shows them per device).",
            value=failed,
        )


def exposition(store: StoreCollector) -> bytes:
    """The text a scrape gets: this process's metrics (every worker's, summed, in multiprocess
    mode) and the database's."""
    directory = multiprocess_dir()
    if directory is None:
        own = generate_latest(REGISTRY)
    else:
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        own = generate_latest(registry)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(store)
    return own + generate_latest(scrape)


def _forget_dead_workers(directory: str) -> None:
    """A worker killed without a clean shutdown (OOM, a missed health check) leaves its live gauges
    behind: a WebSocket would read as connected for ever."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            continue  # alive, another user's


def process_exiting() -> None:
    """A worker stops: its live gauges (queue depth, WebSocket state) no longer count."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
