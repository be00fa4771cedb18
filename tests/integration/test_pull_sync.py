"""Pull sync against the simulated SaaS, on every backend: what it stores, how it resumes, faults."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from juhe_sync.service.queries import QueryService
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.sync.jobs import Syncer
from tests.conftest import SIM_GUID, Simulator


def walk(fetch: Any, key: str) -> list[dict[str, Any]]:
    """Every item of a paged query, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        data = fetch(cursor)
        items += data[key]
        cursor = data["next_cursor"]
        if cursor is None:
            return items


def stored(store: SQLStore, guid: str = SIM_GUID) -> dict[str, Any]:
    """What the query API returns for the device, in the simulator's truth format."""
    q = QueryService(store)
    contacts = walk(lambda c: q.contacts(guid, 1, 100, None, c), "contacts")
    rooms = walk(lambda c: q.rooms(guid, 1, 100, c), "rooms")
    out_rooms = {}
    for room in rooms:
        members = walk(lambda c, r=room: q.room_members(guid, r["id"], 1, 100, c), "members")
        assert room["member_count"] == len(members)
        out_rooms[room["id"][2:]] = {"name": room["name"], "owner": room["owner"],
                                     "members": sorted(m["id"] for m in members)}  # fmt: skip
    return {
        "account": store.device(guid).account_id,  # type: ignore[union-attr]
        "contacts": {c["id"]: {"name": c["name"], "remark": c["remark"] or ""} for c in contacts},
        "rooms": out_rooms,
    }


