"""The MCP server: ``service.assistant``'s tools bound to the official ``mcp`` SDK, over stdio
(``juhe-sync mcp``) and over streamable HTTP at ``/mcp`` on the server.

Over HTTP ``/mcp`` is an ordinary protected route: the edge (``web.edge``) has checked the Host,
refused cross-site writes and admitted the bearer token before the SDK sees the request, and each
tool reads the token's device scope from the request the SDK hands it. The transport is stateless
with JSON answers: any worker process answers any request, and nothing outlives a request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from juhe_sync import __version__
from juhe_sync.errors import ApiError, ServerStarting
from juhe_sync.service.access import ANONYMOUS, Principal
from juhe_sync.service.assistant import Assistant
from juhe_sync.service.compact import dumps
from juhe_sync.service.runtime import Runtime
from juhe_sync.web.edge import MAX_API_BODY, principal_of
from juhe_sync.web.responses import error_response

log = logging.getLogger("juhe_sync.web.mcp")

INSTRUCTIONS = (
    "juhe-sync keeps a durable copy of WeCom/WeChat accounts ('devices', each with a GUID): their "
    "conversations, messages, contacts and group members. Everything here is read-only. Start with "
    "list_devices; find a chat with list_conversations or a message with search_messages; read a "
    "conversation, or the context of a hit, with get_messages. Times are local times with their UTC "
    "offset. Lists are paged: pass an answer's next_cursor back as cursor (with the same arguments) "
    "for the next page; next_cursor null means there is no more."
)

#: Not one tool changes anything, and all they read is this server's own database.
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

Guid = Annotated[
    str, Field(min_length=1, max_length=512, description="Device GUID, as list_devices shows it.")
]
Cursor = Annotated[
    str | None,
    Field(
        max_length=2048,
        description="next_cursor of the previous answer, to get the next page (same other arguments).",
    ),
]
ConversationId = Annotated[
    str | None,
    Field(
        max_length=600,
        description="`S:<user_id>` (a private chat) or `R:<room_id>` (a group), as list_conversations shows it.",
    ),
]
StartTime = Annotated[
    str | None,
    Field(max_length=64, description="Earliest time, inclusive: ISO 8601 date or date-time, e.g. 2024-06-10 or "
          "2024-06-10T09:00. Without an offset it is the server's local time (as in the answers)."),
]  # fmt: skip
EndTime = Annotated[
    str | None,
    Field(
        max_length=64,
        description="Latest time, inclusive, like start_time; a date alone covers that whole day.",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Most items in one answer, 1-100.")]
MaxChars = Annotated[
    int,
    Field(
        ge=20,
        le=100_000,
        description="Longest message text shown; a longer one is cut with a note of how much is missing.",
    ),
]


def _answer(call: Callable[[], dict[str, Any]]) -> str:
    """The tool's answer as compact JSON. What the API would answer with an error body becomes a
    tool error with the same message (bad input, a device outside the scope, nothing found: for
    the model to correct; a database that does not answer: to try later). Anything else is a crash,
    which the SDK logs and reports without details."""
    try:
        return dumps(call())
    except ApiError as exc:
        raise ToolError(exc.message) from None


def build_server(assistant: Assistant, caller: Callable[[Context], Principal]) -> MCPServer:
    """An MCP server offering the assistant's tools; ``caller`` names who asks in a tool call."""
    # MCPServer() calls logging.basicConfig(): in a process whose logging is not set up yet (a test,
    # an embedding) that would install the SDK's own root handler and level. With a handler in
    # place the call does nothing, and logging stays juhe-sync's (logs.configure).
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        server: MCPServer = MCPServer("juhe-sync", version=__version__, instructions=INSTRUCTIONS)
    finally:
        root.removeHandler(placeholder)

    def tool(fn: Callable[..., str]) -> Callable[..., str]:
        # The docstring is the description, on one line: the model reads it, indentation and all.
        description = " ".join((fn.__doc__ or "").split())
        server.add_tool(fn, description=description, annotations=READ_ONLY, structured_output=False)
        return fn

    @tool
    def list_devices(ctx: Context, limit: Limit = 20, cursor: Cursor = None) -> str:
        """List the WeCom/WeChat devices (accounts) you may read: GUID, account name and id, online
        state, sync status, message/contact/room counts, last activity. Start here: every other tool
        takes a device GUID."""
        return _answer(lambda: assistant.list_devices(caller(ctx), limit, cursor))

    @tool
    def list_conversations(
        ctx: Context,
        guid: Guid,
        name: Annotated[
            str | None,
            Field(
                max_length=200,
                description="Only conversations whose name, remark or id contains this (case-insensitive).",
            ),
        ] = None,
        kind: Annotated[
            Literal["S", "R"] | None,
            Field(description="`S` private chats only, `R` group chats (rooms) only."),
        ] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> str:
        """List a device's conversations, most recent activity first: conversation_id (`S:<user_id>`
        a private chat, `R:<room_id>` a group), name, message count, time and preview of the last
        message. Pass a conversation_id to get_messages or search_messages."""
        return _answer(lambda: assistant.list_conversations(caller(ctx), guid, name, kind, limit, cursor))

    @tool
    def search_messages(
        ctx: Context,
        guid: Guid,
        keyword: Annotated[
            str,
            Field(
                min_length=1,
                max_length=200,
                description="Text to find: a case-insensitive substring "
                "of any length, so 1- and 2-character Chinese words work (e.g. 报价, 合同).",
            ),
        ],
        conversation_id: ConversationId = None,
        start_time: StartTime = None,
        end_time: EndTime = None,
        limit: Limit = 20,
        cursor: Cursor = None,
        max_chars: MaxChars = 300,
    ) -> str:
        """Search a device's text messages for a keyword, newest first, optionally in one
        conversation and a time range. Each hit: id, local time, conversation, sender name and id,
        text. total counts the hits; with total_capped, there are at least that many. To read a hit
        in context, call get_messages with around_message_id set to its id."""
        return _answer(
            lambda: assistant.search_messages(caller(ctx), guid, keyword, conversation_id, start_time,
                                              end_time, limit, cursor, max_chars)
        )  # fmt: skip

    @tool
    def get_messages(
        ctx: Context,
        guid: Guid,
        conversation_id: ConversationId = None,
        start_time: StartTime = None,
        end_time: EndTime = None,
        around_message_id: Annotated[
            str | None,
            Field(
                max_length=600,
                description="A message id (e.g. a search hit's): the page of "
                "`limit` messages of its conversation centred on it. Takes no time range or cursor.",
            ),
        ] = None,
        order: Annotated[
            Literal["desc", "asc"], Field(description="`desc` newest first (default), `asc` oldest first.")
        ] = "desc",
        limit: Limit = 30,
        cursor: Cursor = None,
        max_chars: MaxChars = 1000,
    ) -> str:
        """Read a device's messages: one conversation (conversation_id), a time range, both, or the
        messages around one message (around_message_id). Each message: id, local time, sender name
        and id, text; media appear as labels such as [图片] or [文件] with the file name, long texts
        are cut at max_chars with a note. next_cursor continues in `order`; around a message,
        prev_cursor continues the other way (pass it with the opposite order)."""
        return _answer(
            lambda: assistant.get_messages(caller(ctx), guid, conversation_id, start_time, end_time,
                                           around_message_id, order, limit, cursor, max_chars)
        )  # fmt: skip

    @tool
    def get_contact(
        ctx: Context,
        guid: Guid,
        user_id: Annotated[
            str,
            Field(
                min_length=1,
                max_length=600,
                description="The contact's user id: a message's `from`, "
                "or the id in `S:<user_id>` (the prefix may be given).",
            ),
        ],
    ) -> str:
        """Look up one contact of a device: name, remark, type (internal colleague or external
        contact), corp, labels, the private chat's message count and last message time, and other
        details the platform gave."""
        return _answer(lambda: assistant.get_contact(caller(ctx), guid, user_id))

    @tool
    def list_room_members(
        ctx: Context,
        guid: Guid,
        room_id: Annotated[
            str, Field(min_length=1, max_length=600, description="The group: `R:<room_id>` or the bare id.")
        ],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> str:
        """List the members of a group chat: user id, name, nickname in the group, remark, type,
        join time, inviter. Filled by pull sync: a group never synced has none listed."""
        return _answer(lambda: assistant.list_room_members(caller(ctx), guid, room_id, limit, cursor))

    @tool
    def sync_status(ctx: Context, guid: Guid) -> str:
        """How current a device's data is: online and login state, the logged-in account, counts,
        last callback and sync times, each kind of pull's progress and last error, and how many
        callbacks failed to apply."""
        return _answer(lambda: assistant.sync_status(caller(ctx), guid))

    return server


# --- stdio -------------------------------------------------------------------------------------


async def serve_stdio(assistant: Assistant, principal: Principal) -> None:
    """Answer MCP on standard input and output until the client closes them."""
    await build_server(assistant, lambda ctx: principal).run_stdio_async()


# --- streamable HTTP ---------------------------------------------------------------------------


def _request_principal(ctx: Context) -> Principal:
    scope = getattr(ctx.request_context.request, "scope", None)
    # Every HTTP request passed the edge, which put its principal in the scope; without a request
    # this is not a call over HTTP at all, and nobody may read anything.
    return principal_of(scope) if isinstance(scope, dict) else ANONYMOUS


#: The SDK's own Host/Origin check stays off: the edge has applied JUHE_SYNC_ALLOWED_HOSTS (with
#: its wildcards and proxy rules) and the cross-site rules to this request already, and the SDK's
#: loopback-only default would refuse every other host the operator allowed. (It still refuses a
#: POST that is not application/json.)
EDGE_CHECKED = TransportSecuritySettings(enable_dns_rebinding_protection=False)


@asynccontextmanager
async def running(state: Any, runtime: Runtime) -> AsyncIterator[None]:
    """Run the MCP session manager for the app's lifetime, as ``state.mcp`` (``state`` is the app's).
    A new one per lifespan: the SDK's manager runs only once."""
    assistant = Assistant(runtime.queries, runtime.settings.zone, runtime)
    server = build_server(assistant, _request_principal)
    # Only for the session manager it sets up: the Starlette app it returns is not used, /mcp is a
    # route of juhe-sync's app, behind its edge.
    server.streamable_http_app(
        json_response=True,
        stateless_http=True,
        transport_security=EDGE_CHECKED,
        max_request_body_size=MAX_API_BODY,
    )
    manager = server.session_manager
    # Each stateless request ends a transport of its own, which the SDK logs at INFO: a line per
    # tool call that says nothing.
    transport_log = logging.getLogger("mcp.server.streamable_http")
    if not transport_log.isEnabledFor(logging.DEBUG):
        transport_log.setLevel(logging.WARNING)
    async with manager.run():
        state.mcp = manager
        try:
            yield
        finally:
            state.mcp = None


class Endpoint:
    """The ASGI app at ``/mcp`` (a class, so the router hands it the raw request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            # Stateless, there is nothing to push on a GET stream (the SDK would hold it open for
            # nothing, a connection each) and no session to DELETE: the spec's answer is 405.
            exc = ApiError(
                "/mcp takes POST: MCP streamable HTTP, stateless", status=405, code="METHOD_NOT_ALLOWED"
            )
            await error_response(exc, {"Allow": "POST"})(scope, receive, send)
            return
        manager: StreamableHTTPSessionManager | None = getattr(scope["app"].state, "mcp", None)
        if manager is None:
            await error_response(ServerStarting())(scope, receive, send)
            return
        await manager.handle_request(scope, receive, send)


def route() -> Route:
    """``/mcp`` for the app's router: a raw ASGI endpoint (the SDK reads the request itself), every
    method, left out of the OpenAPI document (it is not a REST route)."""
    return Route("/mcp", Endpoint(), include_in_schema=False)
