"""Errors that carry an HTTP status and a documented error code, and the one builder of error bodies."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client should see as ``{"success": false, "error", "code"}``."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, logged: bool = False
    ):
        super().__init__(message)
        self.message = message
        #: Whoever raised it has logged the cause already (once per interval for a recurring one).
        self.logged = logged
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InvalidParams(ApiError):
    status = 400
    code = "INVALID_PARAMS"


class Unauthorized(ApiError):
    """No API token, or one that is not valid (or a callback without its secret)."""

    status = 401
    code = "UNAUTHORIZED"


class Forbidden(ApiError):
    """A valid token that may not do this (another device, an admin route, a cross-site write)."""

    status = 403
    code = "FORBIDDEN"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class ClientGone(ApiError):
    """The client went away before its request was read: nobody is left to answer."""

    status = 400
    code = "CLIENT_DISCONNECTED"


class ServerStarting(ApiError):
    """A request that needs what the application's start-up opens (the store, the MCP server)
    before it has: the same answer from every route."""

    status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("The server is starting")


class StorageError(ApiError):
    """The store could not durably commit; nothing was acknowledged, so the sender retries."""

    status = 500
    code = "STORAGE_ERROR"


class StorageUnavailable(ApiError):
    """The database does not answer right now; the request may be tried again shortly."""

    status = 503
    code = "STORAGE_UNAVAILABLE"


def error_body(message: str, code: str) -> dict[str, Any]:
    """The documented error body. Every error response of juhe-sync is built here."""
    return {"success": False, "error": message, "code": code}
