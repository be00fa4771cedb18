"""Callbacks written by a child process (JUHE_SYNC_CALLBACK_WRITER_PROCESS), on every backend: the
same rows as the writer threads, exactly once, read-your-writes, and what happens when the child
dies."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import pytest

from juhe_sync import metrics
from juhe_sync.errors import StorageUnavailable
from juhe_sync.ingest.envelope import parse_body
from juhe_sync.records import IngestOutcome, MessageQuery
from juhe_sync.service.stores import open_store
from juhe_sync.storage.ingest_process import RESTART_PAUSE, ProcessOptions
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import GUID, fresh_database
from tests.helpers import feed_fixtures, snapshot

DEVICE = "writer-process-device"


def _open(url: str) -> SQLStore:
    store = open_store(url, process=ProcessOptions())
    store.migrate()
    return store


@pytest.fixture
def child_store(database_url: str) -> Iterator[SQLStore]:
    store = _open(database_url)
    try:
        yield store
    finally:
        store.close()


def _pid(store: SQLStore) -> int:
    assert store.callback_writer is not None and store.callback_writer.pid is not None
    return store.callback_writer.pid


def _callback(n: int, sendtime: int = 1_718_000_000) -> str:
    item = {
        "seq": str(n), "id": str(n), "appinfo": f"writer-process-{n}", "sender": f"78813{n:011d}",
        "receiver": "1688850000000001", "roomid": "0", "sendtime": sendtime + n, "sender_name": "客户",
        "content_type": 2, "referid": "0", "flag": 0, "content": f"第{n}条消息", "at_list": [],
        "quote_content": "", "quote_appinfo": "", "send_flag": 0, "msg_type": 2,
    }  # fmt: skip
    return json.dumps({"guid": DEVICE, "notify_type": 11010, "data": item}, ensure_ascii=False)


def _submit(store: SQLStore, text: str, received_at: int = 1_718_100_000) -> Future[IngestOutcome]:
    return store.submit_event(parse_body(text), text, received_at)


def _stored(store: SQLStore) -> tuple[int, int, int]:
    """(rows, distinct dedup keys, the device's message counter)."""

    def run(conn: Any) -> tuple[int, int, int]:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT m.dedup_key), max(d.messages_count) FROM messages m "
            f"JOIN devices d ON d.id = m.device_id WHERE d.guid = '{DEVICE}'"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2] or 0)

    return store.read(run)


def test_the_child_stores_what_the_writer_thread_stores(
    child_store: SQLStore, database_url: str, tmp_path: Path
) -> None:
    assert _pid(child_store) != os.getpid()
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path / "threads") as url:
        thread_store = open_store(url)
        thread_store.migrate()
        try:
            _same_rows(child_store, thread_store)
        finally:
            thread_store.close()


def _same_rows(child_store: SQLStore, thread_store: SQLStore) -> None:
    assert [o.status for o in feed_fixtures(child_store)] == [o.status for o in feed_fixtures(thread_store)]
    assert snapshot(child_store, GUID) == snapshot(thread_store, GUID)
    # Redelivered, the same events change nothing.
    assert {o.status for o in feed_fixtures(child_store)} == {"duplicate"}
    assert snapshot(child_store, GUID) == snapshot(thread_store, GUID)


def test_concurrent_callbacks_are_stored_once_and_readable_at_once(child_store: SQLStore) -> None:
    bodies = [_callback(n) for n in range(300)]
    futures = [_submit(child_store, body) for body in bodies + bodies[:100]]
    outcomes = [f.result(timeout=60) for f in futures]
    assert sorted(o.status for o in outcomes).count("stored") == 300
    assert [o.status for o in outcomes].count("duplicate") == 100
    # Resolved means committed: the parent's readers see every row right away.
    assert _stored(child_store) == (300, 300, 300)
    device = child_store.device(DEVICE)
    assert device is not None
    page = child_store.messages(MessageQuery(device.id, keyword="第299条", limit=10))
    assert [m["appinfo"] for m in page.items] == ["writer-process-299"]


def test_the_parents_own_writes_take_turns_with_a_flood(child_store: SQLStore) -> None:
    flood = [_submit(child_store, _callback(n)) for n in range(2000)]
    # Jobs of the parent's writer thread (tokens, leases, pull pages) while the child is busy.
    own = [
        child_store.submit(lambda conn, i=i: conn.execute("SELECT 1").fetchone()[0] + i) for i in range(20)
    ]
    assert [f.result(timeout=60) for f in own] == list(range(1, 21))
    assert {f.result(timeout=120).status for f in flood} == {"stored"}
    assert _stored(child_store) == (2000, 2000, 2000)


def test_a_killed_child_fails_what_it_had_and_is_replaced(child_store: SQLStore) -> None:
    bodies = [_callback(n) for n in range(1500)]
    first = _pid(child_store)
    exits = metrics.CALLBACK_WRITER_EXITS._value.get()
    futures = [_submit(child_store, body) for body in bodies]
    futures[0].result(timeout=30)  # the first group is committed, the rest queued in the child
    os.kill(first, signal.SIGKILL)
    wait(futures, timeout=60)
    lost = [f for f in futures if f.exception() is not None]
    assert all(isinstance(f.exception(), StorageUnavailable) for f in lost)
    assert lost, "the child was killed with callbacks in flight"
    assert metrics.CALLBACK_WRITER_EXITS._value.get() == exits + 1
    acknowledged = len(futures) - len(lost)
    assert _stored(child_store)[0] >= acknowledged  # nothing acknowledged is missing
    # The sender retries what was not acknowledged (here: everything); a new child takes it.
    deadline = time.monotonic() + RESTART_PAUSE + 30
    while True:
        try:
            redelivered = [_submit(child_store, body) for body in bodies]
            break
        except StorageUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert {f.result(timeout=60).status for f in redelivered} <= {"stored", "duplicate"}
    assert _pid(child_store) != first
    assert _stored(child_store) == (1500, 1500, 1500)


