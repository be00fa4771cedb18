"""JSON responses serialised with orjson (exact big integers, no float round-trips)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from juhe_sync.errors import ApiError, error_body


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


def ok(data: Any) -> Response:
    return json_response({"success": True, "data": data})


def error_response(exc: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    """The documented error body for ``exc``, with its status."""
    return json_response(error_body(exc.message, exc.code), exc.status, headers)
