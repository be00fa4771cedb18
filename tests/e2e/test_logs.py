"""What the server writes: with JUHE_SYNC_LOG_FORMAT=json, one JSON object per line for every line,
uvicorn's included, each carrying the request id that the response echoes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Server


def test_json_logs_and_request_ids(tmp_path: Path) -> None:
    env = {"JUHE_SYNC_LOG_FORMAT": "json", "JUHE_SYNC_LOG_LEVEL": "info", "JUHE_SYNC_CALLBACK_TOKEN": "cb-secret-1234"}
    server = Server(f"sqlite:///{tmp_path / 'logs.db'}", tmp_path / "server.log", env).start()
    try:
        mine = httpx.get(server.url + "/healthz", headers={"X-Request-ID": "from-nginx.42"})
        assert mine.headers["x-request-id"] == "from-nginx.42"
        assert len(httpx.get(server.url + "/healthz", headers={"X-Request-ID": "bad id!"}).headers["x-request-id"]) == 32
        # A batch with items that are not messages logs a warning inside the request.
        batch = {"guid": "log-device", "notify_type": 11013, "data": [1, 2]}
        r = httpx.post(server.url + "/callback", params={"token": "cb-secret-1234"}, json=batch)
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        refused = httpx.post(server.url + "/callback", json=batch)
        assert refused.status_code == 401 and refused.headers["x-request-id"]
    finally:
        server.stop()
    lines = server.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    assert any("juhe-sync on http://" in e["message"] for e in entries)  # the banner
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own lines
    skipped = [e for e in entries if "skipped" in e["message"]]
    assert skipped and skipped[0]["request_id"] == rid and skipped[0]["level"] == "warning"
    assert "cb-secret-1234" not in server.log_path.read_text()
