"""SQL primitives the write path shares: the connection and dialect protocols, the message id
scheme, savepoints and the per-job unit of a group commit.

One SQL implementation for every backend: statements use ``?`` placeholders and the
``ON CONFLICT``/``RETURNING`` forms that SQLite and PostgreSQL share. What differs per backend
(message id allocation, the search index) is passed in as a :class:`Dialect`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from juhe_sync.records import Effects, Event

if TYPE_CHECKING:
    from juhe_sync.storage.writer import Writer


class Conn(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class Rules(Protocol):
    """What storage needs from the ingest rules. The service layer hands them to the store, so that
    storage never imports ``ingest`` (it applies what normalising made, and replays the journal)."""

    def parse(self, raw: str, key: bytes | None = None) -> Event:
        """A journalled body as its event (it was valid when it was stored); ``key``: its key, when
        known (the server's, for the callback writer process: hashing it again was 5% of its time)."""
        ...

    def normalize(self, event: Event, account: str | None, received_at: int, kind: str) -> Effects: ...

    def normalize_pulled(self, items: list[Any], account: str | None, received_at: int) -> Effects:
        """Messages fetched by pull sync."""
        ...


class Dialect(Protocol):
    """What differs per backend in the write path."""

    #: Columns of ``messages`` only this backend has (e.g. PostgreSQL's search grams).
    extra_columns: tuple[str, ...]
    #: What follows a text column to compare it by code point, as Python compares strings.
    bytewise: str

    def text_index(self, text: str) -> Any:
        """What the search index stores for ``text``, wherever it is: pure, computed before the write."""
        ...

    def extra_values(self, device_id: int, conversation_id: int, index: Any | None) -> tuple[Any, ...]: ...

    def message_id_expr(self, conn: Conn, sendtime: int) -> tuple[str, int]:
        """SQL (one ``?`` placeholder) and its parameter for a new message's id in ``sendtime``'s second;
        the insert's ``RETURNING id`` tells the value."""
        ...

    def message_ids(self, conn: Conn, sendtimes: list[int]) -> list[tuple[str, int]]:
        """:meth:`message_id_expr` for several new messages of one statement, in order (the SQL
        is the same for every one of them: one multi-row statement holds them)."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """A lock wait, deadlock or lost connection: retry the transaction, never journal it as failed."""
        ...

    def mark(self) -> int:
        """Position of work the dialect holds back until commit (see :func:`savepoint`)."""
        ...

    def rollback_to(self, mark: int) -> None:
        """Forget held-back work done after ``mark``: its savepoint was rolled back."""
        ...

    def flush(self, conn: Conn) -> None:
        """Write the held-back work, just before the transaction commits."""
        ...

    def index_message(
        self, conn: Conn, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None: ...

    def unindex_message(
        self, conn: Conn, message_id: int, device_id: int, conversation_id: int, index: Any
    ) -> None: ...


#: Message ids are ``sendtime << ID_SHIFT | n``: time-ordered, so a time range is an id range.
ID_SHIFT = 20


ID_LOW_MASK = (1 << ID_SHIFT) - 1


def id_range(start: int | None, end: int | None) -> tuple[int, int]:
    """Inclusive message-id bounds for inclusive second bounds."""
    lo = 0 if start is None else max(start, 0) << ID_SHIFT
    hi = (1 << 62) if end is None else (max(end, -1) << ID_SHIFT) | ID_LOW_MASK
    return lo, hi


@contextmanager
def savepoint(conn: Conn, name: str, writer: Writer) -> Iterator[None]:
    """A savepoint that also rolls back whatever the writer holds back for commit time."""
    mark = writer.mark()
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        writer.rollback_to(mark)
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")


def run_job(
    conn: Conn, writer: Writer, fn: Callable[[Conn], Any], sync: Callable[[], None] | None = None
) -> tuple[Any, BaseException | None]:
    """One job of a write transaction in a savepoint of its own: (result, None) or (None, error).
    A :class:`Recovery` is rolled back and then recovered in the same savepoint. Transient errors
    (lost locks and connections) propagate: the caller retries the whole transaction. ``sync``
    (PostgreSQL pipeline mode) makes the job's queued statements report their errors here."""
    mark = writer.mark()
    conn.execute("SAVEPOINT job")
    try:
        try:
            result = fn(conn)
            if sync is not None:
                sync()
        except Exception as exc:
            # A Recovery raised by the job, or one it offers for an error that surfaced only at the
            # sync (PostgreSQL's pipeline reports a statement's error there, after ``fn`` returned).
            recovery = exc if isinstance(exc, Recovery) else _recovery(fn, exc, writer)
            if recovery is None:
                raise
            _end_aborted(sync)
            conn.execute("ROLLBACK TO SAVEPOINT job")
            writer.rollback_to(mark)
            result = recovery.recover(conn)
        conn.execute("RELEASE SAVEPOINT job")
        if sync is not None:
            sync()
        return result, None
    except Exception as exc:
        if writer.dialect.is_transient(exc):
            raise
        _end_aborted(sync)
        conn.execute("ROLLBACK TO SAVEPOINT job")
        conn.execute("RELEASE SAVEPOINT job")
        if sync is not None:
            sync()
        writer.rollback_to(mark)
        return None, exc


def _recovery(fn: Callable[[Conn], Any], exc: Exception, writer: Writer) -> Recovery | None:
    make = getattr(fn, "recovery", None)
    if make is None or writer.dialect.is_transient(exc):
        return None
    recovery = make(exc)
    return recovery if isinstance(recovery, Recovery) else None


def _end_aborted(sync: Callable[[], None] | None) -> None:
    """In pipeline mode a failed statement aborts the statements queued after it until the next
    sync point: reach it, so that the job's savepoint can be rolled back (its error is known)."""
    if sync is not None:
        with contextlib.suppress(Exception):
            sync()


class Recovery(Exception):
    """A job failed but still has something to commit. The store rolls the job back to its
    savepoint and then runs :meth:`recover` in that savepoint; its result is the job's result."""

    def recover(self, conn: Conn) -> Any:
        raise NotImplementedError


@dataclass(slots=True)
class Prepared:
    """An event normalised ahead of its write transaction, with each message's fingerprint and
    search-index payload. Normalising depends on the device's account and kind, so it is only
    used if the transaction finds them unchanged; otherwise the writer normalises again.
    """

    account: str | None
    kind: str
    effects: Effects
    fingerprints: list[str]
    index: list[Any]


@dataclass(slots=True)
class Applied:
    messages_added: int = 0
    messages_changed: int = 0
    #: Messages not stored because they are older than the device keeps (retention or a purge).
    messages_refused: int = 0
