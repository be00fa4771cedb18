"""The second limit of the ingest benchmark: a bare ASGI app (no framework, no middleware) that
reads the body, parses the JSON and answers 200, under the same uvicorn and HTTP protocol as
``juhe-sync serve``. What juhe-sync does beyond this is its own cost."""

from __future__ import annotations

from typing import Any

import orjson

_ACK = b'{"success":true,"message":"Callback processed"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ACK)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ACK})
