"""What the fault tests share: a PostgreSQL server of their own to stop and freeze, a load of
callbacks that records every answer, and the check that what was acknowledged is stored once."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from juhe_sync.service.stores import open_store
from tests.conftest import ACCOUNT, free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def private_postgres_missing() -> str | None:
    """Why a private PostgreSQL server cannot run here (None: it can)."""
    if _pg_bin() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


class PrivatePostgres:
    """A PostgreSQL server of the test's own, on its own port: stopping or freezing it disturbs
    nothing else on the machine."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        assert bindir is not None
        self.bindir = bindir
        # Not under pytest's tmp_path: the server runs as the postgres user, who cannot enter it.
        self.root = Path(tempfile.mkdtemp(prefix="juhe-sync-fault-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self._as_postgres, str(self.bindir / program), *args], check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every process of the server: connections stay open, nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self._pids()):
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


def callback(guid: str, n: int) -> str:
    item = {"appinfo": f"FAULT-{n}", "id": str(700000 + n), "seq": str(700000 + n), "sender": "7881300000000077",
            "receiver": ACCOUNT, "roomid": "0", "sendtime": 1_718_000_000 + n, "msg_type": 2,
            "content": f"故障 {n}"}  # fmt: skip
    return json.dumps({"guid": guid, "notify_type": 11010, "data": item}, ensure_ascii=False)


@dataclass
class Answer:
    n: int
    sent: float
    took: float
    status: int | None  # None: no answer (connection error or client timeout)
    code: str | None = None


@dataclass
class Load:
    """Threads posting distinct callbacks as fast as they are answered, each answer recorded."""

    url: str
    guid: str
    threads: int = 8
    timeout: float = 60.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._next = iter(range(10**9))
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]

    def start(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 5)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout) as http:
            while not self._stop.is_set():
                with self._lock:
                    n = next(self._next)
                sent = time.monotonic()
                status = code = None
                try:
                    response = http.post("/callback", content=callback(self.guid, n))
                    status = response.status_code
                    if status != 200:
                        with contextlib.suppress(ValueError):
                            code = response.json().get("code")
                except httpx.HTTPError:
                    time.sleep(0.05)
                with self._lock:
                    self.answers.append(Answer(n, sent, time.monotonic() - sent, status, code))

    def acknowledged(self) -> set[str]:
        return {f"FAULT-{a.n}" for a in self.answers if a.status == 200}

    def first_ok_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first callback sent after it and answered 200."""
        oks = [a.sent + a.took for a in self.answers if a.status == 200 and a.sent >= moment]
        return min(oks) - moment if oks else None

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.sent < end]


def summary(answers: list[Answer]) -> str:
    counts: dict[str, int] = {}
    for a in answers:
        key = str(a.status or "no answer") + (f" {a.code}" if a.code else "")
        counts[key] = counts.get(key, 0) + 1
    slowest = max((a.took for a in answers), default=0.0)
    return f"{dict(sorted(counts.items()))}, slowest answer {slowest:.1f} s"


def first_read_ok(url: str, guid: str, since: float, limit: float) -> float:
    """Seconds from ``since`` until a read answers 200 (polling)."""
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/api/messages", params={"guid": guid, "limit": 1}, timeout=30).status_code == 200:
                return time.monotonic() - since
        assert time.monotonic() - since < limit, f"reads not back within {limit} s"
        time.sleep(0.1)


def check_stored_once(database_url: str, guid: str, acknowledged: set[str]) -> int:
    """Every acknowledged callback's message is stored, none twice, and the device's counter is
    exact. Returns how many messages are stored."""
    store = open_store(database_url)
    try:
        rows = store.read(
            lambda c: c.execute(
                "SELECT m.appinfo FROM messages m JOIN devices d ON d.id = m.device_id WHERE d.guid = ?", (guid,)
            ).fetchall()
        )
        stored = [r[0] for r in rows]
        assert len(stored) == len(set(stored)), "a message was stored twice"
        missing = acknowledged - set(stored)
        assert not missing, f"{len(missing)} acknowledged callbacks lost, e.g. {sorted(missing)[:5]}"
        device = store.device(guid)
        assert device is not None and device.messages_count == len(stored), "the message counter drifted"
        return len(stored)
    finally:
        store.close()


def report(name: str, **facts: object) -> None:
    """One line per fault for the log (pytest -s shows it): what the client saw, recovery, storage."""
    print(f"\nFAULT {name}: " + "; ".join(f"{k}: {v}" for k, v in facts.items()))
