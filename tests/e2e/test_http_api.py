"""Every endpoint and every error case, through a real ``juhe-sync serve`` process."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ACCOUNT, GUID, Server, callback_fixtures, fixture_text

ACK = {"success": True, "message": "Callback processed"}


def post(client: httpx.Client, body: str | bytes) -> httpx.Response:
    return client.post("/callback", content=body, headers={"content-type": "application/json"})


def feed_all(client: httpx.Client) -> None:
    for name in ["callback_11003_user_login.json", *callback_fixtures()]:
        r = post(client, fixture_text(name))
        assert r.status_code == 200 and r.json() == ACK, name


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == code and isinstance(body["error"], str)
    assert set(body) == {"success", "error", "code"}
    assert "Traceback" not in r.text


def test_callbacks_and_every_query(client: httpx.Client) -> None:
    feed_all(client)
    feed_all(client)  # redelivery changes nothing
    for name in ("ws_callback_event_object.json", "ws_callback_event_string.json", "ws_callback_data_wrapper.json"):
        assert post(client, fixture_text(name)).json() == ACK

    r = client.get("/api/messages", params={"guid": GUID, "limit": 100})
    assert r.status_code == 200
    data = r.json()["data"]
    assert (data["total"], data["page"], data["limit"]) == (11, 1, 100)
    first = data["messages"][0]
    assert {"id", "conversation_id", "from", "content", "timestamp", "type"} <= set(first)
    assert {"direction", "sender_name", "revoked", "at_list", "quote_appinfo"} <= set(first)
    assert [m["timestamp"] for m in data["messages"]] == sorted((m["timestamp"] for m in data["messages"]), reverse=True)

    r = client.get("/api/messages", params={"guid": GUID, "conversation_id": "S:7881300000001234"})
    msgs = r.json()["data"]["messages"]
    assert {m["conversation_id"] for m in msgs} == {"S:7881300000001234"} and len(msgs) == 4
    revoked = {m["id"]: m["revoked"] for m in msgs}
    assert revoked["1067201"] is True

    r = client.get("/api/messages", params={"guid": GUID, "keyword": "报价"})
    assert [m["id"] for m in r.json()["data"]["messages"]] == ["1067188"]
    r = client.get("/api/messages", params={"guid": GUID, "keyword": "合"})
    assert r.json()["data"]["total"] == 1 and r.json()["data"]["total_capped"] is False
    r = client.get("/api/messages", params={"guid": GUID, "keyword": "Ab" * 500})  # the longest keyword
    assert r.status_code == 200 and r.json()["data"]["total"] == 0
    r = client.get("/api/messages", params={"guid": GUID, "start_time": "2024-06-10T06:20:00Z",
                                             "end_time": "2024-06-10T14:25:00+08:00", "order": "asc"})
    assert [m["timestamp"] for m in r.json()["data"]["messages"]] == [
        "2024-06-10T06:20:20Z", "2024-06-10T06:23:30Z", "2024-06-10T06:25:00Z"]
    r = client.get("/api/messages", params={"guid": GUID, "start_time": "2024-06-10", "end_time": "2024-06-10"})
    assert r.json()["data"]["total"] == 11
    r = client.get("/api/messages", params={"guid": GUID, "page": 2, "limit": 5})
    assert len(r.json()["data"]["messages"]) == 5 and r.json()["data"]["page"] == 2

    r = client.get("/api/contacts", params={"guid": GUID, "keyword": "张"})
    assert r.json() == {"success": True, "data": {"contacts": [
        {"id": "7881300000001234", "name": "张伟", "remark": None, "avatar": None, "type": "external",
         "corp_id": None, "labels": [], "source": "message"}],
        "total": 1, "page": 1, "limit": 20, "next_cursor": None}}
    assert client.get("/api/contacts", params={"guid": GUID}).json()["data"]["total"] == 4

    r = client.get("/api/rooms", params={"guid": GUID, "limit": 1})
    data = r.json()["data"]
    assert data["rooms"] == [{"id": "R:10696052788813579", "name": None, "owner": None, "member_count": None, "avatar": None}]
    assert (data["total"], data["page"], data["limit"]) == (2, 1, 1) and data["next_cursor"]
    r = client.get("/api/rooms", params={"guid": GUID, "limit": 1, "cursor": data["next_cursor"]})
    assert [room["id"] for room in r.json()["data"]["rooms"]] == ["R:10772491266604821"]

    status = client.get("/api/sync-status", params={"guid": GUID}).json()["data"]
    assert (status["contacts_count"], status["messages_count"], status["rooms_count"]) == (4, 11, 2)
    assert status["guid"] == GUID and status["status"] in {"idle", "offline"}
    assert status["account"]["id"] == ACCOUNT


def test_unknown_device_lists_are_empty(client: httpx.Client) -> None:
    for path, key in (("/api/contacts", "contacts"), ("/api/messages", "messages"), ("/api/rooms", "rooms")):
        r = client.get(path, params={"guid": "never-seen"})
        assert r.status_code == 200 and r.json()["data"][key] == [] and r.json()["data"]["total"] == 0


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/sync-status", {"guid": "never-seen"}, 404, "NOT_FOUND"),
        ("/api/sync-status", {}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": " "}, 400, "INVALID_PARAMS"),
        ("/api/messages", {}, 400, "INVALID_PARAMS"),
        ("/api/rooms", {}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": GUID, "page": 0}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": GUID, "page": "x"}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": GUID, "limit": 101}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": GUID, "limit": 0}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "conversation_id": "user_1"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "conversation_id": "X:1"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "start_time": "yesterday"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "end_time": "2024-02-30"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "start_time": "2024-06-11", "end_time": "2024-06-10"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "order": "sideways"}, 400, "INVALID_PARAMS"),
        ("/api/contacts", {"guid": GUID, "keyword": "a\x00b"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "keyword": "\x00"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "keyword": "Ab" * 500 + "c"}, 400, "INVALID_PARAMS"),  # 1,001
        ("/api/export", {"guid": GUID, "keyword": "Ab" * 500 + "c"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "conversation_id": "S:a\x00"}, 400, "INVALID_PARAMS"),
        ("/api/rooms", {"guid": "g\x00"}, 400, "INVALID_PARAMS"),
        ("/api/messages", {"guid": GUID, "cursor": "nonsense"}, 400, "INVALID_PARAMS"),
        ("/api/nothing", {}, 404, "NOT_FOUND"),
        ("/no-such-page", {}, 404, "NOT_FOUND"),
    ],
)
def test_query_errors(client: httpx.Client, path: str, params: dict, status: int, code: str) -> None:
    assert_error(client.get(path, params=params), status, code)


def test_wrong_methods(client: httpx.Client) -> None:
    assert_error(client.get("/callback"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.post("/api/messages"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.delete("/api/rooms"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'{"type": "auth_success"}',
        b'{"type": "callback", "event": "{broken"}',
        b'{"guid": "", "notify_type": 11010, "data": {}}',
        b'{"guid": "g", "notify_type": "new", "data": {}}',
        b'{"guid": "g", "notify_type": 11010, "data": "text"}',
        b'{"guid": "g", "notify_type": 11013, "data": 7}',
    ],
)
def test_bad_callbacks_are_400_and_store_nothing(client: httpx.Client, body: bytes) -> None:
    assert_error(post(client, body), 400, "INVALID_PARAMS")
    assert client.get("/api/sync-status", params={"guid": "g"}).status_code == 404


def test_oversized_callback_is_413(client: httpx.Client) -> None:
    body = '{"guid": "g", "notify_type": 1, "data": "' + "x" * (17 * 1024 * 1024) + '"}'
    assert_error(post(client, body), 413, "PAYLOAD_TOO_LARGE")


def test_unknown_notify_types_are_accepted(client: httpx.Client) -> None:
    r = post(client, '{"guid": "dev-x", "notify_type": 987654, "data": null}')
    assert r.json() == ACK
    status = client.get("/api/sync-status", params={"guid": "dev-x"}).json()["data"]
    assert status["messages_count"] == 0


def test_big_room_ids_stay_exact(client: httpx.Client) -> None:
    text = fixture_text("callback_11010_text_room.json").replace('"roomid": "10696052788813579"', '"roomid": 10696052799990001')
    text = text.replace(GUID, "big-id-device")
    assert post(client, text).json() == ACK
    rooms = client.get("/api/rooms", params={"guid": "big-id-device"}).json()["data"]["rooms"]
    assert rooms == [{"id": "R:10696052799990001", "name": None, "owner": None, "member_count": None, "avatar": None}]


def test_openapi_documents_the_error_body(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/callback", "/api/contacts", "/api/messages", "/api/rooms", "/api/sync-status",
                                 "/api/rooms/{room_id}/members", "/api/sync", "/api/tokens", "/api/tokens/{name}", "/metrics",
                                 "/api/devices", "/api/conversations", "/api/export"}  # fmt: skip
    for path in doc["paths"].values():
        for op in path.values():
            assert "422" not in op["responses"]
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "404" in doc["paths"]["/api/sync-status"]["get"]["responses"]
    assert client.get("/docs").status_code == 200


def test_probes_need_no_token_and_readiness_follows_the_database(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"success": True}
    assert httpx.get(server.url + "/readyz").json() == {"success": True}
    assert httpx.get(server.url + "/readyz", headers={"Host": "10.0.0.5:8070"}).status_code == 200
