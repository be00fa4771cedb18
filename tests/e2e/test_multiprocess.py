"""Three juhe-sync processes on one database, every event delivered two or three times to different
processes at once: each message is stored exactly once and every count is exact."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from juhe_sync.service.stores import open_store
from tests.conftest import ACCOUNT, GUID, PG_URL, Server, callback_fixtures, fixture_text

GUIDS = [GUID, "mp-device-2", "mp-device-3"]
PEERS = [f"78813000000{n:05d}" for n in range(60)]
ROOMS = [f"1069605278880{n:04d}" for n in range(12)]


def generated_events(count: int, rng: random.Random) -> tuple[list[str], dict[str, set[str]]]:
    """Events as JSON text, and per device the appinfos they carry. Some messages appear both in a
    single and in a batch event (different events, same message)."""
    events: list[str] = []
    expected: dict[str, set[str]] = {g: set() for g in GUIDS}
    pending: list[tuple[str, dict]] = []
    for n in range(count):
        guid = rng.choice(GUIDS)
        room = rng.random() < 0.4
        peer = rng.choice(PEERS)
        item = {
            "appinfo": f"MP-{n}", "id": str(900000 + n), "seq": str(800000 + n),
            "sender": peer, "receiver": "0" if room else ACCOUNT, "roomid": rng.choice(ROOMS) if room else "0",
            "sendtime": 1_718_000_000 + rng.randrange(86400), "msg_type": 2,
            "content": f"第{n}条 消息 {rng.choice(['报价', '合同', '发货', 'hello'])}", "sender_name": f"客户{peer[-3:]}",
        }  # fmt: skip
        expected[guid].add(item["appinfo"])
        events.append(json.dumps({"guid": guid, "notify_type": 11010, "data": item}, ensure_ascii=False))
        pending.append((guid, item))
        if len(pending) == 25 or n == count - 1:
            for g in GUIDS:
                batch = [it for gg, it in pending if gg == g]
                if batch:
                    events.append(json.dumps({"guid": g, "notify_type": 11013, "data": batch}, ensure_ascii=False))
            pending = []
    return events, expected


@pytest.mark.skipif(not PG_URL, reason="needs JUHE_SYNC_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_three_processes_exactly_once(backend: str, tmp_path: Path) -> None:
    from tests.conftest import fresh_database

    rng = random.Random(42)
    with fresh_database(backend, tmp_path) as url:
        servers = [Server(url, tmp_path / f"server{i}.log").start() for i in range(3)]
        try:
            fixtures = [fixture_text(n) for n in ["callback_11003_user_login.json", *callback_fixtures()]]
            events, expected = generated_events(3000, rng)
            events = fixtures + events
            deliveries = []
            for text in events:
                for target in rng.sample(range(3), rng.choice([2, 3])):
                    deliveries.append((target, text))
            rng.shuffle(deliveries)

            clients = [httpx.Client(base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=32)) for s in servers]

            def deliver(job: tuple[int, str]) -> int:
                target, text = job
                return clients[target].post("/callback", content=text.encode()).status_code

            with ThreadPoolExecutor(max_workers=24) as pool:
                statuses = list(pool.map(deliver, deliveries))
            assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}

            fixture_messages = 11
            for guid in GUIDS:
                stored: list[str] = []
                page = 1
                while True:
                    r = clients[page % 3].get("/api/messages", params={"guid": guid, "page": page, "limit": 100})
                    data = r.json()["data"]
                    stored += [m["appinfo"] for m in data["messages"]]
                    if page * 100 >= data["total"]:
                        break
                    page += 1
                assert len(stored) == len(set(stored)), f"{guid}: a message stored twice"
                want = expected[guid] | ({m for m in stored if not m.startswith("MP-")} if guid == GUID else set())
                assert set(stored) == want
                if guid == GUID:
                    assert len(want - expected[guid]) == fixture_messages
                status = clients[0].get("/api/sync-status", params={"guid": guid}).json()["data"]
                assert status["messages_count"] == len(stored)
                contacts = clients[1].get("/api/contacts", params={"guid": guid, "limit": 1}).json()["data"]["total"]
                rooms = clients[2].get("/api/rooms", params={"guid": guid, "limit": 1}).json()["data"]["total"]
                assert status["contacts_count"] == contacts and status["rooms_count"] == rooms
        finally:
            for c in locals().get("clients", []):
                c.close()
            for s in servers:
                s.stop()
        store = open_store(url)
        try:
            assert store.journal_size() == len(set(events))  # every distinct event journalled once
        finally:
            store.close()
