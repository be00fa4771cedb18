"""Callbacks written by a child process, with an interpreter lock of its own.

In one process, the writer threads and the HTTP event loop share one interpreter lock: every
``sqlite3`` or ``psycopg`` call gives it up and waits to take it back, and measured under load the
SQLite writer spent about two thirds of its time waiting so (see BENCHMARKS.md). Here a child
process opens its own store on the same database and runs the same group-committing writer for
callbacks; the parent sends it each parsed event and resolves the callback's future when the child
reports the commit. Everything else the parent writes (pull sync, tokens, leases, retention) stays
on the parent's own writers: the database keeps the two apart as it keeps several processes apart.

On SQLite both writers take an exclusive ``flock`` on ``<database>-writer.lock`` around each
transaction: SQLite would serialise them anyway, but its busy handler polls in sleeps of up to
100 ms, so under a flood of callbacks the parent's occasional job could wait for seconds. The
kernel queues ``flock`` waiters, and drops the lock of a process that dies holding it.

A child that dies (killed, out of memory) fails the callbacks in flight with 503 (nothing
acknowledged, the sender retries; what it committed is found as a duplicate) and is started
again for the next callback.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from juhe_sync import logs, metrics
from juhe_sync.errors import StorageError, StorageUnavailable
from juhe_sync.logs import Throttle
from juhe_sync.records import Event, IngestOutcome
from juhe_sync.storage.sql import Rules

if TYPE_CHECKING:
    from juhe_sync.storage.sqlstore import SQLStore

log = logging.getLogger("juhe_sync.storage")

#: Seconds between two starts of a child that keeps dying (a database it cannot open, say).
RESTART_PAUSE = 1.0
#: Seconds ``close`` waits for the child to commit what it was sent and exit.
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class ProcessOptions:
    """How the child logs (as the parent does, secrets masked), sizes its group commits (SQLite)
    and waits for the database (PostgreSQL)."""

    log_level: str = "INFO"
    log_format: str = "text"
    secrets: list[str] = field(default_factory=list, repr=False)
    max_batch: int = 256
    timeout: float = 30.0


class WriterLock:
    """An exclusive ``flock`` on a file beside the database, taken around each write transaction
    by every writer of a store that has a child (see the module's docstring)."""

    def __init__(self, database_path: str):
        self.path = f"{database_path}-writer.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the interpreter lock
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


# --- the child ----------------------------------------------------------------------------------
#
# Messages to the child: (number, event, raw, received_at) for a callback; (None, "retention",
# seconds) for the retention window; (None, "stop", None) to commit what came before and exit. From the child: ("done", number, outcome, error) after the
# commit; ("batch", jobs, commit seconds, transaction seconds), with None seconds for a failed
# transaction, for the parent's metrics.


def _child(conn: Connection, url: str, rules: Rules, options: ProcessOptions) -> None:
    # Ctrl-C reaches the whole process group; the parent shuts down gracefully and still waits
    # for commits meanwhile, so the child stops when the parent says so (or its pipe closes).
    # SIGTERM keeps its default: it is how multiprocessing ends a child its parent left behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(options.log_level, options.log_format, options.secrets)
    sending = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        # The parent may be gone: what was committed is found as a duplicate when redelivered.
        with sending, contextlib.suppress(OSError, ValueError):
            conn.send(message)

    def done(number: int, future: Future[IngestOutcome]) -> None:
        error = future.exception()
        if error is None:
            send(("done", number, future.result(), None))
            return
        try:
            pickle.dumps(error)
        except Exception:
            error = StorageError(f"{type(error).__name__}: {error}")
        send(("done", number, None, error))

    store = _open(url, rules, options)
    store.record_batch = lambda jobs, commit, total: send(("batch", jobs, commit, total))
    gc.collect()
    gc.freeze()  # as the server does (see web.app.app_from_env)
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the parent closed the pipe (stopping) or died
            number = message[0]
            if number is None:
                if message[1] == "stop":
                    break
                store.writer.retention = message[2]
                continue
            _, event, raw, received_at = message
            try:
                future = store.submit_event(event, raw, received_at)
            except Exception as exc:  # a full queue: answered at once
                send(("done", number, None, exc))
                continue
            future.add_done_callback(functools.partial(done, number))
    finally:
        store.close()  # commits what it was sent before the parent went
        conn.close()


def _open(url: str, rules: Rules, options: ProcessOptions) -> SQLStore:
    """The child's own store on the parent's database (never with a child of its own)."""
    if url.startswith("sqlite:"):
        from juhe_sync.storage.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(url, rules, max_batch=options.max_batch, lock=WriterLock(sqlite_path(url)))
    from juhe_sync.storage.postgres import PostgresStore

    return PostgresStore(url, rules, timeout=options.timeout)


# --- the parent ---------------------------------------------------------------------------------


class IngestProcess:
    """The parent's side: sends callbacks to the child, resolves their futures, restarts it."""

    def __init__(self, store: SQLStore, rules: Rules, options: ProcessOptions):
        self._url = store.url
        self._rules = rules
        self._options = options
        self._retention: int | None = None
        self._numbers = itertools.count()
        self._pending: dict[int, Future[IngestOutcome]] = {}
        self._lock = threading.Lock()  # the pipe and the child's life
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._started = -RESTART_PAUSE
        self._closed = False
        self._died = Throttle(log)
        self.record_batch: Callable[[int, float | None, float | None], None] = store.record_batch
        with self._lock:
            self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent runs threads
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_child, args=(theirs, self._url, self._rules, self._options),
            name="juhe-sync-callback-writer", daemon=True,
        )  # fmt: skip
        proc.start()
        theirs.close()
        self._conn, self._proc, self._started = ours, proc, time.monotonic()
        if self._retention is not None:
            ours.send((None, "retention", self._retention))
        threading.Thread(target=self._read, args=(ours, proc), name="juhe-sync-callback-writer-replies",
                         daemon=True).start()  # fmt: skip

    def set_retention(self, seconds: int | None) -> None:
        with self._lock:
            self._retention = seconds
            if self._conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._conn.send((None, "retention", seconds))

    def submit(self, event: Event, raw: str, received_at: int) -> Future[IngestOutcome]:
        future: Future[IngestOutcome] = Future()
        number = next(self._numbers)
        with self._lock:
            if self._closed:
                raise StorageError("the store is closed")
            if self._conn is None:
                if time.monotonic() - self._started < RESTART_PAUSE:
                    raise StorageUnavailable(
                        "The callback writer is restarting; nothing was stored, send it again", logged=True
                    )
                self._start()
            assert self._conn is not None
            self._pending[number] = future
            try:
                self._conn.send((number, event, raw, received_at))
            except (OSError, ValueError):
                del self._pending[number]
                raise StorageUnavailable(
                    "The callback writer stopped; nothing was stored, send it again", logged=True
                ) from None
        return future

    def _read(self, conn: Connection, proc: multiprocessing.process.BaseProcess) -> None:
        """Replies of one child, until its end of the pipe closes."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "batch":
                self.record_batch(*message[1:])
                continue
            _, number, outcome, error = message
            future = self._pending.pop(number, None)
            if future is None or not future.set_running_or_notify_cancel():
                continue  # timed out and answered 503 already: a redelivery finds it as a duplicate
            if error is None:
                future.set_result(outcome)
            else:
                future.set_exception(error)
        proc.join()
        with self._lock:
            if self._conn is conn:
                self._conn = None
                if not self._closed:
                    metrics.CALLBACK_WRITER_EXITS.inc()
                    self._died.log(logging.ERROR, "the callback writer process exited (code %s); "
                                   "starting another for the next callback", proc.exitcode)  # fmt: skip
            lost = [n for n in self._pending]
            futures = [self._pending.pop(n) for n in lost]
        conn.close()
        for future in futures:
            if future.set_running_or_notify_cancel():
                future.set_exception(StorageUnavailable(
                    "The callback writer stopped before confirming the write; send it again", logged=True
                ))  # fmt: skip

    def close(self) -> None:
        """Let the child commit what it was sent, then stop it."""
        with self._lock:
            self._closed = True
            conn, proc = self._conn, self._proc
            if conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    conn.send((None, "stop", None))
        if proc is None:
            return
        proc.join(STOP_TIMEOUT)  # its replies are read meanwhile; the reader ends at its exit
        if proc.is_alive():
            log.error("the callback writer did not stop in %g s; killing it", STOP_TIMEOUT)
            proc.kill()
            proc.join()
