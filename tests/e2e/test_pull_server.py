"""A real ``juhe-sync serve`` with pull sync on, against the simulated SaaS over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, SIM_GUID, Server, Simulator, fresh_database


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Simulator]]:
    sim = Simulator([SIM_GUID, "sim-device-2"], contacts=180, rooms=24).start()
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        env = {
            "JUHE_SYNC_SAAS_BASE_URL": sim.url,
            "JUHE_SYNC_APP_KEY": Simulator.APP_KEY,
            "JUHE_SYNC_APP_SECRET": Simulator.APP_SECRET,
            "JUHE_SYNC_SYNC_DEBOUNCE": "0.2",
            "JUHE_SYNC_SAAS_RATE": "0",
            "JUHE_SYNC_SYNC_PERIOD": "0",  # only the syncs a test asks for (no start-up catch-up)
            # Callbacks start pulls only when they prove the secret (or the device is configured).
            "JUHE_SYNC_CALLBACK_TOKEN": "sim-callback-secret",
        }
        server = Server(url, tmp_path_factory.mktemp("server") / "server.log", env).start()
        sim.state.push_to = server.url + "/callback?token=sim-callback-secret"
        try:
            yield server, sim
        finally:
            server.stop()
            sim.stop()


def get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def wait_idle(server: Server, guid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = get(server, "/api/sync-status", guid=guid)
        if r.status_code == 200:
            data = r.json()["data"]
            if data["status"] in ("idle", "error", "offline"):
                return data
        time.sleep(0.1)
    raise AssertionError(f"sync of {guid} did not finish: {r.text}")


def api_state(server: Server, guid: str) -> dict[str, Any]:
    def walk(path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"guid": guid, "limit": 100, **({"cursor": cursor} if cursor else {})}
            data = get(server, path, **params).json()["data"]
            items += data[key]
            cursor = data["next_cursor"]
            if not cursor:
                return items

    rooms = {}
    for room in walk("/api/rooms", "rooms"):
        members = walk(f"/api/rooms/{room['id']}/members", "members")
        rooms[room["id"][2:]] = {"name": room["name"], "owner": room["owner"], "members": sorted(m["id"] for m in members)}
    status = get(server, "/api/sync-status", guid=guid).json()["data"]
    return {
        "account": (status["account"] or {}).get("id"),
        "contacts": {c["id"]: {"name": c["name"], "remark": c["remark"] or ""} for c in walk("/api/contacts", "contacts")},
        "rooms": rooms,
    }


def test_post_sync_fills_the_api(stack: tuple[Server, Simulator]) -> None:
    server, sim = stack
    r = httpx.post(server.url + "/api/sync", params={"guid": SIM_GUID, "full": "true"}, timeout=30)
    assert r.status_code == 202 and r.json() == {"success": True, "data": {"guid": SIM_GUID, "full": True, "queued": True}}
    status = wait_idle(server, SIM_GUID)
    assert status["status"] == "idle" and status["last_sync_time"]
    assert status["sync"]["contacts"]["done"] >= 180 and status["sync"]["rooms"]["total"] == 16
    assert api_state(server, SIM_GUID) == sim.truth(SIM_GUID)
    assert status["contacts_count"] == 180 and status["rooms_count"] == 16
    r = get(server, "/api/rooms/R:10000000000000000/members", guid=SIM_GUID)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def test_callbacks_trigger_the_right_pulls(stack: tuple[Server, Simulator]) -> None:
    server, sim = stack
    guid = "sim-device-2"
    # 11003 login: a full sync, the account from the callback itself.
    login = {"guid": guid, "notify_type": 11003, "data": {"user_id": sim.state.devices[guid].account, "name": "x"}}
    assert httpx.post(server.url + "/callback?token=sim-callback-secret", json=login, timeout=30).status_code == 200
    wait_idle(server, guid)  # the sync is queued before the callback is answered: no race
    assert api_state(server, guid) == sim.truth(guid)
    # Upstream changes arrive as 2131 / 2118 / 1002 / 1003 callbacks (pushed by the simulator).
    events = sim.post("/_sim/mutate", {"guid": guid, "changes": 40, "push": True})["events"]
    touched = {e["data"]["room_id"] for e in events if "room_id" in e["data"]}
    wait_idle(server, guid)
    deadline = time.monotonic() + 30
    while api_state(server, guid) != sim.truth(guid, tuple(touched)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api_state(server, guid) == sim.truth(guid, tuple(touched))
    status = get(server, "/api/sync-status", guid=guid).json()["data"]
    assert set(status["sync"]) >= {"contacts", "rooms", "room_changes"}
    # Logout: offline, whatever the pulls say.
    assert httpx.post(server.url + "/callback?token=sim-callback-secret", json={"guid": guid, "notify_type": 11004, "data": {}}, timeout=30).status_code == 200
    assert get(server, "/api/sync-status", guid=guid).json()["data"]["status"] == "offline"


def test_a_failing_sync_reports_error_then_recovers(stack: tuple[Server, Simulator]) -> None:
    server, sim = stack
    sim.post("/_sim/faults", {"kind": "error", "path": "/contact/sync_contact", "code": 1002})
    httpx.post(server.url + "/api/sync", params={"guid": SIM_GUID}, timeout=30)
    status = wait_idle(server, SIM_GUID)
    assert status["status"] == "error" and "simulated failure" in status["last_error"]
    assert status["sync"]["contacts"]["status"] == "error"
    httpx.post(server.url + "/api/sync", params={"guid": SIM_GUID}, timeout=30)
    status = wait_idle(server, SIM_GUID)
    assert status["status"] == "idle" and status["last_error"] is None


def test_sync_needs_credentials(client: httpx.Client) -> None:
    r = client.post("/api/sync", params={"guid": "any"})
    assert r.status_code == 409 and r.json() == {
        "success": False,
        "error": "Pull sync is not configured: set JUHE_SYNC_APP_KEY and JUHE_SYNC_APP_SECRET",
        "code": "SYNC_DISABLED",
    }


def test_cli_sync_with_progress(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    sim = Simulator(["cli-device"], contacts=120, rooms=12).start()
    try:
        env = {**os.environ, "JUHE_SYNC_SAAS_BASE_URL": sim.url, "JUHE_SYNC_APP_KEY": Simulator.APP_KEY,
               "JUHE_SYNC_APP_SECRET": Simulator.APP_SECRET, "JUHE_SYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "juhe_sync", "sync", "--guid", "cli-device", "--full"],
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "contacts 120, rooms 8" in out.stderr
        bad = subprocess.run([sys.executable, "-m", "juhe_sync", "sync", "--guid", "cli-device"],
                             env={**env, "JUHE_SYNC_APP_KEY": ""}, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert bad.returncode == 2 and "no SaaS credentials" in bad.stderr
    finally:
        sim.stop()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def test_a_sync_killed_with_its_server_resumes_after_restart(database: str, tmp_path: Path) -> None:
    """SIGKILL the server in the middle of a full contact sync; the restarted server resumes the
    run from its last committed page once the dead process's lease expires."""
    sim = Simulator(["kill-device"], contacts=2500, rooms=10).start()
    env = {"JUHE_SYNC_SAAS_BASE_URL": sim.url, "JUHE_SYNC_APP_KEY": Simulator.APP_KEY,
           "JUHE_SYNC_APP_SECRET": Simulator.APP_SECRET, "JUHE_SYNC_SAAS_RATE": "10", "JUHE_SYNC_LEASE_TTL": "2",
           "JUHE_SYNC_SYNC_PERIOD": "0"}  # fmt: skip
    server = Server(database, tmp_path / "server.log", env).start()
    try:
        httpx.post(server.url + "/api/sync", params={"guid": "kill-device", "full": "true"}, timeout=30)

        def contacts_done() -> int:
            r = get(server, "/api/sync-status", guid="kill-device")
            kinds = r.json()["data"]["sync"] if r.status_code == 200 else {}
            return kinds.get("contacts", {}).get("done", 0)

        deadline = time.monotonic() + 60
        while contacts_done() < 700:
            assert time.monotonic() < deadline, "the sync did not progress"
            time.sleep(0.02)
        server.kill()
        pages_before = sim.state.calls["/contact/sync_contact"]
        server.start()
        deadline = time.monotonic() + 30
        while (status := get(server, "/api/sync-status", guid="kill-device").json()["data"])["sync"]["contacts"]["status"] != "interrupted":
            assert time.monotonic() < deadline, "the dead process's lease did not lapse"
            time.sleep(0.1)
        committed = status["sync"]["contacts"]["done"]
        assert 700 <= committed < 2500
        httpx.post(server.url + "/api/sync", params={"guid": "kill-device"}, timeout=30)
        status = wait_idle(server, "kill-device", timeout=90)
        assert status["status"] == "idle", status
        # Only the pages after the last committed one were fetched again (+ the empty last page).
        refetched = sim.state.calls["/contact/sync_contact"] - pages_before
        assert refetched <= (2500 - committed) // 100 + 2
        assert api_state(server, "kill-device") == sim.truth("kill-device")
        assert status["contacts_count"] == 2500
    finally:
        server.stop()
        sim.stop()


