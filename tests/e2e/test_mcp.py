"""The MCP server, through the SDK's own client: over stdio (``juhe-sync mcp`` as a subprocess) and
over streamable HTTP at ``/mcp`` on a real server (two worker processes) behind its API token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from juhe_sync.records import ContactRow, MemberRow, RoomDetail, RoomRow
from juhe_sync.service.ingest import Ingestor
from juhe_sync.service.stores import open_store
from juhe_sync.storage import pulls
from tests.conftest import ACCOUNT, BACKENDS, Server, fresh_database

T = TypeVar("T")

OPERATOR = "mcp-operator-token"
G1, G2 = "mcp-device-1", "mcp-device-2"
LEI, MEI = "7881300000000201", "7881300000000202"
ROOM = "10696052799990077"
T0 = 1_718_000_000  # 2024-06-10T14:13:20+08:00
ZONE_ENV = {"JUHE_SYNC_TIME_ZONE": "Asia/Shanghai"}
TOOLS = {"list_devices", "list_conversations", "search_messages", "get_messages", "get_contact",
         "list_room_members", "sync_status"}  # fmt: skip
LONG = "项目进展：" + "进度正常，" * 600


def message(guid: str, n: int, sender: str, content: str, *, sendtime: int, room: bool = False,
            msg_type: int = 2, name: str | None = None, receiver: str = ACCOUNT) -> dict[str, Any]:  # fmt: skip
    item = {"appinfo": f"MCP-{guid[-1]}-{n}", "id": f"{guid[-1]}{700000 + n}", "seq": str(n), "sender": sender,
            "receiver": "0" if room else receiver, "roomid": ROOM if room else "0", "sendtime": sendtime,
            "msg_type": msg_type, "content": content, "sender_name": name if name is not None else ""}  # fmt: skip
    return {"guid": guid, "notify_type": 11010, "data": item}


def seed(url: str) -> None:
    """Messages through the ingest pipeline, then what pull sync would have stored: a contact with a
    remark and labels, and the room with its name and members."""
    # The login tells which messages the account sent itself.
    events: list[dict[str, Any]] = [
        {"guid": G1, "notify_type": 11003, "data": {"user_id": ACCOUNT, "name": "李晓明"}}
    ]
    events += [message(G1, n, LEI, f"第{n}条", sendtime=T0 + n, name="李雷") for n in range(30)]
    events += [
        message(G1, 100, MEI, "李经理您好，上次说的报价单方便再发我一份吗？", sendtime=T0 + 1000, name="韩梅梅"),
        message(G1, 101, MEI, "今天中午吃烤鸭", sendtime=T0 + 1001, name="韩梅梅"),
        message(G1, 102, MEI, LONG, sendtime=T0 + 1002, name="韩梅梅"),
        message(G1, 103, MEI, json.dumps({"url": "https://example.invalid/a.jpg", "size": 1}), sendtime=T0 + 1003,
                msg_type=5, name="韩梅梅"),
        message(G1, 104, MEI, json.dumps({"file_name": "Q2合同.pdf", "size": 2048}), sendtime=T0 + 1004,
                msg_type=8, name="韩梅梅"),
        message(G1, 105, ACCOUNT, "已经发您邮箱了", sendtime=T0 + 1005, receiver=MEI),
        message(G1, 200, LEI, "大家看下新的报价已更新", sendtime=T0 + 2000, room=True),
        message(G1, 201, MEI, "收到", sendtime=T0 + 2001, room=True, name="韩梅梅"),
        message(G2, 1, LEI, "另一台设备上的报价", sendtime=T0, name="李雷"),
    ]  # fmt: skip
    store = open_store(url)
    store.migrate()
    try:
        ingestor = Ingestor(store)
        for event in events:
            ingestor.submit(json.dumps(event, ensure_ascii=False))[1].result()
        device = store.device(G1)
        assert device is not None
        contact = ContactRow(LEI, "李雷", "李总(采购)", None, "external", None,
                             labels=[{"label_id": "L1", "label_name": "重要客户"}], extra={"position": "采购经理"})  # fmt: skip
        room = RoomDetail(RoomRow(ROOM, "华东项目群", ACCOUNT, None, None, 1), [
            MemberRow(LEI, "李雷", "雷哥", T0 - 86400, ACCOUNT), MemberRow(MEI, "韩梅梅", None, None, ACCOUNT),
            MemberRow(ACCOUNT, "李晓明", None, None, None)])  # fmt: skip
        store.pull_write(G1, lambda conn: pulls.store_contacts(conn, device.id, [contact], None))
        store.pull_write(G1, lambda conn: pulls.store_room_details(conn, device.id, [room]))
    finally:
        store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(request.param, tmp_path_factory.mktemp("mcp")) as url:
        seed(url)
        yield url


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"JUHE_SYNC_API_TOKEN": OPERATOR, "JUHE_SYNC_WORKERS": "2", **ZONE_ENV}
    srv = Server(database, tmp_path_factory.mktemp("mcp-server") / "server.log", env).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def scoped_token(server: Server) -> str:
    """A token for G2 only."""
    created = httpx.post(server.url + "/api/tokens", json={"name": "mcp-g2", "guids": [G2]},
                         headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["token"])


def over_http(
    server: Server, token: str | None, scenario: Callable[[Client], Awaitable[T]], mode: str = "auto"
) -> T:
    async def main() -> T:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(server.url + "/mcp", http_client=http), mode=mode) as client,
        ):
            return await scenario(client)

    return run(main)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run``, raising a failed assertion itself rather than the task groups around it."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def over_stdio(
    database: str, scenario: Callable[[Client], Awaitable[T]], *args: str, env: dict[str, str] | None = None
) -> T:
    params = StdioServerParameters(command=sys.executable, args=["-m", "juhe_sync", "mcp", *args],
                                   env={"JUHE_SYNC_DATABASE_URL": database, **ZONE_ENV, **(env or {})})  # fmt: skip

    async def main() -> T:
        async with Client(params) as client:
            return await scenario(client)

    return run(main)


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    return json.loads(text)


async def refusal(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    text = str(result.content[0].text)  # type: ignore[union-attr]
    assert result.is_error, text
    assert "Traceback" not in text and 'File "' not in text
    return text


# --- HTTP, with the operator's (admin) token ---------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_are_listed_read_only_with_described_parameters(server: Server, mode: str) -> None:
    async def scenario(client: Client) -> None:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == TOOLS
        for tool in tools:
            assert tool.description and len(tool.description) > 60, tool.name
            assert tool.annotations is not None and tool.annotations.read_only_hint is True
            for name, schema in tool.input_schema["properties"].items():
                assert schema.get("description"), (tool.name, name)
        search = next(t for t in tools if t.name == "search_messages")
        assert set(search.input_schema["required"]) == {"guid", "keyword"}
        assert client.instructions and "list_devices" in client.instructions
        # Every tool answers, in both protocol generations (a modern request and a legacy handshake).
        assert (await call(client, "list_devices"))["total"] == 2

    over_http(server, OPERATOR, scenario, mode)


def test_devices_and_conversations_with_names_counts_and_local_times(server: Server) -> None:
    async def scenario(client: Client) -> None:
        devices = await call(client, "list_devices")
        by_guid = {d["guid"]: d for d in devices["devices"]}
        assert set(by_guid) == {G1, G2} and devices["next_cursor"] is None
        assert by_guid[G1]["messages_count"] == 38 and "avatar" not in by_guid[G1]
        assert by_guid[G1]["last_callback_time"].endswith("+08:00")

        data = await call(client, "list_conversations", guid=G1)
        assert [(c["conversation_id"], c["name"], c["message_count"]) for c in data["conversations"]] == [
            (f"R:{ROOM}", "华东项目群", 2),
            (f"S:{MEI}", "韩梅梅", 6),  # a contact seen in messages only: the name they carried
            (f"S:{LEI}", "李总(采购)", 30),
        ]
        first = data["conversations"][0]
        assert first["last_message"] == "韩梅梅: 收到"
        assert first["last_message_time"] == "2024-06-10T14:46:41+08:00"
        assert "remark" not in data["conversations"][2]  # it is the name already
        rooms = await call(client, "list_conversations", guid=G1, kind="R")
        assert [c["conversation_id"] for c in rooms["conversations"]] == [f"R:{ROOM}"]
        named = await call(client, "list_conversations", guid=G1, name="李总")
        assert [c["conversation_id"] for c in named["conversations"]] == [f"S:{LEI}"]

    over_http(server, OPERATOR, scenario)


def test_search_finds_two_and_one_character_chinese_keywords(server: Server) -> None:
    async def scenario(client: Client) -> None:
        two = await call(client, "search_messages", guid=G1, keyword="报价")
        assert two["total"] == 2 and two["next_cursor"] is None and "total_capped" not in two
        newest, older = two["messages"]
        assert newest["text"] == "大家看下新的报价已更新" and newest["conversation"] == "华东项目群"
        assert newest["conversation_id"] == f"R:{ROOM}" and newest["from"] == LEI
        assert newest["sender"] == "李总(采购)"  # no sender_name in the callback: the contact's name
        assert older["sender"] == "韩梅梅" and older["time"] == "2024-06-10T14:30:00+08:00"
        one = await call(client, "search_messages", guid=G1, keyword="鸭")
        assert [m["text"] for m in one["messages"]] == ["今天中午吃烤鸭"]
        inside = await call(client, "search_messages", guid=G1, keyword="报价", conversation_id=f"S:{MEI}")
        assert (
            inside["total"] == 1
            and inside["conversation_id"] == f"S:{MEI}"
            and inside["conversation"] == "韩梅梅"
        )
        assert "conversation_id" not in inside["messages"][0]  # said once, at the top
        # A local date is the local day; the room's message is that day, G2's device is not searched.
        day = await call(
            client, "search_messages", guid=G1, keyword="报价", start_time="2024-06-10", end_time="2024-06-10"
        )
        assert day["total"] == 2
        later = await call(client, "search_messages", guid=G1, keyword="报价", start_time="2024-06-10T14:40")
        assert [m["text"] for m in later["messages"]] == ["大家看下新的报价已更新"]
        assert (await call(client, "search_messages", guid=G1, keyword="没有这个词"))["total"] == 0

    over_http(server, OPERATOR, scenario)


def test_a_capped_count_says_so_and_every_hit_still_comes(database: str) -> None:
    async def scenario(client: Client) -> None:
        found = await call(client, "search_messages", guid=G1, keyword="报价")
        assert found["total"] == 1 and found["total_capped"] is True and len(found["messages"]) == 2

    over_stdio(database, scenario, env={"JUHE_SYNC_SEARCH_COUNT_LIMIT": "1"})


def test_get_messages_pages_with_the_cursor(server: Server) -> None:
    async def scenario(client: Client) -> None:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            arguments: dict[str, Any] = {
                "guid": G1,
                "conversation_id": f"S:{LEI}",
                "limit": 7,
                "order": "asc",
            }
            if cursor:
                arguments["cursor"] = cursor
            page = await call(client, "get_messages", **arguments)
            assert page["conversation"] == "李总(采购)" and page["total"] == 30 and page["order"] == "asc"
            seen += [m["text"] for m in page["messages"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"第{n}条" for n in range(30)] and pages == 5
        newest = await call(client, "get_messages", guid=G1, conversation_id=f"S:{LEI}", limit=2)
        assert [m["text"] for m in newest["messages"]] == ["第29条", "第28条"]
        assert newest["messages"][0]["time"] == "2024-06-10T14:13:49+08:00"

    over_http(server, OPERATOR, scenario)


def test_around_a_search_hit_and_back(server: Server) -> None:
    async def scenario(client: Client) -> None:
        hit = (await call(client, "search_messages", guid=G1, keyword="第15条"))["messages"][0]
        page = await call(client, "get_messages", guid=G1, around_message_id=hit["id"], limit=5, order="asc")
        assert page["conversation_id"] == f"S:{LEI}"
        assert [m["text"] for m in page["messages"]] == [f"第{n}条" for n in range(13, 18)]
        onwards = await call(client, "get_messages", guid=G1, conversation_id=f"S:{LEI}", limit=2, order="asc",
                             cursor=page["next_cursor"])  # fmt: skip
        assert [m["text"] for m in onwards["messages"]] == ["第18条", "第19条"]
        back = await call(client, "get_messages", guid=G1, conversation_id=f"S:{LEI}", limit=2, order="desc",
                          cursor=page["prev_cursor"])  # fmt: skip
        assert [m["text"] for m in back["messages"]] == ["第12条", "第11条"]
        text = await refusal(
            client, "get_messages", guid=G1, around_message_id=hit["id"], start_time="2024-06-10"
        )
        assert "around_message_id takes only" in text
        assert "not found" in await refusal(client, "get_messages", guid=G1, around_message_id="no-such-id")

    over_http(server, OPERATOR, scenario)


def test_long_texts_are_cut_with_a_note_and_media_are_labels(server: Server) -> None:
    async def scenario(client: Client) -> None:
        page = await call(client, "get_messages", guid=G1, conversation_id=f"S:{MEI}", limit=6, max_chars=100)
        by_text = {m["id"]: m for m in page["messages"]}
        long = by_text["1700102"]["text"]
        assert long.startswith(LONG[:100]) and long.endswith(
            f"…(truncated, {len(LONG) - 100} more characters)"
        )
        assert by_text["1700103"]["text"] == "[图片]" and by_text["1700103"]["type"] == "image"
        assert by_text["1700104"]["text"] == "[文件] Q2合同.pdf"
        assert by_text["1700105"]["outbound"] is True and by_text["1700105"]["from"] == ACCOUNT
        assert by_text["1700105"]["sender"] == "李晓明"  # no sender_name: the device's account
        assert "url" not in json.dumps(page)  # no raw media payload
        whole = await call(
            client, "get_messages", guid=G1, around_message_id="1700102", limit=1, max_chars=100_000
        )
        assert whole["messages"][0]["text"] == LONG

    over_http(server, OPERATOR, scenario)


def test_contact_members_and_sync_status(server: Server) -> None:
    async def scenario(client: Client) -> None:
        contact = await call(client, "get_contact", guid=G1, user_id=f"S:{LEI}")
        assert (
            contact["name"] == "李雷"
            and contact["remark"] == "李总(采购)"
            and contact["labels"] == ["重要客户"]
        )
        assert contact["details"] == {"position": "采购经理"} and contact["message_count"] == 30
        assert contact["conversation_id"] == f"S:{LEI}" and contact["last_message_time"].endswith("+08:00")
        assert "not found" in await refusal(client, "get_contact", guid=G1, user_id="nobody")

        members = await call(client, "list_room_members", guid=G1, room_id=f"R:{ROOM}", limit=2)
        assert members["room"] == "华东项目群" and members["total"] == 3 and members["next_cursor"]
        lei = next(m for m in members["members"] if m["id"] == LEI)
        assert lei["room_nickname"] == "雷哥" and lei["join_time"] == "2024-06-09T14:13:20+08:00"
        rest = await call(client, "list_room_members", guid=G1, room_id=ROOM, cursor=members["next_cursor"])
        assert len(rest["members"]) == 1 and rest["next_cursor"] is None
        assert "not found" in await refusal(client, "list_room_members", guid=G1, room_id="R:404")

        status = await call(client, "sync_status", guid=G1)
        assert status["guid"] == G1 and status["messages_count"] == 38 and status["failed_events"] == 0
        assert "not found" in await refusal(client, "sync_status", guid="no-such-device")

    over_http(server, OPERATOR, scenario)


def test_bad_input_is_a_tool_error_with_a_clear_message(server: Server) -> None:
    async def scenario(client: Client) -> None:
        assert "conversation_id must be" in await refusal(
            client, "get_messages", guid=G1, conversation_id="bad"
        )
        assert "cursor is not valid" in await refusal(client, "get_messages", guid=G1, cursor="garbage")
        assert "start_time must be" in await refusal(
            client, "search_messages", guid=G1, keyword="x", start_time="soon"
        )
        assert "less than or equal to 100" in await refusal(client, "list_devices", limit=1000)
        assert "keyword" in await refusal(client, "search_messages", guid=G1, keyword="")
        assert "guid" in await refusal(client, "list_conversations")
        assert "Unknown tool" in await refusal(client, "drop_everything")

    over_http(server, OPERATOR, scenario)


# --- HTTP: the token and its device scope -----------------------------------------------------


def test_mcp_needs_the_api_token(server: Server) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(server.url + "/mcp", json=body, headers={**headers, **auth}, timeout=10)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    # The edge's other rules hold too: an unknown Host, a cross-site write.
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    assert httpx.post(server.url + "/mcp", json=body, headers={**headers, **auth, "Host": "evil.example"},
                      timeout=10).status_code == 400  # fmt: skip
    assert httpx.post(server.url + "/mcp", json=body, headers={**headers, **auth, "Origin": "https://evil.example"},
                      timeout=10).status_code == 403  # fmt: skip
    # Stateless: no stream to hold open on a GET, no session to DELETE.
    for method in ("GET", "DELETE"):
        refused = httpx.request(method, server.url + "/mcp", headers={**headers, **auth}, timeout=10)
        assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    # ... and /mcp is not part of the REST API's document.
    assert "/mcp" not in httpx.get(server.url + "/openapi.json", headers=auth, timeout=10).json()["paths"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_scoped_token_sees_only_its_devices(server: Server, scoped_token: str, mode: str) -> None:
    async def scenario(client: Client) -> None:
        devices = await call(client, "list_devices")
        assert [d["guid"] for d in devices["devices"]] == [G2] and devices["total"] == 1
        for tool, arguments in (
            ("list_conversations", {}),
            ("search_messages", {"keyword": "报价"}),
            ("get_messages", {"conversation_id": f"S:{LEI}"}),
            ("get_contact", {"user_id": LEI}),
            ("list_room_members", {"room_id": ROOM}),
            ("sync_status", {}),
        ):
            assert f"this token may not read device {G1}" in await refusal(client, tool, guid=G1, **arguments)
        # A device that does not exist is refused alike: the scope says nothing about what exists.
        assert "may not read device ghost" in await refusal(client, "sync_status", guid="ghost")
        own = await call(client, "search_messages", guid=G2, keyword="报价")
        assert [m["text"] for m in own["messages"]] == ["另一台设备上的报价"]

    over_http(server, scoped_token, scenario, mode)


# --- stdio -------------------------------------------------------------------------------------


def test_stdio_serves_every_device_and_only_the_protocol_on_stdout(database: str, tmp_path: Path) -> None:
    async def scenario(client: Client) -> None:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        assert {d["guid"] for d in (await call(client, "list_devices"))["devices"]} == {G1, G2}
        found = await call(client, "search_messages", guid=G1, keyword="报价")
        assert found["total"] == 2 and found["messages"][0]["time"] == "2024-06-10T14:46:40+08:00"
        assert (await call(client, "get_contact", guid=G1, user_id=LEI))["remark"] == "李总(采购)"

    over_stdio(database, scenario)

    # Byte by byte: every line on stdout is a JSON-RPC message (logs go to stderr).
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": database, "JUHE_SYNC_LOG_LEVEL": "DEBUG", **ZONE_ENV}
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_devices", "arguments": {}}},
    ]  # fmt: skip
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "juhe_sync", "mcp"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errors)  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        answers = []
        for request in requests:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            if "id" in request:
                answers.append(json.loads(proc.stdout.readline()))
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [a["id"] for a in answers] == [1, 2] and answers[0]["result"]["serverInfo"]["name"] == "juhe-sync"
    assert G1 in answers[1]["result"]["content"][0]["text"]
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest.decode().splitlines() if line.strip())
    assert "DEBUG" in stderr.read_text(errors="replace")  # the logs went there


def test_stdio_guid_limits_the_devices(database: str) -> None:
    async def scenario(client: Client) -> None:
        assert [d["guid"] for d in (await call(client, "list_devices"))["devices"]] == [G2]
        text = await refusal(client, "get_messages", guid=G1)
        assert f"may not read device {G1}" in text and G2 in text
        assert (await call(client, "get_messages", guid=G2))["total"] == 1

    over_stdio(database, scenario, "--guid", G2)
