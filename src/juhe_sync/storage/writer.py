"""The writer: what one write transaction knows (device rows read, counters to write at commit),
and normalising ahead of the transaction."""

from __future__ import annotations

import hashlib
import operator
import threading
from dataclasses import fields
from typing import Any

from juhe_sync.records import Effects, Event, MessageRecord
from juhe_sync.storage import effects as effects_
from juhe_sync.storage.sql import Applied, Conn, Dialect, Prepared, Rules
from juhe_sync.timeutil import iso_utc, now_seconds


def fingerprint(record: MessageRecord) -> str:
    """A digest of everything normalisation produced: replay rewrites a row only when it changes."""
    blob = repr(astuple_shallow(record))
    return hashlib.sha1(blob.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def astuple_shallow(record: MessageRecord) -> tuple[Any, ...]:
    return _FIELDS(record)


#: Every field of a message record, in order (``dataclasses.fields`` per call was 2% of a writer's time).
_FIELDS = operator.attrgetter(*(f.name for f in fields(MessageRecord)))


#: What a write transaction reads of a device, once.
DEVICE_ROW = "SELECT id, account_id, kind, purged_before FROM devices WHERE guid = ?"


class _TxState:
    """What a writer knows inside one transaction: device rows it read (the device's advisory lock
    or SQLite's write lock keeps them unchanged by others), and counter changes it will write once,
    just before commit, instead of once per event."""

    __slots__ = ("deltas", "devices", "floors")

    def __init__(self) -> None:
        #: guid -> (id, account, kind)
        self.devices: dict[str, tuple[int, str | None, str]] = {}
        #: device id -> its purge watermark (None: never purged)
        self.floors: dict[int, int | None] = {}
        #: device id -> [messages, rooms, contacts, newest last_callback_time]
        self.deltas: dict[int, list[Any]] = {}


class Writer:
    """Everything that changes stored state goes through here."""

    def __init__(self, dialect: Dialect, rules: Rules):
        self.dialect = dialect
        self.rules = rules
        #: guid -> (account, kind) as the last write transaction saw them: what :meth:`prepare`
        #: outside the transaction should assume.
        self.device_hints: dict[str, tuple[str | None, str]] = {}
        #: Seconds messages are kept (``JUHE_SYNC_RETENTION_DAYS``); None: forever.
        self.retention: int | None = None
        #: Write the callbacks of a transaction together (see :mod:`juhe_sync.storage.ingest_batch`);
        #: off only to compare with writing them one by one.
        self.group_callbacks = True
        self._tx = threading.local()

    def oldest_kept(self, conn: Conn, device_id: int) -> int | None:
        """The send time before which the device stores no message: the retention window's start
        (it would be purged at once) or the device's purge watermark, whichever is later."""
        floors = self._state().floors
        if device_id not in floors:
            row = conn.execute("SELECT purged_before FROM devices WHERE id = ?", (device_id,)).fetchone()
            floors[device_id] = None if row is None else row[0]
        bounds = [b for b in (floors[device_id], None if self.retention is None else now_seconds() - self.retention)
                  if b is not None]  # fmt: skip
        return max(bounds) if bounds else None

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

    def mark(self) -> tuple[dict[str, Any], dict[int, list[Any]], int, dict[int, int | None]]:
        st = self._state()
        return (
            dict(st.devices),
            {k: list(v) for k, v in st.deltas.items()},
            self.dialect.mark(),
            dict(st.floors),
        )

    def rollback_to(
        self, mark: tuple[dict[str, Any], dict[int, list[Any]], int, dict[int, int | None]]
    ) -> None:
        st = self._state()
        st.devices, st.deltas = dict(mark[0]), {k: list(v) for k, v in mark[1].items()}
        st.floors = dict(mark[3])
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

    def raise_floor(self, conn: Conn, device_id: int, before: int) -> None:
        """Make ``before`` the device's purge watermark, unless it has a later one."""
        conn.execute(
            "UPDATE devices SET purged_before = ? WHERE id = ? AND (purged_before IS NULL OR purged_before < ?)",
            (before, device_id, before),
        )
        floors = self._state().floors
        floors.pop(device_id, None)  # read again, with what a concurrent purge may have set

    def forget_devices(self) -> None:
        """Device rows may have changed (e.g. a pulled profile, a purge): read them again."""
        self._state().devices.clear()
        self._state().floors.clear()

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
        sql = DEVICE_ROW
        row = conn.execute(sql, (guid,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO devices (guid, created_at) VALUES (?, ?) ON CONFLICT (guid) DO NOTHING",
                (guid, iso_utc(now)),
            )
            row = conn.execute(sql, (guid,)).fetchone()
        known = devices[guid] = (int(row[0]), row[1], row[2])
        self._state().floors[known[0]] = row[3]  # read with the row: no statement of its own
        return known

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
        """Apply normalised effects (see :func:`juhe_sync.storage.effects.apply_effects`)."""
        return effects_.apply_effects(
            self, conn, device_id, prepared, journal_id, replay=replay, seen_at=seen_at
        )

    def apply_pulled_messages(self, conn: Conn, guid: str, items: list[Any], received_at: int) -> Applied:
        """Store messages fetched by pull sync; they dedupe against callbacks like any message."""
        device_id, account, kind = self.ensure_device(conn, guid, received_at)
        prepared = self.prepare_effects(
            self.rules.normalize_pulled(items, account, received_at), account, kind
        )
        return self.apply(conn, device_id, prepared, None, replay=False)
