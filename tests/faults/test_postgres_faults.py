"""PostgreSQL going away under load: stopped and restarted, frozen, and juhe-sync stopped while it
is frozen. Every acknowledged callback is stored exactly once, clients get an answer in bounded
time, and juhe-sync recovers within seconds of the database."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.faults.harness import (
    Load,
    check_stored_once,
    first_read_ok,
    private_postgres,
    private_postgres_missing,
    report,
    summary,
)

pytestmark = pytest.mark.skipif(private_postgres_missing() is not None, reason=str(private_postgres_missing()))

GUID = "fault-pg-device"


def test_postgres_stopped_and_restarted_under_load(tmp_path: Path) -> None:
    with private_postgres() as pg:
        server = Server(pg.url, tmp_path / "server.log").start()
        load = Load(server.url, GUID).start()
        try:
            time.sleep(2)
            pg.stop("immediate")  # as if it crashed: WAL recovery on the next start
            down = time.monotonic()  # (a commit may still land while pg_ctl waits for the stop)
            time.sleep(1)
            t0 = time.monotonic()
            read = httpx.get(server.url + "/api/messages", params={"guid": GUID}, timeout=30)
            read_took = time.monotonic() - t0
            assert read.status_code == 503 and read.json()["code"] == "STORAGE_UNAVAILABLE"
            time.sleep(7)
            starting = time.monotonic()  # (pg_ctl returns a moment after it accepts connections)
            pg.start()
            up = time.monotonic()
            reads_back = first_read_ok(server.url, GUID, up, 30)
            time.sleep(4)
        finally:
            load.stop()
            server.stop()
        writes_back = load.first_ok_after(up)
        during = load.between(down, up)
        assert writes_back is not None and writes_back < 5, writes_back
        assert reads_back < 5, reads_back
        # While it is away every callback is answered, in bounded time, with "try again".
        assert {a.status for a in during if a.sent + a.took < starting} <= {503}, summary(during)
        assert max(a.took for a in during) < 15, summary(during)
        stored = check_stored_once(pg.url, GUID, load.acknowledged())
        report("postgresql stopped 8 s under load", during=summary(during),
               read_while_down=f"503 in {read_took:.2f} s", writes_back=f"{writes_back:.2f} s",
               reads_back=f"{reads_back:.2f} s", acknowledged=len(load.acknowledged()),
               stored=f"{stored}, each once")  # fmt: skip


def test_postgres_frozen_under_load(tmp_path: Path) -> None:
    """SIGSTOP: the server's kernel still acknowledges every packet, so neither statement_timeout
    nor keepalives end a wait; the storage timeout and the watchdog do."""
    with private_postgres() as pg:
        server = Server(pg.url, tmp_path / "server.log", {"JUHE_SYNC_STORAGE_TIMEOUT": "3"}).start()
        load = Load(server.url, GUID).start()
        try:
            time.sleep(2)
            frozen = time.monotonic()
            pg.freeze()
            reads = []
            for _ in range(3):
                t0 = time.monotonic()
                r = httpx.get(server.url + "/api/messages", params={"guid": GUID}, timeout=60)
                reads.append((r.status_code, time.monotonic() - t0))
            time.sleep(max(0.0, frozen + 12 - time.monotonic()))
            pg.thaw()
            thawed = time.monotonic()
            reads_back = first_read_ok(server.url, GUID, thawed, 30)
            time.sleep(4)
        finally:
            load.stop()
            server.stop()
        during = load.between(frozen, thawed)
        writes_back = load.first_ok_after(thawed)
        assert all(status == 503 for status, _ in reads), reads
        assert max(took for _, took in reads) < 10, reads
        # Callbacks sent during the freeze get 503 after the 3 s storage timeout, never a hang.
        assert {a.status for a in during if a.sent > frozen + 0.5 and a.sent + a.took < thawed} <= {503}, summary(during)
        assert max(a.took for a in during) < 8, summary(during)
        assert writes_back is not None and writes_back < 5, writes_back
        assert reads_back < 5, reads_back
        stored = check_stored_once(pg.url, GUID, load.acknowledged())
        report("postgresql frozen (SIGSTOP) 12 s under load, storage timeout 3 s", during=summary(during),
               reads_while_frozen=", ".join(f"{s} in {t:.1f} s" for s, t in reads),
               writes_back=f"{writes_back:.2f} s", reads_back=f"{reads_back:.2f} s",
               acknowledged=len(load.acknowledged()), stored=f"{stored}, each once")  # fmt: skip


def test_sigterm_while_postgres_is_frozen_and_a_client_is_stuck(tmp_path: Path) -> None:
    env = {"JUHE_SYNC_SHUTDOWN_TIMEOUT": "3", "JUHE_SYNC_STORAGE_TIMEOUT": "5", "JUHE_SYNC_CLIENT_TIMEOUT": "300"}
    with private_postgres() as pg:
        server = Server(pg.url, tmp_path / "server.log", env).start()
        load = Load(server.url, GUID, threads=4).start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stuck:
            stuck.sendall(b"POST /callback HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{")
            time.sleep(2)
            pg.freeze()
            time.sleep(1)
            assert server.proc is not None
            started = time.monotonic()
            server.proc.terminate()
            server.proc.wait(60)
            took = time.monotonic() - started
        load.stop()
        pg.thaw()
        # Shutdown timeout (3 s), then each writer stuck on the database gets 5 s before the
        # process leaves it behind; nothing it held was acknowledged.
        assert took < 15, took
        log = (tmp_path / "server.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        stored = check_stored_once(pg.url, GUID, load.acknowledged())
        report("SIGTERM while postgresql is frozen and a client dribbles a body", exited=f"{took:.1f} s",
               acknowledged=len(load.acknowledged()), stored=f"{stored}, each once")  # fmt: skip
