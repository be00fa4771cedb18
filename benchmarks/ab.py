"""What a change bought: two checkouts of juhe-sync, alternating, each on its own fresh copy of
one database.

    git worktree add ../juhe-sync-before <commit>
    python benchmarks/ab.py ../juhe-sync-before benchmarks/data/bench-1000000.db --mode single

Every run copies the database twice (a build's migrations then touch only its own copy, so the
earlier build runs on the schema and settings it made), starts a server from each checkout on its
copy with the same settings as ``./dev bench``, warms each up for 3 s (not counted) and runs the
same wrk load against both, each first every other run. Prints each run and the medians. The copy must
be of a database neither build has migrated past the earlier one's schema: ``./dev bench`` migrates
its data file to this checkout's. For PostgreSQL, give a ``postgresql://`` URL: each copy is a
``CREATE DATABASE ... TEMPLATE`` of it, vacuumed and analysed once its build has migrated it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.run import Server, settle_postgres, wrk  # noqa: E402

PATHS = {
    "single": ("/callback", "single"),
    "batch": ("/callback", "batch"),
    "parse": ("/_bench/parse", "single"),
}


def copy_database(source: str, name: str) -> str:
    """A fresh copy of ``source`` (a SQLite file or a PostgreSQL URL): the copy's URL."""
    if source.startswith("postgresql://"):
        import psycopg

        base, _, database = source.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {database}")
        return f"{base}/{name}"
    target = ROOT / "data" / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
        if Path(f"{source}{suffix}").exists() and suffix != "-shm":
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    os.sync()  # the copy's pages reach the disk now, not during the run
    return f"sqlite:///{target}"


def drop_database(url: str) -> None:
    if url.startswith("postgresql://"):
        import psycopg

        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    path = url[len("sqlite:///") :]
    for suffix in ("", "-wal", "-shm", "-writer.lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="checkout of the earlier build")
    parser.add_argument("database", help="SQLite file or PostgreSQL URL to copy for every run")
    parser.add_argument(
        "--after", type=Path, default=ROOT.parent, help="checkout of the later build (this one)"
    )
    parser.add_argument("--mode", choices=sorted(PATHS), default="single")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args()

    path, mode = PATHS[args.mode]
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    sides = [("before", args.before), ("after", args.after)]
    for run in range(1, args.runs + 1):
        for side, checkout in sides if run % 2 else sides[::-1]:  # each goes first every other run
            url = copy_database(args.database, f"ab_{side}")
            env = {"PYTHONPATH": str(checkout.resolve() / "src")}
            try:
                server = Server(url, args.port, ROOT / "data" / f"ab-{side}.log", env)
                try:
                    if url.startswith("postgresql://"):  # after the build's migrations, as autovacuum would
                        settle_postgres(url)
                    wrk(server.base, path, mode, 3, args.connections, f"ab-warm-{side}")
                    result = wrk(server.base, path, mode, args.seconds, args.connections, f"ab-{side}-{run}")
                finally:
                    server.stop()
            finally:
                drop_database(url)
            results[side].append(result)
            print(f"run {run} {side:6}: {result['requests_per_s']:9,.0f} req/s {result['messages_per_s']:9,.0f} "
                  f"msg/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  errors "
                  f"{result['errors'] + result['non_2xx']}", flush=True)  # fmt: skip
            time.sleep(1)
    medians = {side: statistics.median(r["requests_per_s"] for r in runs) for side, runs in results.items()}
    print(f"median req/s: before {medians['before']:,.0f}, after {medians['after']:,.0f} "
          f"({medians['after'] / medians['before']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