def test_close_commits_what_was_sent(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = _open(database_url)
    pid = _pid(store)
    futures = [_submit(store, _callback(n)) for n in range(500)]
    caplog.clear()  # what the stop logs (opening may warn of the database's settings)
    with caplog.at_level(logging.WARNING, "juhe_sync.storage"):
        store.close()
    assert {f.result(timeout=0).status for f in futures} == {"stored"}
    assert caplog.records == []  # a clean stop, not "did not stop; killing it"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not a zombie: it was joined
    again = open_store(database_url)
    try:
        assert _stored(again) == (500, 500, 500)
    finally:
        again.close()


def test_the_retention_window_reaches_the_child(child_store: SQLStore) -> None:
    child_store.set_retention(86_400)
    now = int(time.time())
    old = _submit(child_store, _callback(1, sendtime=now - 3 * 86_400), received_at=now).result(timeout=30)
    new = _submit(child_store, _callback(2, sendtime=now - 3_600), received_at=now).result(timeout=30)
    assert (old.status, old.messages_added) == ("stored", 0)
    assert (new.status, new.messages_added) == ("stored", 1)


def test_the_childs_transactions_are_in_the_parents_metrics(child_store: SQLStore) -> None:
    before = metrics.WRITE_BATCH_JOBS._sum.get()
    for future in [_submit(child_store, _callback(n)) for n in range(50)]:
        future.result(timeout=30)
    deadline = time.monotonic() + 10
    while metrics.WRITE_BATCH_JOBS._sum.get() < before + 50:  # the report follows the replies
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _until_stored(store: SQLStore, body: str, seconds: float = 60) -> IngestOutcome:
    """Send ``body`` as a sender would: again after each 503, until it is acknowledged."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _submit(store, body).result(timeout=30)
        except StorageUnavailable:
            assert time.monotonic() < deadline, "never stored"
            time.sleep(0.2)


def test_a_child_that_cannot_start_gets_503_and_a_later_one_takes_over(tmp_path: Path) -> None:
    store = _open(f"sqlite:///{tmp_path / 'juhe-sync.db'}")
    try:
        assert _until_stored(store, _callback(1)).status == "stored"
        lock = tmp_path / "juhe-sync.db-writer.lock"
        lock.unlink()
        lock.mkdir()  # the next child cannot open its writer lock
        os.kill(_pid(store), signal.SIGKILL)
        refused = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # restarts are paced: answered 503, never 500
            try:
                _submit(store, _callback(2)).result(timeout=30)
            except StorageUnavailable:
                refused += 1
            time.sleep(0.1)
        assert refused > 0
        assert (
            metrics.CALLBACK_WRITER_EXITS._value.get() >= 2
        )  # the killed child and one that could not start
        lock.rmdir()
        assert _until_stored(store, _callback(2), 90).status in {"stored", "duplicate"}
        assert _stored(store) == (2, 2, 2)
    finally:
        store.close()


def test_a_child_that_stops_answering_is_replaced(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'juhe-sync.db'}", timeout=0.5, process=ProcessOptions())
    store.migrate()
    try:
        assert _until_stored(store, _callback(1)).status == "stored"
        stuck = _pid(store)
        os.kill(stuck, signal.SIGSTOP)  # alive, answering nothing
        waiting = _submit(store, _callback(2))
        time.sleep(2)  # past HUNG_AFTER storage timeouts
        with pytest.raises(StorageUnavailable):
            _submit(store, _callback(3)).result(timeout=30)
        with pytest.raises(StorageUnavailable):
            waiting.result(timeout=30)
        assert _until_stored(store, _callback(2)).status == "stored"
        assert _pid(store) != stuck
    finally:
        store.close()


def test_a_child_stopped_with_sigterm_commits_what_it_took_and_is_replaced(child_store: SQLStore) -> None:
    """A supervisor's SIGTERM to the whole process group: the child commits and answers what it
    had taken before it exits; that is a stop, not a crash."""
    exits = metrics.CALLBACK_WRITER_EXITS._value.get()
    first = _pid(child_store)
    bodies = [_callback(n) for n in range(1000)]
    futures = [_submit(child_store, body) for body in bodies]
    futures[0].result(timeout=30)
    os.kill(first, signal.SIGTERM)
    wait(futures, timeout=60)
    acknowledged = sum(f.exception() is None for f in futures)
    assert all(isinstance(f.exception(), StorageUnavailable) for f in futures if f.exception() is not None)
    assert _stored(child_store)[0] >= acknowledged > 0
    assert metrics.CALLBACK_WRITER_EXITS._value.get() == exits
    assert {_until_stored(child_store, body).status for body in bodies} <= {"stored", "duplicate"}
    assert _pid(child_store) != first
    assert _stored(child_store) == (1000, 1000, 1000)


def test_a_service_stop_that_signals_the_child_too_says_nothing_wrong(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A supervisor's SIGTERM reaches the whole process group: the child stops on its own as the
    server closes the store. The reply reader and close() both waited for it then, and whichever
    lost the race found no child to wait for and logged that it "did not stop; killing it"."""
    for n in range(8):
        store = _open(f"sqlite:///{tmp_path / f'stop-{n}.db'}")
        assert _submit(store, _callback(n)).result(timeout=30).status == "stored"
        with caplog.at_level(logging.ERROR, "juhe_sync.storage"):
            os.kill(_pid(store), signal.SIGTERM)
            store.close()
    assert caplog.records == []
