"""uvicorn's httptools protocol with the limits a server on the open internet needs.

uvicorn leaves a connection open for as long as a client takes to send its request, accepts
request headers of any size, and keeps accepting connections until the process runs out of file
descriptors. Here, per process:

- a client has ``JUHE_SYNC_CLIENT_TIMEOUT`` seconds from connecting (or from the first byte of its
  next request on a kept-alive connection) to send a complete request, headers and body; then it
  gets 408 (or, mid-body, is disconnected). Time during which the server itself stopped reading
  (flow control) does not count;
- request line plus headers larger than ``JUHE_SYNC_MAX_HEADER_BYTES`` get 431;
- past ``JUHE_SYNC_MAX_CONNECTIONS`` open connections a new one gets 503 and is closed at once.

Every refusal carries the documented error body. ``serve`` selects this protocol by import path,
so every worker process reads the limits from its environment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from juhe_sync.config import Settings
from juhe_sync.errors import error_body

log = logging.getLogger("juhe_sync.web")

IMPORT_PATH = "juhe_sync.web.protocol:GuardedHttpProtocol"


@functools.cache
def limits() -> tuple[float, int, int]:
    """(client timeout, header bytes, connections) of this process, from its environment."""
    settings = Settings()
    return settings.client_timeout, settings.max_header_bytes, settings.max_connections


def raw_error(status: int, message: str, code: str) -> bytes:
    body = orjson.dumps(error_body(message, code))
    head = (
        STATUS_LINE[status] + b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


_TIMEOUT = raw_error(408, "Request not received in time", "REQUEST_TIMEOUT")
_HEADERS = raw_error(431, "Request headers too large", "HEADERS_TOO_LARGE")
_BUSY = raw_error(503, "Too many connections", "SERVICE_UNAVAILABLE")
_INVALID = raw_error(400, "Invalid HTTP request", "INVALID_PARAMS")


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout, self.max_header_bytes, self.max_connections = limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._reading_head = False
        self._messages = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: %d connections open", len(self.connections) - 1)
            self._refuse(_BUSY)
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        continuing = self._reading_head  # a head that began in an earlier read
        message = self._messages
        try:
            self.parser.feed_data(data)
            # The parser keeps an unfinished request line or header to itself, however long: a
            # read that neither began nor ended the head in progress belongs to it whole. (A head
            # that began in this read is bounded by the read's size until the next one.)
            if continuing and self._reading_head and message == self._messages:
                self._count(len(data))
        except _HeadersTooLarge:
            self._refuse(_HEADERS)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._refuse(_HEADERS)
            else:
                log.warning("invalid HTTP request received")
                self._refuse(_INVALID)

    # Parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        self._header_bytes = 0
        self._reading_head = True
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        # The whole head, once per request (cheaper than counting header by header).
        self._header_bytes = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        self._count(0)
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Limits -------------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.client_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            # We stopped reading (the application has not taken the body yet, e.g. it waits its
            # turn for a large callback): the client cannot send, so its clock does not run.
            self._arm()
            return
        if self.cycle is None or self.cycle.response_complete or self._reading_head:
            self._refuse(_TIMEOUT)  # nothing started answering this request: say why
        else:
            # The application is reading the body: closing makes it see a disconnect.
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
