"""Applying normalised events to the database, inside a transaction owned by the caller.

One SQL implementation for every backend: statements use ``?`` placeholders and the
``ON CONFLICT``/``RETURNING`` forms that SQLite and PostgreSQL share. What differs per backend
(message id allocation, the search index) is passed in as a :class:`Dialect`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Protocol

from juhe_sync.records import Effects, Event, IngestOutcome, MessageRecord
from juhe_sync.timeutil import iso_utc

log = logging.getLogger("juhe_sync.storage")

#: Message ids are ``sendtime << ID_SHIFT | n``: time-ordered, so a time range is an id range.
ID_SHIFT = 20
ID_LOW_MASK = (1 << ID_SHIFT) - 1


class Conn(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class Rules(Protocol):
    """What storage needs from the ingest rules. The service layer hands them to the store, so that
    storage never imports ``ingest`` (it applies what normalising made, and replays the journal)."""

    def parse(self, raw: str) -> Event:
        """A journalled body as its event (it was valid when it was stored)."""
        ...

    def normalize(self, event: Event, account: str | None, received_at: int, kind: str) -> Effects: ...

    def normalize_pulled(self, items: list[Any], account: str | None, received_at: int) -> Effects:
        """Messages fetched by pull sync."""
        ...


class Dialect(Protocol):
    """What differs per backend in the write path."""

    #: Columns of ``messages`` only this backend has (e.g. PostgreSQL's search grams).
    extra_columns: tuple[str, ...]

    def text_index(self, text: str) -> Any:
        """What the search index stores for ``text``, wherever it is: pure, computed before the write."""
        ...

    def extra_values(self, device_id: int, conversation_id: int, index: Any | None) -> tuple[Any, ...]: ...

    def message_id_expr(self, conn: Conn, sendtime: int) -> tuple[str, int]:
        """SQL (one ``?`` placeholder) and its parameter for a new message's id in ``sendtime``'s second;
        the insert's ``RETURNING id`` tells the value."""
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
        except Recovery as recovery:
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
        conn.execute("ROLLBACK TO SAVEPOINT job")
        conn.execute("RELEASE SAVEPOINT job")
        if sync is not None:
            sync()
        writer.rollback_to(mark)
        return None, exc


def fingerprint(record: MessageRecord) -> str:
    """A digest of everything normalisation produced: replay rewrites a row only when it changes."""
    blob = repr(astuple_shallow(record))
    return hashlib.sha1(blob.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def astuple_shallow(record: MessageRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, f.name) for f in fields(record))


class Recovery(Exception):
    """A job failed but still has something to commit. The store rolls the job back to its
    savepoint and then runs :meth:`recover` in that savepoint; its result is the job's result."""

    def recover(self, conn: Conn) -> Any:
        raise NotImplementedError


