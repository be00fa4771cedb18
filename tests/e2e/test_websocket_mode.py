"""WebSocket mode: a real server connects out to the simulated SaaS and stores what it sends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, Server, Simulator, fresh_database
from tests.helpers import sample, scrape

GUID = "ws-device"


def until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ws_server(sim: Simulator, url: str, log: Path, secret: str = Simulator.APP_SECRET, lease_ttl: str = "60") -> Server:
    env = {
        "JUHE_SYNC_LEASE_TTL": lease_ttl,
        "JUHE_SYNC_SYNC_PERIOD": "0",
        "JUHE_SYNC_WS_ENABLED": "1",
        "JUHE_SYNC_WS_URL": sim.url.replace("http://", "ws://") + "/ws/juwe",
        "JUHE_SYNC_WS_GUIDS": GUID,
        "JUHE_SYNC_SAAS_BASE_URL": sim.url,
        "JUHE_SYNC_APP_KEY": Simulator.APP_KEY,
        "JUHE_SYNC_APP_SECRET": secret,
    }
    return Server(url, log, env).start()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def stats(sim: Simulator) -> dict:
    return httpx.get(sim.url + "/_sim/stats", timeout=10).json()


def test_websocket_mode_stores_exactly_what_was_sent_across_disconnects(database: str, tmp_path: Path) -> None:
    sim = Simulator([GUID], contacts=50, rooms=5).start()
    server = ws_server(sim, database, tmp_path / "server.log")
    try:
        until(lambda: stats(sim)["sockets"].get(GUID) == 1, what="the server to connect")
        status = httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10)
        # Every callback twice (duplicates), and the connection dropped after 40 frames.
        sim.post("/_sim/faults", {"kind": "ws_drop", "count": 40})
        pushed = sim.post("/_sim/push", {"guid": GUID, "messages": 150, "duplicates": 1})
        assert len(pushed["events"]) == 150
        until(lambda: stats(sim)["unacked"].get(GUID) == 0 and stats(sim)["sockets"].get(GUID) == 1, 90,
              "every frame to be acknowledged after the reconnect")  # fmt: skip
        data = httpx.get(server.url + "/api/messages", params={"guid": GUID, "limit": 100}, timeout=10).json()["data"]
        assert data["total"] == 150
        ids = {e["data"]["id"] for e in pushed["events"]}
        assert {m["id"] for m in data["messages"]} <= ids
        status = httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10).json()["data"]
        assert status["messages_count"] == 150
        ws = status["websocket"]
        assert ws["connected"] and ws["connects"] >= 2 and ws["callbacks"] >= 300 and ws["rejected"] == 0
        samples = scrape(server.url)
        assert sample(samples, "juhe_sync_websocket_connected", guid=GUID) == 1
        assert sample(samples, "juhe_sync_websocket_connects_total", guid=GUID) == ws["connects"]
        assert sample(samples, "juhe_sync_callbacks_total", source="websocket", result="stored") == 150
        assert sample(samples, "juhe_sync_callbacks_total", source="websocket", result="duplicate") >= 150
        assert sample(samples, "juhe_sync_messages_stored_total", source="websocket") == 150
        # Application-level pings are answered.
        assert httpx.post(sim.url + "/_sim/ping", params={"guid": GUID}, timeout=10).json() == {"sent": 1}
        until(lambda: stats(sim)["acks"].get("pong", 0) == 1, what="a pong")
        # A frame that is not a callback is rejected with success: false, and nothing is stored.
        sim.post("/_sim/push", {"guid": GUID, "events": [{"guid": GUID, "notify_type": "x", "data": {}}]})
        until(lambda: stats(sim)["acks"].get("failure", 0) >= 1, what="a failure ack")
        assert httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10).json()["data"]["messages_count"] == 150
    finally:
        server.stop()
        sim.stop()


def test_refused_auth_is_retried_and_reported(tmp_path: Path) -> None:
    sim = Simulator([GUID], contacts=20, rooms=2).start()
    server = ws_server(sim, f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "server.log", secret="wrong")
    try:
        # The device row exists once anything was stored; create it with a harmless callback.
        httpx.post(server.url + "/callback", json={"guid": GUID, "notify_type": 11001, "data": {}}, timeout=10)

        def reported() -> bool:
            ws = httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10).json()["data"]["websocket"]
            return ws["connects"] >= 1 and "auth failed" in (ws["last_error"] or "") and not ws["connected"]

        until(reported, what="the refused auth to be reported")
        assert stats(sim)["sockets"].get(GUID, 0) == 0
    finally:
        server.stop()
        sim.stop()


def test_one_process_holds_a_device_connection_and_another_takes_over(database: str, tmp_path: Path) -> None:
    """Two processes in WebSocket mode on one database: one connection per device; when its
    holder is SIGKILLed, the other process connects once the lease lapses, and the callbacks
    sent meanwhile arrive (redelivered: they were never acknowledged)."""
    sim = Simulator([GUID], contacts=30, rooms=3).start()
    servers = []
    try:
        for i in range(2):
            server = ws_server(sim, database, tmp_path / f"server{i}.log", lease_ttl="2")
            servers.append(server)
        until(lambda: stats(sim)["sockets"].get(GUID) == 1, what="one connection")
        time.sleep(1.5)  # a renewal period: the second process must still be waiting
        assert stats(sim)["sockets"].get(GUID) == 1
        sim.post("/_sim/push", {"guid": GUID, "messages": 40})
        until(lambda: stats(sim)["unacked"].get(GUID) == 0, what="the first 40 to be acknowledged")

        def holder() -> Server:
            for server in servers:
                ws = httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10).json()["data"]["websocket"]
                if ws["connected"]:
                    return server
            raise AssertionError("nobody holds the connection")

        first = holder()
        first.kill()
        sim.post("/_sim/push", {"guid": GUID, "messages": 25})  # sent while nobody listens
        other = next(s for s in servers if s is not first)
        until(lambda: stats(sim)["unacked"].get(GUID) == 0, 60, "the other process to take over")
        status = httpx.get(other.url + "/api/sync-status", params={"guid": GUID}, timeout=10).json()["data"]
        assert status["messages_count"] == 65 and status["websocket"]["connected"]
    finally:
        for server in servers:
            server.stop()
        sim.stop()


def test_a_login_over_the_websocket_starts_a_full_pull(database: str, tmp_path: Path) -> None:
    """Callbacks that arrive over the authenticated WebSocket start the pulls they ask for, like
    verified HTTP callbacks (the device is configured)."""
    sim = Simulator([GUID], contacts=40, rooms=4).start()
    server = ws_server(sim, database, tmp_path / "server.log")
    try:
        until(lambda: stats(sim)["sockets"].get(GUID) == 1, what="the server to connect")
        login = {"guid": GUID, "notify_type": 11003, "data": {"user_id": "1688850000099999", "name": "x"}}
        sim.post("/_sim/push", {"guid": GUID, "events": [login]})

        def synced() -> bool:
            answer = httpx.get(server.url + "/api/sync-status", params={"guid": GUID}, timeout=10)
            if answer.status_code == 404:
                return False  # the login is not stored yet: the device is not known
            data = answer.json()["data"]
            return data["sync"].get("contacts", {}).get("status") == "idle" and data["status"] == "idle"

        until(synced, 60, "the full sync a login asks for")
        contacts = httpx.get(server.url + "/api/contacts", params={"guid": GUID, "limit": 100}, timeout=10).json()
        assert contacts["data"]["total"] == len(sim.truth(GUID)["contacts"])
        samples = scrape(server.url)
        for kind in ("profile", "contacts", "rooms"):
            assert sample(samples, "juhe_sync_sync_runs_total", kind=kind, result="ok") >= 1, kind
        calls = sum(v for (name, labels), v in samples.items() if name == "juhe_sync_saas_calls_total" and ("result", "ok") in labels)
        assert calls >= 3
    finally:
        server.stop()
        sim.stop()
