"""The OpenAPI document: FastAPI's, with the documented error body in place of its 422 schema,
the callback's accepted envelopes, and the token each route takes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from juhe_sync.web import schemas

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A juhebot event. 11010 carries one message object in `data`, 11013 a list of them.",
    "required": ["guid", "notify_type"],
    "properties": {
        "guid": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": "\\S",
            "description": "Device GUID.",
        },
        "notify_type": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
            "description": "Event type; unknown types are accepted.",
        },
        "data": {"description": "Payload; its shape depends on notify_type."},
    },
}
CALLBACK_SCHEMA: dict[str, Any] = {
    "description": "The event itself, or a WebSocket callback frame carrying it in `event` (object or JSON string) or `data`.",
    "anyOf": [
        _EVENT_SCHEMA,
        {
            "type": "object",
            "required": ["event"],
            "properties": {
                "type": {"type": "string", "example": "callback"},
                "event_id": {"type": "string"},
                "event": {
                    "anyOf": [_EVENT_SCHEMA, {"type": "string", "description": "The event as JSON text."}]
                },
            },
        },
        {
            "type": "object",
            "required": ["data"],
            "properties": {"type": {"type": "string"}, "data": _EVENT_SCHEMA},
        },
    ],
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Invalid parameters",
        401: "Missing or invalid token",
        403: "Not allowed for this token",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        500: "Server error",
    }
    return {s: {"model": schemas.ErrorBody, "description": text[s]} for s in statuses}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with our 400 error body in place of its 422 validation schema, and the
    token each route takes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for route, path in schema.get("paths", {}).items():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            # Any route may meet the edge: a Host not allowed (400), a missing or wrong token (401),
            # a token scoped to other devices or a cross-site write (403).
            for status, text in ((400, "Invalid parameters or Host"), (401, "Missing or invalid token"),
                                 (403, "Not allowed for this token, or a cross-site write")):  # fmt: skip
                responses.setdefault(str(status), {"description": text, "content": _ERROR_CONTENT})
            if route == "/callback":
                operation["security"] = [{"CallbackToken": []}]
            else:
                operation["security"] = [{"ApiToken": []}]
    components = schema.setdefault("components", {})
    components.get("schemas", {}).pop("HTTPValidationError", None)
    components.get("schemas", {}).pop("ValidationError", None)
    components["securitySchemes"] = {
        "ApiToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "JUHE_SYNC_API_TOKEN, or a token from `juhe-sync token create`; required once either exists.",
        },
        "CallbackToken": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "JUHE_SYNC_CALLBACK_TOKEN (or the device's own secret); required once one is set.",
        },
    }
    app.openapi_schema = schema
    return schema


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
