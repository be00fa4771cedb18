"""``POST /callback``, answered in front of the framework.

Every request to the application crosses Starlette's error and exception middleware, the router,
FastAPI's request handling and the ``Request`` and ``Response`` objects before its route does
anything. For the one route that takes the SaaS's whole traffic, that was most of the CPU of the
HTTP path (BENCHMARKS.md). So :class:`Application` hands ``POST /callback`` to its ``lanes``
first: the same edge guard and request metrics (the same classes, configured alike) around a
plain ASGI :class:`CallbackEndpoint` that reads the body, stores it and answers, and turns its own
errors into the documented error body through the same functions as the exception handlers. The
framework's ``/callback`` route stays: the OpenAPI document describes it, and other methods get
its 405. (FastAPI's own OpenTelemetry hooks, off unless configured, do not see the lane.)
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from juhe_sync.errors import ApiError, ServerStarting, Unauthorized
from juhe_sync.ingest.envelope import parse_body
from juhe_sync.service.ingest import Ingestor, count_refused
from juhe_sync.web import errors
from juhe_sync.web.body import receive_body

ACK = b'{"success":true,"message":"Callback processed"}'
_ACK_HEADERS = ((b"content-type", b"application/json"), (b"content-length", str(len(ACK)).encode()))
#: Bodies above this many bytes are parsed and normalised in a worker thread, one at a time: the
#: event loop keeps answering, and concurrent large callbacks cannot add up their memory.
LARGE_BODY = 256 * 1024
PATH = "/callback"
#: Only with JUHE_SYNC_BENCH_ROUTES: a lane like the callback's whose endpoint parses the body and
#: stores nothing (the benchmark's limit of the HTTP path that callbacks take).
BENCH_PATH = "/_bench/parse"


class CallbackEndpoint:
    """Takes one callback: its secret, its body within the size limit, its durable commit."""

    def __init__(self, max_body: int, *, parse_only: bool = False):
        self.max_body = max_body
        self.parse_only = parse_only
        self._large = asyncio.Semaphore(1)
        # One thread for them too: what a large body allocates is freed into the same malloc arena
        # that the next one allocates from, instead of into one arena per pool thread.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="juhe-sync-large-callback")

    def close(self) -> None:
        self._worker.shutdown(wait=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.parse_only:
                parse_body(await receive_body(receive, _content_length(scope), self.max_body))
            else:
                await self.take(scope, receive)
        except ApiError as exc:
            await errors.answer(scope["method"], scope["path"], exc)(scope, receive, send)
            return
        except Exception:
            await errors.unexpected(scope["method"], scope["path"])(scope, receive, send)
            return
        # A new message each time: the middleware adds its headers to it.
        await send({"type": "http.response.start", "status": 200, "headers": list(_ACK_HEADERS)})
        await send({"type": "http.response.body", "body": ACK})

    async def take(self, scope: Scope, receive: Receive) -> None:
        """Store the callback of this request; raises :class:`ApiError` when it is refused."""
        token = QueryParams(scope["query_string"]).get("token")
        ingestor: Ingestor | None = getattr(scope["app"].state, "ingestor", None)
        if ingestor is None:  # the lifespan has not opened the store yet
            raise ServerStarting()
        if not ingestor.admits(token):
            count_refused("callback", 401)
            raise Unauthorized(
                "callback secret missing or wrong: the notify URL needs ?token=<JUHE_SYNC_CALLBACK_TOKEN>"
            )
        declared = _content_length(scope)
        if declared is not None and declared.isdigit() and int(declared) <= LARGE_BODY:
            await ingestor.ingest(await self._read(receive, declared), "callback", token=token)
            return
        # One large body at a time, from its first byte to its commit: their memory never adds up.
        async with self._large:
            text = await self._read(receive, declared)
            worker = self._worker if len(text) > LARGE_BODY else None
            await ingestor.ingest(text, "callback", token=token, worker=worker)
            del text

    async def _read(self, receive: Receive, declared: str | None) -> str:
        try:
            return await receive_body(receive, declared, self.max_body)
        except ApiError as exc:  # too large, not UTF-8, or the sender gave up midway
            count_refused("callback", exc.status)
            raise


class Application(FastAPI):
    """juhe-sync's FastAPI application: ``lanes`` (path -> the endpoint in the edge guard and
    metrics) answer ``POST`` to their paths before the framework sees the request."""

    lanes: dict[str, ASGIApp] = {}  # noqa: RUF012 (replaced, never changed in place)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = (
            self.lanes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if lane is None:
            await super().__call__(scope, receive, send)
        else:
            scope["app"] = self  # as Starlette does: the guard and the endpoint read app.state
            await lane(scope, receive, send)


def _content_length(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1"))
    return None