class _ApplyFailed(Recovery):
    """Applying a journalled event raised: keep the event in the journal as ``failed`` (``replay``
    applies it once the cause is fixed) and acknowledge it."""

    def __init__(self, writer: Writer, event: Event, raw: str, received_at: int, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.writer, self.event, self.raw, self.received_at = writer, event, raw, received_at

    def recover(self, conn: Conn) -> IngestOutcome:
        device_id, _, _ = self.writer.ensure_device(conn, self.event.guid, self.received_at)
        row = conn.execute(
            "INSERT INTO journal (device_id, event_key, notify_type, received_at, body, status, error) "
            "VALUES (?, ?, ?, ?, ?, 'failed', ?) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            (device_id, self.event.key, self.event.notify_type, self.received_at, self.raw, str(self)[:2000]),
        ).fetchone()
        if row is None:
            return IngestOutcome("duplicate")
        self.writer.count(device_id, seen_at=iso_utc(self.received_at))
        return IngestOutcome("failed", int(row[0]))


class _TxState:
    """What a writer knows inside one transaction: device rows it read (the device's advisory lock
    or SQLite's write lock keeps them unchanged by others), and counter changes it will write once,
    just before commit, instead of once per event."""

    __slots__ = ("deltas", "devices")

    def __init__(self) -> None:
        #: guid -> (id, account, kind)
        self.devices: dict[str, tuple[int, str | None, str]] = {}
        #: device id -> [messages, rooms, contacts, newest last_callback_time]
        self.deltas: dict[int, list[Any]] = {}


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


class Writer:
    """Everything that changes stored state goes through here."""

    def __init__(self, dialect: Dialect, rules: Rules):
        self.dialect = dialect
        self.rules = rules
        #: guid -> (account, kind) as the last write transaction saw them: what :meth:`prepare`
        #: outside the transaction should assume.
        self.device_hints: dict[str, tuple[str | None, str]] = {}
        self._tx = threading.local()

    # --- the transaction -------------------------------------------------------------------
    #
    # The stores call begin() when a write transaction starts, mark()/rollback_to() around each
    # job's savepoint, and before_commit() just before COMMIT.

    def begin(self) -> None:
        self._tx.state = _TxState()

    def _state(self) -> _TxState:
        state = getattr(self._tx, "state", None)
        if state is None:
            state = self._tx.state = _TxState()
        return state

    def mark(self) -> tuple[dict[str, Any], dict[int, list[Any]], int]:
        st = self._state()
        return dict(st.devices), {k: list(v) for k, v in st.deltas.items()}, self.dialect.mark()

    def rollback_to(self, mark: tuple[dict[str, Any], dict[int, list[Any]], int]) -> None:
        st = self._state()
        st.devices, st.deltas = dict(mark[0]), {k: list(v) for k, v in mark[1].items()}
        self.dialect.rollback_to(mark[2])

    def count(self, device_id: int, messages: int = 0, rooms: int = 0, contacts: int = 0,
              seen_at: str | None = None) -> None:  # fmt: skip
        """Add to a device's counters (and its last callback time) at commit."""
        delta = self._state().deltas.setdefault(device_id, [0, 0, 0, None])
        delta[0] += messages
        delta[1] += rooms
        delta[2] += contacts
        if seen_at is not None and (delta[3] is None or seen_at > delta[3]):
            delta[3] = seen_at

    def flush_counters(self, conn: Conn) -> None:
        """Write pending counter changes now (before anything that recounts from the rows)."""
        st = self._state()
        for device_id, (messages, rooms, contacts, seen_at) in sorted(st.deltas.items()):
            conn.execute(
                "UPDATE devices SET messages_count = messages_count + ?, rooms_count = rooms_count + ?, "
                "contacts_count = contacts_count + ?, last_callback_time = coalesce(?, last_callback_time) "
                "WHERE id = ?",
                (messages, rooms, contacts, seen_at, device_id),
            )
        st.deltas.clear()

    def forget_devices(self) -> None:
        """Device rows may have changed (e.g. a pulled profile): read them again."""
        self._state().devices.clear()

    def before_commit(self, conn: Conn) -> None:
        self.flush_counters(conn)
        self.dialect.flush(conn)

    def prepare(self, event: Event, account: str | None, kind: str, received_at: int) -> Prepared:
        """Everything pure about applying ``event``; runs outside the writer (no connection)."""
        return self.prepare_effects(self.rules.normalize(event, account, received_at, kind), account, kind)

    def prepare_effects(self, effects: Effects, account: str | None, kind: str) -> Prepared:
        index = self.dialect.text_index
        return Prepared(
            account,
            kind,
            effects,
            [fingerprint(record) for record in effects.messages],
            [
                None if record.search_text is None else index(record.search_text)
                for record in effects.messages
            ],
        )

    def prepare_hinted(self, event: Event, received_at: int) -> Prepared | None:
        """:meth:`prepare` with the device as last seen, or ``None`` for a new device or on error."""
        hint = self.device_hints.get(event.guid)
        if hint is None:
            return None
        try:
            return self.prepare(event, hint[0], hint[1], received_at)
        except Exception:
            return None  # the writer normalises again, and journals the event as failed if it must

    # --- devices and journal ---------------------------------------------------------------

    def ensure_device(self, conn: Conn, guid: str, now: int) -> tuple[int, str | None, str]:
        """(id, account id, kind) of the device, created on first sight; read once per transaction."""
        devices = self._state().devices
        known = devices.get(guid)
        if known is not None:
            return known
        sql = "SELECT id, account_id, kind FROM devices WHERE guid = ?"
        row = conn.execute(sql, (guid,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO devices (guid, created_at) VALUES (?, ?) ON CONFLICT (guid) DO NOTHING",
                (guid, iso_utc(now)),
            )
            row = conn.execute(sql, (guid,)).fetchone()
        known = devices[guid] = (int(row[0]), row[1], row[2])
        return known

    def ingest(
        self, conn: Conn, event: Event, raw: str, received_at: int, prepared: Prepared | None = None
    ) -> IngestOutcome:
        """Journal ``event`` and apply it. The caller commits; a duplicate changes nothing."""
        device_id, account, kind = self.ensure_device(conn, event.guid, received_at)
        self.device_hints[event.guid] = (account, kind)
        row = conn.execute(
            "INSERT INTO journal (device_id, event_key, notify_type, received_at, body, status) "
            "VALUES (?, ?, ?, ?, ?, 'ok') ON CONFLICT (event_key) DO NOTHING RETURNING id",
            (device_id, event.key, event.notify_type, received_at, raw),
        ).fetchone()
        if row is None:
            return IngestOutcome("duplicate")
        journal_id = int(row[0])
        try:
            if prepared is None or prepared.account != account or prepared.kind != kind:
                prepared = self.prepare(event, account, kind, received_at)
            applied = self.apply(
                conn, device_id, prepared, journal_id, replay=False, seen_at=iso_utc(received_at)
            )
        except Exception as exc:
            if self.dialect.is_transient(exc):
                raise
            log.exception("callback %s of %s not applied; journalled as failed", journal_id, event.guid)
            raise _ApplyFailed(self, event, raw, received_at, exc) from exc
        skipped = prepared.effects.skipped
        if skipped:
            # Items of a batch that are not messages (not objects, or missing what every message
            # has): the rest of the batch is stored; the journal keeps them for a later replay.
            log.warning(
                "callback %s of %s: %d item(s) skipped, not messages", journal_id, event.guid, skipped
            )
        return IngestOutcome("stored", journal_id, applied.messages_added, prepared.effects.pulls, skipped)

    def apply_pulled_messages(self, conn: Conn, guid: str, items: list[Any], received_at: int) -> Applied:
        """Store messages fetched by pull sync; they dedupe against callbacks like any message."""
        device_id, account, kind = self.ensure_device(conn, guid, received_at)
        prepared = self.prepare_effects(
            self.rules.normalize_pulled(items, account, received_at), account, kind
        )
        return self.apply(conn, device_id, prepared, None, replay=False)

    def replay_event(
        self, conn: Conn, journal_id: int, device_id: int, event: Event, received_at: int
    ) -> Applied:
        account, kind = conn.execute(
            "SELECT account_id, kind FROM devices WHERE id = ?", (device_id,)
        ).fetchone()
        prepared = self.prepare(event, account, kind, received_at)
        applied = self.apply(conn, device_id, prepared, journal_id, replay=True)
        conn.execute("UPDATE journal SET status = 'ok', error = NULL WHERE id = ?", (journal_id,))
        return applied

    # --- effects ---------------------------------------------------------------------------

    def apply(
        self,
        conn: Conn,
        device_id: int,
        prepared: Prepared,
        journal_id: int | None,
        *,
        replay: bool,
        seen_at: str | None = None,
    ) -> Applied:
        """Apply normalised effects; ``seen_at`` (live ingest) becomes the device's last callback time."""
        applied = Applied()
        effects = prepared.effects
        if effects.device_kind is not None:
            conn.execute("UPDATE devices SET kind = ? WHERE id = ?", (effects.device_kind, device_id))
            self.forget_devices()
        if effects.device is not None:
            self._apply_device(conn, device_id, effects, replay=replay)
            self.forget_devices()
        for referid in effects.revokes:
            conn.execute(
                "INSERT INTO revocations (device_id, msg_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (device_id, referid),
            )
            conn.execute(
                "UPDATE messages SET revoked = 1 WHERE device_id = ? AND msg_id = ? AND revoked = 0",
                (device_id, referid),
            )
        conversations: dict[str, int] = {}
        conv_delta: dict[int, list[int]] = {}
        for record, fp, index in zip(effects.messages, prepared.fingerprints, prepared.index, strict=True):
            conv_id = conversations.get(record.conversation)
            if conv_id is None:
                conv_id = self._conversation(conn, device_id, record.conversation)
                conversations[record.conversation] = conv_id
            if replay:
                added, changed = self._replace_message(
                    conn, device_id, conv_id, record, fp, index, journal_id, conv_delta
                )
                applied.messages_added += added
                applied.messages_changed += changed
            else:
                message_id = self._insert_message(conn, device_id, conv_id, record, fp, index, journal_id)
                if message_id is not None:
                    applied.messages_added += 1
                    _bump(conv_delta, conv_id, 1, message_id)
        for conv_id, (count, last_id) in conv_delta.items():
            conn.execute(
                "UPDATE conversations SET message_count = message_count + ?, "
                "last_message_id = CASE WHEN last_message_id IS NULL OR last_message_id < ? "
                "THEN ? ELSE last_message_id END WHERE id = ?",
                (count, last_id, last_id, conv_id),
            )
        rooms_added = 0
        for room_id in dict.fromkeys(effects.rooms):
            inserted = conn.execute(
                "INSERT INTO rooms (device_id, room_id) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (device_id, room_id),
            ).fetchone()
            rooms_added += inserted is not None
        contacts_added = 0
        for seen in effects.contacts:
            inserted = conn.execute(
                "INSERT INTO contacts (device_id, user_id, name, type, source, name_seen_at) "
                "VALUES (?, ?, ?, ?, 'message', ?) ON CONFLICT DO NOTHING RETURNING 1",
                (device_id, seen.user_id, seen.name, seen.type, seen.seen_at if seen.name else None),
            ).fetchone()
            if inserted is not None:
                contacts_added += 1
            elif seen.name:
                # The newest name wins (ties: the larger string), so arrival order never matters;
                # a contact filled by pull sync keeps the name the SaaS gave it.
                conn.execute(
                    "UPDATE contacts SET name = ?, name_seen_at = ? WHERE device_id = ? AND user_id = ? "
                    "AND source = 'message' AND (name_seen_at IS NULL OR name_seen_at < ? "
                    "OR (name_seen_at = ? AND name < ?))",
                    (seen.name, seen.seen_at, device_id, seen.user_id, seen.seen_at, seen.seen_at, seen.name),
                )
        if seen_at is not None or applied.messages_added or rooms_added or contacts_added:
            self.count(device_id, applied.messages_added, rooms_added, contacts_added, seen_at)
        return applied

    def _apply_device(self, conn: Conn, device_id: int, effects: Effects, *, replay: bool) -> None:
        update = effects.device
        assert update is not None
        if replay:
            # History must not roll the live state back; only fill an account that was never learnt.
            if update.account_id:
                conn.execute(
                    "UPDATE devices SET account_id = ?, account_name = ?, corp_id = ?, avatar = ? "
                    "WHERE id = ? AND account_id IS NULL",
                    (update.account_id, update.account_name, update.corp_id, update.avatar, device_id),
                )
            return
        if update.account_id:
            conn.execute(
                "UPDATE devices SET state = ?, account_id = ?, account_name = ?, corp_id = ?, avatar = ? "
                "WHERE id = ?",
                (
                    update.state,
                    update.account_id,
                    update.account_name,
                    update.corp_id,
                    update.avatar,
                    device_id,
                ),
            )
        else:
            conn.execute("UPDATE devices SET state = ? WHERE id = ?", (update.state, device_id))

    def _conversation(self, conn: Conn, device_id: int, key: str) -> int:
        row = conn.execute(
            "SELECT id FROM conversations WHERE device_id = ? AND conv_key = ?", (device_id, key)
        ).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO conversations (device_id, conv_key) VALUES (?, ?) "
                "ON CONFLICT (device_id, conv_key) DO UPDATE SET conv_key = excluded.conv_key RETURNING id",
                (device_id, key),
            ).fetchone()
        return int(row[0])

    def _insert_message(
        self,
        conn: Conn,
        device_id: int,
        conv_id: int,
        record: MessageRecord,
        fp: str,
        index: Any | None,
        journal_id: int | None,
        message_id: int | None = None,
    ) -> int | None:
        """Insert unless the device already has this message; returns the new id or ``None``."""
        values = (
            device_id, conv_id, record.dedup_key, record.msg_id, record.seq, record.appinfo,
            record.sender, record.receiver, record.room_id, record.sender_name, record.direction,
            record.msg_type, record.type, record.content, int(record.search_text is not None),
            record.sendtime, record.flag, record.send_flag, record.content_type,
            json.dumps(record.at_list, ensure_ascii=False), record.quote_content, record.quote_appinfo,
            device_id, record.msg_id, journal_id, fp,
            *self.dialect.extra_values(device_id, conv_id, index),
        )  # fmt: skip
        for _ in range(8):
            id_sql, id_param = (
                ("?", message_id)
                if message_id is not None
                else self.dialect.message_id_expr(conn, record.sendtime)
            )
            sql = _insert_message_sql(self.dialect.extra_columns, id_sql)
            row = conn.execute(sql, (id_param, *values)).fetchone()
            if row is not None:
                message_id = int(row[0])
                if index is not None:
                    self.dialect.index_message(conn, message_id, device_id, conv_id, index)
                return message_id
            duplicate = conn.execute(
                "SELECT 1 FROM messages WHERE device_id = ? AND dedup_key = ?", (device_id, record.dedup_key)
            ).fetchone()
            if duplicate is not None:
                return None
            message_id = None  # the time-ordered id was taken by a concurrent writer: draw another
        raise RuntimeError(f"could not allocate a message id for second {record.sendtime}")

    def _replace_message(
        self,
        conn: Conn,
        device_id: int,
        conv_id: int,
        record: MessageRecord,
        fp: str,
        index: Any | None,
        journal_id: int | None,
        conv_delta: dict[int, list[int]],
    ) -> tuple[int, int]:
        """Replay: insert a missing message, or rewrite one whose normalised form changed."""
        old = conn.execute(
            "SELECT id, fingerprint, conversation_id, searchable, content FROM messages "
            "WHERE device_id = ? AND dedup_key = ?",
            (device_id, record.dedup_key),
        ).fetchone()
        if old is None:
            message_id = self._insert_message(conn, device_id, conv_id, record, fp, index, journal_id)
            if message_id is None:
                return 0, 0
            _bump(conv_delta, conv_id, 1, message_id)
            return 1, 0
        old_id, old_fp, old_conv, old_searchable, old_content = old
        if old_fp == fp:
            return 0, 0
        if old_searchable:
            old_index = self.dialect.text_index(old_content)
            self.dialect.unindex_message(conn, old_id, device_id, old_conv, old_index)
        conn.execute("DELETE FROM messages WHERE id = ?", (old_id,))
        conn.execute(
            "UPDATE conversations SET message_count = message_count - 1, last_message_id = "
            "(SELECT max(id) FROM messages WHERE conversation_id = ?) WHERE id = ?",
            (old_conv, old_conv),
        )
        keep_id = old_id if (old_id >> ID_SHIFT) == record.sendtime else None
        message_id = self._insert_message(conn, device_id, conv_id, record, fp, index, journal_id, keep_id)
        assert message_id is not None
        _bump(conv_delta, conv_id, 1, message_id)
        return 0, 1


_MESSAGE_COLUMNS = (
    "id", "device_id", "conversation_id", "dedup_key", "msg_id", "seq", "appinfo", "sender", "receiver",
    "room_id", "sender_name", "direction", "msg_type", "type", "content", "searchable", "sendtime", "flag",
    "send_flag", "content_type", "at_list", "quote_content", "quote_appinfo", "revoked", "journal_id",
    "fingerprint",
)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _insert_message_sql(extra_columns: tuple[str, ...], id_sql: str) -> str:
    """The message INSERT, built once per dialect and id expression rather than per message."""
    columns = _MESSAGE_COLUMNS + extra_columns
    # ``revoked``: a revoke may arrive before its message; the revocation row waits for it.
    marks = [id_sql] + ["?"] * (len(columns) - 1)
    marks[columns.index("revoked")] = "(SELECT count(*) FROM revocations WHERE device_id = ? AND msg_id = ?)"
    return (
        f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )


def _bump(delta: dict[int, list[int]], conv_id: int, count: int, message_id: int) -> None:
    entry = delta.setdefault(conv_id, [0, message_id])
    entry[0] += count
    entry[1] = max(entry[1], message_id)


def replay_chunk(
    writer: Writer, conn: Conn, after_id: int, device_id: int | None, limit: int
) -> tuple[int | None, list[tuple[int, Applied | None]]]:
    """Re-normalise up to ``limit`` journalled events after ``after_id``; returns the last id seen."""
    sql = "SELECT id, device_id, body, received_at FROM journal WHERE id > ?"
    params: list[Any] = [after_id]
    if device_id is not None:
        sql += " AND device_id = ?"
        params.append(device_id)
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
    done: list[tuple[int, Applied | None]] = []
    for journal_id, dev_id, body, received_at in rows:
        try:
            with savepoint(conn, "replay_event", writer):
                applied = writer.replay_event(conn, journal_id, dev_id, writer.rules.parse(body), received_at)
        except Exception as exc:
            if writer.dialect.is_transient(exc):
                raise
            log.exception("replay of journal entry %s failed", journal_id)
            conn.execute(
                "UPDATE journal SET status = 'failed', error = ? WHERE id = ?",
                (f"{type(exc).__name__}: {exc}"[:2000], journal_id),
            )
            applied = None
        done.append((journal_id, applied))
    return (rows[-1][0] if rows else None), done