def test_pulls_only_for_configured_or_verified_devices(tmp_path: Path) -> None:
    """Without the callback secret, a callback naming a GUID nobody configured must not spend SaaS
    quota: no triggered pull, no periodic pull. Configured devices and manual syncs still run."""
    unconfigured = "sim-device-2"
    sim = Simulator([SIM_GUID, unconfigured], contacts=20, rooms=3).start()
    env = {
        "JUHE_SYNC_SAAS_BASE_URL": sim.url,
        "JUHE_SYNC_APP_KEY": Simulator.APP_KEY,
        "JUHE_SYNC_APP_SECRET": Simulator.APP_SECRET,
        "JUHE_SYNC_SYNC_DEBOUNCE": "0",
        "JUHE_SYNC_SAAS_RATE": "0",
        "JUHE_SYNC_SYNC_PERIOD": "3",  # a periodic round 3 s after start, then every 3 s
        "JUHE_SYNC_SYNC_GUIDS": SIM_GUID,
    }
    server = Server(f"sqlite:///{tmp_path / 'pulls.db'}", tmp_path / "server.log", env).start()
    try:
        for guid in (unconfigured, SIM_GUID):
            login = {"guid": guid, "notify_type": 11003, "data": {"user_id": "1688850000099999", "name": "x"}}
            assert httpx.post(server.url + "/callback", json=login, timeout=30).status_code == 200
        assert wait_idle(server, SIM_GUID)["sync"]["contacts"]["status"] == "idle"
        # Wait for the first periodic round: it syncs the configured device again.
        calls = sim.state.calls["/contact/sync_contact"]
        deadline = time.monotonic() + 30
        while sim.state.calls["/contact/sync_contact"] == calls:
            assert time.monotonic() < deadline, "no periodic sync"
            time.sleep(0.1)
        wait_idle(server, SIM_GUID)
        assert get(server, "/api/sync-status", guid=unconfigured).json()["data"]["sync"] == {}
        # The operator may still sync it by hand.
        assert httpx.post(server.url + "/api/sync", params={"guid": unconfigured}, timeout=30).status_code == 202
        assert wait_idle(server, unconfigured)["sync"]["contacts"]["status"] == "idle"
    finally:
        server.stop()
        sim.stop()
