"""The one place that turns exceptions into the documented error body."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from juhe_sync.errors import ApiError, ClientGone, error_body
from juhe_sync.web.responses import error_response, json_response

log = logging.getLogger("juhe_sync.web")

_HTTP_CODES = {
    400: "INVALID_PARAMS",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "Invalid parameters"


def answer(method: str, path: str, exc: ApiError) -> Response:
    """The response to ``exc`` raised by ``method path``, logged as it deserves."""
    if exc.logged:
        pass  # the store logged the cause, once per interval however many requests it failed
    elif exc.status >= 500:
        log.error("%s %s failed: %s", method, path, exc.message)
    elif isinstance(exc, ClientGone):
        log.warning("%s %s: %s", method, path, exc.message)
    return error_response(exc, {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)


def unexpected(method: str, path: str) -> Response:
    """The response to an exception nobody expected (call it in the ``except`` block: it logs the
    traceback, which the client never sees)."""
    log.exception("unexpected error in %s %s", method, path)
    return json_response(error_body("Internal server error", "INTERNAL_ERROR"), 500)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return answer(request.method, request.url.path, exc)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        return await api_error(request, ClientGone("client disconnected before the request was read"))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return json_response(error_body(_validation_message(exc), "INVALID_PARAMS"), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "INTERNAL_ERROR" if exc.status_code >= 500 else "HTTP_ERROR")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        return json_response(error_body(detail, code), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        return unexpected(request.method, request.url.path)
