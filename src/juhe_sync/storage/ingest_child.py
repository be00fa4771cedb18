"""The callback writer process itself (see :mod:`juhe_sync.storage.ingest_process` for the
parent's side): one thread that takes whatever callbacks the pipe holds, writes them in one
transaction and answers them in one message."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import select
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from juhe_sync import logs
from juhe_sync.errors import ApiError, StorageError
from juhe_sync.records import IngestOutcome
from juhe_sync.storage.batches import WriteJob
from juhe_sync.storage.sql import Rules

if TYPE_CHECKING:
    from juhe_sync.storage.ingest_process import ProcessOptions
    from juhe_sync.storage.sqlstore import SQLStore

log = logging.getLogger("juhe_sync.storage")

# --- messages ----------------------------------------------------------------------------------
#
# The parent sends lists of items: (number, raw, received_at, event key) for a callback; (None,
# "retention", seconds) for the retention window; (None, "stop", None) to commit what came before
# and exit. The child answers each transaction with ("done", [(number, outcome, error), ...],
# [(jobs, commit seconds, transaction seconds), ...]): the callbacks it settled and, for the
# metrics, the transactions it ran (None seconds for one that failed).
#
# The child has one thread: it takes whatever the pipe holds, parses and normalises it, writes it
# as one transaction and answers it in one message. Handing each callback from a receiving thread
# to a writer thread cost more than the writing: the two took turns at the interpreter lock at
# every statement (see BENCHMARKS.md).


#: Seconds a wait for callbacks sleeps before it looks again whether a SIGTERM came.
STOP_CHECK = 0.5


class _Receiver:
    """The child's end of the pipe, and its SIGTERM: a stop, noticed between transactions, that
    lets the transaction under way commit and be answered."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.stopping = False

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def receive(self, most: int) -> list[tuple[Any, ...]] | None:
        """Wait for items, then take what else the pipe holds (up to about ``most``); None once
        a SIGTERM came or the parent is gone with nothing left to read."""
        items: list[tuple[Any, ...]] = []
        # select() on the pipe itself: Connection.poll builds a selector at every call, and this
        # asks once per callback. A message is read whole, so a readable pipe holds the next one.
        pipe = [self.conn.fileno()]
        try:
            while not select.select(pipe, [], [], STOP_CHECK)[0]:
                if self.stopping:
                    return None
            items.extend(self.conn.recv())
            while len(items) < most and select.select(pipe, [], [], 0)[0]:
                items.extend(self.conn.recv())
        except (EOFError, OSError):
            self.stopping = True  # the parent closed the pipe (stopping) or died
            return items or None  # what came before is still written: nothing is lost
        return items


def run(conn: Connection, url: str, rules: Rules, options: ProcessOptions) -> None:
    # Ctrl-C reaches the whole process group; the parent shuts down gracefully and still waits
    # for commits meanwhile, so the child stops when the parent says so (or its pipe closes).
    # SIGTERM (a supervisor's, or multiprocessing's for a child its parent left behind) stops it
    # too, after committing and answering the transaction under way.
    receiver = _Receiver(conn)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, receiver.stop)
    logs.configure(options.log_level, options.log_format, options.secrets)
    try:
        store = _open(url, rules, options)
    except Exception as exc:  # one line through the configured (masking) logging, no traceback
        log.error("the callback writer process could not open the database: %s: %s", type(exc).__name__, exc)
        os._exit(1)
    transactions: list[tuple[int, float | None, float | None]] = []
    store.record_batch = lambda jobs, commit, total: transactions.append((jobs, commit, total))
    gc.collect()
    gc.freeze()  # as the server does (see web.app.app_from_env)
    try:
        while not receiver.stopping:
            items = receiver.receive(options.max_batch)
            if items is None:
                break
            replies, stop = _write(store, rules, items)
            with contextlib.suppress(OSError, ValueError):  # the parent is gone: what was
                conn.send(("done", replies, transactions))  # committed is a duplicate when redelivered
            transactions.clear()
            if stop:
                break
    finally:
        store.close()
        conn.close()


Reply = tuple[int, IngestOutcome | None, BaseException | None]


def _write(store: SQLStore, rules: Rules, items: list[tuple[Any, ...]]) -> tuple[list[Reply], bool]:
    """Write the callbacks among ``items`` in one transaction: (their replies, whether a stop came)."""
    replies: list[Reply] = []
    jobs: list[tuple[int, WriteJob]] = []
    stop = False
    for item in items:
        number = item[0]
        if number is None:
            if item[1] == "stop":
                stop = True
                break
            store.writer.retention = item[2]
            continue
        _, raw, received_at, key = item
        try:
            event = rules.parse(raw, key)
            jobs.append((number, WriteJob(store.ingest_job(event, raw, received_at), event.guid)))
        except Exception as exc:
            replies.append((number, None, exc if isinstance(exc, ApiError) else StorageError(str(exc))))
    store.write_now([job for _, job in jobs])
    for number, job in jobs:
        error = job.future.exception()
        replies.append((number, None, _portable(error)) if error else (number, job.future.result(), None))
    return replies, stop


def _portable(error: BaseException) -> BaseException:
    """``error``, or a StorageError saying what it was if it cannot be pickled to the parent."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return StorageError(f"{type(error).__name__}: {error}")
    return error


def _open(url: str, rules: Rules, options: ProcessOptions) -> SQLStore:
    """The child's own store on the parent's database (never with a child of its own)."""
    from juhe_sync.storage.ingest_process import WriterLock

    if url.startswith("sqlite:"):
        from juhe_sync.storage.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(url, rules, max_batch=options.max_batch, lock=WriterLock(sqlite_path(url)))
    from juhe_sync.storage.postgres import PostgresStore

    return PostgresStore(url, rules, timeout=options.timeout)
