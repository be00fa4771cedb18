"""The FastAPI application: ``POST /callback`` and the documented ``/api/*`` queries."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from juhe_sync import __version__, logs
from juhe_sync.config import Settings
from juhe_sync.errors import ApiError
from juhe_sync.service.runtime import Runtime
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.web import errors, exports, mcp, schemas, viewer
from juhe_sync.web.callback import ACK, BENCH_PATH, PATH, Application, CallbackEndpoint
from juhe_sync.web.edge import EdgeGuard, HostRule, principal_of
from juhe_sync.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from juhe_sync.web.metrics import RequestMetrics, StoreCollector, exposition, process_exiting
from juhe_sync.web.openapi import CALLBACK_SCHEMA, error_responses, openapi_document
from juhe_sync.web.responses import json_response, ok

log = logging.getLogger("juhe_sync.web")

#: Routes without an API token: liveness and readiness, the callback (it has its own secret), and
#: the viewer's page, script, style and sign-in (they hold no data).
PROBES = ("/healthz", "/readyz")
PUBLIC_ROUTES = (*PROBES, "/callback", "/", "/session")
PUBLIC_PREFIXES = ("/static",)
#: Seconds /readyz gives the database to answer a trivial query.
READY_TIMEOUT = 2.0

Guid = Annotated[str, Query(min_length=1, description="Device GUID.")]
PageNo = Annotated[int, Query(ge=1, le=1_000_000_000, description="Page number, from 1.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page, 1-100.")]
Cursor = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page: keyset pagination at constant cost (page is then ignored)."
    ),
]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    settings = Settings()
    if not logging.getLogger().handlers:  # ``serve`` has configured logging already (in uvicorn)
        logs.configure(settings.log_level, settings.log_format, settings.secrets())
    app = create_app(settings)
    # Exempt what start-up built from the cyclic collector: a full collection walked all of it,
    # 60-90 ms with the event loop stopped (a callback's whole p99). Tests do not come here.
    gc.collect()
    gc.freeze()
    return app


def create_app(settings: Settings | None = None, store: SQLStore | None = None) -> FastAPI:
    """Build the app. With ``store`` given the caller owns it; otherwise it is opened and migrated
    on startup from ``settings.database_url`` and closed on shutdown."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, store)
        app.state.runtime = runtime
        # What routes and the edge guard use, by name.
        app.state.store, app.state.queries, app.state.tokens = runtime.store, runtime.queries, runtime.tokens
        app.state.auth, app.state.ingestor = runtime.auth, runtime.ingestor
        app.state.store_metrics = StoreCollector(runtime.store)
        try:
            async with mcp.running(app.state, runtime):
                yield
        finally:
            app.state.store_metrics.close()
            await runtime.stop()
            endpoint.close()
            process_exiting()

    app = Application(
        title="juhe-sync",
        version=__version__,
        description="Durable copy of juhebot devices' contacts, rooms and messages, with a query API.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    errors.install(app)
    hosts = HostRule(settings.host_patterns)

    def guarded(inner: ASGIApp) -> ASGIApp:
        return EdgeGuard(
            inner, hosts=hosts, public=PUBLIC_ROUTES, public_prefixes=PUBLIC_PREFIXES, unchecked_host=PROBES
        )

    app.add_middleware(guarded)
    # Added last, so outermost: it also times what the edge refuses.
    app.add_middleware(RequestMetrics, routes=app.router.routes)
    # POST /callback in front of the framework, behind the same guard and metrics (web.callback).
    endpoint = CallbackEndpoint(settings.max_body_bytes)
    lanes: dict[str, ASGIApp] = {PATH: endpoint}
    if settings.bench_routes:
        lanes[BENCH_PATH] = CallbackEndpoint(settings.max_body_bytes, parse_only=True)
    app.lanes = {
        path: RequestMetrics(guarded(lane), routes=app.router.routes, label=path)
        for path, lane in lanes.items()
    }

    @app.post(
        "/callback",
        response_model=schemas.CallbackAck,
        responses=error_responses(400, 413, 500),
        summary="Receive a SaaS callback",
        description=(
            "Takes every juhebot notification (plain, WebSocket-wrapped or `data`-wrapped). "
            "Answers 200 only after the event is durably stored; redelivery changes nothing."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CALLBACK_SCHEMA}},
            }
        },
    )
    async def callback(request: Request) -> Response:
        # Served by the lane above; here for the OpenAPI document (and the 405 of other methods).
        await endpoint.take(request.scope, request.receive)
        return Response(ACK, media_type="application/json")

    @app.get("/api/contacts", response_model=schemas.ContactsResponse, responses=error_responses(400, 500))
    def contacts(
        request: Request,
        guid: Guid,
        page: PageNo = 1,
        limit: Limit = 20,
        keyword: Annotated[
            str | None, Query(description="Case-insensitive substring of name or remark.")
        ] = None,
        cursor: Cursor = None,
    ) -> Response:
        return ok(request.app.state.queries.contacts(guid, page, limit, keyword, cursor))

    @app.get(
        "/api/messages", response_model=schemas.MessagesResponse, responses=error_responses(400, 404, 500)
    )
    def messages(
        request: Request,
        guid: Guid,
        conversation_id: Annotated[str | None, Query(description="`S:<user_id>` or `R:<room_id>`.")] = None,
        keyword: Annotated[
            str | None, Query(description="Case-insensitive substring of the text, at most 1,000 characters.")
        ] = None,
        start_time: Annotated[
            str | None, Query(description="ISO 8601, inclusive; a date alone allowed.")
        ] = None,
        end_time: Annotated[
            str | None, Query(description="ISO 8601, inclusive; a date alone allowed.")
        ] = None,
        page: PageNo = 1,
        limit: Limit = 20,
        order: Annotated[
            Literal["desc", "asc"], Query(description="`desc` (newest first) or `asc`.")
        ] = "desc",
        cursor: Cursor = None,
        around: Annotated[
            str | None,
            Query(
                description="A message `id`: the page of `limit` messages of its conversation centred on it "
                "(404 if the device has no such message). Takes only `conversation_id`, `limit` and `order`; "
                "`prev_cursor` pages the other way."
            ),
        ] = None,
    ) -> Response:
        return ok(
            request.app.state.queries.messages(
                guid,
                conversation_id=conversation_id,
                keyword=keyword,
                start_time=start_time,
                end_time=end_time,
                page=page,
                limit=limit,
                order=order,
                cursor=cursor,
                around=around,
            )
        )

    @app.get(
        "/api/devices",
        response_model=schemas.DevicesResponse,
        responses=error_responses(400, 500),
        summary="Devices",
        description="Every device this token may read, by GUID: its account, counters and state.",
    )
    def devices(request: Request, page: PageNo = 1, limit: Limit = 20, cursor: Cursor = None) -> Response:
        guids = principal_of(request.scope).guids
        return ok(request.app.state.runtime.devices(guids, page, limit, cursor))

    @app.get(
        "/api/conversations",
        response_model=schemas.ConversationsResponse,
        responses=error_responses(400, 500),
        summary="Conversations of a device",
        description="Newest activity first, each with its name and a preview of its last message.",
    )
    def conversations(
        request: Request,
        guid: Guid,
        keyword: Annotated[
            str | None, Query(description="Case-insensitive substring of the name, remark or id.")
        ] = None,
        kind: Annotated[Literal["S", "R"] | None, Query(description="`S` private chats, `R` rooms.")] = None,
        page: PageNo = 1,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> Response:
        return ok(
            request.app.state.queries.conversations(
                guid, keyword=keyword, kind=kind, page=page, limit=limit, cursor=cursor
            )
        )

    @app.get("/api/rooms", response_model=schemas.RoomsResponse, responses=error_responses(400, 500))
    def rooms(
        request: Request, guid: Guid, page: PageNo = 1, limit: Limit = 20, cursor: Cursor = None
    ) -> Response:
        return ok(request.app.state.queries.rooms(guid, page, limit, cursor))

    @app.get(
        "/api/rooms/{room_id}/members",
        response_model=schemas.MembersResponse,
        responses=error_responses(400, 404, 500),
        summary="Members of a room",
        description="Filled by pull sync. `room_id` is `R:<id>` or the bare id. 404 if the device has no such room.",
    )
    def room_members(
        request: Request, room_id: str, guid: Guid, page: PageNo = 1, limit: Limit = 20, cursor: Cursor = None
    ) -> Response:
        return ok(request.app.state.queries.room_members(guid, room_id, page, limit, cursor))

    @app.post(
        "/api/sync",
        response_model=schemas.SyncStartedResponse,
        status_code=202,
        responses=error_responses(400, 409, 500),
        summary="Start a pull sync of a device",
        description="Queues a sync (incremental unless `full=true`) and answers at once; "
        "follow it in `/api/sync-status`. 409 when pull sync is not configured (no app_key). "
        "Admin tokens only.",
    )
    def start_sync(
        request: Request,
        guid: Guid,
        full: Annotated[
            bool, Query(description="Re-list everything, marking contacts gone upstream.")
        ] = False,
    ) -> Response:
        principal_of(request.scope).require_admin("start a sync")
        return json_response({"success": True, "data": request.app.state.runtime.start_sync(guid, full)}, 202)

    @app.get(
        "/api/tokens",
        response_model=schemas.TokensResponse,
        responses=error_responses(401, 403, 500),
        summary="List API tokens",
        description="Names, device scopes, creation and last use; never the tokens. Admin tokens only.",
    )
    def list_tokens(request: Request) -> Response:
        principal_of(request.scope).require_admin("manage tokens")
        return ok({"tokens": [_token_json(t) for t in request.app.state.tokens.list()]})

    @app.post(
        "/api/tokens",
        response_model=schemas.TokenCreatedResponse,
        status_code=201,
        responses=error_responses(400, 401, 403, 409, 500),
        summary="Create an API token",
        description="Answers the new token once; only its hash is stored. Admin tokens only.",
    )
    def create_token(request: Request, spec: Annotated[schemas.TokenSpec, Body()]) -> Response:
        principal_of(request.scope).require_admin("manage tokens")
        token, record = request.app.state.tokens.create(spec.name, spec.guids, spec.admin)
        request.app.state.auth.forget()
        return json_response({"success": True, "data": {"token": token, **_token_json(record)}}, 201)

    @app.delete(
        "/api/tokens/{name}",
        response_model=schemas.TokenRevokedResponse,
        responses=error_responses(401, 403, 404, 500),
        summary="Revoke an API token",
        description="Every process stops accepting it within two seconds. Admin tokens only.",
    )
    def revoke_token(request: Request, name: str) -> Response:
        principal_of(request.scope).require_admin("manage tokens")
        request.app.state.tokens.revoke(name)
        request.app.state.auth.forget()
        return ok({"name": name, "revoked": True})

    @app.get(
        "/api/sync-status",
        response_model=schemas.SyncStatusResponse,
        responses=error_responses(400, 404, 500),
    )
    def sync_status(request: Request, guid: Guid) -> Response:
        return ok(request.app.state.runtime.sync_status(guid))

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            },
            **error_responses(400, 401, 403, 500),
        },
        summary="Prometheus metrics",
        description="Counters and histograms of every worker process, summed, and the database's "
        "failed-event count. Admin tokens only: the labels name devices of every scope.",
    )
    def prometheus(request: Request) -> Response:
        principal_of(request.scope).require_admin("read metrics")
        return Response(exposition(request.app.state.store_metrics), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # Liveness: answered on the event loop, touching nothing that can block (not the database,
        # not the thread pool that reads use).
        return json_response({"success": True})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Readiness: the database answers a trivial query within READY_TIMEOUT seconds."""
        try:
            await asyncio.wait_for(asyncio.to_thread(request.app.state.store.ping), READY_TIMEOUT)
        except Exception as exc:  # a timeout, a refused connection, a closed store: all "not ready"
            log.warning("not ready: %s", type(exc).__name__)
            raise ApiError("The database is not answering", status=503, code="STORAGE_UNAVAILABLE") from None
        return json_response({"success": True})

    app.include_router(exports.router)
    app.include_router(viewer.router)
    app.mount("/static", viewer.static_files(), name="static")
    app.router.routes.append(mcp.route())  # behind the edge like any API route
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def _token_json(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "guids": None if record.guids is None else list(record.guids),
        "admin": record.admin,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
    }
