"""Callbacks written by a child process, with an interpreter lock of its own.

In one process, the writer threads and the HTTP event loop share one interpreter lock: every
``sqlite3`` or ``psycopg`` call gives it up and waits to take it back, and measured under load the
SQLite writer spent about two thirds of its time waiting so (see BENCHMARKS.md). Here a child
process opens its own store on the same database and writes callbacks with one thread: it takes
whatever callbacks the pipe holds, writes them in one transaction (group commit, as the writer
threads do) and answers them in one message; the parent resolves each callback's future then.
Everything else the parent writes (pull sync, tokens, leases, retention) stays on the parent's own
writers: the database keeps the two apart as it keeps several processes apart.

On SQLite both writers take an exclusive ``flock`` on ``<database>-writer.lock`` around each
transaction: SQLite would serialise them anyway, but its busy handler polls in sleeps of up to 100
ms, so under a flood of callbacks the parent's occasional job could wait for seconds. A blocked
``flock`` wakes as soon as the lock is released (the waiters race for it, and with two writers the
one that just released it is busy answering its callbacks), and the kernel drops the lock of a
process that dies holding it.

The parent sends only the body (the child parses it again: cheap, and a string cannot fail to
pickle) from a sender thread of its own, so that neither a large body nor a child that is slow to
read ever blocks the event loop. A child that dies (killed, out of memory), stops answering for
longer than :data:`HUNG_AFTER` times the storage timeout, or cannot start fails the callbacks in
flight with 503 (nothing acknowledged, the sender retries; what it committed is found as a
duplicate) and is started again for a later callback, after a pause that grows while it keeps
failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from juhe_sync import metrics
from juhe_sync.errors import StorageError, StorageUnavailable
from juhe_sync.logs import Throttle
from juhe_sync.records import Event, IngestOutcome
from juhe_sync.storage import ingest_child
from juhe_sync.storage.batches import drain
from juhe_sync.storage.sql import Rules

if TYPE_CHECKING:
    from juhe_sync.storage.sqlstore import SQLStore

log = logging.getLogger("juhe_sync.storage")

#: Seconds before a new child is started after one died; doubled while they keep dying (a
#: database the child cannot open, say), up to :data:`MOST_PAUSE`.
RESTART_PAUSE = 1.0
MOST_PAUSE = 30.0
#: A child whose oldest unanswered callback is older than this many storage timeouts is killed.
HUNG_AFTER = 3
#: Most callbacks sent to the child and not yet answered (as the writer queue's own bound).
MAX_PENDING = 10_000


@dataclass(frozen=True)
class ProcessOptions:
    """How the child logs (as the parent does, secrets masked), sizes its group commits (SQLite)
    and waits for the database (PostgreSQL); the store's factory fills in the last two."""

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


#: Most callbacks the parent sends in one message (a message is pickled and written whole; the
#: messages both ways are described in :mod:`juhe_sync.storage.ingest_child`).
SEND_BATCH = 64


# --- the parent ---------------------------------------------------------------------------------


