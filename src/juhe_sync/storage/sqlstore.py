"""The store: durable storage of devices, journal, contacts, rooms and messages, in SQL.

One class holds everything both backends share, written over two primitives that each backend
provides: ``submit(fn)`` runs ``fn(conn)`` in a write transaction and resolves after a durable
commit (SQLite: one writer thread with group commit; PostgreSQL: writer threads per device), and
``read(fn)`` runs ``fn(conn)`` on a read connection. Callers use this class and never learn which
backend they have.
"""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from juhe_sync.errors import InvalidParams, StorageError
from juhe_sync.records import (
    Around,
    Device,
    Event,
    IngestOutcome,
    MessageQuery,
    Page,
    ProgressFn,
    ReplayStats,
    TokenRecord,
)
from juhe_sync.storage import browse, journal, pulls, reads, tokens
from juhe_sync.storage.batches import WriteJob, fail, started
from juhe_sync.storage.ingest_process import IngestProcess
from juhe_sync.storage.leases import device_lease
from juhe_sync.storage.sql import Applied
from juhe_sync.storage.writer import Writer
from juhe_sync.timeutil import now_seconds

T = TypeVar("T")


class SQLStore(abc.ABC):
    """``submit_event`` resolves its future only after the transaction holding the event is durably
    committed. Reads are plain blocking calls, safe from any thread."""

    url: str
    writer: Writer
    #: The child process that writes callbacks (JUHE_SYNC_CALLBACK_WRITER_PROCESS), if any.
    callback_writer: IngestProcess | None = None
    #: Set by close(): no more writes.
    _closed: bool = False
    #: Where a write transaction's metrics go (a child process sends them to its parent).
    record_batch: Callable[[int, float | None, float | None], None]
    #: A column (``{}``) matching a lower-cased LIKE pattern (``?``), case-insensitively for every
    #: alphabet. SQLite's own LIKE folds ASCII only: for other keywords SQLite lower-cases the
    #: column with Python's rules (a function call per row, so only when the keyword needs it).
    contains = "{} LIKE ? ESCAPE '\\'"
    contains_unicode = "py_lower({}) LIKE ? ESCAPE '\\'"

    def write_now(self, jobs: list[WriteJob]) -> None:
        """Run ``jobs`` in one write transaction in the calling thread, then settle their futures
        (jobs whose futures were cancelled are left out). For the callback writer process, whose
        one thread receives, writes and answers without handing each callback to another."""
        jobs = started(jobs)
        if jobs and self._closed:
            fail(jobs, StorageError("the store is closed"))
        elif jobs:
            self._write_now(jobs)

    @abc.abstractmethod
    def _write_now(self, jobs: list[WriteJob]) -> None:
        """:meth:`write_now` for jobs marked running, on an open store."""

    @abc.abstractmethod
    def submit(self, fn: Callable[[Any], T], lock_key: str | None = None) -> Future[T]:
        """Run ``fn(conn)`` in a write transaction; resolve after a durable commit.

        ``lock_key`` (a device GUID) names what the job writes; backends with concurrent writers
        serialise jobs of the same key and take keys in one global order, so they never deadlock.
        """

    #: The null-safe inequality of the dialect.
    distinct = "IS NOT"

    @abc.abstractmethod
    def schema(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Every table: (its columns in order, its primary key columns)."""

    @abc.abstractmethod
    def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` on a read connection."""

    @abc.abstractmethod
    def search_messages(self, conn: Any, query: MessageQuery, conversation_id: int | None) -> Page:
        """Messages matching ``query.keyword``, from the backend's search index."""

    @abc.abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def ingest(self, event: Event, raw: str, received_at: int) -> IngestOutcome:
        return self.submit_event(event, raw, received_at).result()

    def after_copy(self) -> None:  # noqa: B027 (a hook: most backends need nothing)
        """Hook for backends that must catch up after rows were inserted with explicit ids."""

    def set_retention(self, seconds: int | None) -> None:
        """Refuse messages sent more than ``seconds`` ago (None: keep everything)."""
        self.writer.retention = seconds
        if self.callback_writer is not None:
            self.callback_writer.set_retention(seconds)

    def submit_event(self, event: Event, raw: str, received_at: int) -> Future[IngestOutcome]:
        if self.callback_writer is not None:
            return self.callback_writer.submit(event, raw, received_at)
        return self.submit(self.ingest_job(event, raw, received_at), event.guid)

    def ingest_job(self, event: Event, raw: str, received_at: int) -> journal.IngestJob:
        """The write job of a callback (its lock key is ``event.guid``). Normalising happens here,
        in the caller's thread, so the writer (the one serial part of ingest) only runs
        statements; it normalises again only if the device changed meanwhile."""
        prepared = self.writer.prepare_hinted(event, received_at)
        return journal.IngestJob(self.writer, event, raw, received_at, prepared)

    # --- pull sync -------------------------------------------------------------------------

    def pull_write(self, guid: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` (a page of pulled rows and its position) in a write transaction."""

        def job(conn: Any) -> T:
            # Pulls recount contacts and rooms from the rows and may change the device row: make
            # the transaction's pending counters real first, and read devices again afterwards.
            self.writer.flush_counters(conn)
            try:
                return fn(conn)
            finally:
                self.writer.forget_devices()

        return self.submit(job, guid).result()

    def ensure_device(self, guid: str) -> Device:
        """The device, created as a callback would have if nothing was seen of it yet."""
        self.pull_write(guid, lambda conn: self.writer.ensure_device(conn, guid, now_seconds()))
        device = self.device(guid)
        assert device is not None
        return device

    def apply_pulled_messages(self, conn: Any, guid: str, items: list[Any], received_at: int) -> Applied:
        """Inside :meth:`pull_write`: store messages fetched by pull sync (deduped like any message)."""
        return self.writer.apply_pulled_messages(conn, guid, items, received_at)

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()

        def run(conn: Any) -> bool:
            row = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.owner = excluded.owner RETURNING owner",
                (name, owner, now + ttl, now),
            ).fetchone()
            return row is not None

        return self.submit(run).result()

    def release_lease(self, name: str, owner: str) -> None:
        self.submit(
            lambda conn: conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
        ).result()

    def create_token(
        self, name: str, token_hash: bytes, guids: list[str] | None, admin: bool
    ) -> TokenRecord | None:
        return self.submit(lambda c: tokens.create(c, name, token_hash, guids, admin)).result()

    def token_by_hash(self, token_hash: bytes) -> tuple[TokenRecord, bytes] | None:
        return self.read(lambda c: tokens.by_hash(c, token_hash))

    def list_tokens(self) -> list[TokenRecord]:
        return self.read(tokens.listing)

    def count_tokens(self) -> int:
        return self.read(tokens.count)

    def revoke_token(self, name: str) -> bool:
        return self.submit(lambda c: tokens.revoke(c, name)).result()

    def touch_token(self, name: str, when: str) -> None:
        self.submit(lambda c: tokens.touch(c, name, when)).result()

    def mark_verified(self, guid: str) -> None:
        self.submit(lambda c: tokens.mark_verified(c, guid), guid).result()

    def verified_guids(self) -> list[str]:
        return self.read(tokens.verified_guids)

    def failed_events(self, device_id: int | None = None) -> int:
        """Journal entries (of one device, or of all) that could not be applied (``replay`` retries
        them). Counted from a partial index that holds only those."""
        sql = "SELECT count(*) FROM journal WHERE status <> 'ok'"
        params: tuple[Any, ...] = ()
        if device_id is not None:
            sql, params = "SELECT count(*) FROM journal WHERE status <> 'ok' AND device_id = ?", (device_id,)
        return int(self.read(lambda c: c.execute(sql, params).fetchone()[0]))

    def ping(self) -> None:
        """A trivial read: raises if the database does not answer."""
        self.read(lambda c: c.execute("SELECT 1").fetchone())

    def device_ids(self) -> list[tuple[int, str]]:
        return self.read(
            lambda c: [
                (int(r[0]), r[1]) for r in c.execute("SELECT id, guid FROM devices ORDER BY id").fetchall()
            ]
        )

    def replay(self, guid: str | None = None, progress: ProgressFn | None = None) -> ReplayStats:
        """Replay every device's journal, each under that device's work lease."""
        if guid is not None:
            found = self.device(guid)
            if found is None:
                raise InvalidParams(f"unknown device {guid}")
            devices = [(found.id, found.guid)]
        else:
            devices = self.device_ids()
        stats = ReplayStats()
        for device_id, device_guid in devices:
            with device_lease(self, device_id, "replay"):
                self._replay_device(device_id, device_guid, stats, progress)
        return stats

    def _replay_device(
        self, device_id: int, guid: str, stats: ReplayStats, progress: ProgressFn | None
    ) -> None:
        after = 0
        while True:
            last, done = self.submit(functools.partial(self._replay_chunk, after, device_id), guid).result()
            if last is None:
                return
            after = last
            for _, applied in done:
                stats.events += 1
                if applied is None:
                    stats.failed += 1
                elif isinstance(applied, str):
                    stats.mismatched += 1
                else:
                    stats.messages_added += applied.messages_added
                    stats.messages_changed += applied.messages_changed
            if progress is not None:
                progress(len(done))

    def _replay_chunk(self, after: int, device_id: int, conn: Any) -> tuple[int | None, list[Any]]:
        return journal.replay_chunk(self.writer, conn, after, device_id, 200)

    def journal_size(self, guid: str | None = None) -> int:
        if guid is None:
            return int(self.read(lambda c: c.execute("SELECT count(*) FROM journal").fetchone()[0]))
        return int(
            self.read(
                lambda c: c.execute(
                    "SELECT count(*) FROM journal j JOIN devices d ON d.id = j.device_id WHERE d.guid = ?",
                    (guid,),
                ).fetchone()[0]
            )
        )

    def device(self, guid: str) -> Device | None:
        return self.read(lambda c: reads.device(c, guid))

    def contacts(
        self, device_id: int, keyword: str | None, offset: int, limit: int, after: str | None = None
    ) -> Page:
        contains = self._contains(keyword)
        return self.read(lambda c: reads.contacts(c, device_id, keyword, offset, limit, contains, after))

    def room_members(
        self, device_id: int, room_id: str, offset: int, limit: int, after: str | None = None
    ) -> Page | None:
        return self.read(lambda c: reads.room_members(c, device_id, room_id, offset, limit, after))

    def sync_states(self, device_id: int) -> list[dict[str, Any]]:
        return self.read(lambda c: pulls.sync_states(c, device_id))

    def _contains(self, keyword: str | None) -> str:
        """The substring match for ``keyword``: plain LIKE when ASCII case folding is enough."""
        return self.contains if keyword is None or _ascii_folds(keyword) else self.contains_unicode

    def devices(
        self, guids: frozenset[str] | None, offset: int, limit: int, after: str | None = None
    ) -> Page:
        return self.read(lambda c: browse.devices(c, guids, offset, limit, after))

    def conversations(
        self,
        device_id: int,
        keyword: str | None,
        kind: str | None,
        offset: int,
        limit: int,
        after: int | None,
    ) -> Page:
        contains = self._contains(keyword)
        return self.read(
            lambda c: browse.conversations(
                c,
                device_id,
                keyword=keyword,
                kind=kind,
                offset=offset,
                limit=limit,
                contains=contains,
                after=after,
            )
        )

    def messages_around(
        self, device_id: int, message_id: str, conversation: str | None, limit: int
    ) -> Around | None:
        """The page of ``limit`` messages centred on ``message_id`` in its conversation; None when
        the device has no such message (in ``conversation``, when given)."""

        def run(conn: Any) -> Around | None:
            found = browse.find_message(conn, device_id, message_id, conversation)
            if found is None:
                return None
            conv = reads.conversation_id(conn, device_id, found[1])
            assert conv is not None
            ids, older, newer = browse.around(conn, conv[0], found[0], limit)
            return Around(found[1], conv[1], ids, reads.message_rows(conn, ids, True), older, newer)

        return self.read(run)

    def rooms(self, device_id: int, offset: int, limit: int, after: str | None = None) -> Page:
        return self.read(lambda c: reads.rooms(c, device_id, offset, limit, after))

    def messages(self, query: MessageQuery) -> Page:
        def run(conn: Any) -> Page:
            if not query.keyword:
                return reads.messages_plain(conn, query)
            conv_id: int | None = None
            if query.conversation is not None:
                conv = reads.conversation_id(conn, query.device_id, query.conversation)
                if conv is None:
                    return Page([], 0)
                conv_id = conv[0]
            return self.search_messages(conn, query, conv_id)

        return self.read(run)

    def contact(self, device_id: int, user_id: str) -> dict[str, Any] | None:
        """One contact (deleted ones flagged) with its private chat's counters; None if unknown."""
        return self.read(lambda c: browse.contact(c, device_id, user_id))

    def display_names(self, device_id: int, keys: list[str]) -> dict[str, str]:
        """Contact and room names of conversation keys (``S:<user_id>``, ``R:<room_id>``) that have one."""
        return self.read(lambda c: browse.display_names(c, device_id, keys))


def _ascii_folds(keyword: str) -> bool:
    """Whether LIKE's own ASCII case folding finds every match: no character of the keyword has
    a case outside ASCII (Chinese has none; ``ä`` does)."""
    return all(ch.isascii() or ch.lower() == ch.upper() for ch in keyword)
