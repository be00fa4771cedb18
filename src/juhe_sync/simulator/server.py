"""A faithful stand-in for the juhebot SaaS: its pull API, its HTTP callbacks and its WebSocket.

Run it with ``juhe-sync simulate``. Besides the platform's own endpoints it has a control API
(``/_sim/...``) that tests and demos use to change the world, push callbacks and inject faults:

* ``POST /_sim/faults`` ``{"kind", "path"?, "count"?, "seconds"?, "code"?}`` queues faults for the
  next matching GuidRequest calls. Kinds: ``timeout`` (answer after ``seconds``), ``http500``,
  ``html502`` (an HTML error page), ``error`` (``error_code`` = ``code``, never retried),
  ``err_code`` (the same with the ``err_code``/``err_msg`` spelling), ``rate_limit`` (HTTP 200,
  ``error_code`` 429), ``http429`` and ``drop`` (the connection dies mid-answer).
  ``ws_drop`` closes every WebSocket after ``count`` more frames.
* ``POST /_sim/mutate`` ``{"guid", "changes", "push"?}`` changes contacts and rooms upstream and,
  with ``push``, delivers the callbacks the platform would send.
* ``POST /_sim/push`` ``{"guid", "messages"?, "events"?, "duplicates"?, "deliver"?}`` delivers
  callbacks to ``--push-to`` over HTTP and to every authenticated WebSocket client of that
  device; with ``"deliver": false`` the messages only exist upstream (for ``/sync/sync_msg``).
* ``POST /_sim/ping?guid=`` sends an application-level ``{"type": "ping"}`` to the device's
  WebSockets (``pong`` answers are counted in the stats' ``acks``).
* ``GET /_sim/truth?guid=[&seen_rooms=id,id]`` what a complete sync must leave in juhe-sync (rooms:
  the listed ones and those seen elsewhere); ``GET /_sim/stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from juhe_sync.simulator.world import Device

log = logging.getLogger("juhe_sync.simulator")


@dataclass
class Fault:
    kind: str
    path: str | None = None
    count: int = 1
    seconds: float = 30.0
    code: int = 1002


@dataclass
class SimState:
    app_key: str
    app_secret: str
    devices: dict[str, Device]
    push_to: str | None = None
    faults: list[Fault] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    acks: Counter[str] = field(default_factory=Counter)
    #: guid -> event_id -> event, delivered over WebSocket and not yet acknowledged with success.
    unacked: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    sockets: dict[str, set[WebSocket]] = field(default_factory=lambda: defaultdict(set))
    ws_drop_after: int | None = None
    pushed: int = 0
    message_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.kind != "ws_drop" and fault.path in (None, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"error_code": 0, "error_message": "ok", "data": data})


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_message": message, "data": None})


class _Dropped(Response):
    """Promises a body it never finishes: the client sees the connection die mid-answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b'{"error_code": 0, "da', "more_body": False})