class IngestProcess:
    """The parent's side: sends callbacks to the child, resolves their futures, restarts it."""

    def __init__(self, store: SQLStore, rules: Rules, options: ProcessOptions):
        self._url = store.url
        self._rules = rules
        self._options = options
        self._retention: int | None = None
        self._numbers = itertools.count()
        #: number -> (future, monotonic time sent); in sending order, so the first is the oldest.
        self._pending: dict[int, tuple[Future[IngestOutcome], float]] = {}
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the child's life: _conn, _proc, _pause, _retry_at
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        #: The thread reading the child's replies: it reaps the child once the pipe closes.
        self._reader: threading.Thread | None = None
        self._pause = RESTART_PAUSE
        self._retry_at = 0.0
        self._closed = False
        self._trouble = Throttle(log)
        self.record_batch: Callable[[int, float | None, float | None], None] = store.record_batch
        self._sender = threading.Thread(
            target=self._send, name="juhe-sync-callback-writer-sender", daemon=True
        )
        self._sender.start()
        with self._lock:
            self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        """Start a child (the caller holds the lock); on failure, leave it to a later callback."""
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent runs threads
        try:
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=ingest_child.run, args=(theirs, self._url, self._rules, self._options),
                name="juhe-sync-callback-writer", daemon=True,
            )  # fmt: skip
            proc.start()
        except Exception as exc:  # no memory or file handles left for a new process
            self._trouble.log(logging.ERROR, "could not start the callback writer process: %s: %s",
                              type(exc).__name__, exc)  # fmt: skip
            self._retry_at = time.monotonic() + self._pause
            self._pause = min(self._pause * 2, MOST_PAUSE)
            return
        theirs.close()
        self._conn, self._proc = ours, proc
        self._reader = threading.Thread(target=self._read, args=(ours, proc), name="juhe-sync-callback-writer-replies",
                                        daemon=True)  # fmt: skip
        self._reader.start()
        if self._retention is not None:
            self._outbox.put((ours, (None, "retention", self._retention)))

    def set_retention(self, seconds: int | None) -> None:
        with self._lock:
            self._retention = seconds
            if self._conn is not None:
                self._outbox.put((self._conn, (None, "retention", seconds)))

    def submit(self, event: Event, raw: str, received_at: int) -> Future[IngestOutcome]:
        future: Future[IngestOutcome] = Future()
        number = next(self._numbers)
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise StorageError("the store is closed")
            if self._conn is None and now >= self._retry_at:
                self._start()
            conn = self._conn
            if conn is None:
                raise StorageUnavailable(
                    "The callback writer is restarting; nothing was stored, send it again", logged=True
                )
            self._check_hung(now)
            if len(self._pending) >= MAX_PENDING:
                raise StorageUnavailable(
                    "The database is falling behind; nothing was stored, try again shortly", logged=True
                )
            self._pending[number] = (future, now)
        self._outbox.put((conn, (number, raw, received_at, event.key)))
        return future

    def _check_hung(self, now: float) -> None:
        """Kill a child that has not answered its oldest callback for far too long (the caller
        holds the lock): its reader then fails what it had, and a new one starts."""
        oldest = next(iter(self._pending.values()), None)
        if oldest is None or now - oldest[1] < HUNG_AFTER * self._options.timeout or self._proc is None:
            return
        self._trouble.log(logging.ERROR, "the callback writer answered nothing for %.0f s; killing it",
                          now - oldest[1])  # fmt: skip
        with contextlib.suppress(Exception):
            self._proc.kill()

    def _send(self) -> None:
        """The sender thread: pickling and writing to the pipe, whatever it takes, happen here.
        What queued up while it wrote goes in one message: one write, one read in the child."""
        while True:
            first = self._outbox.get()
            if first is None:
                return
            queued, done = drain(self._outbox, first, SEND_BATCH, None)
            # In order, each to the child it was meant for (a new one may have started since).
            for conn, run in itertools.groupby(queued, key=lambda item: item[0]):
                self._deliver(conn, [message for _, message in run])
            if done:
                return

    def _deliver(self, conn: Connection, items: list[tuple[Any, ...]]) -> None:
        try:
            conn.send(items)
        except Exception:  # the child died (its reader fails what it had) or is stopping
            self._fail([item[0] for item in items if item[0] is not None])

    def _read(self, conn: Connection, proc: multiprocessing.process.BaseProcess) -> None:
        """Replies of one child, until its end of the pipe closes or a reply cannot be read."""
        try:
            while True:
                _, replies, transactions = conn.recv()
                self._pause = RESTART_PAUSE  # it answers: the next death starts a new count
                for transaction in transactions:
                    self.record_batch(*transaction)
                for number, outcome, error in replies:
                    entry = self._pending.pop(number, None)
                    if entry is None or not entry[0].set_running_or_notify_cancel():
                        continue  # timed out and answered 503 already: a redelivery finds it as a duplicate
                    if error is None:
                        entry[0].set_result(outcome)
                    else:
                        entry[0].set_exception(error)
        except (EOFError, OSError):
            pass
        except Exception as exc:
            self._trouble.log(logging.ERROR, "a reply of the callback writer could not be read (%s: %s); "
                              "restarting it", type(exc).__name__, exc)  # fmt: skip
            with contextlib.suppress(Exception):
                proc.kill()
        proc.join()
        with self._lock:
            if self._conn is conn:
                self._conn = None
                if not self._closed:
                    self._exited(proc.exitcode)
            lost = list(self._pending)
        conn.close()
        self._fail(lost)

    def _exited(self, code: int | None) -> None:
        """Log a child's unexpected exit and pace the next start (the caller holds the lock)."""
        if code == 0:  # stopped, not crashed: a SIGTERM to the whole process group
            log.warning(
                "the callback writer process was stopped (SIGTERM); another starts for a later callback"
            )
            return
        metrics.CALLBACK_WRITER_EXITS.inc()
        self._trouble.log(logging.ERROR, "the callback writer process exited (code %s); starting another "
                          "for a later callback", code)  # fmt: skip
        self._retry_at = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, MOST_PAUSE)

    def _fail(self, numbers: list[int]) -> None:
        for number in numbers:
            entry = self._pending.pop(number, None)
            if entry is not None and entry[0].set_running_or_notify_cancel():
                entry[0].set_exception(StorageUnavailable(
                    "The callback writer stopped before confirming the write; send it again", logged=True
                ))  # fmt: skip

    def close(self) -> None:
        """Let the child commit what it was sent, then stop it."""
        with self._lock:
            self._closed = True
            conn, proc, reader = self._conn, self._proc, self._reader
            if conn is not None:
                self._outbox.put((conn, (None, "stop", None)))
        self._outbox.put(None)
        wait = self._options.timeout + 5  # its last transaction, then its exit
        deadline = time.monotonic() + wait
        # The sender may be blocked on a full pipe while the child writes: bounded, like the rest.
        self._sender.join(wait)
        if proc is None or reader is None:
            return
        # The reader takes the last replies and then reaps the child. (Joining the child here too
        # raced with it: whichever thread lost found no child to wait for and took it as alive.)
        reader.join(max(0.0, deadline - time.monotonic()))
        if reader.is_alive():
            log.error("the callback writer did not stop in %g s; killing it", wait)
            proc.kill()  # the sender's write to it fails, and what it held gets 503
            reader.join()
        self._sender.join(5)
