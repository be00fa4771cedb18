"""The purge benchmark: single callbacks (wrk, 16 connections) alone, then while ``juhe-sync purge``
deletes half of the largest device from another process, on a copy of the SQLite benchmark data
(a purge cannot be undone). What the callbacks lose is what a purge costs ingest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_purge(
    source: Path, guid: str, before: str, start_server: Callable[[str], Any],
    wrk: Callable[[str, str, str, int, int, str], dict[str, float]], seconds: int,
) -> dict[str, Any]:  # fmt: skip
    copy = source.with_name("bench-purge.db")
    shutil.copyfile(source, copy)
    url = f"sqlite:///{copy}"
    server = start_server(url)
    out: dict[str, Any] = {}
    try:
        wrk(server.base, "/callback", "single", 5, 16, f"w{int(time.time())}")  # warm the copy's page cache
        out["callbacks alone"] = wrk(server.base, "/callback", "single", seconds, 16, f"p{int(time.time())}")
        env = {**os.environ, "JUHE_SYNC_DATABASE_URL": url, "COLUMNS": "100"}
        started = time.monotonic()
        purge = subprocess.Popen([sys.executable, "-m", "juhe_sync", "purge", "--guid", guid, "--before", before],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        out["callbacks during the purge"] = wrk(
            server.base, "/callback", "single", seconds, 16, f"q{int(time.time())}"
        )
        stderr = purge.communicate(timeout=3600)[1].decode()
        elapsed = time.monotonic() - started
        if purge.returncode != 0:
            raise RuntimeError(stderr)
        messages = int(stderr.split(": messages ")[1].split(",")[0])
        out["purge"] = {
            "messages": messages,
            "seconds": round(elapsed, 1),
            "messages_per_s": round(messages / elapsed),
        }
        out["during / alone"] = round(
            out["callbacks during the purge"]["requests_per_s"] / out["callbacks alone"]["requests_per_s"], 3
        )
    finally:
        server.stop()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return out
