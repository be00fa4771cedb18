"""Shared fixtures. Storage, API and CLI tests run once per backend: SQLite always, PostgreSQL when
``JUHE_SYNC_TEST_DATABASE_URL`` names a PostgreSQL database (each test gets a schema of its own)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from juhe_sync.service.stores import open_store
from juhe_sync.storage.sqlstore import SQLStore

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "protocol"
GUID = "5f3e9a2c-81d4-4b7e-9c61-2a7d0e4b9f13"
ACCOUNT = "1688850000012345"

PG_URL = os.environ.get("JUHE_SYNC_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def callback_fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("callback_*.json"))


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A new, empty database URL for ``backend``: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'juhe-sync.db'}"
        return
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[SQLStore]:
    s = open_store(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``juhe-sync serve`` process."""

    def __init__(self, database_url: str, log_path: Path, extra_env: dict[str, str] | None = None):
        self.database_url = database_url
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Server:
        env = {**os.environ, "JUHE_SYNC_DATABASE_URL": self.database_url, "JUHE_SYNC_PORT": str(self.port)}
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "juhe_sync", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text(errors='replace')}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module and backend; tests keep apart by using their own device GUIDs."""
    srv = Server(module_database_url, tmp_path_factory.mktemp("server") / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


class Simulator:
    """The simulated SaaS (``juhe_sync.simulator``) on a real uvicorn server in this process."""

    APP_KEY = "sim-key"
    APP_SECRET = "sim-secret"

    def __init__(self, guids: list[str], *, contacts: int = 250, rooms: int = 30, seed: int = 7, push_to: str | None = None):
        import uvicorn

        from juhe_sync.simulator.server import build_state, create_simulator

        self.state = build_state(guids, seed=seed, contacts=contacts, rooms=rooms, app_key=self.APP_KEY,
                                 app_secret=self.APP_SECRET, push_to=push_to)  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_simulator(self.state), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.clients: list[Any] = []

    def start(self) -> Simulator:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def truth(self, guid: str, seen_rooms: tuple[str, ...] = ()) -> dict[str, Any]:
        params = {"guid": guid, "seen_rooms": ",".join(seen_rooms)}
        return httpx.get(self.url + "/_sim/truth", params=params, timeout=10).json()

    def client(self, **options: Any) -> Any:
        """A SaaS client for this simulator, with backoff short enough for tests."""
        from juhe_sync.saas.client import Credentials, SaasClient

        defaults: dict[str, Any] = {"timeout": 2.0, "backoff": 0.01, "max_backoff": 0.05, "rate": 0}
        client = SaasClient(self.url, lambda guid: Credentials(self.APP_KEY, self.APP_SECRET), **{**defaults, **options})
        self.clients.append(client)
        return client


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator([SIM_GUID]).start()
    try:
        yield sim
    finally:
        sim.stop()


SIM_GUID = "sim-device-1"
