"""``GET /api/export``: a device's messages as JSON lines or CSV, streamed while they are read."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from juhe_sync.service import export
from juhe_sync.timeutil import now_seconds
from juhe_sync.web.openapi import error_responses

router = APIRouter()

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@router.get(
    "/api/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
            "description": "One message per line, oldest first: JSON lines (the `/api/messages` fields plus "
            "what `juhe-sync import` needs to restore them) or CSV with a header row.",
        },
        **error_responses(400, 401, 403, 404, 500),
    },
    summary="Export messages",
    description="Every message of a device that the filters select, oldest first, streamed (no page size). "
    "Filters as in `/api/messages`. 404 if the device is unknown.",
)
async def export_messages(
    request: Request,
    guid: Annotated[str, Query(min_length=1, description="Device GUID.")],
    format: Annotated[Literal["jsonl", "csv"], Query(description="`jsonl` or `csv`.")] = "jsonl",
    conversation_id: Annotated[str | None, Query(description="`S:<user_id>` or `R:<room_id>`.")] = None,
    keyword: Annotated[str | None, Query(description="Case-insensitive substring of the text.")] = None,
    start_time: Annotated[str | None, Query(description="ISO 8601, inclusive.")] = None,
    end_time: Annotated[str | None, Query(description="ISO 8601, inclusive.")] = None,
) -> StreamingResponse:
    store = request.app.state.store
    # Validated before the first byte: a bad filter is a 400 with the documented body, not a cut stream.
    selection = await run_in_threadpool(
        export.select, store, guid, conversation_id=conversation_id, keyword=keyword,
        start_time=start_time, end_time=end_time,
    )  # fmt: skip
    zone = request.app.state.runtime.settings.zone
    name = f"juhe-sync-{_UNSAFE.sub('_', guid)[:64]}-{now_seconds()}.{format}"
    return StreamingResponse(
        export.stream(store, selection, format, zone),  # a plain iterator: Starlette reads it in a thread
        media_type=export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
