"""Deleting what the operator no longer wants kept: messages before a time, and whole devices.

Every step is a small write job under the device's lock (the same lock its callbacks take), so
ingest of the device waits at most one step and the stored state is exact after each commit:
counters, conversation rows and the search index change in the same transaction as the messages.

The journal keeps each purged event's key with an empty body: a redelivered callback is then a
duplicate, not the same messages stored again. Failed journal entries before the cutoff (whose
bodies are all that is left of them) are deleted.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from juhe_sync.records import ProgressFn, PurgeStats
from juhe_sync.storage.sql import ID_SHIFT, Conn
from juhe_sync.storage.writer import Writer

if TYPE_CHECKING:
    from juhe_sync.storage.sqlstore import SQLStore

#: Messages deleted per transaction: one step takes a few tens of milliseconds, the longest a
#: callback of the same device waits for it.
MESSAGES_PER_STEP = 500
#: Journal entries emptied per transaction.
JOURNAL_PER_STEP = 2000

#: A time after every message: purging before it purges everything.
EVERYTHING = 1 << 42

#: Tables keyed by device that ``forget`` empties, children first.
DEVICE_TABLES = ("room_members", "contacts", "rooms", "sync_state", "revocations", "conversations")


def first_kept_id(before: int) -> int:
    """The smallest message id of second ``before``: messages with a smaller id are older."""
    return max(before, 0) << ID_SHIFT


def count(conn: Conn, device_id: int, before: int) -> tuple[int, int]:
    """(messages, journal entries) that a purge of the device before ``before`` would touch."""
    messages = conn.execute(
        "SELECT count(*) FROM messages WHERE device_id = ? AND id < ?", (device_id, first_kept_id(before))
    ).fetchone()[0]
    journal = conn.execute(
        "SELECT count(*) FROM journal WHERE device_id = ? AND body <> '' AND (received_at < ? OR id IN "
        "(SELECT journal_id FROM messages WHERE device_id = ? AND id < ?))",
        (device_id, before, device_id, first_kept_id(before)),
    ).fetchone()[0]
    return int(messages), int(journal)


def purge_messages(writer: Writer, conn: Conn, device_id: int, before: int, limit: int) -> tuple[int, int]:
    """Delete up to ``limit`` of the device's oldest messages sent before ``before``, with their
    search entries, journal bodies and their share of the counters; returns how many messages
    and journal entries."""
    writer.raise_floor(conn, device_id, before)
    rows = conn.execute(
        "SELECT id, conversation_id, searchable, content, journal_id FROM messages "
        "WHERE device_id = ? AND id < ? ORDER BY id LIMIT ?",
        (device_id, first_kept_id(before), limit),
    ).fetchall()
    if not rows:
        return 0, 0
    per_conversation: dict[int, int] = {}
    journal_ids = set()
    for message_id, conversation_id, searchable, content, journal_id in rows:
        if searchable:
            index = writer.dialect.text_index(content)
            writer.dialect.unindex_message(conn, message_id, device_id, conversation_id, index)
        per_conversation[conversation_id] = per_conversation.get(conversation_id, 0) + 1
        if journal_id is not None:
            journal_ids.add(journal_id)
    ids = [row[0] for row in rows]
    _in_slices(conn, "DELETE FROM messages WHERE id IN ({})", ids)
    for conversation_id, removed in sorted(per_conversation.items()):
        # Only the device's own jobs change its conversations, and they wait for this one.
        conn.execute(
            "UPDATE conversations SET message_count = message_count - ?, "
            "last_message_id = (SELECT max(id) FROM messages WHERE conversation_id = ?) WHERE id = ?",
            (removed, conversation_id, conversation_id),
        )
    # A journal entry that carried purged messages must not bring them back in a replay.
    journal = _in_slices(conn, "UPDATE journal SET body = '' WHERE id IN ({}) AND status = 'ok' AND body <> ''",
                         sorted(journal_ids))  # fmt: skip
    journal += _in_slices(
        conn, "DELETE FROM journal WHERE id IN ({}) AND status <> 'ok'", sorted(journal_ids)
    )
    writer.count(device_id, messages=-len(ids))
    return len(ids), journal


def purge_journal(
    conn: Conn, *, device_id: int, before: int, after_id: int, limit: int = JOURNAL_PER_STEP
) -> tuple[int | None, int]:
    """Empty the bodies of journal entries received before ``before``, up to ``limit`` entries
    from id ``after_id`` on. Returns (the last id looked at, or None when no older entry can
    follow; how many entries changed). Ids follow arrival, so the first step that finds only
    newer entries ends the walk."""
    rows = conn.execute(
        "SELECT id, received_at, status, body = '' FROM journal WHERE device_id = ? AND id > ? "
        "ORDER BY id LIMIT ?",
        (device_id, after_id, limit),
    ).fetchall()
    old = [(r[0], r[2], r[3]) for r in rows if r[1] < before]
    emptied = [i for i, status, empty in old if status == "ok" and not empty]
    failed = [i for i, status, _ in old if status != "ok"]
    _in_slices(conn, "UPDATE journal SET body = '' WHERE id IN ({})", emptied)
    _in_slices(conn, "DELETE FROM journal WHERE id IN ({})", failed)
    last = int(rows[-1][0]) if old and len(rows) == limit else None
    return last, len(emptied) + len(failed)


def forget_journal(conn: Conn, device_id: int, limit: int) -> int:
    """Delete up to ``limit`` of the device's journal entries; returns how many."""
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM journal WHERE device_id = ? ORDER BY id LIMIT ?", (device_id, limit)
    ).fetchall()]  # fmt: skip
    _in_slices(conn, "DELETE FROM journal WHERE id IN ({})", ids)
    return len(ids)


