"""POST /callback answered in front of the framework (web.callback): what the framework did for
it, the lane does too; everything else still goes through the framework."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from juhe_sync.config import Settings
from juhe_sync.service.access import Authenticator
from juhe_sync.service.stores import open_store
from juhe_sync.web.app import create_app

BODY = {"guid": "lane-device", "notify_type": 11010, "data": {"appinfo": "lane-1", "sendtime": 1718000000}}


class _Broken:
    """An ingestor with a bug: what an unexpected exception in the lane looks like to a client."""

    def admits(self, token: str | None) -> bool:
        raise RuntimeError("secret detail of a bug")


def _post(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.post(path, **kwargs)

    return asyncio.run(run())


def test_an_unexpected_error_is_the_documented_500_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'lane.db'}"))
    app.state.ingestor = _Broken()
    with caplog.at_level(logging.ERROR, "juhe_sync.web"):
        r = _post(app, "/callback", json=BODY)
    assert r.status_code == 500
    assert r.json() == {"success": False, "error": "Internal server error", "code": "INTERNAL_ERROR"}
    assert "secret detail" not in r.text and r.headers["x-request-id"]
    assert "unexpected error in POST /callback" in caplog.text and "secret detail of a bug" in caplog.text
    assert app.middleware_stack is None  # the framework never saw it: built at its first request


def test_a_callback_before_the_store_is_open_is_told_to_come_back(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'lane.db'}"))  # no lifespan run
    r = _post(app, "/callback", json=BODY)
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"


def test_the_lane_keeps_the_edge_and_leaves_the_rest_to_the_framework(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'lane.db'}", allowed_hosts="api.example.com")
    )
    app.state.ingestor = _Broken()  # never reached: the edge refuses first
    r = _post(app, "/callback", json=BODY, headers={"Host": "evil.example.net"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMS" and "Host not allowed" in r.text
    r = _post(
        app, "/callback", json=BODY, headers={"Host": "api.example.com", "Origin": "https://evil.example.net"}
    )
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"

    # Not a POST: the framework's route answers, with the documented body.
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as client:
            return await client.get("/callback")

    r = asyncio.run(get())
    assert r.status_code == 405 and r.json()["success"] is False
    # The benchmark's parse-only lane exists only when asked for (the edge wants a token for it).
    assert list(app.lanes) == ["/callback"]
    r = _post(app, "/_bench/parse", json=BODY, headers={"Host": "api.example.com"})
    assert r.status_code != 200 and r.json()["success"] is False


def test_the_parse_only_lane_stores_nothing_and_wants_the_api_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lane.db'}"
    app = create_app(Settings(database_url=url, bench_routes=True))
    store = open_store(url)
    store.migrate()
    app.state.ingestor = _Broken()
    app.state.auth = Authenticator(store, ["operator-token"])
    try:
        r = _post(app, "/_bench/parse", json=BODY)
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
        app.state.auth = Authenticator(store)  # no token anywhere: open (a loopback dev server)
        r = _post(app, "/_bench/parse", json=BODY)
    finally:
        store.close()
    assert r.status_code == 200 and r.json() == {"success": True, "message": "Callback processed"}
    r = _post(app, "/_bench/parse", content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMS"
