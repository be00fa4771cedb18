"""When the database fails: transient errors are retried whole and invisibly, a failing batch is
rolled back whole (nothing half-stored, every caller told), and the next batch works."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from juhe_sync.errors import StorageError, StorageUnavailable
from juhe_sync.service.stores import open_store
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import GUID, PG_URL, fixture_text, fresh_database
from tests.helpers import feed
from tests.integration.test_store_ingest import _event


def lease_count(store: SQLStore) -> int:
    return int(store.read(lambda c: c.execute("SELECT count(*) FROM leases").fetchone()[0]))


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
@pytest.mark.parametrize("error", ["SerializationFailure", "DeadlockDetected"])
def test_postgres_retries_a_batch_after_a_transient_error(tmp_path: Path, error: str) -> None:
    from psycopg import errors as pg_errors

    with fresh_database("postgresql", tmp_path) as url:
        store = open_store(url)
        store.migrate()
        try:
            calls = {"n": 0}

            def flaky(conn: object) -> str:
                calls["n"] += 1
                conn.execute("INSERT INTO leases (name, owner, expires_at) VALUES ('flaky', 'x', 0)")  # type: ignore[attr-defined]
                if calls["n"] < 3:
                    raise getattr(pg_errors, error)("simulated")
                return "ok"

            assert store.submit(flaky).result(timeout=30) == "ok"
            assert calls["n"] == 3 and lease_count(store) == 1  # retried whole: inserted once

            def always(conn: object) -> None:
                raise pg_errors.SerializationFailure("never goes away")

            # Still transient after every retry: "try again shortly" (503), not "cannot store" (500).
            with pytest.raises(StorageUnavailable):
                store.submit(always).result(timeout=60)
            assert feed(store, fixture_text("callback_11010_text_room.json")).status == "stored"
        finally:
            store.close()


def test_sqlite_waits_for_a_lock_held_by_another_process(tmp_path: Path) -> None:
    """Another program holding the write lock (a backup, a migration) delays writes; none fails."""
    with fresh_database("sqlite", tmp_path) as url:
        store = open_store(url)
        store.migrate()
        try:
            other = sqlite3.connect(
                str(tmp_path / "juhe-sync.db"), isolation_level=None, check_same_thread=False
            )
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.8, lambda: other.execute("COMMIT")).start()
            started = time.monotonic()
            outcome = feed(store, fixture_text("callback_11010_text_room.json"))
            assert outcome.status == "stored" and time.monotonic() - started >= 0.7
            other.close()
        finally:
            store.close()


def test_a_batch_that_cannot_commit_fails_whole_and_the_next_works(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk or connection failure at commit: every job of the batch fails (its callers answer 500,
    the SaaS redelivers), nothing of it is stored, and the store keeps working."""
    real = store.writer.before_commit

    def broken(conn: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store.writer, "before_commit", broken)
    futures = [store.submit_event(*_event(name)) for name in
               ("callback_11010_text_room.json", "callback_11010_text_private_inbound.json")]  # fmt: skip
    for future in futures:
        with pytest.raises(StorageError):
            future.result(timeout=30)
    assert store.journal_size() == 0 and store.device(GUID) is None
    monkeypatch.setattr(store.writer, "before_commit", real)
    assert [store.submit_event(*_event(n)).result().status for n in
            ("callback_11010_text_room.json", "callback_11010_text_private_inbound.json")] == ["stored", "stored"]  # fmt: skip
    assert store.journal_size() == 2


def test_sqlite_read_connections_stay_bounded_as_threads_come_and_go(tmp_path: Path) -> None:
    """Reads from ever new threads (as a server's thread pool retires and starts them) reuse a
    fixed pool of connections: open files stay flat."""
    import os

    from juhe_sync.storage.sqlite import READERS

    store = open_store(f"sqlite:///{tmp_path / 'readers.db'}")
    store.migrate()
    feed(store, fixture_text("callback_11010_text_room.json"))

    def burst() -> None:
        barrier = threading.Barrier(40)

        def read() -> None:
            barrier.wait()
            for _ in range(5):
                assert store.device(GUID) is not None

        threads = [threading.Thread(target=read) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst()
    files = len(os.listdir("/proc/self/fd"))
    for _ in range(6):
        burst()  # 40 new threads each time
    assert len(os.listdir("/proc/self/fd")) <= files
    assert len(store._readers) <= READERS  # type: ignore[attr-defined]
    store.close()


def test_a_permanent_error_fails_only_its_own_job(store: SQLStore) -> None:
    """A statement that fails the same way every time (here a NOT NULL violation) is not retried and
    does not take the jobs committed with it down (before, PostgreSQL retried the whole batch and
    failed every good callback in it)."""

    def good(conn: Any) -> str:
        conn.execute(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?, 'x', 0)",
            (f"good-{id(conn)}-{time.monotonic_ns()}",),
        )
        return "ok"

    def bad(conn: Any) -> None:
        conn.execute("INSERT INTO leases (name, owner, expires_at) VALUES ('bad', NULL, 0)")  # NOT NULL

    futures = [store.submit(job, "same-device") for job in (good, bad, good, bad, good)]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=30))
        except Exception as exc:
            assert not isinstance(exc, StorageError), exc  # the job's own error, not a failed batch
            outcomes.append("failed")
    assert outcomes == ["ok", "failed", "ok", "failed", "ok"]
    assert lease_count(store) == 3
