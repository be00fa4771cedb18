"""Reading a request body within its size limit, and telling an aborted upload apart."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive

from juhe_sync.errors import ApiError, ClientGone, InvalidParams


async def read_body(request: Request, limit: int) -> str:
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> str:
    """The body of the request whose ASGI ``receive`` this is, as text; ``declared``: its
    Content-Length header, if any (a larger one is refused before a byte is read)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone(f"client disconnected after {size} bytes of the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)  # one chunk: the same object, no copy
    del chunks
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParams("Body is not UTF-8") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(f"Body larger than {limit} bytes", status=413, code="PAYLOAD_TOO_LARGE")
