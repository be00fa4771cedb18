"""juhe-sync benchmarks: ingest and queries over real HTTP against ``juhe-sync serve``.

    ./dev bench                         # SQLite, 1 million messages (generated once, cached)
    ./dev bench --messages 5000000      # 5 million
    ./dev bench --postgres postgresql://postgres@127.0.0.1/juhe_bench

Prints a table and writes benchmarks/results.json. Every figure is a median (p50) or p99 over
repeated requests in this run; each search is put beside the same query as a plain LIKE scan over
the same database, and callback ingest beside the same server's parse-only route (the HTTP-stack
limit), both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks import datagen  # noqa: E402
from benchmarks.exports import run_exports  # noqa: E402
from benchmarks.retention import run_purge  # noqa: E402
from juhe_sync.service.stores import open_store  # noqa: E402
from juhe_sync.storage import reads  # noqa: E402
from juhe_sync.storage.sqlstore import SQLStore  # noqa: E402

console = Console()
#: The device wrk_callback.lua sends to.
INGEST_GUID = "bench-ingest"
#: Runs of each ingest measurement on each server (alternating): the median is reported.
RUNS = 5
SEED = 20261129


# --- data -------------------------------------------------------------------------------------


def wipe(url: str) -> None:
    """Remove the benchmark's own data: the SQLite files, or juhe-sync's tables in the bench database."""
    if url.startswith("sqlite:"):
        path = Path(url[len("sqlite:///") :])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    from juhe_sync.storage.migrations import MIGRATIONS

    # Every table the migrations create (a list written out here went stale as they grew), and
    # the one that records them; CASCADE takes their order.
    creates = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)")
    created = [t for m in MIGRATIONS for s in m.postgresql for t in creates.findall(s)]
    tables = ", ".join(["schema_migrations", *created])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {tables} CASCADE")
        conn.execute("DROP SEQUENCE IF EXISTS message_id_low")


def settle_postgres(url: str) -> None:
    """VACUUM ANALYZE: the state autovacuum keeps a live database in. Right after heavy ingest,
    until autovacuum runs, the GIN index's pending list (up to gin_pending_list_limit) is scanned by
    every search; measured here at up to 3x slower for rare terms (see BENCHMARKS.md). And each
    callback updates its conversation's row: without vacuum, a server whose autovacuum is off
    (this benchmark's machine) ingested half as fast after a few runs (BENCHMARKS.md)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def postgres_setting(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    return str(row[0]) if row else ""


def prepare(url: str, total: int, fresh: bool) -> None:
    if fresh:
        wipe(url)
    store = open_store(url)
    store.migrate()
    try:
        have = store.journal_size()
        if have and not fresh:
            console.print(f"using the data already in {url} ({have} journalled events)")
            return
        with Progress(
            TextColumn("[bold]generate"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("load", total=total)
            started = time.perf_counter()
            stored = datagen.load(store, SEED, total, progress=lambda n: progress.advance(task, n))
        took = time.perf_counter() - started
        console.print(
            f"loaded {stored} messages in {took:.0f} s ({stored / took:,.0f} messages/s through the store)"
        )
    finally:
        store.close()


# --- server -----------------------------------------------------------------------------------


class Server:
    def __init__(self, url: str, port: int, log: Path, extra_env: dict[str, str] | None = None):
        env = {**os.environ, "JUHE_SYNC_DATABASE_URL": url, "JUHE_SYNC_PORT": str(port), "JUHE_SYNC_BENCH_ROUTES": "1",
               "JUHE_SYNC_LOG_LEVEL": "warning", **(extra_env or {})}  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "juhe_sync", "serve"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start; see " + str(log))
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def rss_mb(self) -> float:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0.0
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else 0.0

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(30)


# --- measurements -----------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "n": len(ordered),
    }


def time_requests(
    client: httpx.Client, path: str, params: dict[str, Any], n: int
) -> tuple[dict[str, float], Any]:
    body = None
    for _ in range(3):  # warm-up
        body = client.get(path, params=params).json()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    return percentiles(samples), body


def wrk(base: str, path: str, mode: str, seconds: int, connections: int, run: str) -> dict[str, float]:
    """``connections`` connections for ``seconds``, each request a callback never sent before (the
    run id is made unique per call: a repeated one would be answered as cheap duplicates)."""
    lua = ROOT / "wrk_callback.lua"
    run = f"{run}-{time.monotonic_ns()}"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), base + path, "--", mode, run, "50"],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(out.stdout + out.stderr)
    data = json.loads(line[len("WRK_JSON ") :])
    rps = data["requests"] / (data["duration_us"] / 1e6)
    return {
        "requests_per_s": round(rps, 1),
        "messages_per_s": round(rps * (50 if mode == "batch" else 1), 1),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "errors": data["errors"],
        "non_2xx": data["non2xx"],
    }


