"""The hardened edge, through real ``juhe-sync serve`` processes: API tokens and their scopes, the
callback secret, Host and cross-site checks, header, time and connection limits, crafted input,
masked secrets, and the refusal to listen on a public address unprotected."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from juhe_sync.service.stores import open_store
from tests.conftest import BACKENDS, GUID, PG_URL, Server, fixture_json, free_port, fresh_database

OPERATOR = "operator-token-0123456789"
CALLBACK = "callback-secret-0123456789"
DEVICE_SECRET = "device-secret-0123456789"
OTHER = "0a1b2c3d-other-device"
SECRET_DEVICE = "guid-with-own-secret"


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False and set(body) == {"success", "error", "code"}, body
    return str(body["code"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def message(guid: str, n: int, **extra: Any) -> dict[str, Any]:
    data = {"appinfo": f"sec-{guid}-{n}", "id": str(n), "seq": str(n), "sender": "7881300000009999",
            "receiver": "1688850000012345", "roomid": "0", "sendtime": 1718000000 + n, "msg_type": 2,
            "content": f"安全测试 {n}", **extra}  # fmt: skip
    return {"guid": guid, "notify_type": 11010, "data": data}


@pytest.fixture(scope="module", params=BACKENDS)
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A database of its own: the tokens these tests create would switch on auth for `server`.
    directory = tmp_path_factory.mktemp("guarded")
    env = {
        "JUHE_SYNC_API_TOKEN": OPERATOR,
        "JUHE_SYNC_CALLBACK_TOKEN": CALLBACK,
        "JUHE_SYNC_DEVICE_CREDENTIALS": json.dumps({SECRET_DEVICE: {"callback_token": DEVICE_SECRET}}),
    }
    with fresh_database(request.param, directory) as url:
        server = Server(url, directory / "server.log", env).start()
        try:
            yield server
        finally:
            server.stop()


def journal_size(server: Server, guid: str) -> int:
    store = open_store(server.database_url)
    try:
        return store.journal_size(guid)
    finally:
        store.close()


# --- API tokens --------------------------------------------------------------------------------


def test_every_route_but_healthz_needs_the_token(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        for path in ("/api/contacts?guid=x", "/api/messages?guid=x", "/api/rooms?guid=x", "/api/sync-status?guid=x",
                     "/api/rooms/R:1/members?guid=x", "/api/tokens", "/openapi.json", "/docs", "/no-such-page"):  # fmt: skip
            for headers in ({}, bearer("wrong"), {"Authorization": OPERATOR}, {"Authorization": "Basic b3A6b3A="}):
                r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert error_of(r) == "UNAUTHORIZED"
        assert c.post("/api/sync?guid=x").status_code == 401
        assert c.get("/openapi.json", headers=bearer(OPERATOR)).status_code == 200
        assert c.get("/docs", headers=bearer(OPERATOR)).status_code == 200
        assert c.get("/api/contacts", params={"guid": GUID}, headers=bearer(OPERATOR)).status_code == 200


def test_scoped_tokens_admin_routes_and_revocation(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30, headers=bearer(OPERATOR)) as c:
        made = c.post("/api/tokens", json={"name": "crm", "guids": [GUID]})
        assert made.status_code == 201, made.text
        crm = made.json()["data"]["token"]
        assert made.json()["data"]["guids"] == [GUID] and made.json()["data"]["admin"] is False
        assert c.post("/api/tokens", json={"name": "crm"}).status_code == 409
        # An admin limited to some devices could mint itself an unlimited token: refused.
        assert error_of(c.post("/api/tokens", json={"name": "admin-a", "guids": [GUID], "admin": True})) == "INVALID_PARAMS"
        assert error_of(c.post("/api/tokens", json={"name": "bad name!"})) == "INVALID_PARAMS"
        admin = c.post("/api/tokens", json={"name": "ops", "admin": True}).json()["data"]["token"]

    scoped = bearer(crm)
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.get("/api/messages", params={"guid": GUID}, headers=scoped).status_code == 200
        assert c.get("/api/messages", params={"guid": f" {GUID} "}, headers=scoped).status_code == 200
        # Its own device's sync-status is a read like any other (not the admin-only /api/sync).
        assert c.get("/api/sync-status", params={"guid": GUID}, headers=scoped).status_code in (200, 404)
        for path in ("/api/messages", "/api/contacts", "/api/rooms", "/api/sync-status"):
            r = c.get(path, params={"guid": OTHER}, headers=scoped)
            assert r.status_code == 403 and error_of(r) == "FORBIDDEN", r.text
        # A second guid parameter cannot smuggle another device past the scope.
        r = c.get(f"/api/messages?guid={GUID}&guid={OTHER}", headers=scoped)
        assert r.status_code == 403
        # Only admin tokens start syncs and manage tokens.
        assert error_of(c.post("/api/sync", params={"guid": GUID}, headers=scoped)) == "FORBIDDEN"
        assert error_of(c.get("/api/tokens", headers=scoped)) == "FORBIDDEN"
        assert error_of(c.post("/api/tokens", json={"name": "x"}, headers=scoped)) == "FORBIDDEN"
        listed = c.get("/api/tokens", headers=bearer(admin)).json()["data"]["tokens"]
        by_name = {t["name"]: t for t in listed}
        assert by_name["crm"]["last_used_at"] is not None and "token" not in by_name["crm"]
        assert crm not in json.dumps(listed)
        assert c.post("/api/sync", params={"guid": GUID}, headers=bearer(admin)).status_code == 409  # no SaaS keys

        assert c.delete("/api/tokens/crm", headers=bearer(admin)).status_code == 200
        assert c.delete("/api/tokens/crm", headers=bearer(admin)).status_code == 404
        assert c.get("/api/messages", params={"guid": GUID}, headers=scoped).status_code == 401


def test_cli_tokens_work_on_a_running_server(guarded: Server) -> None:
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": guarded.database_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "juhe_sync", "token", *args], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    created = cli("create", "reporting", "--guid", GUID, "--guid", OTHER)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("jst_") and len(token) > 40
    r = httpx.get(guarded.url + "/api/messages", params={"guid": OTHER}, headers=bearer(token), timeout=30)
    assert r.status_code == 200
    listing = cli("list")
    assert "reporting" in listing.stdout and token not in listing.stdout + listing.stderr
    assert cli("create", "reporting").returncode == 2
    assert cli("revoke", "reporting").returncode == 0
    assert cli("revoke", "reporting").returncode == 2
    deadline = time.monotonic() + 10
    while httpx.get(guarded.url + "/api/messages", params={"guid": OTHER}, headers=bearer(token)).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still works"
        time.sleep(0.2)
    # Only the hash is stored.
    store = open_store(guarded.database_url)
    try:
        dump = json.dumps([str(row) for row in store.read(lambda c: c.execute("SELECT * FROM api_tokens").fetchall())])
    finally:
        store.close()
    assert token not in dump


# --- the callback secret ---------------------------------------------------------------------


def test_callback_needs_its_secret_and_stores_nothing_without(guarded: Server) -> None:
    guid = "cb-secret-device"
    body = message(guid, 1)
    for params in ({}, {"token": "wrong"}, {"token": OPERATOR}, {"token": DEVICE_SECRET}):
        r = httpx.post(guarded.url + "/callback", params=params, json=body, timeout=30)
        assert r.status_code == 401 and error_of(r) == "UNAUTHORIZED", r.text
    r = httpx.post(guarded.url + "/callback", json=body, headers=bearer(OPERATOR), timeout=30)
    assert r.status_code == 401  # the API token is not the callback secret
    assert journal_size(guarded, guid) == 0
    status = httpx.get(guarded.url + "/api/sync-status", params={"guid": guid}, headers=bearer(OPERATOR))
    assert status.status_code == 404
    r = httpx.post(guarded.url + "/callback", params={"token": CALLBACK}, json=body, timeout=30)
    assert r.status_code == 200 and r.json() == {"success": True, "message": "Callback processed"}
    assert journal_size(guarded, guid) == 1


def test_a_device_with_its_own_secret_needs_that_one(guarded: Server) -> None:
    body = message(SECRET_DEVICE, 2)
    assert httpx.post(guarded.url + "/callback", params={"token": CALLBACK}, json=body).status_code == 401
    assert journal_size(guarded, SECRET_DEVICE) == 0
    assert httpx.post(guarded.url + "/callback", params={"token": DEVICE_SECRET}, json=body).status_code == 200
    # ... and that secret is no good for any other device.
    other = message("not-the-secret-device", 3)
    assert httpx.post(guarded.url + "/callback", params={"token": DEVICE_SECRET}, json=other).status_code == 401


# --- browsers: Host, cross-site, redirects ---------------------------------------------------


def test_host_header_must_be_allowed(server: Server) -> None:
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "", "localhost.:1"):
        r = httpx.get(server.url + "/api/rooms", params={"guid": GUID}, headers={"Host": host})
        assert r.status_code == 400 and error_of(r) == "INVALID_PARAMS", (host, r.text)
        r = httpx.post(server.url + "/callback", json=message(GUID, 9), headers={"Host": host})
        assert r.status_code == 400, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert httpx.get(server.url + "/api/rooms", params={"guid": GUID}, headers={"Host": host}).status_code == 200
    # Liveness probes come with whatever Host the prober uses.
    assert httpx.get(server.url + "/healthz", headers={"Host": "10.1.2.3:8070"}).status_code == 200


def test_allowed_hosts_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hosts.db'}"
    env = {"JUHE_SYNC_ALLOWED_HOSTS": "sync.example.com, *.internal.example"}
    server = Server(url, tmp_path / "server.log", env).start()
    try:
        def status(host: str) -> int:
            return httpx.get(server.url + "/api/rooms", params={"guid": GUID}, headers={"Host": host}).status_code

        assert status("sync.example.com") == 200
        assert status("sync.example.com:443") == 200
        assert status("a.internal.example") == 200
        assert status("internal.example.evil") == 400
        assert status(f"127.0.0.1:{server.port}") == 400
    finally:
        server.stop()


def test_cross_site_writes_are_refused(server: Server) -> None:
    here = f"127.0.0.1:{server.port}"
    text_plain = {"Content-Type": "text/plain"}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"http://{here}.evil.example"}):  # fmt: skip
        before = journal_size(server, "xsite-device")
        r = httpx.post(server.url + "/callback", content=json.dumps(message("xsite-device", 1)),
                       headers={**text_plain, **headers})  # fmt: skip
        assert r.status_code == 403 and error_of(r) == "FORBIDDEN", (headers, r.text)
        assert journal_size(server, "xsite-device") == before == 0
        assert httpx.post(server.url + "/api/sync", params={"guid": GUID}, headers=headers).status_code == 403
    # Reads, same-origin pages and servers (no Origin) go through.
    assert httpx.get(server.url + "/api/rooms", params={"guid": GUID}, headers={"Origin": "http://evil.example"}).status_code == 200
    same = httpx.post(server.url + "/callback", json=message("xsite-device", 2), headers={"Origin": f"http://{here}", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    assert httpx.post(server.url + "/callback", json=message("xsite-device", 3)).status_code == 200


def test_no_slash_redirects(server: Server) -> None:
    r = httpx.post(server.url + "/callback/", json=message(GUID, 1), headers={"Host": f"localhost:{server.port}"})
    assert r.status_code == 404 and "location" not in r.headers and error_of(r) == "NOT_FOUND"
    r = httpx.get(server.url + "/api/rooms/", params={"guid": GUID})
    assert r.status_code == 404 and "location" not in r.headers


# --- crafted input ---------------------------------------------------------------------------


def cursor(kind: str, key: Any, *, raw: str | None = None) -> str:
    text = raw if raw is not None else json.dumps([kind, key])
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


CRAFTED = [
    cursor("messages", 2**63), cursor("messages", -(2**63) - 1), cursor("messages", 10**30),
    cursor("", "", raw='["messages", 1e400]'), cursor("", "", raw='["contacts", "\\ud800"]'),
    cursor("", "", raw='["contacts", "a\\u0000b"]'), cursor("", "", raw='["rooms", "\\udfff x"]'),
    cursor("", "", raw='["members", "\\u0000"]'), cursor("", "", raw='["messages", true]'),
    cursor("", "", raw="[" * 5000), "%%%", "\u00e9\u00e9", "A" * 10000,
]  # fmt: skip


@pytest.mark.parametrize("crafted", CRAFTED)
def test_crafted_cursors_are_400(client: httpx.Client, crafted: str) -> None:
    for path in ("/api/messages", "/api/contacts", "/api/rooms", "/api/rooms/R:1/members"):
        r = client.get(path, params={"guid": GUID, "cursor": crafted})
        assert r.status_code == 400 and error_of(r) == "INVALID_PARAMS", (path, r.text)


def test_crafted_text_parameters_are_400(client: httpx.Client) -> None:
    for params in ({"guid": "a\x00b"}, {"guid": GUID, "keyword": "a\x00"}, {"guid": GUID, "page": str(2**70)},
                   {"guid": GUID, "limit": "-1"}):  # fmt: skip
        for path in ("/api/messages", "/api/contacts"):
            r = client.get(path, params=params)
            assert r.status_code == 400 and error_of(r) == "INVALID_PARAMS", (path, params, r.text)
    for params in ({"guid": GUID, "conversation_id": "S:\x00"}, {"guid": GUID, "start_time": "\x00"},
                   {"guid": GUID, "end_time": "9" * 400}):  # fmt: skip
        r = client.get("/api/messages", params=params)
        assert r.status_code == 400 and error_of(r) == "INVALID_PARAMS", (params, r.text)
    raw = client.get("/api/messages?guid=%ED%A0%80&keyword=%ED%A0%80%00")
    assert raw.status_code in (200, 400) and raw.json()["success"] is (raw.status_code == 200)


def test_contacts_keyword_folds_case_for_every_alphabet(client: httpx.Client) -> None:
    guid = "fold-device"
    for n, name in enumerate(("ÄRGER Müller", "Ωmega ΣΟΦΙΑ", "plain ascii")):
        body = message(guid, n, sender=f"78813000000{n:05d}", sender_name=name)
        assert client.post("/callback", json=body).status_code == 200
    for keyword, expected in (("ärger", "ÄRGER Müller"), ("MÜLLER", "ÄRGER Müller"), ("σοφια", "Ωmega ΣΟΦΙΑ"),
                              ("PLAIN", "plain ascii"), ("%", None), ("_", None)):  # fmt: skip
        names = [c["name"] for c in client.get("/api/contacts", params={"guid": guid, "keyword": keyword}).json()["data"]["contacts"]]
        assert names == ([expected] if expected else []), (keyword, names)


# --- limits on what a stranger can send ------------------------------------------------------


def raw_exchange(port: int, payload: bytes, *, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        if payload:
            sock.sendall(payload)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def status_and_body(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("strict")
    env = {"JUHE_SYNC_CLIENT_TIMEOUT": "1", "JUHE_SYNC_MAX_CONNECTIONS": "30", "JUHE_SYNC_MAX_HEADER_BYTES": "8192",
           "JUHE_SYNC_MAX_BODY_BYTES": "65536"}  # fmt: skip
    server = Server(f"sqlite:///{directory / 'strict.db'}", directory / "server.log", env).start()
    try:
        yield server
    finally:
        server.stop()


def test_oversized_headers_get_431(strict: Server) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    status, body = status_and_body(raw_exchange(strict.port, big))
    assert status == 431 and body["code"] == "HEADERS_TOO_LARGE"
    # A 200 MB header is cut off after the limit, not read to the end.
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Huge: ")
        sent = 0
        try:
            while sent < 200 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 10 * 1024 * 1024
    many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(2000)) + b"\r\n"
    assert status_and_body(raw_exchange(strict.port, many))[0] == 431
    assert httpx.get(strict.url + "/healthz").status_code == 200


def test_slow_and_silent_clients_are_disconnected(strict: Server) -> None:
    started = time.monotonic()
    status, body = status_and_body(raw_exchange(strict.port, b""))  # connects, sends nothing
    assert status == 408 and body["code"] == "REQUEST_TIMEOUT"
    assert time.monotonic() - started < 4
    # One byte at a time: the clock runs from the first byte, not from the last.
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_all(sock)
        assert time.monotonic() - started < 4
        assert reply.startswith(b"HTTP/1.1 408")
    # A body that never finishes: the connection is closed, the server logs one line.
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"POST /callback HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"guid\":")  # fmt: skip
        started = time.monotonic()
        read_all(sock)
        assert time.monotonic() - started < 4
    deadline = time.monotonic() + 10
    while "client disconnected" not in (log := strict.log_path.read_text()):
        assert time.monotonic() < deadline, "no log line for the aborted upload"
        time.sleep(0.05)
    assert "Traceback" not in log
    assert log.count("client disconnected") == 1
    assert httpx.get(strict.url + "/healthz").status_code == 200


def test_connections_are_capped(strict: Server) -> None:
    idle = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(30)]
    try:
        time.sleep(0.2)
        status, body = status_and_body(raw_exchange(strict.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        assert status == 503 and body["code"] == "SERVICE_UNAVAILABLE"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            if httpx.get(strict.url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


# --- starting, secrets -----------------------------------------------------------------------


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "JUHE_SYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'start.db'}", "JUHE_SYNC_PORT": str(free_port()), **(env or {})}
    for name in ("JUHE_SYNC_API_TOKEN", "JUHE_SYNC_CALLBACK_TOKEN", "JUHE_SYNC_INSECURE"):
        if env is None or name not in env:
            full.pop(name, None)
    return subprocess.run([sys.executable, "-m", "juhe_sync", "serve", *args], env=full, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    refused = serve(tmp_path, "--host", "0.0.0.0")
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert "JUHE_SYNC_API_TOKEN" in lines[0] and "JUHE_SYNC_CALLBACK_TOKEN" in lines[0] and "--insecure" in lines[0]
    assert serve(tmp_path, env={"JUHE_SYNC_HOST": "::"}).returncode == 2
    # One token is not enough: without the API token anyone could read everything (and make an
    # admin token); without the callback secret anyone could write.
    only_callback = serve(tmp_path, "--host", "0.0.0.0", env={"JUHE_SYNC_CALLBACK_TOKEN": "cb-0123456789"})
    assert only_callback.returncode == 2 and "JUHE_SYNC_API_TOKEN" in only_callback.stderr
    assert "JUHE_SYNC_CALLBACK_TOKEN" not in only_callback.stderr
    only_api = serve(tmp_path, "--host", "0.0.0.0", env={"JUHE_SYNC_API_TOKEN": "api-0123456789"})
    assert only_api.returncode == 2 and "JUHE_SYNC_CALLBACK_TOKEN" in only_api.stderr


@pytest.mark.parametrize(
    "how",
    [
        ["--insecure"],
        ["--env", "JUHE_SYNC_INSECURE=1"],
        ["--env", "JUHE_SYNC_API_TOKEN=an-operator-token", "JUHE_SYNC_CALLBACK_TOKEN=a-callback-secret"],
    ],
)
def test_starts_on_a_public_address_when_told_or_protected(tmp_path: Path, how: list[str]) -> None:
    env = {"JUHE_SYNC_HOST": "0.0.0.0"}
    args = []
    if how[0] == "--env":
        for pair in how[1:]:
            name, _, value = pair.partition("=")
            env[name] = value
    else:
        args = how
    port = free_port()
    env["JUHE_SYNC_PORT"] = str(port)
    full = {**os.environ, "JUHE_SYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'public.db'}", **env}
    proc = subprocess.Popen([sys.executable, "-m", "juhe_sync", "serve", *args], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_database_password_is_never_printed(tmp_path: Path) -> None:
    password = "Sup3r-Secret-PW"
    # trust authentication ignores the password, so this URL works and carries a secret.
    url = PG_URL.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    assert password in url
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": url}
    migrate = subprocess.run([sys.executable, "-m", "juhe_sync", "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0 and password not in migrate.stdout + migrate.stderr and "***" in migrate.stderr
    bad = url.replace(":5432/", ":1/")
    failed = subprocess.run([sys.executable, "-m", "juhe_sync", "migrate", "--database-url", bad], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert failed.returncode == 2 and password not in failed.stdout + failed.stderr and "***" in failed.stderr
    server = Server(url, tmp_path / "server.log", {"JUHE_SYNC_LOG_LEVEL": "debug"}).start()
    try:
        assert httpx.post(server.url + "/callback", json=message("pw-device", 1)).status_code == 200
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "juhe-sync on http://" in log and "***" in log and password not in log


def test_secrets_in_settings_never_reach_the_log(tmp_path: Path) -> None:
    env = {"JUHE_SYNC_API_TOKEN": OPERATOR, "JUHE_SYNC_CALLBACK_TOKEN": CALLBACK, "JUHE_SYNC_LOG_LEVEL": "debug",
           "JUHE_SYNC_APP_KEY": "k", "JUHE_SYNC_APP_SECRET": "app-secret-0123456789",
           "JUHE_SYNC_SAAS_BASE_URL": "http://127.0.0.1:9", "JUHE_SYNC_SYNC_PERIOD": "0"}  # fmt: skip
    server = Server(f"sqlite:///{tmp_path / 'log.db'}", tmp_path / "server.log", env).start()
    try:
        httpx.post(server.url + "/callback", params={"token": CALLBACK}, json=fixture_json("callback_11003_user_login.json"))
        httpx.post(server.url + "/callback", params={"token": "wrong-" + CALLBACK}, json=message(GUID, 1))
        httpx.get(server.url + "/api/rooms", params={"guid": GUID}, headers=bearer("x" + OPERATOR))
    finally:
        server.stop()
    log = server.log_path.read_text()
    for secret in (OPERATOR, CALLBACK, "app-secret-0123456789"):
        assert secret not in log


def test_an_oversized_body_without_content_length_gets_413(strict: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"guid": "chunked-device", "notify_type": 11010, "data": {"content": "'
        for _ in range(40):
            yield b"x" * 4096

    r = httpx.post(strict.url + "/callback", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and error_of(r) == "PAYLOAD_TOO_LARGE"
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert journal_size(strict, "chunked-device") == 0
    # A declared length over the limit is refused before the body is read.
    r = httpx.post(strict.url + "/callback", content=b"{" + b" " * 70000 + b"}")
    assert r.status_code == 413


def test_admin_routes_refuse_before_reading_and_api_bodies_are_small(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30, headers=bearer(OPERATOR)) as c:
        scoped = c.post("/api/tokens", json={"name": "small-scope", "guids": [GUID]}).json()["data"]["token"]
        assert error_of(c.post("/api/tokens", json={"name": "none", "guids": []})) == "INVALID_PARAMS"
        assert error_of(c.post("/api/tokens", json={"name": "yes", "admin": "yes"})) == "INVALID_PARAMS"
        big = b'{"name": "' + b"a" * 200_000 + b'"}'
        r = c.post("/api/tokens", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and error_of(r) == "PAYLOAD_TOO_LARGE"

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "chunked"}'

        r = c.post("/api/tokens", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 411 and error_of(r) == "LENGTH_REQUIRED"
    # A token that is not admin is refused before its body is even read.
    r = httpx.post(guarded.url + "/api/tokens", content=big, headers={**bearer(scoped), "Content-Type": "application/json"})
    assert r.status_code in (403, 413)
    r = httpx.post(guarded.url + "/api/tokens", json={"name": "x"}, headers=bearer(scoped))
    assert r.status_code == 403 and error_of(r) == "FORBIDDEN"


def test_two_host_headers_are_refused(server: Server) -> None:
    request = (f"GET /api/rooms?guid=x HTTP/1.1\r\nHost: evil.example\r\nHost: localhost:{server.port}\r\n"
               "Connection: close\r\n\r\n").encode()  # fmt: skip
    status, body = status_and_body(raw_exchange(server.port, request))
    assert status == 400 and body["code"] == "INVALID_PARAMS"


def test_pipelined_requests_are_not_mistaken_for_a_large_head(strict: Server) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(one * 500 + one[:20])  # 21 KB in one read, over the 8 KiB head limit
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 500:
            chunk = sock.recv(65536)
            assert chunk, answers[-300:]
            answers += chunk
    assert answers.count(b"HTTP/1.1 200") == 500 and b"HTTP/1.1 431" not in answers


def test_bad_settings_are_one_line_without_their_values(tmp_path: Path) -> None:
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "JUHE_SYNC_DEVICE_CREDENTIALS": '{"g1": {"callback_token": "SUPERSECRETCB", "app_secret": "SUPERSECRETAPP"},}'}  # fmt: skip
    for command in (["token", "list"], ["migrate"], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "juhe_sync", *command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "SUPERSECRET" not in done.stdout + done.stderr and "Traceback" not in done.stderr
        assert "JUHE_SYNC_DEVICE_CREDENTIALS" in done.stderr


def test_sigterm_exits_within_the_shutdown_timeout_despite_a_stuck_client(tmp_path: Path) -> None:
    env = {"JUHE_SYNC_SHUTDOWN_TIMEOUT": "1", "JUHE_SYNC_CLIENT_TIMEOUT": "300"}
    server = Server(f"sqlite:///{tmp_path / 'stop.db'}", tmp_path / "server.log", env).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # A callback whose body never finishes: the request stays in flight.
        sock.sendall(b"POST /callback HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{")
        time.sleep(0.3)
        assert server.proc is not None
        started = time.monotonic()
        server.proc.terminate()
        server.proc.wait(15)
        assert time.monotonic() - started < 6
