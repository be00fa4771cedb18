"""Data out, on every backend, against a real server: ``GET /api/export`` behind the token and its
scope; ``juhe-sync export`` then ``juhe-sync import`` into an empty database gives back the same
messages; ``juhe-sync purge`` and ``forget`` while callbacks keep arriving leave everything exact."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from juhe_sync.records import MessageQuery
from juhe_sync.service.stores import open_store
from tests.conftest import ACCOUNT, BACKENDS, Server, fresh_database
from tests.e2e.test_cli import run
from tests.helpers import all_pages

OPERATOR = "export-operator-token"
G1, G2 = "export-device-1", "export-device-2"
LI, HAN = "7881300000000301", "7881300000000302"
ROOM = "10696052799990301"
T0 = 1_718_000_000  # 2024-06-10T06:13:20Z


def message(guid: str, n: int, peer: str, sendtime: int, content: str, *, room: bool = False,
            msg_type: int = 2, name: str = "") -> dict[str, Any]:  # fmt: skip
    item = {"appinfo": f"EX-{guid[-1]}-{n}", "id": f"{guid[-1]}{700000 + n}", "seq": str(n), "sender": peer,
            "receiver": "0" if room else ACCOUNT, "roomid": ROOM if room else "0", "sendtime": sendtime,
            "msg_type": msg_type, "content": content, "sender_name": name}  # fmt: skip
    return {"guid": guid, "notify_type": 11010, "data": item}


def events() -> list[dict[str, Any]]:
    out = [message(G1, n, LI, T0 + n * 600, f"李雷的第{n}条：报价" if n % 3 == 0 else f"第{n}条", name="李雷")
           for n in range(40)]  # fmt: skip
    out += [
        message(G1, 100, HAN, T0 + 30_000, '=HYPERLINK("http://evil.example","点我")', name="韩梅梅"),
        message(G1, 101, HAN, T0 + 30_100, "<b>粗体</b>\n第二行, \"引号\"", name="韩梅梅"),
        message(G1, 102, HAN, T0 + 30_200, json.dumps({"file_name": "合同.pdf", "size": 1024}), msg_type=8,
                name="韩梅梅"),
    ]
    out += [message(G1, 200 + n, [LI, HAN][n % 2], T0 + 20_000 + n, f"群里说报价 {n}", room=True) for n in range(6)]
    out.append(message(G2, 1, LI, T0, "另一台设备的报价"))
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("export")
    with fresh_database(request.param, directory) as url:
        srv = Server(url, directory / "server.log", {"JUHE_SYNC_API_TOKEN": OPERATOR}).start()
        try:
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                for event in events():
                    assert http.post("/callback", json=event).status_code == 200
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {OPERATOR}"}) as c:
        yield c


def api_messages(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 100, "order": "asc", **({"cursor": cursor} if cursor else {})}
        data = api.get("/api/messages", params=query).json()["data"]
        out += data["messages"]
        cursor = data["next_cursor"]
        if cursor is None:
            return out


def test_export_needs_the_token_and_its_scope(api: httpx.Client, server: Server) -> None:
    assert httpx.get(server.url + "/api/export", params={"guid": G1}, timeout=10).status_code == 401
    token = api.post("/api/tokens", json={"name": "export-g2", "guids": [G2]}).json()["data"]["token"]
    scoped = {"Authorization": f"Bearer {token}"}
    refused = httpx.get(server.url + "/api/export", params={"guid": G1}, headers=scoped, timeout=10)
    assert refused.status_code == 403 and refused.json()["success"] is False
    mine = httpx.get(server.url + "/api/export", params={"guid": G2}, headers=scoped, timeout=10)
    assert mine.status_code == 200 and [json.loads(x)["content"] for x in mine.text.splitlines()] == ["另一台设备的报价"]


def test_jsonl_export_is_every_message_as_the_api_shows_it(api: httpx.Client) -> None:
    response = api.get("/api/export", params={"guid": G1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith('attachment; filename="juhe-sync-export-device-1-')
    lines = [json.loads(line) for line in response.text.splitlines()]
    expected = api_messages(api, guid=G1)
    assert len(lines) == len(expected) == 49
    assert [{k: line[k] for k in expected[0]} for line in lines] == expected
    assert {line["guid"] for line in lines} == {G1}
    assert lines[0]["local_time"] == "2024-06-10T14:13:20+08:00"  # JUHE_SYNC_TIME_ZONE: Asia/Shanghai


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"conversation_id": f"S:{HAN}"}, 3),
        ({"keyword": "报价"}, 20),  # 14 of 李雷's and 6 in the room
        ({"keyword": "报"}, 20),
        ({"keyword": "报价", "conversation_id": f"R:{ROOM}"}, 6),
        ({"start_time": "2024-06-10T09:00:00Z", "end_time": "2024-06-10T15:00:00Z"}, 32),
    ],
)
def test_export_filters_as_the_messages_api(api: httpx.Client, params: dict[str, str], count: int) -> None:
    lines = api.get("/api/export", params={"guid": G1, **params}).text.splitlines()
    assert [json.loads(x)["id"] for x in lines] == [m["id"] for m in api_messages(api, guid=G1, **params)]
    assert len(lines) == count


def test_csv_export_is_spreadsheet_safe(api: httpx.Client) -> None:
    response = api.get("/api/export", params={"guid": G1, "format": "csv", "conversation_id": f"S:{HAN}"})
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith("\ufeff")  # so that spreadsheets read UTF-8
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert [r["conversation"] for r in rows] == ["韩梅梅"] * 3
    assert rows[0]["content"] == "'=HYPERLINK(\"http://evil.example\",\"点我\")"  # not a formula
    assert rows[1]["content"] == "<b>粗体</b>\n第二行, \"引号\""
    assert rows[2]["type"] == "file" and rows[2]["text"] == "[文件]"


def test_bad_exports_are_documented_errors(api: httpx.Client) -> None:
    for params, status in (({"guid": "nobody"}, 404), ({"guid": G1, "conversation_id": "X:1"}, 400),
                           ({"guid": G1, "format": "xml"}, 400), ({"guid": G1, "start_time": "yesterday"}, 400),
                           ({}, 400)):  # fmt: skip
        response = api.get("/api/export", params=params)
        assert response.status_code == status, params
        assert response.json()["success"] is False and response.json()["code"]


def test_export_then_import_into_an_empty_database_gives_the_same_messages(
    api: httpx.Client, server: Server, tmp_path: Path
) -> None:
    exported = tmp_path / "g1.jsonl"
    done = run("export", "--guid", G1, "--format", "jsonl", "--output", str(exported),
               database_url=server.database_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 49 messages" in done.stderr
    backend = "sqlite" if server.database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path) as empty:
        restored = run("import", str(exported), database_url=empty)
        assert restored.returncode == 0, restored.stderr
        assert "restored 49 messages, already there 0, rejected 0" in restored.stderr
        again = run("import", str(exported), database_url=empty)
        assert "restored 0 messages, already there 49" in again.stderr
        store = open_store(empty)
        try:
            device = store.device(G1)
            assert device is not None and device.messages_count == 49
            got = all_pages(lambda o, n: store.messages(MessageQuery(device.id, offset=o, limit=n, ascending=True)))
            assert got == api_messages(api, guid=G1)
            found = store.messages(MessageQuery(device.id, keyword="报价"))
            assert found.total == 20
        finally:
            store.close()


def test_markdown_and_stdout_exports(server: Server) -> None:
    done = run("export", "--guid", G1, "--format", "markdown", "--conversation-id", f"S:{HAN}",
               database_url=server.database_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "## 韩梅梅 (S:7881300000000302)" in done.stdout
    assert "&lt;b&gt;粗体&lt;/b&gt;" in done.stdout and "<b>" not in done.stdout
    assert "**韩梅梅**: \\[文件\\]" in done.stdout
    csv_out = run("export", "--guid", G1, "--format", "csv", database_url=server.database_url)
    assert len(list(csv.reader(io.StringIO(csv_out.stdout.lstrip("\ufeff"))))) == 50
    refused = run("export", "--guid", G1, "--format", "html", database_url=server.database_url)
    assert refused.returncode == 2 and "--output" in refused.stderr
    unknown = run("export", "--guid", "nobody", "--format", "jsonl", database_url=server.database_url)
    assert unknown.returncode == 2 and "not found" in unknown.stderr


def test_purge_and_forget_while_callbacks_stream_in(api: httpx.Client, server: Server) -> None:
    """A sender keeps posting old and new messages to G1 while G1 is purged and G2 forgotten."""
    stop = threading.Event()
    acknowledged: list[tuple[str, int]] = []

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                sendtime = T0 + (n % 2) * 40_000 + n  # half before the cutoff, half after
                body = message(G1, 10_000 + n, LI, sendtime, f"流式报价{n}", name="李雷")
                if http.post("/callback", json=body).status_code == 200:
                    acknowledged.append((body["data"]["id"], sendtime))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        while len(acknowledged) < 20:
            stop.wait(0.02)
        planned = run("purge", "--guid", G1, "--before", "2024-06-10T15:00:00+08:00", "--dry-run",
                      database_url=server.database_url)  # fmt: skip
        assert planned.returncode == 0, planned.stderr
        assert "would purge from export-device-1 before 2024-06-10T15:00:00+08:00: messages" in planned.stderr
        purged = run("purge", "--guid", G1, "--before", "2024-06-10T15:00:00+08:00",
                     database_url=server.database_url)  # fmt: skip
        assert purged.returncode == 0, purged.stderr
        forgot = run("forget", "--guid", G2, "--yes", database_url=server.database_url)
        assert forgot.returncode == 0, forgot.stderr
        assert "forgot export-device-2: messages 1" in forgot.stderr
        count = len(acknowledged)
        while len(acknowledged) < count + 20:
            stop.wait(0.02)
    finally:
        stop.set()
        sender.join()
    before = T0 + 2800  # 2024-06-10T15:00:00+08:00: 李雷's first five fixture messages are older
    # G2 is gone everywhere; G1 is exact: its counter, its conversations and its search.
    assert api.get("/api/sync-status", params={"guid": G2}).status_code == 404
    assert api.get("/api/export", params={"guid": G2}).status_code == 404
    left = api_messages(api, guid=G1)
    ids = [m["id"] for m in left]
    assert len(ids) == len(set(ids))
    status = api.get("/api/sync-status", params={"guid": G1}).json()["data"]
    assert status["messages_count"] == len(left)
    conversations = api.get("/api/conversations", params={"guid": G1, "limit": 100}).json()["data"]["conversations"]
    per_conversation = {c["conversation_id"]: c["message_count"] for c in conversations}
    assert sum(per_conversation.values()) == len(left)
    for conversation, n in per_conversation.items():
        assert len(api_messages(api, guid=G1, conversation_id=conversation)) == n
    for keyword in ("报价", "报", "流式"):
        data = api.get("/api/messages", params={"guid": G1, "keyword": keyword, "limit": 1}).json()["data"]
        assert data["total"] == sum(keyword in m["content"] for m in left), keyword
    # Every acknowledged message sent after the cutoff is there once; the fixture's old ones are gone.
    newer = {mid for mid, sendtime in acknowledged if sendtime >= before}
    assert newer <= set(ids)
    assert not {f"1{700000 + n}" for n in range(5)} & set(ids)
    assert {f"1{700000 + n}" for n in range(5, 40)} <= set(ids)


def test_a_server_with_a_retention_window_stores_nothing_older(tmp_path: Path) -> None:
    import time

    backend = BACKENDS[-1]
    with fresh_database(backend, tmp_path) as url:
        srv = Server(url, tmp_path / "server.log", {"JUHE_SYNC_RETENTION_DAYS": "30"}).start()
        try:
            now = int(time.time())
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                old = message(G1, 1, LI, now - 31 * 86400, "一个多月前")
                new = message(G1, 2, LI, now - 29 * 86400, "一个月内")
                assert http.post("/callback", json=old).status_code == 200  # acknowledged: journalled
                assert http.post("/callback", json=new).status_code == 200
                data = http.get("/api/messages", params={"guid": G1}).json()["data"]
            assert [m["content"] for m in data["messages"]] == ["一个月内"] and data["total"] == 1
        finally:
            srv.stop()


def test_commands_refuse_what_would_fail_before_doing_any_work(server: Server, tmp_path: Path) -> None:
    url = server.database_url
    cases = [
        (("export", "--guid", G1, "--format", "csv", "-o", str(tmp_path / "missing" / "x.csv")), "no such folder"),
        (("export", "--guid", G1, "--format", "csv", "-o", str(tmp_path)), "is a folder"),
        (("purge", "--guid", G1, "--before", "0001-01-01", "--dry-run"), "--before must be"),
        (("purge", "--guid", G1, "--before", "yesterday"), "--before must be"),
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.html").write_text("stale")
    cases.append((("export", "--guid", G1, "--format", "html", "-o", str(tmp_path / "full")), "exists"))
    for args, message in cases:
        done = run(*args, database_url=url)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not list(tmp_path.glob("*.partial"))
    typo = run("forget", "--guid", G1, "--yes", database_url=f"sqlite:///{tmp_path / 'typo.db'}")
    assert typo.returncode == 2 and "no database at" in typo.stderr and not (tmp_path / "typo.db").exists()


def test_import_says_what_the_retention_window_refused(server: Server, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    exported = tmp_path / "g1.jsonl"
    lines = run("export", "--guid", G1, "--format", "jsonl", database_url=server.database_url).stdout
    exported.write_text("\n\n" + lines)  # blank lines first: the first line with something decides
    with fresh_database(BACKENDS[0], tmp_path) as empty:
        env = {**os.environ, "JUHE_SYNC_DATABASE_URL": empty, "JUHE_SYNC_RETENTION_DAYS": "30", "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-m", "juhe_sync", "import", str(exported)], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    n = len(lines.splitlines())  # all from 2024: older than 30 days
    assert n >= 40 and f"restored 0 messages, already there 0, older than the device keeps {n}, rejected 0" in done.stderr
