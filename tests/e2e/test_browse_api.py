"""Finding data without knowing an id: the device list, conversations by latest activity with
names and previews, and the page of messages around one message."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ACCOUNT, BACKENDS, Server, fresh_database

OPERATOR = "browse-operator-token"
G1, G2 = "browse-device-1", "browse-device-2"
PEERS = {"7881300000000101": "李雷", "7881300000000102": "韩梅梅", "7881300000000103": "Zoë Müller"}
ROOM = "10696052799990042"


def message(guid: str, n: int, peer: str, *, sendtime: int, room: bool = False, msg_type: int = 2,
            content: str | None = None, name: str | None = None) -> dict:  # fmt: skip
    item = {"appinfo": f"BR-{guid[-1]}-{n}", "id": f"{guid[-1]}{900000 + n}", "seq": str(n), "sender": peer,
            "receiver": "0" if room else ACCOUNT, "roomid": ROOM if room else "0", "sendtime": sendtime,
            "msg_type": msg_type, "content": content if content is not None else f"第{n}条",
            "sender_name": name if name is not None else PEERS.get(peer, peer)}  # fmt: skip
    return {"guid": guid, "notify_type": 11010, "data": item}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("browse")
    with fresh_database(request.param, directory) as url:
        srv = Server(url, directory / "server.log", {"JUHE_SYNC_API_TOKEN": OPERATOR}).start()
        try:
            events = []
            t = 1_718_000_000
            peers = list(PEERS)
            # 李雷: 30 messages long ago; 韩梅梅: 3, recent; the room: 5, in between; Zoë: one image, last.
            events += [message(G1, n, peers[0], sendtime=t + n) for n in range(30)]
            events += [message(G1, 100 + n, peers[2 - 1], sendtime=t + 5000 + n) for n in range(3)]
            events += [message(G1, 200 + n, peers[n % 2], sendtime=t + 3000 + n, room=True) for n in range(5)]
            image = json.dumps({"url": "https://example.invalid/x.jpg", "size": 84532})
            events.append(message(G1, 300, peers[2], sendtime=t + 6000, msg_type=5, content=image))
            events.append(message(G2, 1, peers[0], sendtime=t, content="另一台设备"))
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                for event in events:
                    assert http.post("/callback", json=event).status_code == 200
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {OPERATOR}"}) as c:
        yield c


def test_conversations_newest_first_with_names_counts_and_previews(api: httpx.Client) -> None:
    data = api.get("/api/conversations", params={"guid": G1}).json()["data"]
    assert data["total"] == 4 and data["next_cursor"] is None
    got = [(c["conversation_id"], c["name"], c["message_count"]) for c in data["conversations"]]
    assert got == [
        ("S:7881300000000103", "Zoë Müller", 1),
        ("S:7881300000000102", "韩梅梅", 3),
        (f"R:{ROOM}", ROOM, 5),  # no room name known yet: the id
        ("S:7881300000000101", "李雷", 30),
    ]
    first = data["conversations"][0]
    assert first["kind"] == "S" and first["last_message_time"] == "2024-06-10T07:53:20Z"
    assert first["last_message"]["type"] == "image" and first["last_message"]["text"] == "[图片]"
    assert "content" not in first["last_message"]
    assert data["conversations"][1]["last_message"]["text"] == "第102条"
    assert data["conversations"][1]["last_message"]["sender_name"] == "韩梅梅"


def test_conversations_filter_by_kind_and_name_and_page_by_cursor(api: httpx.Client) -> None:
    rooms = api.get("/api/conversations", params={"guid": G1, "kind": "R"}).json()["data"]
    assert [c["conversation_id"] for c in rooms["conversations"]] == [f"R:{ROOM}"] and rooms["total"] == 1
    for keyword, expected in (("韩", ["S:7881300000000102"]), ("zoë", ["S:7881300000000103"]),
                              ("ZOË", ["S:7881300000000103"]), ("0042", [f"R:{ROOM}"]), ("没有", [])):  # fmt: skip
        data = api.get("/api/conversations", params={"guid": G1, "keyword": keyword}).json()["data"]
        assert [c["conversation_id"] for c in data["conversations"]] == expected, keyword
        assert data["total"] == len(expected)
    seen, cursor = [], None
    while True:
        params = {"guid": G1, "limit": 1, **({"cursor": cursor} if cursor else {})}
        data = api.get("/api/conversations", params=params).json()["data"]
        seen += [c["conversation_id"] for c in data["conversations"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen[0] == "S:7881300000000103"
    assert api.get("/api/conversations", params={"guid": "nobody"}).json()["data"]["total"] == 0
    bad = api.get("/api/conversations", params={"guid": G1, "kind": "X"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_PARAMS"


def test_devices_list_every_device_with_counts(api: httpx.Client) -> None:
    data = api.get("/api/devices").json()["data"]
    by_guid = {d["guid"]: d for d in data["devices"]}
    assert set(by_guid) == {G1, G2} and data["total"] == 2
    assert by_guid[G1]["messages_count"] == 39 and by_guid[G1]["rooms_count"] == 1
    assert by_guid[G1]["status"] == "idle" and by_guid[G1]["online"] is None
    assert by_guid[G1]["last_callback_time"] is not None


def test_a_scoped_token_lists_only_its_devices(api: httpx.Client, server: Server) -> None:
    created = api.post("/api/tokens", json={"name": "only-g2", "guids": [G2]}).json()["data"]["token"]
    scoped = {"Authorization": f"Bearer {created}"}
    data = httpx.get(server.url + "/api/devices", headers=scoped, timeout=10).json()["data"]
    assert [d["guid"] for d in data["devices"]] == [G2] and data["total"] == 1
    refused = httpx.get(server.url + "/api/conversations", params={"guid": G1}, headers=scoped, timeout=10)
    assert refused.status_code == 403
    assert httpx.get(server.url + "/api/devices", timeout=10).status_code == 401
    assert httpx.get(server.url + "/api/conversations", params={"guid": G2}, timeout=10).status_code == 401


def test_around_centres_a_page_on_a_message_and_pages_both_ways(api: httpx.Client) -> None:
    params = {"guid": G1, "around": "1900015", "limit": 5, "order": "asc"}  # the 16th of 李雷's 30
    data = api.get("/api/messages", params=params).json()["data"]
    assert [m["content"] for m in data["messages"]] == [f"第{n}条" for n in range(13, 18)]
    assert data["conversation_id"] == "S:7881300000000101" and data["total"] == 30
    newer = api.get("/api/messages", params={"guid": G1, "conversation_id": data["conversation_id"], "limit": 5,
                                             "order": "asc", "cursor": data["next_cursor"]}).json()["data"]  # fmt: skip
    assert [m["content"] for m in newer["messages"]] == [f"第{n}条" for n in range(18, 23)]
    older = api.get("/api/messages", params={"guid": G1, "conversation_id": data["conversation_id"], "limit": 5,
                                             "order": "desc", "cursor": data["prev_cursor"]}).json()["data"]  # fmt: skip
    assert [m["content"] for m in older["messages"]] == [f"第{n}条" for n in range(12, 7, -1)]
    # Newest first, the cursors swap sides; at the start of the conversation the window shifts.
    desc = api.get("/api/messages", params={**params, "order": "desc"}).json()["data"]
    assert [m["content"] for m in desc["messages"]] == [f"第{n}条" for n in range(17, 12, -1)]
    start = api.get("/api/messages", params={**params, "around": "BR-1-1"}).json()["data"]
    assert [m["content"] for m in start["messages"]] == [f"第{n}条" for n in range(0, 5)]
    assert start["prev_cursor"] is None and start["next_cursor"] is not None


def test_around_refuses_what_it_cannot_answer(api: httpx.Client) -> None:
    missing = api.get("/api/messages", params={"guid": G1, "around": "no-such-message"})
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    elsewhere = api.get("/api/messages", params={"guid": G1, "around": "1900015", "conversation_id": f"R:{ROOM}"})
    assert elsewhere.status_code == 404
    other_device = api.get("/api/messages", params={"guid": G2, "around": "1900015"})
    assert other_device.status_code == 404
    mixed = api.get("/api/messages", params={"guid": G1, "around": "1900015", "keyword": "第"})
    assert mixed.status_code == 400 and mixed.json()["code"] == "INVALID_PARAMS"
