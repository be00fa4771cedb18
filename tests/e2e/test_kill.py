"""SIGKILL the server while clients stream callbacks: every callback answered 200 survives, once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ACCOUNT, Server

KILL_GUID = "kill-test-device"


def event(n: int) -> dict:
    def item(k: int) -> dict:
        return {
            "appinfo": f"KILL-{n}-{k}", "id": str(n * 10 + k), "seq": str(n * 10 + k),
            "sender": "7881300000000042", "receiver": ACCOUNT, "roomid": "0",
            "sendtime": 1_718_000_000 + n, "msg_type": 2, "content": f"消息 {n}-{k}", "sender_name": "客户",
        }  # fmt: skip

    if n % 5 == 0:  # every fifth event is a batch of three
        return {"guid": KILL_GUID, "notify_type": 11013, "data": [item(0), item(1), item(2)]}
    return {"guid": KILL_GUID, "notify_type": 11010, "data": item(0)}


def appinfos(ev: dict) -> list[str]:
    data = ev["data"]
    return [m["appinfo"] for m in (data if isinstance(data, list) else [data])]


def stored_appinfos(url: str) -> list[str]:
    out: list[str] = []
    page = 1
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            data = c.get("/api/messages", params={"guid": KILL_GUID, "page": page, "limit": 100}).json()["data"]
            out += [m["appinfo"] for m in data["messages"]]
            if page * 100 >= data["total"]:
                return out
            page += 1


def test_sigkill_loses_no_acknowledged_callback(database_url: str, tmp_path: Path) -> None:
    server = Server(database_url, tmp_path / "server.log").start()
    acked: set[int] = set()
    sent: set[int] = set()
    lock = threading.Lock()
    counter = iter(range(1_000_000))
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                with lock:
                    n = next(counter)
                    sent.add(n)
                try:
                    r = c.post("/callback", content=json.dumps(event(n)))
                except httpx.HTTPError:
                    continue  # killed mid-request: not acknowledged, may or may not be stored
                if r.status_code == 200:
                    with lock:
                        acked.add(n)

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL, mid-stream
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 400

    server = Server(database_url, tmp_path / "server2.log").start()
    try:
        stored = stored_appinfos(server.url)
        assert len(stored) == len(set(stored)), "a message is stored twice"
        expected = {a for n in acked for a in appinfos(event(n))}
        possible = {a for n in sent for a in appinfos(event(n))}
        assert expected <= set(stored), f"{len(expected - set(stored))} acknowledged messages lost"
        assert set(stored) <= possible
        # whole events only: a batch is never half stored
        for n in sent:
            parts = [a in set(stored) for a in appinfos(event(n))]
            assert all(parts) or not any(parts)
        # redelivering everything that was sent changes nothing but adding the unacknowledged ones
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for n in sorted(sent):
                assert c.post("/callback", content=json.dumps(event(n))).status_code == 200
            status = c.get("/api/sync-status", params={"guid": KILL_GUID}).json()["data"]
        final = stored_appinfos(server.url)
        assert sorted(final) == sorted(possible)
        assert status["messages_count"] == len(possible)
        print(f"acked {len(acked)} events before SIGKILL; {len(stored)} messages found after restart, none lost")
    finally:
        server.stop()