def like_scan(store: SQLStore, device_id: int, keyword: str, runs: int = 3) -> dict[str, float]:
    """The same search (page 1 + total) as a plain LIKE scan over the message text; ``hits``: the
    exact total (the server's may be capped)."""
    op = "LIKE" if store.url.startswith("sqlite") else "ILIKE"  # SQLite's LIKE folds ASCII case itself
    pattern = reads.like_pattern(keyword)
    where = f"device_id = ? AND searchable = 1 AND content {op} ? ESCAPE '\\'"

    def run(conn: Any) -> int:
        conn.execute(
            f"SELECT id FROM messages WHERE {where} ORDER BY id DESC LIMIT 20", (device_id, pattern)
        ).fetchall()
        return int(conn.execute(f"SELECT count(*) FROM messages WHERE {where}", (device_id, pattern)).fetchone()[0])

    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        hits = store.read(run)
        samples.append(time.perf_counter() - started)
    return {**percentiles(samples), "hits": hits}


def search_plan(store: SQLStore, device_id: int, keyword: str) -> dict[str, Any]:
    """PostgreSQL: whether the planner serves the search from the GIN index (never a sequential scan)."""
    if not hasattr(store, "search_plans"):
        return {}
    from juhe_sync.records import MessageQuery

    plans = store.search_plans(MessageQuery(device_id, keyword=keyword))
    return {
        "plan_uses_gin": all("messages_grams" in p for p in plans),
        "plan_seq_scan": any("Seq Scan on messages" in p for p in plans),
    }


