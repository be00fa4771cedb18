"""Bad callbacks never hurt good ones, and both backends answer alike: ids too long to index are
refused (400) before they reach the database, numbers beyond 64 bits are unknown values, and a
batch item that cannot be stored is skipped while the rest of its batch is stored."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Server


def message(n: int, **overrides: Any) -> dict[str, Any]:
    data = {"appinfo": f"bad-mix-{n}", "id": str(500_000 + n), "seq": str(n), "sender": "7881300000001234",
            "receiver": "1688850000012345", "roomid": "0", "sendtime": 1718000000 + n, "msg_type": 2,
            "content": f"第{n}条", **overrides}  # fmt: skip
    return data


def test_bad_callbacks_among_good_ones(server: Server) -> None:
    guid = "bad-mix-device"
    bodies: list[tuple[str, dict[str, Any]]] = []
    for n in range(300):
        if n % 10 == 1:
            bodies.append(("too long", {"guid": guid, "notify_type": 11010, "data": message(n, appinfo="x" * 8192)}))
        elif n % 10 == 3:
            bodies.append(("too long", {"guid": guid, "notify_type": 11010, "data": message(n, sender="7" * 60_000)}))
        elif n % 10 == 5:
            bodies.append(("huge number", {"guid": guid, "notify_type": 11010, "data": message(n, msg_type=10**30)}))
        elif n % 10 == 7:
            batch = [message(n), message(100_000 + n, appinfo="y" * 8192)]
            bodies.append(("mixed batch", {"guid": guid, "notify_type": 11013, "data": batch}))
        else:
            bodies.append(("good", {"guid": guid, "notify_type": 11010, "data": message(n)}))

    def post(item: tuple[str, dict[str, Any]]) -> tuple[str, int, dict[str, Any]]:
        r = httpx.post(server.url + "/callback", json=item[1], timeout=60)
        return item[0], r.status_code, r.json()

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(post, bodies))
    for kind, status, body in results:
        if kind == "too long":
            assert status == 400 and body["code"] == "INVALID_PARAMS", body
            assert "database" not in body["error"].lower() and "index" not in body["error"].lower()
        else:
            assert status == 200, (kind, body)
    stored = httpx.get(server.url + "/api/sync-status", params={"guid": guid}).json()["data"]["messages_count"]
    expected = sum(1 for kind, _, _ in results if kind in ("good", "huge number", "mixed batch"))
    assert stored == expected == 240
    messages, cursor = [], None
    while True:
        params = {"guid": guid, "limit": 100, **({"cursor": cursor} if cursor else {})}
        data = httpx.get(server.url + "/api/messages", params=params).json()["data"]
        messages += data["messages"]
        if (cursor := data["next_cursor"]) is None:
            break
    huge = next(m for m in messages if m["id"] == "500005")
    assert huge["msg_type"] is None and huge["type"] == "unknown"  # an unknown value, as §13.2 says
