"""``GET /metrics``: what it counts, who may read it, and sums that stay right with several workers."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, GUID, Server, fresh_database
from tests.helpers import sample, scrape

OPERATOR = "metrics-operator-token"
CALLBACK = "metrics-callback-secret"
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "juhe-sync.json"


def _message(n: int, guid: str = GUID) -> str:
    item = {"appinfo": f"MET-{n}", "id": str(5000 + n), "sender": "7881300000000001", "receiver": "1688850000012345",
            "roomid": "0", "sendtime": 1_718_000_000 + n, "msg_type": 2, "content": f"指标 {n}"}  # fmt: skip
    return json.dumps({"guid": guid, "notify_type": 11010, "data": item}, ensure_ascii=False)


@pytest.fixture(params=BACKENDS)
def protected(request: pytest.FixtureRequest, tmp_path: Path):
    env = {"JUHE_SYNC_API_TOKEN": OPERATOR, "JUHE_SYNC_CALLBACK_TOKEN": CALLBACK}
    with fresh_database(request.param, tmp_path) as url:
        server = Server(url, tmp_path / "server.log", env).start()
        try:
            yield server
        finally:
            server.stop()


def test_metrics_count_every_callback_outcome_and_need_an_admin_token(protected: Server) -> None:
    url = protected.url
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/metrics").status_code == 401
        scoped = http.post("/api/tokens", json={"name": "crm", "guids": [GUID]}, headers=auth).json()["data"]["token"]
        refused = http.get("/metrics", headers={"Authorization": f"Bearer {scoped}"})
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"

        for n in range(20):
            assert http.post("/callback", params={"token": CALLBACK}, content=_message(n)).status_code == 200
        for n in range(5):  # redelivered
            assert http.post("/callback", params={"token": CALLBACK}, content=_message(n)).status_code == 200
        assert http.post("/callback", params={"token": CALLBACK}, content="{not json").status_code == 400
        assert http.post("/callback", params={"token": "wrong"}, content=_message(99)).status_code == 401
        assert http.post("/callback", content=_message(98)).status_code == 401
        assert http.get("/api/rooms/R:1/members", params={"guid": GUID}, headers=auth).status_code == 404
        assert http.get("/api/rooms/R:2/members", params={"guid": GUID}).status_code == 401

    samples = scrape(url, OPERATOR)
    assert sample(samples, "juhe_sync_callbacks_total", source="callback", result="stored") == 20
    assert sample(samples, "juhe_sync_callbacks_total", source="callback", result="duplicate") == 5
    assert sample(samples, "juhe_sync_callbacks_total", source="callback", result="rejected") == 3
    assert sample(samples, "juhe_sync_callbacks_total", source="callback", result="failed") == 0
    assert sample(samples, "juhe_sync_messages_stored_total", source="callback") == 20
    # Latency per route template, those the edge refused included; never a raw path.
    assert sample(samples, "juhe_sync_http_request_duration_seconds_count", route="/callback", method="POST") == 28
    members = "/api/rooms/{room_id}/members"
    assert sample(samples, "juhe_sync_http_requests_total", route=members, method="GET", status="404") == 1
    assert sample(samples, "juhe_sync_http_requests_total", route=members, method="GET", status="401") == 1
    assert not any("R:1" in value for _, labels in samples for _, value in labels)
    # Group commit: every stored callback went through a write transaction that was timed.
    assert sample(samples, "juhe_sync_write_batch_jobs_count") >= 1
    assert sample(samples, "juhe_sync_write_batch_jobs_sum") >= 25
    assert sample(samples, "juhe_sync_write_commit_seconds_count") == sample(samples, "juhe_sync_write_batch_jobs_count")
    assert ("juhe_sync_write_queue_depth", frozenset({("writer", "0")})) in samples
    assert sample(samples, "juhe_sync_storage_up") == 1
    assert sample(samples, "juhe_sync_journal_failed_events") == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_workers_report_one_sum(backend: str, tmp_path: Path) -> None:
    """Each scrape lands on one of the workers; every one must report the total of all of them."""
    with fresh_database(backend, tmp_path) as url:
        server = Server(url, tmp_path / "server.log", {"JUHE_SYNC_WORKERS": "3"}).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:

                def post(n: int) -> int:
                    return http.post("/callback", content=_message(n, f"mp-metrics-{n % 4}")).status_code

                with ThreadPoolExecutor(16) as pool:
                    assert set(pool.map(post, range(300))) == {200}
            seen = set()
            for _ in range(12):
                samples = scrape(server.url)
                seen.add(sample(samples, "juhe_sync_callbacks_total", source="callback", result="stored"))
                assert sample(samples, "juhe_sync_http_request_duration_seconds_count", route="/callback", method="POST") == 300
            assert seen == {300}
        finally:
            server.stop()


def test_the_grafana_dashboard_uses_only_metrics_that_exist(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    with fresh_database("sqlite", tmp_path) as url:
        server = Server(url, tmp_path / "server.log").start()
        try:
            text = httpx.get(server.url + "/metrics", timeout=10).text
        finally:
            server.stop()
    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|sum|count)$", "", name)

    families = {family(name) for name in re.findall(r"^# TYPE (\w+) ", text, re.M)}
    used = {name for expr in exprs for name in re.findall(r"\bjuhe_sync_\w+", expr)}
    missing = {name for name in used if family(name) not in families}
    assert not missing, missing
