"""The one ingest pipeline: parse, check the device's secret, store durably, then ask for pulls.

``POST /callback``, the WebSocket client and ``juhe-sync import`` all run it, so a callback is
treated alike whichever way it came.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor, Future
from typing import Literal

from juhe_sync import metrics
from juhe_sync.config import Settings
from juhe_sync.errors import ApiError, StorageUnavailable, Unauthorized
from juhe_sync.ingest.envelope import parse_body
from juhe_sync.logs import Throttle
from juhe_sync.records import Event, IngestOutcome
from juhe_sync.saas.websocket import DeviceConnection, WebSocketIngest
from juhe_sync.service.access import CallbackSecrets
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.sync.manager import SyncManager
from juhe_sync.timeutil import now_seconds

log = logging.getLogger("juhe_sync.ingest")

#: ``callback``: POST /callback (its secret checked when one is set); ``websocket``: a frame of a
#: configured device's authenticated connection; ``import``: a file the operator fed in.
Source = Literal["callback", "websocket", "import"]


class Ingestor:
    def __init__(
        self,
        store: SQLStore,
        *,
        secrets: CallbackSecrets | None = None,
        sync: SyncManager | None = None,
        configured: set[str] | frozenset[str] = frozenset(),
        timeout: float = 30.0,
    ):
        self.store = store
        #: Seconds a callback waits for its commit before it is answered 503.
        self.timeout = timeout
        self._slow = Throttle(log)
        self.secrets = secrets or CallbackSecrets([], {})
        self.sync = sync
        self.configured = configured
        #: Devices recorded as verified by this process (one write per device, not per callback).
        self._verified: set[str] = set()

    def admits(self, token: str | None) -> bool:
        """Whether a callback with this ``?token=`` may be read at all: checked before the body, so
        that a sender without a secret never gets as far as the parser (or a large body's turn)."""
        return not self.secrets.required or self.secrets.plausible(token)

    def submit(self, text: str, received_at: int | None = None) -> tuple[Event, Future[IngestOutcome]]:
        """Parse and queue for storage; the future resolves after the durable commit. Blocking
        only for normalising (the store does the rest in its writer)."""
        event = parse_body(text)
        return event, self.store.submit_event(
            event, text, now_seconds() if received_at is None else received_at
        )

    async def ingest(
        self, text: str, source: Source, *, token: str | None = None, worker: Executor | None = None
    ) -> tuple[Event, IngestOutcome]:
        """Store one callback; with ``worker``, parse and normalise in it (large bodies) so that the
        event loop keeps answering. Raises :class:`~juhe_sync.errors.ApiError` when it is rejected."""
        try:
            event, outcome = await self._ingest(text, source, token, worker)
        except ApiError as exc:
            count_refused(source, exc.status)
            raise
        metrics.child(metrics.CALLBACKS, source, outcome.status).inc()
        if outcome.messages_added:
            metrics.child(metrics.MESSAGES_STORED, source).inc(outcome.messages_added)
        return event, outcome

    async def _ingest(
        self, text: str, source: Source, token: str | None, worker: Executor | None
    ) -> tuple[Event, IngestOutcome]:
        loop = asyncio.get_running_loop()
        if worker is None:
            event = parse_body(text)
        else:
            event = await loop.run_in_executor(worker, parse_body, text)
        if source == "callback" and self.secrets.required and not self.secrets.accepts(token, event.guid):
            raise Unauthorized("callback secret missing or wrong for this device")
        if worker is None:
            future = self.store.submit_event(event, text, now_seconds())
        else:
            future = await loop.run_in_executor(worker, self.store.submit_event, event, text, now_seconds())
        outcome = await self._committed(future)
        trusted = source == "websocket" or (source == "callback" and self.secrets.required)
        await self._after(event, outcome, trusted=trusted)
        return event, outcome

    async def _committed(self, future: Future[IngestOutcome]) -> IngestOutcome:
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout)
        except TimeoutError:
            # Not acknowledged, so the sender retries. A job that has not started is dropped; one
            # that commits after all is found as a duplicate when the callback comes again.
            future.cancel()
            self._slow.log(logging.WARNING, "a callback's commit took over %g s; answered 503", self.timeout)
            raise StorageUnavailable(
                "The database did not confirm the write in time; nothing was acknowledged, send it again",
                logged=True,
            ) from None

    async def _after(self, event: Event, outcome: IngestOutcome, *, trusted: bool) -> None:
        if outcome.skipped:
            log.warning(
                "callback %s of %s: %d item(s) skipped, not messages (kept in the journal)",
                outcome.journal_id, event.guid, outcome.skipped,
            )  # fmt: skip
        if trusted and event.guid not in self._verified:
            try:
                await asyncio.to_thread(self.store.mark_verified, event.guid)
                self._verified.add(event.guid)
            except Exception as exc:  # the callback is stored: do not make the platform send it again
                log.warning(
                    "could not record %s as verified (%s); next callback tries again", event.guid, exc
                )
        if not outcome.pulls or self.sync is None:
            return
        # Pulls spend the operator's SaaS quota: only for devices the operator named or whose
        # callbacks proved a secret, never for a GUID anybody could make up.
        if trusted or event.guid in self.configured:
            self.sync.request(event.guid, outcome.pulls)
        else:
            log.debug("no pull for %s: not a configured device and no callback secret", event.guid)


def count_refused(source: Source, status: int) -> None:
    """Count a callback that was not stored, by the status it was answered with: ``unavailable``
    when the database failed (the sender retries), else ``rejected``."""
    metrics.child(metrics.CALLBACKS, source, "unavailable" if status >= 500 else "rejected").inc()


def websocket_ingest(settings: Settings, store: SQLStore, ingestor: Ingestor) -> WebSocketIngest | None:
    """WebSocket mode's connections, one per configured device with credentials (None when off)."""
    if not settings.ws_enabled:
        return None

    async def handle(text: str) -> None:
        await ingestor.ingest(text, "websocket")

    connections = []
    for guid in settings.ws_device_list:
        pair = settings.credentials_for(guid)
        if pair is None:
            log.warning("WebSocket mode: no credentials for %s; not connecting", guid)
            continue
        connection = DeviceConnection(
            store, settings.ws_url, guid, *pair, max_frame=settings.max_body_bytes, handle=handle,
            lease_ttl=settings.lease_ttl,
        )  # fmt: skip
        connections.append(connection)
    if not connections:
        log.warning("WebSocket mode is on but no device is configured (JUHE_SYNC_WS_GUIDS)")
    return WebSocketIngest(connections)