@pytest.mark.parametrize("room_page", [100, 7])
def test_full_sync_stores_exactly_the_device(store: SQLStore, simulator: Simulator, room_page: int, monkeypatch) -> None:
    import juhe_sync.sync.jobs as jobs

    monkeypatch.setattr(jobs, "ROOM_PAGE", room_page)  # 7: the room list comes in three pages
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    report = syncer.sync(SIM_GUID, full=True)
    assert report.errors == []
    truth = simulator.truth(SIM_GUID)
    assert stored(store) == truth
    device = store.device(SIM_GUID)
    assert device is not None
    assert device.contacts_count == len(truth["contacts"]) and device.rooms_count == len(truth["rooms"])
    status = QueryService(store).sync_status(SIM_GUID)
    assert status["status"] == "idle" and status["last_sync_time"]
    assert {k: v["status"] for k, v in status["sync"].items()} == {"contacts": "idle", "profile": "idle", "rooms": "idle"}
    labelled = [c for c in simulator.state.devices[SIM_GUID].contacts.values() if c.labels]
    listed = {c["id"]: c for c in walk(lambda cur: QueryService(store).contacts(SIM_GUID, 1, 100, None, cur), "contacts")}
    assert labelled and all(listed[c.user_id]["labels"] == c.labels for c in labelled)
    assert {c["source"] for c in listed.values()} == {"sync"}
    # Rooms the account does not own are not listed by get_room_list; details still came.
    assert any(not r.owned for r in simulator.state.devices[SIM_GUID].rooms.values())
    owned = sum(r.owned for r in simulator.state.devices[SIM_GUID].rooms.values())
    assert simulator.state.calls["/room/get_room_list"] == -(-owned // room_page)


def test_incremental_sync_brings_upstream_changes(store: SQLStore, simulator: Simulator) -> None:
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    syncer.sync(SIM_GUID, full=True)
    calls_before = sum(simulator.state.calls.values())
    events = simulator.post("/_sim/mutate", {"guid": SIM_GUID, "changes": 60})["events"]
    assert {e["notify_type"] for e in events} >= {2131, 2118}
    report = syncer.sync(SIM_GUID)
    assert report.errors == []
    assert stored(store) == simulator.truth(SIM_GUID)
    # Incremental contacts: only the changed ones were fetched (plus the empty last page).
    contact_calls = simulator.state.calls["/contact/sync_contact"]
    assert contact_calls - calls_before < 10
    # Deleted upstream: flagged, not lost.
    deleted = [c for c in simulator.state.devices[SIM_GUID].contacts.values() if c.deleted]
    assert deleted
    rows = store.read(lambda conn: conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM contacts WHERE deleted = 1").fetchone()[0])  # fmt: skip
    assert rows == len(deleted)


def test_room_refresh_uses_stored_versions(store: SQLStore, simulator: Simulator) -> None:
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    syncer.sync(SIM_GUID, full=True)
    device = simulator.state.devices[SIM_GUID]
    events = simulator.post("/_sim/mutate", {"guid": SIM_GUID, "changes": 40})["events"]
    changed = sorted({e["data"]["room_id"] for e in events if e["notify_type"] in (2118, 1002, 1003)})
    assert changed
    syncer.refresh_rooms(SIM_GUID, changed)
    got = stored(store)
    for room_id in changed:
        assert got["rooms"][room_id]["members"] == sorted(device.rooms[room_id].members)
        assert got["rooms"][room_id]["name"] == device.rooms[room_id].name


FAULTS = [
    {"kind": "http500", "count": 2},
    {"kind": "html502", "count": 2},
    {"kind": "drop", "count": 2},
    {"kind": "timeout", "count": 1, "seconds": 3},
    {"kind": "rate_limit", "count": 3},
    {"kind": "http429", "count": 2},
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f["kind"] for f in FAULTS])
def test_transient_faults_are_retried_and_change_nothing(store: SQLStore, simulator: Simulator, fault: dict) -> None:
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    simulator.post("/_sim/faults", {**fault, "path": "/contact/sync_contact"})
    simulator.post("/_sim/faults", {**fault, "path": "/room/batch_get_room_detail"})
    retries = REGISTRY.get_sample_value("juhe_sync_saas_retries_total", {"path": "/contact/sync_contact"}) or 0
    runs = REGISTRY.get_sample_value("juhe_sync_sync_runs_total", {"kind": "contacts", "result": "ok"}) or 0
    report = syncer.sync(SIM_GUID, full=True)
    assert report.errors == []
    assert stored(store) == simulator.truth(SIM_GUID)
    # The metrics tell an operator the SaaS misbehaved even though the run succeeded.
    after = REGISTRY.get_sample_value("juhe_sync_saas_retries_total", {"path": "/contact/sync_contact"})
    assert after == retries + fault["count"]
    assert REGISTRY.get_sample_value("juhe_sync_sync_runs_total", {"kind": "contacts", "result": "ok"}) == runs + 1


@pytest.mark.parametrize("kind", ["error", "err_code"])
def test_a_refusal_fails_the_run_which_then_resumes_from_its_checkpoint(store: SQLStore, simulator: Simulator, kind: str) -> None:
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    # Let three contact pages through, then refuse (never retried: the platform said no).
    first = syncer.client.call(SIM_GUID, "/contact/sync_contact", {"seq": "", "limit": 100})
    assert first["contact_list"]
    simulator.state.faults.clear()
    original = simulator.state.take_fault
    seen = {"n": 0}

    def take(path: str) -> Any:
        if path == "/contact/sync_contact":
            seen["n"] += 1
            if seen["n"] == 3:
                from juhe_sync.simulator.server import Fault

                return Fault(kind=kind, code=1002)
        return original(path)

    simulator.state.take_fault = take  # type: ignore[method-assign]
    report = syncer.sync(SIM_GUID, full=True)
    assert any(e.startswith("contacts:") for e in report.errors)
    status = QueryService(store).sync_status(SIM_GUID)
    assert status["status"] == "error"
    assert status["sync"]["contacts"]["status"] == "error"
    assert "simulated failure" in status["sync"]["contacts"]["last_error"]
    done_before = status["sync"]["contacts"]["done"]
    assert done_before == 200  # two pages committed before the refusal
    calls = simulator.state.calls["/contact/sync_contact"]
    report = syncer.sync(SIM_GUID)  # resumes the full run at page 3
    assert report.errors == []
    pages = -(-len(simulator.truth(SIM_GUID)["contacts"]) // 100)
    assert simulator.state.calls["/contact/sync_contact"] - calls == pages - 2 + 1  # the rest + the empty end
    assert stored(store) == simulator.truth(SIM_GUID)
    assert QueryService(store).sync_status(SIM_GUID)["status"] == "idle"


def test_a_run_killed_midway_resumes_without_duplicates(store: SQLStore, simulator: Simulator, monkeypatch) -> None:
    """A process that dies mid-run leaves ``running`` and its last committed page; the next run
    (here: after the lease is released, as it is once the dead holder's TTL passes) resumes it."""
    import juhe_sync.sync.jobs as jobs

    monkeypatch.setattr(jobs, "ROOM_DETAIL_CHUNK", 5)
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]

    class Killed(BaseException):
        pass

    real = syncer.client.call
    count = {"n": 0}

    def dying(guid: str, path: str, data: Any = None) -> Any:
        if path == "/room/batch_get_room_detail":
            count["n"] += 1
            if count["n"] == 2:
                raise Killed()
        return real(guid, path, data)

    syncer.client.call = dying  # type: ignore[method-assign]
    with pytest.raises(Killed):
        syncer.sync(SIM_GUID, full=True)
    syncer.client.call = real  # type: ignore[method-assign]
    status = QueryService(store).sync_status(SIM_GUID)
    assert status["sync"]["rooms"]["status"] == "interrupted"  # nobody holds the device's lease
    before = simulator.state.calls["/room/batch_get_room_detail"]
    assert syncer.sync(SIM_GUID).errors == []
    rooms = len(simulator.truth(SIM_GUID)["rooms"])
    assert simulator.state.calls["/room/batch_get_room_detail"] - before == -(-rooms // 5) - 1
    assert stored(store) == simulator.truth(SIM_GUID)


def test_rooms_seen_only_in_messages_are_fetched(store: SQLStore, simulator: Simulator) -> None:
    from tests.helpers import feed

    device = simulator.state.devices[SIM_GUID]
    foreign = next(r for r in device.rooms.values() if not r.owned)
    message = device.message(1)
    message.update(roomid=foreign.room_id, receiver="0", sender=next(iter(foreign.members)))
    feed(store, {"guid": SIM_GUID, "notify_type": 11010, "data": message})
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    syncer.sync(SIM_GUID, full=True)
    members = QueryService(store).room_members(SIM_GUID, "R:" + foreign.room_id, 1, 100)
    assert sorted(m["id"] for m in members["members"]) == sorted(foreign.members)


def test_gap_recovery_pulls_missed_messages_once(store: SQLStore, simulator: Simulator) -> None:
    from tests.helpers import feed

    device = simulator.state.devices[SIM_GUID]
    for item in [device.message(n) for n in range(1, 6)]:
        feed(store, {"guid": SIM_GUID, "notify_type": 11010, "data": item})
    Syncer(store, simulator.client()).sync(SIM_GUID)  # type: ignore[arg-type]
    assert simulator.state.calls["/sync/sync_msg"] == 0  # off by default
    syncer = Syncer(store, simulator.client(), sync_messages=True)  # type: ignore[arg-type]
    # The first run starts at the newest seq callbacks gave: nothing is missing yet.
    assert syncer.sync(SIM_GUID).messages == 0
    missed = [device.message(n) for n in range(6, 236)]  # juhe-sync was down: no callbacks
    late = device.message(236)
    feed(store, {"guid": SIM_GUID, "notify_type": 11010, "data": late})  # back up
    report = syncer.sync(SIM_GUID)
    assert report.errors == [] and report.messages == len(missed)  # the late one was already stored
    assert store.device(SIM_GUID).messages_count == 236  # type: ignore[union-attr]
    assert syncer.sync(SIM_GUID).messages == 0  # from the stored cursor: nothing new
    for item in missed[:10]:  # a late callback of a pulled message changes nothing
        feed(store, {"guid": SIM_GUID, "notify_type": 11010, "data": item})
    assert store.device(SIM_GUID).messages_count == 236  # type: ignore[union-attr]
    status = QueryService(store).sync_status(SIM_GUID)
    assert status["sync"]["messages"]["status"] == "idle"


def test_shutdown_stops_a_run_between_pages_and_it_resumes(store: SQLStore, simulator: Simulator) -> None:
    from juhe_sync.sync.jobs import SyncStopped

    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    real = syncer.client.call
    pages = {"n": 0}

    def call(guid: str, path: str, data: Any = None) -> Any:
        if path == "/contact/sync_contact":
            pages["n"] += 1
            if pages["n"] == 2:
                syncer.stopping.set()  # shutdown arrives while the second page is fetched
        return real(guid, path, data)

    syncer.client.call = call  # type: ignore[method-assign]
    with pytest.raises(SyncStopped):
        syncer.sync(SIM_GUID, full=True)
    status = QueryService(store).sync_status(SIM_GUID)
    assert status["sync"]["contacts"]["status"] == "interrupted" and status["sync"]["contacts"]["done"] == 200
    assert status["last_error"] is None
    syncer.stopping.clear()
    assert syncer.sync(SIM_GUID).errors == []
    assert pages["n"] == 2 + 2  # the third (last) page and the empty end, not the first two again
    assert stored(store) == simulator.truth(SIM_GUID)


def test_per_device_credentials(simulator: Simulator) -> None:
    """A device's own app_key/app_secret win over the global pair (which is wrong here)."""
    import json

    from juhe_sync.config import Settings
    from juhe_sync.saas.client import client_from_settings
    from juhe_sync.saas.protocol import SaasError

    settings = Settings(
        saas_base_url=simulator.url, app_key="wrong-key", app_secret="wrong-secret", saas_rate=0, saas_retries=0,
        device_credentials=json.dumps({SIM_GUID: {"app_key": Simulator.APP_KEY, "app_secret": Simulator.APP_SECRET}}),
    )  # fmt: skip
    client = client_from_settings(settings)
    try:
        assert client.call(SIM_GUID, "/user/get_profile")
        with pytest.raises(SaasError):
            client.call("another-device", "/user/get_profile")
    finally:
        client.close()
    assert settings.credentials_for(SIM_GUID) == (Simulator.APP_KEY, Simulator.APP_SECRET)
    assert settings.credentials_for("another-device") == ("wrong-key", "wrong-secret")
    assert settings.configured_devices == {SIM_GUID}
