"""Readiness and reads follow the database, liveness does not: PostgreSQL reached through a
connection that the test cuts and restores."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import PG_URL, Server, fresh_database
from tests.helpers import TcpProxy


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_readyz_follows_the_database_and_healthz_stays_live(tmp_path: Path) -> None:
    parts = urlsplit(PG_URL)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        with fresh_database("postgresql", tmp_path) as url:
            split = urlsplit(url)
            userinfo, _, _ = split.netloc.rpartition("@")  # the URL may name no port (5432)
            netloc = (f"{userinfo}@" if userinfo else "") + f"127.0.0.1:{proxy.port}"
            server = Server(urlunsplit(split._replace(netloc=netloc)), tmp_path / "server.log").start()
            try:
                assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
                proxy.cut()
                started = time.monotonic()
                r = httpx.get(server.url + "/readyz", timeout=10)
                assert r.status_code == 503 and r.json()["code"] == "STORAGE_UNAVAILABLE"
                assert time.monotonic() - started < 5
                live = httpx.get(server.url + "/healthz", timeout=10)
                assert live.status_code == 200 and live.elapsed.total_seconds() < 0.5
                # Reads fail fast with 503 (the client may retry), never hang or answer 500.
                for _ in range(3):
                    t0 = time.monotonic()
                    r = httpx.get(server.url + "/api/rooms", params={"guid": "x"}, timeout=30)
                    assert r.status_code == 503 and r.json()["code"] == "STORAGE_UNAVAILABLE", r.text
                    assert "psycopg" not in r.text and time.monotonic() - t0 < 8
                proxy.restore()
                back = time.monotonic()
                deadline = back + 30
                while (
                    httpx.get(server.url + "/readyz", timeout=10).status_code != 200
                    or httpx.get(server.url + "/api/rooms", params={"guid": "x"}, timeout=30).status_code != 200
                ):
                    assert time.monotonic() < deadline, "not ready again after the database came back"
                    time.sleep(0.2)
                print(f"reads answer again {time.monotonic() - back:.1f} s after the database came back")
            finally:
                server.stop()
    finally:
        proxy.close()
