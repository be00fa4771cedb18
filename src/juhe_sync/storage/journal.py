"""The journal: every accepted body, verbatim, under the hash of its event; applying it, keeping
what fails to apply as ``failed``, and replaying it later."""

from __future__ import annotations

import logging
from typing import Any

from juhe_sync.records import Event, IngestOutcome
from juhe_sync.storage.sql import Applied, Conn, Prepared, Recovery, savepoint
from juhe_sync.storage.writer import Writer
from juhe_sync.timeutil import iso_utc

log = logging.getLogger("juhe_sync.storage")


def ingest(
    writer: Writer, conn: Conn, event: Event, raw: str, received_at: int, prepared: Prepared | None = None
) -> IngestOutcome:
    """Journal ``event`` and apply it. The caller commits; a duplicate changes nothing."""
    device_id, account, kind = writer.ensure_device(conn, event.guid, received_at)
    writer.device_hints[event.guid] = (account, kind)
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
            prepared = writer.prepare(event, account, kind, received_at)
        applied = writer.apply(
            conn, device_id, prepared, journal_id, replay=False, seen_at=iso_utc(received_at)
        )
    except Exception as exc:
        if writer.dialect.is_transient(exc):
            raise
        log.exception("callback %s of %s not applied; journalled as failed", journal_id, event.guid)
        raise _ApplyFailed(writer, event, raw, received_at, exc) from exc
    if applied.messages_refused and not applied.messages_added:
        # Every message it carried is older than the device keeps: keep only the key (a
        # redelivery stays a duplicate), not the text that retention exists to drop.
        conn.execute("UPDATE journal SET body = '' WHERE id = ?", (journal_id,))
    # Items of a batch that are not messages are counted (the caller reports them); the rest of
    # the batch is stored, and the journal keeps them for a later replay.
    skipped = prepared.effects.skipped
    return IngestOutcome("stored", journal_id, applied.messages_added, prepared.effects.pulls, skipped)


def replay_event(
    writer: Writer, conn: Conn, journal_id: int, device_id: int, event: Event, received_at: int
) -> Applied:
    account, kind = conn.execute("SELECT account_id, kind FROM devices WHERE id = ?", (device_id,)).fetchone()
    prepared = writer.prepare(event, account, kind, received_at)
    applied = writer.apply(conn, device_id, prepared, journal_id, replay=True)
    conn.execute("UPDATE journal SET status = 'ok', error = NULL WHERE id = ?", (journal_id,))
    return applied


class IngestJob:
    """The write job of one callback: :func:`ingest`, and the recovery to use when the database
    refuses what it applied only when the job's statements are synced (PostgreSQL's pipeline)."""

    __slots__ = ("event", "prepared", "raw", "received_at", "writer")

    def __init__(self, writer: Writer, event: Event, raw: str, received_at: int, prepared: Prepared | None):
        self.writer, self.event, self.raw = writer, event, raw
        self.received_at, self.prepared = received_at, prepared

    def __call__(self, conn: Conn) -> IngestOutcome:
        return ingest(self.writer, conn, self.event, self.raw, self.received_at, self.prepared)

    def recovery(self, exc: Exception) -> Recovery:
        log.warning("callback of %s not applied (%s: %s); journalled as failed",
                    self.event.guid, type(exc).__name__, exc)  # fmt: skip
        return _ApplyFailed(self.writer, self.event, self.raw, self.received_at, exc)


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
        # sync-status shows it: the device's last error, and the count of failed journal entries.
        conn.execute(
            "UPDATE devices SET last_error = ? WHERE id = ?",
            (f"callback {int(row[0])} not applied: {str(self)[:500]}", device_id),
        )
        self.writer.count(device_id, seen_at=iso_utc(self.received_at))
        return IngestOutcome("failed", int(row[0]))


#: What replay reports for a body that no longer matches the key it was stored under.
MISMATCH = "mismatch"


def replay_chunk(
    writer: Writer, conn: Conn, after_id: int, device_id: int | None, limit: int
) -> tuple[int | None, list[tuple[int, Applied | str | None]]]:
    """Re-normalise up to ``limit`` journalled events after ``after_id``; returns the last id seen.

    Each body is checked against the key it was journalled under first: a body changed since
    (a damaged disk, a hand edit) is reported as :data:`MISMATCH` and not applied, so it cannot
    silently rewrite the messages it names."""
    sql = "SELECT id, device_id, body, received_at, event_key FROM journal WHERE id > ?"
    params: list[Any] = [after_id]
    if device_id is not None:
        sql += " AND device_id = ?"
        params.append(device_id)
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
    done: list[tuple[int, Applied | str | None]] = []
    for journal_id, dev_id, body, received_at, key in rows:
        if body == "":  # purged (see retention): only its key is kept, to recognise a redelivery
            continue
        try:
            event = writer.rules.parse(body)
        except Exception:
            event = None
        if event is None or event.key != bytes(key):
            log.warning("journal entry %s does not match its key; not replayed", journal_id)
            done.append((journal_id, MISMATCH))
            continue
        try:
            with savepoint(conn, "replay_event", writer):
                applied = replay_event(writer, conn, journal_id, dev_id, event, received_at)
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
