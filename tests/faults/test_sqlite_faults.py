"""SQLite under faults: a filesystem that fills up under load, and bursts of reads with idle gaps
(which once leaked a connection per retired thread)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from juhe_sync.storage.sqlite import READERS
from tests.conftest import Server
from tests.faults.harness import Load, check_stored_once, report, summary

GUID = "fault-sqlite-device"


@contextlib.contextmanager
def small_filesystem(where: Path, megabytes: int) -> Iterator[Path]:
    """An ext4 filesystem of its own, in an image file mounted through a loop device."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("a loop-mounted filesystem needs root and mkfs.ext4")
    image, mount = where / "fs.img", where / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(megabytes * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot loop-mount a filesystem: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sqlite_on_a_full_disk(tmp_path: Path) -> None:
    with small_filesystem(tmp_path, 48) as mount:
        database = f"sqlite:///{mount / 'juhe-sync.db'}"
        server = Server(database, tmp_path / "server.log").start()
        # Leave about 2 MB: the load fills it within seconds.
        ballast = mount / "ballast"
        free = shutil.disk_usage(mount).free
        with ballast.open("wb") as f:
            f.write(b"\0" * max(0, free - 2 * 1024 * 1024))
            f.flush()
            os.fsync(f.fileno())
        load = Load(server.url, GUID, threads=4).start()
        try:
            deadline = time.monotonic() + 60
            while not any(a.status not in (200, None) for a in load.answers):
                assert time.monotonic() < deadline, "the disk never filled"
                time.sleep(0.1)
            full = time.monotonic()
            time.sleep(3)
            # Reads need no space: they keep working.
            read = httpx.get(server.url + "/api/messages", params={"guid": GUID, "limit": 5}, timeout=30)
            assert read.status_code == 200, read.text
            ballast.unlink()
            freed = time.monotonic()
            time.sleep(4)
        finally:
            load.stop()
            server.stop()
        during = load.between(full, freed)
        writes_back = load.first_ok_after(freed)
        assert writes_back is not None and writes_back < 5, writes_back
        failed = [a for a in during if a.status != 200]
        assert failed and {a.status for a in failed} <= {500, 503}, summary(during)
        assert {a.code for a in failed} <= {"STORAGE_ERROR", "STORAGE_UNAVAILABLE"}, summary(during)
        stored = check_stored_once(database, GUID, load.acknowledged())
        with contextlib.closing(sqlite3.connect(mount / "juhe-sync.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # No tracebacks, and a recurring failure once per 10 s with its count: a few lines, not one
        # or several per refused callback, on the disk that was full.
        log = (tmp_path / "server.log").read_text(errors="replace")
        assert "Traceback" not in log
        lines = log.count("\n")
        assert lines < 30, log[-3000:]
        report("sqlite on a full disk under load", during=summary(during), writes_back=f"{writes_back:.2f} s",
               log_lines=f"{lines} for {len(failed)} refused callbacks", acknowledged=len(load.acknowledged()),
               stored=f"{stored}, each once, integrity ok")  # fmt: skip


def _handles_and_rss(pid: int) -> tuple[int, int]:
    handles = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return handles, rss // 1024


def test_read_bursts_with_idle_gaps_keep_handles_and_memory_flat(tmp_path: Path) -> None:
    """40 concurrent searches, then 11 s of quiet (the thread pool retires idle threads after
    10 s), again and again: open files and memory stay where the first burst left them."""
    database = f"sqlite:///{tmp_path / 'juhe-sync.db'}"
    server = Server(database, tmp_path / "server.log").start()
    try:
        load = Load(server.url, GUID, threads=4).start()
        time.sleep(2)
        load.stop()
        assert server.proc is not None
        words = ["故障", "障", "7", "FAULT", "没有的词", "故"]

        def search(n: int) -> int:
            params = {"guid": GUID, "keyword": words[n % len(words)], "limit": 50}
            return httpx.get(server.url + "/api/messages", params=params, timeout=60).status_code

        seen = []
        for _ in range(5):
            with ThreadPoolExecutor(40) as pool:
                assert set(pool.map(search, range(120))) == {200}
            seen.append(_handles_and_rss(server.proc.pid))
            time.sleep(11)
    finally:
        server.stop()
    handles = [h for h, _ in seen]
    rss = [r for _, r in seen]
    # The reader pool grows, as reads need them, to its fixed size (a reader holds the database,
    # its WAL and shared memory) and no further; it once grew by a connection per retired thread, for ever.
    assert max(handles) - handles[0] <= READERS * 3, seen
    assert max(rss) - rss[0] <= 40, seen
    report("read bursts with idle gaps (sqlite)", open_files=handles, rss_mb=rss)
