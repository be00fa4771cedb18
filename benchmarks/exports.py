"""The export benchmark: ``juhe-sync export`` of the largest device in every format, and of a
tenth of it, each in a process of its own whose peak RSS the kernel reports (``wait4``). The same
peak for a tenth and for the whole says the memory does not grow with the size; the rate is
messages per second of wall time. ``GET /api/export`` is timed over HTTP against the server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

FORMATS = ("jsonl", "csv", "markdown", "html")


def export_process(url: str, guid: str, fmt: str, output: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": url, "COLUMNS": "100"}
    args = [sys.executable, "-m", "juhe_sync", "export", "--guid", guid, "--format", fmt, "--output", str(output),
            *extra]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"export failed: {stderr}")
    messages = int(stderr.split("exported ")[1].split(" messages")[0])
    size = sum(p.stat().st_size for p in output.rglob("*")) if output.is_dir() else output.stat().st_size
    return {
        "messages": messages,
        "seconds": round(seconds, 2),
        "messages_per_s": round(messages / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports kilobytes
        "output_mb": round(size / 1e6, 1),
    }


def run_exports(url: str, base: str, guid: str, fractions: dict[str, str], guids: list[str],
                token: str | None = None) -> dict[str, Any]:  # fmt: skip
    """jsonl of every device one after the other (the whole database), jsonl of the largest device's
    first tenth and half (``fractions``: label -> end time), then every format of that device."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="juhe-sync-export-bench-") as tmp:
        folder = Path(tmp)
        runs = [export_process(url, g, "jsonl", folder / "device.jsonl") for g in guids]
        seconds = sum(r["seconds"] for r in runs)
        messages = sum(r["messages"] for r in runs)
        out[f"jsonl, all {len(guids)} devices"] = {
            "messages": messages, "seconds": round(seconds, 2), "messages_per_s": round(messages / seconds),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "output_mb": round(sum(r["output_mb"] for r in runs), 1),
        }  # fmt: skip
        for label, end in fractions.items():
            out[f"jsonl, {label}"] = export_process(
                url, guid, "jsonl", folder / "part.jsonl", "--end-time", end
            )
        for fmt in FORMATS:
            target = folder / (fmt if fmt == "html" else f"all.{fmt}")
            out[fmt] = export_process(url, guid, fmt, target)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    lines = size = 0
    with httpx.stream(
        "GET", f"{base}/api/export", params={"guid": guid}, headers=headers, timeout=600
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.monotonic() - started
    out["GET /api/export (jsonl)"] = {"messages": lines, "seconds": round(seconds, 2),
                                      "messages_per_s": round(lines / seconds), "output_mb": round(size / 1e6, 1)}  # fmt: skip
    return out