def forget_device(conn: Conn, device_id: int) -> None:
    """Delete the device's remaining rows (its messages and journal are gone already)."""
    for table in DEVICE_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE device_id = ?", (device_id,))
    conn.execute("DELETE FROM devices WHERE id = ?", (device_id,))


def _in_slices(conn: Conn, sql: str, ids: list[Any]) -> int:
    """Run ``sql`` (a DELETE or UPDATE with ``IN ({})``) over ``ids`` in slices small enough for any
    SQLite build; returns the rows it changed."""
    changed = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        # RETURNING, not rowcount: PostgreSQL's pipeline mode knows the count only once it syncs.
        changed += len(
            conn.execute(sql.format(", ".join("?" * len(chunk))) + " RETURNING 1", tuple(chunk)).fetchall()
        )
    return changed


# --- the loops: each step its own transaction ---------------------------------------------------


def plan(store: SQLStore, device_id: int, before: int) -> PurgeStats:
    """What :func:`purge` would remove now."""
    messages, journal = store.read(lambda c: count(c, device_id, before))
    return PurgeStats(messages, journal)


def purge(
    store: SQLStore,
    guid: str,
    device_id: int,
    before: int,
    progress: ProgressFn | None = None,
    pause: float = 0.0,
) -> PurgeStats:
    """Purge the device's messages sent, and journal bodies received, before ``before`` (seconds)."""
    stats = PurgeStats()
    writer = store.writer
    while True:
        done, journal = store.submit(
            lambda c: purge_messages(writer, c, device_id, before, MESSAGES_PER_STEP), guid
        ).result()
        if not done:
            break
        stats.messages += done
        stats.journal += journal
        if progress is not None:
            progress(done)
        if pause:
            time.sleep(pause)
    after = 0
    while True:
        step = functools.partial(purge_journal, device_id=device_id, before=before, after_id=after)
        last, emptied = store.submit(step, guid).result()
        stats.journal += emptied
        if last is None:
            return stats
        after = last


def forget(store: SQLStore, guid: str, device_id: int, progress: ProgressFn | None = None) -> PurgeStats:
    """Delete everything stored about the device."""
    stats = purge(store, guid, device_id, EVERYTHING, progress)
    while True:
        done = store.submit(lambda c: forget_journal(c, device_id, JOURNAL_PER_STEP), guid).result()
        if not done:
            break
        stats.journal += done

    def last_step(conn: Conn) -> None:
        # What callbacks stored while the steps above ran goes in this one transaction, which
        # holds the device's lock: afterwards nothing of the device is left.
        while purge_messages(store.writer, conn, device_id, EVERYTHING, MESSAGES_PER_STEP)[0]:
            pass
        while forget_journal(conn, device_id, JOURNAL_PER_STEP):
            pass
        store.writer.flush_counters(conn)
        forget_device(conn, device_id)
        store.writer.forget_devices()
        store.writer.device_hints.pop(guid, None)

    store.submit(last_step, guid).result()
    return stats
