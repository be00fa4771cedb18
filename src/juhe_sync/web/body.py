"""Reading a request body within its size limit, and telling an aborted upload apart."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from juhe_sync.errors import ApiError, ClientGone, InvalidParams


async def read_body(request: Request, limit: int) -> str:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(f"Body larger than {limit} bytes", status=413, code="PAYLOAD_TOO_LARGE")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(f"Body larger than {limit} bytes", status=413, code="PAYLOAD_TOO_LARGE")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone(f"client disconnected after {size} bytes of the body") from None
    raw = b"".join(chunks)
    del chunks
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParams("Body is not UTF-8") from None
