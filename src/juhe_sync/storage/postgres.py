"""The PostgreSQL backend (psycopg 3 with a connection pool).

Several writer threads, each with its own queue and connection, drain what is queued into one
transaction (group commit, as on SQLite); a device's jobs always go to the same writer. Concurrent processes are safe because every
write is idempotent in the database itself: unique keys with ``ON CONFLICT``, counters updated in
place under the row lock. A batch that hits a deadlock, a serialisation failure or a dropped
connection is retried whole; the journal's unique event key makes a retry of an already committed
batch a no-op.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from juhe_sync import metrics
from juhe_sync.backoff import Backoff
from juhe_sync.errors import StorageError, StorageUnavailable
from juhe_sync.logs import Throttle
from juhe_sync.records import MessageQuery, Page
from juhe_sync.storage import pgsearch, search
from juhe_sync.storage.batches import JobQueue, Outcome, WriteJob, fail, record_batch, settle
from juhe_sync.storage.ingest_batch import run_jobs
from juhe_sync.storage.ingest_process import IngestProcess, ProcessOptions
from juhe_sync.storage.migrations import STRAY_DEVICE_GRAMS, apply_pending
from juhe_sync.storage.pgconn import (
    CLOSE_WAIT,
    CONNECT_TIMEOUT,
    GRACE,
    READ_WAIT,
    STATEMENT_TIMEOUT,
    PgConn,
    connect_options,
    is_transient,
)
from juhe_sync.storage.sql import ID_LOW_MASK, ID_SHIFT, Rules
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.storage.watchdog import Watchdog
from juhe_sync.storage.writer import Writer

log = logging.getLogger("juhe_sync.storage")

T = TypeVar("T")
#: Held while migrating, so that processes starting together migrate one at a time.
_MIGRATION_LOCK = 7_260_415
#: First key of the two-key advisory locks that serialise writes per device.
_DEVICE_LOCK_SPACE = 7_260_416


class PostgresDialect:
    extra_columns: tuple[str, ...] = ("grams",)
    bytewise = ' COLLATE "C"'  # the database's own collation may sort by language

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def mark(self) -> int:
        return 0  # nothing is held back: grams are written with their rows

    def rollback_to(self, mark: int) -> None:
        pass

    def flush(self, conn: Any) -> None:
        pass

    def text_index(self, text: str) -> list[int]:
        return search.text_grams(text)

    def extra_values(self, device_id: int, conversation_id: int, index: Any | None) -> tuple[Any, ...]:
        return (None if index is None else search.scoped_grams(index, device_id, conversation_id),)

    # The low bits come from a shared sequence inside the insert itself: no round trip of its own.
    _ID_SQL = f"(?::bigint | (nextval('message_id_low') & {ID_LOW_MASK}))"

    def message_id_expr(self, conn: Any, sendtime: int) -> tuple[str, int]:
        return self._ID_SQL, sendtime << ID_SHIFT

    def message_ids(self, conn: Any, sendtimes: list[int]) -> list[tuple[str, int]]:
        return [(self._ID_SQL, sendtime << ID_SHIFT) for sendtime in sendtimes]

    def index_message(
        self, conn: Any, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None:
        """The grams column is written with the row."""

    def unindex_message(
        self, conn: Any, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None:
        """Deleting the row removes its grams."""


class PostgresStore(SQLStore):
    contains = contains_unicode = "{} ILIKE ? ESCAPE '\\'"
    distinct = "IS DISTINCT FROM"

    def __init__(
        self,
        url: str,
        rules: Rules,
        *,
        writers: int = 4,
        max_batch: int = 256,
        pool_size: int = 10,
        timeout: float = 30.0,
        process: ProcessOptions | None = None,
    ):
        """``process``: write callbacks in a child process (its own store on the same database)."""
        self.url = url
        self.conninfo = url.replace("postgresql+psycopg://", "postgresql://")
        self.options = connect_options(self.conninfo)
        self.timeout = timeout
        self.watchdog = Watchdog("juhe-sync-pg")
        self.max_batch = max_batch
        self.writer = Writer(PostgresDialect(), rules)
        # One queue per writer; a device's jobs always go to the same one (by its lock key), so they
        # gather into that writer's batches instead of queueing for the device's advisory lock
        # behind the other writers. Jobs without a key are spread round-robin.
        self._queues = [JobQueue(str(i)) for i in range(writers)]
        self._next_queue = itertools.count()
        self._closed = False
        self._retrying, self._write_failed, self._read_failed = Throttle(log), Throttle(log), Throttle(log)
        # A database that is away must cost seconds, not minutes: connections give up after
        # CONNECT_TIMEOUT, notice a dead peer through TCP keepalives, statements end after
        # STATEMENT_TIMEOUT, a pooled connection is checked before it is handed out, and a read
        # waits at most READ_WAIT for one (then 503, and the client tries again).
        self.pool = ConnectionPool(
            self.conninfo, min_size=1, max_size=pool_size,
            kwargs={"autocommit": True, **connect_options(self.conninfo, timeout)},
            open=True, timeout=READ_WAIT, check=self._check, reconnect_timeout=READ_WAIT,
        )  # fmt: skip
        self.record_batch = record_batch
        #: write_now's connection (its callers take turns), opened on first use.
        self._direct: psycopg.Connection[Any] | None = None
        self._direct_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"juhe-sync-pg-writer-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()
        if process is not None:
            self.callback_writer = IngestProcess(self, rules, process)

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check of a connection before handing it out, which a frozen server would
        otherwise hold forever."""
        with self.watchdog.watch(conn.fileno(), CONNECT_TIMEOUT, "a pooled connection's check"):
            ConnectionPool.check_connection(conn)

    # --- writes ----------------------------------------------------------------------------

    def submit(self, fn: Callable[[Any], T], lock_key: str | None = None) -> Future[T]:
        if self._closed:
            raise StorageError("the store is closed")
        job = WriteJob(fn, lock_key)
        if lock_key is None:
            index = next(self._next_queue) % len(self._queues)
        else:
            index = zlib.crc32(lock_key.encode("utf-8", "surrogatepass")) % len(self._queues)
        self._queues[index].put(job)
        return job.future

    def _write_now(self, jobs: list[WriteJob]) -> None:
        with self._direct_lock:
            self._direct = self._run_batch(self._direct, jobs)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=False, **self.options)

    def _run(self, jobs_queue: JobQueue) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            jobs, stop = jobs_queue.next_batch(self.max_batch)
            if jobs:
                conn = self._run_batch(conn, jobs)
            if stop:
                break
        if conn is not None:
            conn.close()

    def _run_batch(
        self, conn: psycopg.Connection[Any] | None, jobs: list[WriteJob]
    ) -> psycopg.Connection[Any] | None:
        last_error: BaseException | None = None
        backoff = Backoff(base=0.05, cap=2.0)
        for attempt in range(5):
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                outcomes = self._attempt(conn, jobs)
            except Exception as exc:
                last_error = exc
                if not is_transient(exc):
                    break
                metrics.WRITE_RETRIES.inc()
                self._retrying.log(
                    logging.WARNING, "write batch attempt %d failed (%s); retrying", attempt + 1, exc
                )
                self._rollback(conn)
                time.sleep(backoff.next())
                continue
            settle(outcomes)
            return conn
        self.record_batch(len(jobs), None, None)
        self._write_failed.log(logging.ERROR, "write batch of %d jobs failed: %s", len(jobs), last_error)
        self._rollback(conn)
        # The client learns that nothing was stored (and retries); the database's text stays here.
        if last_error is not None and is_transient(last_error):
            fail(
                jobs,
                StorageUnavailable(
                    "The database is not answering; nothing was stored, try again shortly", logged=True
                ),
            )
        else:
            fail(jobs, StorageError("The database could not store this; nothing was stored", logged=True))
        return conn

    def _rollback(self, conn: psycopg.Connection[Any] | None) -> None:
        if conn is None or conn.closed:
            return
        try:
            with self.watchdog.watch(conn.fileno(), CONNECT_TIMEOUT, "a rollback"):
                conn.rollback()
        except (psycopg.Error, OSError):
            conn.close()

    def _attempt(self, raw: psycopg.Connection[Any], jobs: list[WriteJob]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # Pipeline mode: statements whose results nobody reads (savepoints, counter updates) travel
        # with the next one that is read, instead of costing a round trip each. Each job ends with a
        # sync, so an error in any of its statements surfaces inside that job, and only that job's
        # savepoint is rolled back.
        started = time.perf_counter()
        with self.watchdog.watch(raw.fileno(), STATEMENT_TIMEOUT + GRACE, "a write transaction") as watch:
            conn = PgConn(raw, watch)
            with raw.pipeline() as pipeline:
                # Every writer, in every process, takes the device locks of a batch in sorted
                # order before touching a row: writes of one device are serialised and batches
                # never deadlock.
                for key in sorted({job.lock_key for job in jobs if job.lock_key is not None}):
                    conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_DEVICE_LOCK_SPACE, key))
                self.writer.begin()
                outcomes = run_jobs(conn, self.writer, jobs, pipeline.sync)
                self.writer.before_commit(conn)
            committing = time.perf_counter()
            watch.rearm()
            raw.commit()
        done = time.perf_counter()
        self.record_batch(len(jobs), done - committing, done - started)
        return outcomes

    # --- reads -----------------------------------------------------------------------------

    def read(self, fn: Callable[[Any], T]) -> T:
        try:
            with (
                self.pool.connection() as raw,
                self.watchdog.watch(raw.fileno(), self.timeout + GRACE, "a read"),
            ):
                return fn(PgConn(raw))
        except (PoolTimeout, psycopg.OperationalError) as exc:
            timed_out = isinstance(exc, psycopg.errors.QueryCanceled)  # the statement timeout
            if isinstance(exc, psycopg.OperationalError) and not (timed_out or is_transient(exc)):
                raise
            metrics.READ_FAILURES.inc()
            self._read_failed.log(
                logging.WARNING, "read failed, the database is not answering: %s", type(exc).__name__
            )
            raise StorageUnavailable(
                "The database is not answering; try again shortly", logged=True
            ) from None

    def migrate(self) -> list[str]:
        # No statement timeout here: a migration may rewrite a large table.
        with psycopg.connect(self.conninfo, autocommit=False, connect_timeout=CONNECT_TIMEOUT) as raw:
            conn = PgConn(raw)
            # Text is compared by code point (the search's regular expressions, COLLATE "C"): in
            # another encoding those comparisons quietly find nothing.
            encoding = raw.info.parameter_status("server_encoding")
            if encoding != "UTF8":
                raise StorageError(
                    f"juhe-sync needs a UTF8 database, and this one is {encoding}: "
                    "create it with ENCODING 'UTF8' (and TEMPLATE template0 if the cluster's default differs)"
                )
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            applied = apply_pending(conn, "postgresql")
            conn.execute("SET LOCAL enable_seqscan = off")  # the index finds them; the table is large
            strays = conn.execute(STRAY_DEVICE_GRAMS).rowcount
            if strays > 0:
                log.warning(
                    "search grams of %d messages written by an earlier release brought up to date", strays
                )
            raw.commit()
            if conn.execute("SHOW autovacuum").fetchone()[0] != "on":
                log.warning(
                    "PostgreSQL's autovacuum is off: every callback updates its conversation's row, and "
                    "without vacuum ingest slows down (to half, measured) and searches grow slower; turn it "
                    "on, or vacuum often (docs/deployment.md)"
                )
        return applied

    def schema(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        def run(conn: Any) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
            columns: dict[str, list[str]] = {}
            for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns c "
                "WHERE table_schema = current_schema() AND EXISTS (SELECT 1 FROM information_schema.tables t "
                "WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE') "
                "ORDER BY table_name, ordinal_position"
            ).fetchall():
                columns.setdefault(table, []).append(column)
            keys: dict[str, list[str]] = {}
            for table, column in conn.execute(
                "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name "
                "AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name "
                "WHERE tc.table_schema = current_schema() AND tc.constraint_type = 'PRIMARY KEY' "
                "ORDER BY tc.table_name, k.ordinal_position"
            ).fetchall():
                keys.setdefault(table, []).append(column)
            return {t: (tuple(c), tuple(keys.get(t, ()))) for t, c in columns.items()}

        return self.read(run)

    def search_messages(self, conn: Any, query: MessageQuery, conversation_id: int | None) -> Page:
        return pgsearch.messages(conn, query, conversation_id)

    def search_plans(self, query: MessageQuery) -> list[str]:
        """EXPLAIN of the statements a keyword search runs (the count and the index's page)."""
        return self.read(lambda c: pgsearch.plans(c, query))

    def after_copy(self) -> None:
        self.submit(reset_sequences).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.callback_writer is not None:
            self.callback_writer.close()  # first: what it commits may still be waited for
        for jobs_queue in self._queues:
            jobs_queue.stop()
        # A writer stuck on a database that stopped answering must not keep the process from
        # exiting: nothing it holds was acknowledged. All of them share one wait.
        until = time.monotonic() + CLOSE_WAIT
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
            if thread.is_alive():
                log.warning("%s still waits for the database; closing without it", thread.name)
        if self._direct_lock.acquire(timeout=CLOSE_WAIT):  # not behind a write that never ends
            if self._direct is not None:
                self._direct.close()
            self._direct_lock.release()
        self.watchdog.close()
        self.pool.close(timeout=CLOSE_WAIT)


def reset_sequences(conn: Any) -> None:
    """Move serial sequences past ids inserted explicitly (by ``copy``)."""
    for table in ("devices", "journal", "conversations"):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )
