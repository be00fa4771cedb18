"""The embedded SQLite backend.

One writer thread owns the only writing connection. Callers hand it ``fn(conn)`` jobs; it drains
whatever is queued, runs the jobs in one ``BEGIN IMMEDIATE`` transaction (callbacks together, see
:mod:`~juhe_sync.storage.ingest_batch`; other jobs each in its own savepoint, so one failing job
never takes the others down), commits once, and only then resolves the jobs' futures. That is group
commit: with ``synchronous=FULL`` in WAL mode every acknowledged callback is on disk, and a burst
of N callbacks costs one fsync instead of N. Reads take one of a fixed pool of connections and
never wait for the writer (WAL).

A server's store hands callbacks to a child process instead, which runs the same writer with an
interpreter lock of its own; both writers then take turns through a lock file (see
:mod:`juhe_sync.storage.ingest_process`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from juhe_sync.errors import StorageError
from juhe_sync.logs import Throttle
from juhe_sync.records import MessageQuery, Page
from juhe_sync.storage import reads, search
from juhe_sync.storage.batches import JobQueue, Outcome, WriteJob, fail, record_batch, settle
from juhe_sync.storage.ingest_batch import run_jobs
from juhe_sync.storage.ingest_process import IngestProcess, ProcessOptions, WriterLock
from juhe_sync.storage.migrations import apply_pending
from juhe_sync.storage.sql import ID_LOW_MASK, ID_SHIFT, Rules, id_range
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.storage.writer import Writer

log = logging.getLogger("juhe_sync.storage")

T = TypeVar("T")

#: Read connections per store: more reads at once wait for one (two cores serve no more anyway).
READERS = 8


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` -> a filesystem path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        raise ValueError(f"not a SQLite URL (sqlite:///path/to/file.db): {url!r}")
    path = url[len(prefix) :].split("?", 1)[0]
    if path in (":memory:", ""):
        raise ValueError("an in-memory SQLite database cannot be shared by the writer and readers")
    return path


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class SQLiteDialect:
    extra_columns: tuple[str, ...] = ()
    bytewise = ""  # BINARY, the default: UTF-8 bytes sort by code point

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def text_index(self, text: str) -> tuple[str, str]:
        return search.text_tokens(text)

    def extra_values(self, device_id: int, conversation_id: int, index: Any | None) -> tuple[Any, ...]:
        return ()

    def message_id_expr(self, conn: Any, sendtime: int) -> tuple[str, int]:
        return "?", self._allocate(conn, sendtime)

    def message_ids(self, conn: Any, sendtimes: list[int]) -> list[tuple[str, int]]:
        # The transaction holds the database's write lock: after the first id of a second, the
        # next ones follow without asking again.
        following: dict[int, int] = {}
        ids: list[tuple[str, int]] = []
        for sendtime in sendtimes:
            message_id = following.get(sendtime)
            if message_id is None:
                message_id = self._allocate(conn, sendtime)
            elif message_id > (sendtime << ID_SHIFT) | ID_LOW_MASK:
                raise OverflowError(f"more than {ID_LOW_MASK + 1} messages in second {sendtime}")
            following[sendtime] = message_id + 1
            ids.append(("?", message_id))
        return ids

    def _allocate(self, conn: Any, sendtime: int) -> int:
        lo = sendtime << ID_SHIFT
        row = conn.execute(
            "SELECT id FROM messages WHERE id <= ? ORDER BY id DESC LIMIT 1", (lo | ID_LOW_MASK,)
        ).fetchone()
        if row is None or row[0] < lo:
            return lo
        if row[0] < lo | ID_LOW_MASK:
            return int(row[0]) + 1
        raise OverflowError(f"more than {ID_LOW_MASK + 1} messages in second {sendtime}")

    # FTS5 flushes its pending index data to disk at every savepoint, and every job (and every
    # ON CONFLICT statement) runs in one: indexing row by row wrote one tiny segment per message.
    # So index operations wait in memory until the batch's jobs are done and are flushed together
    # just before COMMIT, in one pass and in their original order.

    def __init__(self) -> None:
        self.pending: list[tuple[str, tuple[Any, ...]]] = []
        #: Pages of search-index merging owed by the transactions so far (see flush).
        self.merge_owed = 0

    def index_message(
        self, conn: Any, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None:
        self.pending.append(
            (_FTS_INSERT, (message_id, search.meta_tokens(device_id, conversation_id), *index))
        )

    def unindex_message(
        self, conn: Any, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None:
        self.pending.append(
            (_FTS_DELETE, (message_id, search.meta_tokens(device_id, conversation_id), *index))
        )

    def mark(self) -> int:
        return len(self.pending)

    def rollback_to(self, mark: int) -> None:
        del self.pending[mark:]

    def flush(self, conn: Any) -> None:
        # Runs of the same statement go in one executemany, keeping inserts and deletes in order.
        for sql, run in itertools.groupby(self.pending, key=lambda op: op[0]):
            conn.executemany(sql, [params for _, params in run])
        if self.pending:
            # The index does not merge on its own (migration 7). Each transaction that added to it
            # owes about a page of merging per row (what the rows cost on their way up the levels,
            # with room to work off a backlog), at least MERGE_PER_WRITE; once MERGE_STEP pages are
            # owed they are merged, at most MERGE_MOST in one commit (a bulk write's debt is paid
            # over the next ones; what is owed past MERGE_OWED_MOST is forgiven, and a level of 64
            # segments merges at once). Steps much smaller cost more in all: each one rewrites the
            # first page of each of the 16 segments it merges from. Nothing to merge: a no-op.
            owed = min(MERGE_OWED_MOST, self.merge_owed + max(MERGE_PER_WRITE, len(self.pending)))
            step = min(owed, MERGE_MOST) if owed >= MERGE_STEP else 0
            if step:
                conn.execute(_FTS_MERGE, (step,))
            self.merge_owed = owed - step
        self.pending.clear()


_FTS_INSERT = "INSERT INTO message_fts (rowid, meta, uni, bi) VALUES (?, ?, ?, ?)"
_FTS_MERGE = "INSERT INTO message_fts (message_fts, rank) VALUES ('merge', ?)"
#: Pages of search-index merging: the least done at once, the most in one commit, the least owed
#: by each write that indexed rows, and the most owed.
MERGE_STEP = 128
MERGE_MOST = 512
MERGE_PER_WRITE = 8
MERGE_OWED_MOST = 64 * MERGE_MOST
_FTS_DELETE = "INSERT INTO message_fts (message_fts, rowid, meta, uni, bi) VALUES ('delete', ?, ?, ?, ?)"


class SQLiteStore(SQLStore):
    def __init__(
        self,
        url: str,
        rules: Rules,
        *,
        max_batch: int = 256,
        max_readers: int = READERS,
        process: ProcessOptions | None = None,
        lock: WriterLock | None = None,
    ):
        """``process``: write callbacks in a child process; ``lock``: the writer lock of a store
        whose callbacks are written by such a child (the child's own store is given it)."""
        self.url = url
        self.path = sqlite_path(url)
        parent = Path(self.path).parent
        parent.mkdir(parents=True, exist_ok=True)
        self.max_batch = max_batch
        self.dialect = SQLiteDialect()
        self.writer = Writer(self.dialect, rules)
        self._queue = JobQueue("0")
        # A fixed pool of read connections, handed to whichever thread reads. Connections kept per
        # thread piled up as the server's thread pool retired threads and started new ones (each
        # with up to 64 MB of page cache), until the process ran out of file handles.
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._max_readers = max_readers
        self._closed = False
        self._write_failed = Throttle(log)
        self._wconn = self._connect()
        self._writing = threading.Lock()  # the writer thread's, or write_now's caller's, turn
        self.record_batch = record_batch
        self._thread = threading.Thread(target=self._run, name="juhe-sync-sqlite-writer", daemon=True)
        self._thread.start()
        self._lock = lock
        if process is not None:
            self._lock = WriterLock(self.path)
            self.callback_writer = IngestProcess(self, rules, process)

    # --- connections -----------------------------------------------------------------------

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        # The writer's statement cache also holds the multi-row shapes of callbacks written
        # together (see ingest_batch); 128 is the module's default.
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=60,
            cached_statements=128 if readonly else 256,
        )
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.create_function("py_lower", 1, _lower, deterministic=True)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA cache_size = -65536")
        # Statement journals (savepoints, ON CONFLICT) and sorts stay in memory, not temp files.
        conn.execute("PRAGMA temp_store = MEMORY")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        return conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection for the duration of the block: an idle one, a new one while there are
        fewer than ``max_readers``, else the next one returned (LIFO: warm caches stay in use)."""
        if self._closed:
            raise StorageError("the store is closed")
        conn = self._take_reader()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # a read that failed midway must not pin an old snapshot
                conn.rollback()
            self._idle.put(conn)

    def _take_reader(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._readers_lock:
            if len(self._readers) < self._max_readers:
                conn = self._connect(readonly=True)
                self._readers.append(conn)
                return conn
        return self._idle.get()

    # --- the writer ------------------------------------------------------------------------

    def submit(self, fn: Callable[[sqlite3.Connection], T], lock_key: str | None = None) -> Future[T]:
        if self._closed:
            raise StorageError("the store is closed")
        job = WriteJob(fn, lock_key)
        self._queue.put(job)
        return job.future

    def _write_now(self, jobs: list[WriteJob]) -> None:
        with self._writing:
            self._run_batch(jobs)

    def _run(self) -> None:
        while True:
            jobs, stop = self._queue.next_batch(self.max_batch)
            if jobs:
                with self._writing:
                    self._run_batch(jobs)
            if stop:
                break
        with self._writing:
            self._wconn.close()

    def _run_batch(self, jobs: list[WriteJob]) -> None:
        if self._lock is None:
            outcomes = self._transaction(jobs)
        else:
            with self._lock.held():
                outcomes = self._transaction(jobs)
        # After the lock: answering (in a child, sending a reply per job) is no reason to keep
        # the other writer waiting.
        if outcomes is not None:
            settle(outcomes)

    def _transaction(self, jobs: list[WriteJob]) -> list[Outcome] | None:
        """Run the jobs in one transaction: their outcomes once committed, or None (and every
        job failed) if the transaction was not."""
        conn = self._wconn
        outcomes: list[Outcome] = []
        pending = self.dialect.pending
        pending.clear()
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.writer.begin()
            outcomes = run_jobs(conn, self.writer, jobs)
            self.writer.before_commit(conn)
            committing = time.perf_counter()
            conn.execute("COMMIT")
        except Exception as exc:
            self.record_batch(len(jobs), None, None)
            pending.clear()
            # One line, no traceback: a full disk or a broken file is not a bug of ours.
            self._write_failed.log(
                logging.ERROR, "write transaction failed; %d jobs not committed: %s: %s",
                len(jobs), type(exc).__name__, exc,
            )  # fmt: skip
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
            fail(jobs, StorageError("The database could not store this; nothing was stored", logged=True))
            return None
        done = time.perf_counter()
        self.record_batch(len(jobs), done - committing, done - started)
        return outcomes

    # --- Store -----------------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._reader() as conn:
            return fn(conn)

    def migrate(self) -> list[str]:
        return self.submit(lambda conn: apply_pending(conn, "sqlite")).result()

    def schema(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        def run(conn: sqlite3.Connection) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()]  # fmt: skip
            found = {}
            for name in names:
                info = conn.execute(f"PRAGMA table_info({name})").fetchall()
                key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
                found[name] = (tuple(r[1] for r in info), key)
            return found

        return self.read(run)

    def search_messages(self, conn: Any, query: MessageQuery, conversation_id: int | None) -> Page:
        assert query.keyword
        match = search.match_expression(query.device_id, conversation_id, query.keyword)
        lo, hi = id_range(query.start, query.end)
        where, params = "message_fts MATCH ? AND rowid BETWEEN ? AND ?", [match, lo, hi]
        return reads.message_page(conn, "message_fts", "rowid", where, params, query)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.callback_writer is not None:
            self.callback_writer.close()  # first: what it commits may still be waited for
        self._queue.stop()
        self._thread.join()
        if self._lock is not None:
            self._lock.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