def create_simulator(state: SimState) -> Starlette:
    async def guid_request(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid json")
        path = str(body.get("path") or "")
        state.calls[path] += 1
        fault = state.take_fault(path)
        if fault is not None:
            answer = await _fault_answer(fault)
            if answer is not None:
                return answer
        if body.get("app_key") != state.app_key or body.get("app_secret") != state.app_secret:
            return _error(401, "invalid app_key or app_secret")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        device = state.devices.get(str(data.get("guid")))
        if device is None:
            return _error(1002, "user is offline")
        async with state.lock:
            return _dispatch(device, path, data)

    async def faults(request: Request) -> Response:
        spec = await request.json()
        fault = Fault(**{k: v for k, v in spec.items() if k in Fault.__dataclass_fields__})
        if fault.kind == "ws_drop":
            state.ws_drop_after = fault.count
        else:
            state.faults.append(fault)
        return JSONResponse({"queued": len(state.faults)})

    async def mutate(request: Request) -> Response:
        spec = await request.json()
        device = state.devices[spec["guid"]]
        async with state.lock:
            events = device.mutate(int(spec.get("changes", 10)))
        if spec.get("push"):
            await _deliver(state, device.guid, events)
        return JSONResponse({"events": events})

    async def push(request: Request) -> Response:
        spec = await request.json()
        device = state.devices[spec["guid"]]
        events = list(spec.get("events") or [])
        async with state.lock:
            for _ in range(int(spec.get("messages", 0))):
                number = next(state.message_numbers)
                events.append({"guid": device.guid, "notify_type": 11010, "data": device.message(number)})
        if spec.get("deliver", True) is False:  # callbacks the platform "lost": only sync_msg has them
            return JSONResponse({"events": events, "delivered": 0})
        delivered = await _deliver(state, device.guid, events, duplicates=int(spec.get("duplicates", 0)))
        return JSONResponse({"events": events, "delivered": delivered})

    async def ping(request: Request) -> Response:
        guid = request.query_params["guid"]
        sockets = list(state.sockets.get(guid, ()))
        for ws in sockets:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.send_text(json.dumps({"type": "ping"}))
        return JSONResponse({"sent": len(sockets)})

    async def truth(request: Request) -> Response:
        seen = set(filter(None, request.query_params.get("seen_rooms", "").split(",")))
        return JSONResponse(state.devices[request.query_params["guid"]].truth(seen))

    async def stats(request: Request) -> Response:
        unacked = {guid: len(events) for guid, events in state.unacked.items()}
        return JSONResponse({"calls": state.calls, "acks": state.acks, "unacked": unacked, "pushed": state.pushed,
                             "sockets": {g: len(s) for g, s in state.sockets.items()}})  # fmt: skip

    return Starlette(
        routes=[
            Route("/open/GuidRequest", guid_request, methods=["POST"]),
            Route("/_sim/faults", faults, methods=["POST"]),
            Route("/_sim/mutate", mutate, methods=["POST"]),
            Route("/_sim/push", push, methods=["POST"]),
            Route("/_sim/truth", truth),
            Route("/_sim/ping", ping, methods=["POST"]),
            Route("/_sim/stats", stats),
            WebSocketRoute("/ws/juwe", lambda ws: _websocket(state, ws)),
        ]
    )


async def _fault_answer(fault: Fault) -> Response | None:
    if fault.kind == "timeout":
        await asyncio.sleep(fault.seconds)
        return None
    answers: dict[str, Response] = {
        "http500": JSONResponse({"error": "internal"}, status_code=500),
        "html502": Response(
            "<html><body><h1>502 Bad Gateway</h1></body></html>", 502, media_type="text/html"
        ),
        "error": _error(fault.code, "simulated failure"),
        "err_code": JSONResponse({"err_code": fault.code, "err_msg": "simulated failure"}),
        "rate_limit": _error(429, "too many requests"),
        "http429": JSONResponse({"error": "slow down"}, status_code=429, headers={"retry-after": "0"}),
        "drop": _Dropped(),
    }
    return answers.get(fault.kind)


def _dispatch(device: Device, path: str, data: dict[str, Any]) -> Response:
    limit = int(data.get("limit") or 10)
    if path == "/contact/sync_contact":
        return _ok(device.contact_page(str(data.get("seq") or ""), limit))
    if path == "/room/get_room_list":
        return _ok(device.room_list(int(data.get("start_index") or 0), limit))
    if path == "/room/batch_get_room_detail":
        return _ok(device.room_details([str(r) for r in data.get("room_list") or []]))
    if path == "/room/sync_room_info":
        return _ok(device.sync_room(str(data.get("room_id")), int(data.get("version") or 0)))
    if path == "/user/get_profile":
        return _ok(device.profile())
    if path == "/sync/sync_msg":
        page = device.sync_messages(str(data.get("sync_key") or ""), limit)
        return _error(1001, "invalid sync_key") if page is None else _ok(page)
    return _error(404, f"unknown path {path}")


async def _deliver(state: SimState, guid: str, events: list[dict[str, Any]], duplicates: int = 0) -> int:
    """Send events as the platform does: HTTP push to ``push_to`` (retrying until 200) and WebSocket."""
    copies = [e for e in events for _ in range(1 + duplicates)]
    delivered = 0
    if state.push_to:
        async with httpx.AsyncClient(timeout=30) as client:
            for event in copies:
                for _ in range(20):
                    try:
                        if (await client.post(state.push_to, json=event)).status_code == 200:
                            delivered += 1
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
    for event in copies:
        event_id = uuid.uuid4().hex
        state.unacked[guid][event_id] = event
        for ws in list(state.sockets.get(guid, ())):
            await _send_event(state, ws, event_id, event)
    state.pushed += len(copies)
    return delivered


async def _send_event(state: SimState, ws: WebSocket, event_id: str, event: dict[str, Any]) -> None:
    if state.ws_drop_after is not None:
        if state.ws_drop_after <= 0:
            state.ws_drop_after = None
            await ws.close(code=1011)
            return
        state.ws_drop_after -= 1
    # The three wrappings seen in the wild (§3.3), in turn.
    style = sum(map(ord, event_id)) % 3
    frame: dict[str, Any] = {"type": "callback", "event_id": event_id}
    if style == 0:
        frame["event"] = event
    elif style == 1:
        frame["event"] = json.dumps(event, ensure_ascii=False)
    else:
        frame["data"] = event
    # A failed send stays unacknowledged: it is redelivered on the next connection.
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await ws.send_text(json.dumps(frame, ensure_ascii=False))


async def _websocket(state: SimState, ws: WebSocket) -> None:
    await ws.accept()
    guid = ""
    try:
        auth = json.loads(await ws.receive_text())
        guid = str(auth.get("guid"))
        if (
            auth.get("type") != "auth"
            or auth.get("app_key") != state.app_key
            or auth.get("app_secret") != state.app_secret
        ):
            await ws.send_text(json.dumps({"type": "error", "message": "auth failed"}))
            await ws.close()
            return
        await ws.send_text(json.dumps({"type": "auth_success"}))
        state.sockets[guid].add(ws)
        for event_id, event in list(state.unacked[guid].items()):  # at-least-once: redeliver
            await _send_event(state, ws, event_id, event)
        while True:
            frame = json.loads(await ws.receive_text())
            if frame.get("type") == "pong":
                state.acks["pong"] += 1
            elif frame.get("type") == "ack":
                state.acks["success" if frame.get("success") else "failure"] += 1
                if frame.get("success"):
                    state.unacked[guid].pop(str(frame.get("event_id")), None)
    except (WebSocketDisconnect, RuntimeError, ValueError):
        pass
    finally:
        state.sockets[guid].discard(ws)


def build_state(
    guids: list[str],
    *,
    seed: int,
    contacts: int,
    rooms: int,
    app_key: str,
    app_secret: str,
    push_to: str | None,
) -> SimState:
    devices = {guid: Device(guid, seed + i, contacts, rooms) for i, guid in enumerate(guids)}
    return SimState(app_key=app_key, app_secret=app_secret, devices=devices, push_to=push_to)
