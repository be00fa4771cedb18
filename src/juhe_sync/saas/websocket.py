"""WebSocket ingest, for deployments the SaaS cannot reach (JUHEBOT.md §3.3).

juhe-sync connects out to the SaaS, once per device, authenticates, and hands every callback frame
to the same pipeline as ``POST /callback`` (the service layer's, given as ``handle``): the frame
is parsed, journalled and applied, and only after the durable commit is it acknowledged (``success: false`` when it was rejected or could
not be stored, so the platform may deliver it again). WebSocket pings are answered by the library;
an application-level ``{"type": "ping"}`` gets a ``pong``. The connection is re-established forever,
with exponential backoff and full jitter. In a deployment of several processes each device's
connection is held by one process at a time (a lease in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import websockets

from juhe_sync import metrics
from juhe_sync.backoff import Backoff
from juhe_sync.errors import ApiError
from juhe_sync.storage.leases import DEFAULT_TTL, PROCESS_ID
from juhe_sync.storage.sqlstore import SQLStore

log = logging.getLogger("juhe_sync.websocket")


class AuthRefused(Exception):
    """The SaaS answered the auth frame with an error."""


@dataclass
class ConnectionStats:
    connects: int = 0
    frames: int = 0
    rejected: int = 0
    last_error: str | None = None
    connected: bool = False


#: Stores one callback frame's text durably; raises :class:`ApiError` when it is rejected.
Handler = Callable[[str], Awaitable[object]]


class DeviceConnection:
    """One device's connection, kept open forever (until :meth:`stop`)."""

    def __init__(
        self,
        store: SQLStore,
        url: str,
        guid: str,
        app_key: str,
        app_secret: str,
        *,
        max_frame: int,
        handle: Handler,
        backoff: Backoff | None = None,
        lease_ttl: float = DEFAULT_TTL,
    ):
        self.store = store
        self.url = url
        self.guid = guid
        self.app_key = app_key
        self.app_secret = app_secret
        self.max_frame = max_frame
        self.handle = handle
        self.backoff = backoff or Backoff()
        self.lease_ttl = lease_ttl
        self.stats = ConnectionStats()
        self._stopping = asyncio.Event()
        self._lease = f"ws:{guid}"

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                if not await asyncio.to_thread(
                    self.store.acquire_lease, self._lease, PROCESS_ID, self.lease_ttl
                ):
                    await self._sleep(self.lease_ttl / 2)  # another process holds this device's connection
                    continue
                try:
                    await self._connect_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("websocket of %s: %s", self.guid, self.stats.last_error)
                finally:
                    self._connected(False)
                await self._sleep(self.backoff.next())
        finally:
            await asyncio.to_thread(self.store.release_lease, self._lease, PROCESS_ID)

    def _connected(self, connected: bool) -> None:
        self.stats.connected = connected
        metrics.WEBSOCKET_CONNECTED.labels(self.guid).set(1 if connected else 0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):  # the usual case: slept the whole time
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _connect_once(self) -> None:
        # close_timeout: when the SaaS drops us, the library would wait 10 s for a closing handshake
        # that never comes before we may reconnect.
        async with websockets.connect(
            self.url,
            ping_interval=30,
            ping_timeout=30,
            max_size=self.max_frame,
            open_timeout=15,
            close_timeout=1,
        ) as ws:
            self.stats.connects += 1
            metrics.WEBSOCKET_CONNECTS.labels(self.guid).inc()
            auth = {"type": "auth", "app_key": self.app_key, "app_secret": self.app_secret, "guid": self.guid}
            await ws.send(json.dumps(auth))
            renew = asyncio.create_task(self._renew_lease(ws))
            stop = asyncio.create_task(self._stopping.wait())
            try:
                while True:
                    recv = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait({recv, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if stop in done:
                        recv.cancel()
                        return
                    await self._frame(ws, recv.result())
            finally:
                renew.cancel()
                stop.cancel()

    async def _renew_lease(self, ws: websockets.ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            if not await asyncio.to_thread(self.store.acquire_lease, self._lease, PROCESS_ID, self.lease_ttl):
                log.warning("websocket of %s lost its lease; closing", self.guid)
                await ws.close()
                return

    async def _frame(self, ws: websockets.ClientConnection, raw: str | bytes) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            frame = json.loads(text)
        except ValueError:
            log.warning("websocket of %s: a frame that is not JSON", self.guid)
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "auth_success":
            self._connected(True)
            self.backoff.reset()
            log.info("websocket of %s connected", self.guid)
        elif kind == "error":
            raise AuthRefused(str(frame.get("message") or "error frame"))
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif kind == "callback":
            self.stats.frames += 1
            success = await self._ingest(text)
            ack = {"type": "ack", "event_id": frame.get("event_id"), "success": success}
            await ws.send(json.dumps(ack))
        # Unknown frame types are ignored (§3.3).

    async def _ingest(self, text: str) -> bool:
        """The ``POST /callback`` pipeline; True once durably stored (or already stored)."""
        try:
            await self.handle(text)
        except ApiError as exc:
            self.stats.rejected += 1
            log.warning("websocket of %s: rejected a callback: %s", self.guid, exc.message)
            return False
        except Exception:
            self.stats.rejected += 1
            log.exception("websocket of %s: could not store a callback", self.guid)
            return False
        return True


class WebSocketIngest:
    """Every configured device's connection, as tasks of the server's event loop."""

    def __init__(self, connections: list[DeviceConnection]):
        self.connections = connections
        self._tasks: list[asyncio.Task[None]] = []

    def status(self, guid: str) -> dict[str, object] | None:
        """This process's connection for ``guid``, for sync-status (None if it has none)."""
        for c in self.connections:
            if c.guid == guid:
                s = c.stats
                return {"connected": s.connected, "connects": s.connects, "callbacks": s.frames,
                        "rejected": s.rejected, "last_error": s.last_error}  # fmt: skip
        return None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(c.run(), name=f"ws-{c.guid}") for c in self.connections]

    async def stop(self) -> None:
        for connection in self.connections:
            connection.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