def biggest(store: SQLStore) -> tuple[int, str, str, int]:
    """(device id, guid, busiest conversation, its size) of the device with most messages."""

    def run(conn: Any) -> tuple[int, str, str, int]:
        # The generated devices only: the ingest runs write to a device of their own.
        dev_id, guid = conn.execute(
            "SELECT id, guid FROM devices WHERE guid <> ? ORDER BY messages_count DESC LIMIT 1",
            (INGEST_GUID,),
        ).fetchone()
        key, count = conn.execute(
            "SELECT conv_key, message_count FROM conversations WHERE device_id = ? ORDER BY message_count DESC LIMIT 1",
            (dev_id,),
        ).fetchone()
        return int(dev_id), guid, key, int(count)

    return store.read(run)


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="benchmark PostgreSQL at URL instead of SQLite")
    parser.add_argument("--fresh", action="store_true", help="delete and regenerate the benchmark data")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each ingest run")
    parser.add_argument("--repeat", type=int, default=200, help="timed requests per query")
    parser.add_argument("--port", type=int, default=18070)
    parser.add_argument(
        "--count-limit", type=int, default=0, help="the server's JUHE_SYNC_SEARCH_COUNT_LIMIT (0: exact counts)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "results.json")
    parser.add_argument(
        "--only",
        choices=("data", "queries", "ingest", "export", "purge"),
        help="generate the data only, or run one part of the benchmark",
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("wrk is needed for the ingest runs: apt-get install wrk")
    data_dir = ROOT / "data"
    data_dir.mkdir(exist_ok=True)
    url = args.postgres or f"sqlite:///{data_dir / f'bench-{args.messages}.db'}"
    backend = "postgresql" if args.postgres else "sqlite"
    prepare(url, args.messages, args.fresh)
    if args.only == "data":
        return

    if args.postgres:
        settle_postgres(url)
        if postgres_setting(url, "autovacuum") != "on":
            console.print("[yellow]PostgreSQL's autovacuum is off: the benchmark vacuums before each run, "
                          "as it would; a live database needs it on (docs/deployment.md)[/]")  # fmt: skip
    store = open_store(url)
    device_id, guid, conversation, conv_size = biggest(store)
    results: dict[str, Any] = {
        "backend": backend,
        "messages": args.messages,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "device": {"guid": guid, "messages": store.device(guid).messages_count},  # type: ignore[union-attr]
        "queries": {},
        "search": {},
        "ingest": {},
        "export": {},
    }
    results["search_count_limit"] = args.count_limit
    limit_env = {"JUHE_SYNC_SEARCH_COUNT_LIMIT": str(args.count_limit)}
    server = Server(url, args.port, data_dir / f"server-{backend}.log", limit_env)
    try:
        with httpx.Client(base_url=server.base, timeout=120) as client:
            if args.only in (None, "queries"):
                run_queries(client, store, results, guid, device_id, conversation, conv_size, args.repeat)
        if args.only in (None, "export"):
            fractions = {
                "first tenth": at_share(store, device_id, 0.1),
                "first half": at_share(store, device_id, 0.5),
            }
            guids = [g for _, g in store.device_ids()]
            results["export"] = run_exports(url, server.base, guid, fractions, guids)
            results["export"]["server peak RSS while streaming, MB"] = round(server.peak_rss_mb, 1)
        if args.only in (None, "ingest"):
            baseline = Server(url, args.port + 2, data_dir / f"server-{backend}-thread.log", THREAD_WRITER)
            try:
                settle = (lambda: settle_postgres(url)) if args.postgres else (lambda: None)
                run_ingest(server.base, results, args.seconds, args.port + 1, store, baseline, settle)
            finally:
                baseline.stop()
        results["server_peak_rss_mb"] = round(server.peak_rss_mb, 1)
    finally:
        server.stop()
    if args.only in (None, "purge") and backend == "sqlite":
        results["purge"] = run_purge(
            data_dir / f"bench-{args.messages}.db", guid, at_share(store, device_id, 0.5),
            lambda u: Server(u, args.port, data_dir / "server-purge.log"), wrk, args.seconds,
        )  # fmt: skip
    store.close()
    args.output.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    report(results)


def run_queries(
    client: httpx.Client,
    store: SQLStore,
    results: dict[str, Any],
    guid: str,
    device_id: int,
    conversation: str,
    conv_size: int,
    repeat: int,
) -> None:
    q = results["queries"]
    last_page = min(500, max(1, conv_size // 20))
    plans = {
        "conversation page 1": ("/api/messages", {"guid": guid, "conversation_id": conversation}),
        f"conversation page {last_page}": (
            "/api/messages", {"guid": guid, "conversation_id": conversation, "page": last_page}),
        "time range (one week)": (
            "/api/messages", {"guid": guid, "start_time": "2023-07-01", "end_time": "2023-07-07"}),
        "device messages page 1": ("/api/messages", {"guid": guid}),
        "contacts keyword": ("/api/contacts", {"guid": guid, "keyword": "王"}),
        "rooms": ("/api/rooms", {"guid": guid}),
        "sync-status": ("/api/sync-status", {"guid": guid}),
        # What the viewer asks for: the conversation list, a conversation's newest page, a device list.
        "viewer: conversation list": ("/api/conversations", {"guid": guid, "limit": 50}),
        "viewer: conversation list, name filter": ("/api/conversations", {"guid": guid, "keyword": "王", "limit": 50}),
        "viewer: conversation first page": (
            "/api/messages", {"guid": guid, "conversation_id": conversation, "limit": 50, "order": "desc"}),
        "viewer: devices": ("/api/devices", {}),
    }  # fmt: skip
    deep = client.get("/api/messages", params={**plans["conversation page 1"][1], "page": last_page}).json()
    if deep["data"]["next_cursor"]:
        plans[f"conversation cursor after page {last_page}"] = (
            "/api/messages",
            {"guid": guid, "conversation_id": conversation, "cursor": deep["data"]["next_cursor"]},
        )
    middle = client.get("/api/messages", params={**plans[f"conversation page {last_page}"][1]}).json()
    if middle["data"]["messages"]:
        plans["viewer: around a message"] = (
            "/api/messages",
            {"guid": guid, "around": middle["data"]["messages"][0]["id"], "limit": 50, "order": "asc"},
        )
    for name, (path, params) in plans.items():
        q[name], _ = time_requests(client, path, params, repeat)
    q["conversation page 1"]["conversation_size"] = conv_size

    terms = dict(datagen.PLANTED)
    terms["是"] = (0.17, "common")
    for term, (_, rarity) in terms.items():
        stats, body = time_requests(client, "/api/messages", {"guid": guid, "keyword": term}, repeat // 2)
        baseline = like_scan(store, device_id, term)
        total = body["data"]["total"]
        plan = search_plan(store, device_id, term)
        results["search"][term] = {
            "rarity": rarity,
            "chars": len(term),
            "hits": total,
            "capped": body["data"]["total_capped"],
            "share_pct": round(100 * baseline["hits"] / results["device"]["messages"], 3),
            **stats,
            "like_p50_ms": baseline["p50_ms"],
            "speedup": round(baseline["p50_ms"] / stats["p50_ms"], 1),
            **plan,
        }


def at_share(store: SQLStore, device_id: int, share: float) -> str:
    """The time (ISO) before which the device has ``share`` of its messages."""

    def run(conn: Any) -> int:
        total = conn.execute("SELECT messages_count FROM devices WHERE id = ?", (device_id,)).fetchone()[0]
        row = conn.execute("SELECT sendtime FROM messages WHERE device_id = ? ORDER BY id LIMIT 1 OFFSET ?",
                           (device_id, int(total * share))).fetchone()  # fmt: skip
        return int(row[0])

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(store.read(run)))


#: The server as it was before callbacks got a writer process of their own: the baseline the
#: ingest rows are measured against, in the same run.
THREAD_WRITER = {"JUHE_SYNC_CALLBACK_WRITER_PROCESS": "0"}


def run_ingest(
    base: str, results: dict[str, Any], seconds: int, bare_port: int, store: SQLStore, baseline: Server | None,
    settle: Callable[[], None] = lambda: None,
) -> None:
    """Each ingest run :data:`RUNS` times, alternating with the same run against ``baseline`` (the
    writer thread): medians of both, so that what the machine does meanwhile hits both alike.
    ``settle`` runs before each measured run (PostgreSQL: what autovacuum would have done)."""
    run = f"r{int(time.time())}"
    ingest = results["ingest"]
    with BareServer(bare_port) as bare:
        ingest["bare ASGI app (parse JSON, 200)"] = wrk(bare, "/callback", "single", seconds, 16, run)
    ingest["http stack limit (parse only)"] = wrk(base, "/_bench/parse", "single", seconds, 16, run)
    for name, mode in (("single 11010 callbacks", "single"), ("11013 batches of 50", "batch")):
        # Warm-up, not counted: the first seconds of a server read its indexes in from disk.
        for server in (base, baseline.base if baseline else None):
            if server is not None:
                wrk(server, "/callback", mode, 3, 16, run)
        ours, theirs = [], []
        for _ in range(RUNS if baseline else 1):
            settle()
            ours.append(wrk(base, "/callback", mode, seconds, 16, run))
            if baseline:
                settle()
                theirs.append(wrk(baseline.base, "/callback", mode, seconds, 16, run))
        ingest[name] = median_run(ours)
        if baseline:
            ingest[f"{name}, writer thread (before)"] = median_run(theirs)
            ingest[f"{name}: writer process vs thread"] = round(
                ingest[name]["requests_per_s"] / ingest[f"{name}, writer thread (before)"]["requests_per_s"],
                3,
            )
    single = ingest["single 11010 callbacks"]["requests_per_s"]
    ingest["single vs http stack"] = round(
        single / ingest["http stack limit (parse only)"]["requests_per_s"], 3
    )
    ingest["single vs bare ASGI"] = round(
        single / ingest["bare ASGI app (parse JSON, 200)"]["requests_per_s"], 3
    )
    settle()
    ingest["burst"] = burst(base, store, f"bench-burst-{run}", 20_000, 64)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (its latencies with it: they belong together)."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    return {
        **ordered[len(ordered) // 2],
        "runs": len(runs),
        "each_run_requests_per_s": [r["requests_per_s"] for r in runs],
    }


class BareServer:
    """benchmarks/bare_asgi.py under the same uvicorn and HTTP protocol as ``juhe-sync serve``."""

    def __init__(self, port: int):
        from juhe_sync.web.protocol import IMPORT_PATH

        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.bare_asgi:app", "--port", str(port), "--http", IMPORT_PATH,
             "--log-level", "warning", "--no-access-log", "--no-server-header"],
            cwd=ROOT.parent, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def __enter__(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.base + "/", content=b"{}", timeout=1)
                return self.base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the bare ASGI app did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def burst(base: str, store: SQLStore, guid: str, total: int, connections: int) -> dict[str, Any]:
    """``total`` distinct callbacks from ``connections`` connections at once (what a SaaS redelivers
    after an outage): the slowest answer, and proof that each is stored exactly once."""
    lua = ROOT / "burst.lua"

    def stored(conn: Any) -> tuple[int, int, int]:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT m.dedup_key), max(d.messages_count) FROM messages m "
            "JOIN devices d ON d.id = m.device_id WHERE d.guid = ?", (guid,)
        ).fetchone()  # fmt: skip
        return int(row[0]), int(row[1]), int(row[2] or 0)

    started = time.monotonic()
    proc = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", "-d600s", "--timeout", "60s", "-s", str(lua), base, "--", guid,
         str(total), "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # wrk runs for a duration, not a count: once every callback is stored (or nothing more arrives
    # for 10 s), SIGINT makes it stop and report what it saw.
    last, last_change = -1, time.monotonic()
    while proc.poll() is None:
        time.sleep(0.2)
        count = store.read(stored)[0]
        if count != last:
            last, last_change = count, time.monotonic()
        if count >= total or time.monotonic() - last_change > 10:
            break
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # the last answers reach wrk
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(out.stdout + out.stderr)
    data = json.loads(line[len("WRK_JSON ") :])

    count, distinct, counter = store.read(stored)
    sent, acked = data["sent"], data["acked"]
    # Every callback answered 200 is stored, once; one that failed may or may not be.
    if not (acked <= count == distinct == counter <= sent):
        raise RuntimeError(f"burst: {acked} acknowledged of {sent} sent, but {count} stored "
                           f"({distinct} distinct, counter {counter})")  # fmt: skip
    return {
        "callbacks": sent,
        "acknowledged": acked,
        "connections": connections,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(sent / elapsed, 1),
        "messages_per_s": round(sent / elapsed, 1),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "errors": data["errors"],
        "non_2xx": data["non2xx"],
        "stored_once": acked == count == distinct,
    }


def report(results: dict[str, Any]) -> None:
    console.print(f"\n[bold]juhe-sync benchmark[/bold]: {results['backend']}, {results['messages']:,} messages "
                  f"(largest device {results['device']['messages']:,}), {results['machine']['cpus']} CPUs")  # fmt: skip
    table = Table("query", "p50 ms", "p99 ms")
    for name, r in results["queries"].items():  # empty with --only ingest
        table.add_row(name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}")
    console.print(table)
    table = Table("keyword", "rarity", "hits", "share %", "p50 ms", "p99 ms", "LIKE p50 ms", "speed-up")
    for term, r in results["search"].items():
        hits = f"{r['hits']}{'+' if r.get('capped') else ''}"
        table.add_row(term, r["rarity"], hits, f"{r['share_pct']:.2f}", f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['like_p50_ms']:.1f}", f"{r['speedup']}x")  # fmt: skip
    console.print(table)
    table = Table("ingest (16 connections)", "req/s", "messages/s", "p50 ms", "p99 ms", "errors")
    for name, r in results["ingest"].items():
        if isinstance(r, dict):
            table.add_row(name, f"{r['requests_per_s']:,.0f}", f"{r['messages_per_s']:,.0f}", f"{r['p50_ms']:.1f}",
                          f"{r['p99_ms']:.1f}", str(r["errors"] + r["non_2xx"]))  # fmt: skip
    console.print(table)
    table = Table("export (largest device)", "messages", "seconds", "messages/s", "peak RSS MB", "output MB")
    for name, r in results.get("export", {}).items():
        if isinstance(r, dict):
            table.add_row(name, f"{r['messages']:,}", f"{r['seconds']:.1f}", f"{r['messages_per_s']:,}",
                          str(r.get("peak_rss_mb", "")), str(r["output_mb"]))  # fmt: skip
    if results.get("export"):
        console.print(table)
    if results.get("purge"):
        table = Table("purge of half the largest device", "req/s", "p50 ms", "p99 ms", "errors")
        for name in ("callbacks alone", "callbacks during the purge"):
            r = results["purge"][name]
            table.add_row(name, f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                          str(r["errors"] + r["non_2xx"]))  # fmt: skip
        console.print(table)
        p = results["purge"]["purge"]
        console.print(f"purged {p['messages']:,} messages in {p['seconds']} s ({p['messages_per_s']:,}/s)")
    if "burst" in results["ingest"]:
        b = results["ingest"]["burst"]
        console.print(f"burst: {b['callbacks']:,} callbacks over {b['connections']} connections in {b['seconds']} s, "
                      f"slowest answer {b['max_ms']:.0f} ms, stored exactly once: {b['stored_once']}")  # fmt: skip
    for name, ratio in results["ingest"].items():
        if name.endswith("writer process vs thread"):
            console.print(f"{name}: {ratio:.2f}x")
    if "single vs bare ASGI" in results["ingest"]:
        console.print(
            f"single callbacks at {results['ingest']['single vs bare ASGI']:.0%} of the bare ASGI app"
        )
    if "single vs http stack" in results["ingest"]:
        console.print(
            f"single callbacks at {results['ingest']['single vs http stack']:.0%} of the HTTP-stack limit"
        )
    if results.get("server_peak_rss_mb"):
        console.print(f"server peak RSS {results['server_peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
