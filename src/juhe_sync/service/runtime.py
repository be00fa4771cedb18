"""A running juhe-sync: the store and every service over it, started and stopped together.

The HTTP app holds one; so could any other front end. It knows no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from juhe_sync.config import Settings
from juhe_sync.errors import ApiError
from juhe_sync.saas.websocket import WebSocketIngest
from juhe_sync.service import retention
from juhe_sync.service.access import Authenticator, CallbackSecrets, TokenAdmin
from juhe_sync.service.ingest import Ingestor, websocket_ingest
from juhe_sync.service.queries import QueryService, require_guid
from juhe_sync.service.stores import open_store
from juhe_sync.storage.ingest_process import ProcessOptions
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.sync.jobs import Syncer
from juhe_sync.sync.manager import SyncManager

log = logging.getLogger("juhe_sync.service")


@dataclass
class Runtime:
    settings: Settings
    store: SQLStore
    #: Whether :meth:`stop` closes the store (it was opened here, not handed in).
    owned: bool
    queries: QueryService
    tokens: TokenAdmin
    auth: Authenticator
    ingestor: Ingestor
    sync: SyncManager | None
    websocket: WebSocketIngest | None
    purger: retention.RetentionLoop | None

    @classmethod
    async def start(cls, settings: Settings, store: SQLStore | None = None) -> Runtime:
        """Open and migrate the store (unless given one), then start pull sync and WebSocket mode
        as configured."""
        owned = store is None
        if store is None:
            process = None
            if settings.callback_writer_process:
                process = ProcessOptions(settings.log_level, settings.log_format, settings.secrets())
            store = await asyncio.to_thread(
                open_store, settings.database_url, write_batch=settings.write_batch,
                timeout=settings.storage_timeout, process=process,
            )  # fmt: skip
            applied = await asyncio.to_thread(store.migrate)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        active = store
        retention.apply_setting(active, settings.retention_days)
        purger = None
        if settings.retention_days is not None:
            purger = retention.RetentionLoop(active, settings.retention_days)
            purger.start()
        sync = None
        if settings.pull_enabled:
            sync = SyncManager(
                Syncer.from_settings(active, settings),
                interval_seconds=settings.sync_period,
                debounce=settings.sync_debounce,
                eligible=lambda: settings.configured_devices | set(active.verified_guids()),
            )
            sync.start()
        secrets = CallbackSecrets(settings.callback_tokens, settings.device_callback_tokens())
        ingestor = Ingestor(active, secrets=secrets, sync=sync, configured=settings.configured_devices,
                            timeout=settings.storage_timeout)  # fmt: skip
        websocket = websocket_ingest(settings, active, ingestor)
        if websocket is not None:
            websocket.start()
        queries = QueryService(active, settings.search_count_limit)
        return cls(settings, active, owned, queries, TokenAdmin(active),
                   Authenticator(active, settings.api_tokens), ingestor, sync, websocket, purger)  # fmt: skip

    async def stop(self) -> None:
        if self.purger is not None:
            await asyncio.to_thread(self.purger.stop)
        if self.websocket is not None:
            await self.websocket.stop()
        if self.sync is not None:
            await asyncio.to_thread(self.sync.stop)
            self.sync.syncer.close()
        if self.owned:
            await asyncio.to_thread(self.store.close)

    def start_sync(self, guid: str, full: bool) -> dict[str, Any]:
        """Queue a pull sync of ``guid`` now; ``queued`` is False if one was already waiting."""
        if self.sync is None:
            raise ApiError("Pull sync is not configured: set JUHE_SYNC_APP_KEY and JUHE_SYNC_APP_SECRET",
                           status=409, code="SYNC_DISABLED")  # fmt: skip
        guid = require_guid(guid)
        queued = self.sync.request(guid, ["full" if full else "sync"], delay=0)
        return {"guid": guid, "full": full, "queued": queued}

    def devices(
        self, guids: frozenset[str] | None, page: int, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        sync = self.sync
        return self.queries.devices(
            guids, page, limit, cursor, busy=lambda g: sync is not None and sync.busy(g)
        )

    def sync_status(self, guid: str) -> dict[str, Any]:
        queued = self.sync is not None and self.sync.busy(guid)
        data = self.queries.sync_status(guid, queued)
        if self.websocket is not None:
            data["websocket"] = self.websocket.status(guid)
        return data
