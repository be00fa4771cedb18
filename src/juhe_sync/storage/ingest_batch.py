"""The callbacks of one write transaction, written together.

Written one by one, each callback cost about nine statements (journal, conversation, message id,
message, conversation counters, contact, and a savepoint around them), and on PostgreSQL each of
them is a trip through the driver's pipeline. Written together, the callbacks of a transaction
cost a few multi-row statements per table, however many there are. Only plain callbacks go this
way (messages, and the rooms and contacts they name): anything that changes a device or revokes a
message, and any batch in which something fails, is run again callback by callback, each in a
savepoint of its own, exactly as before. Both ways store the same rows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from juhe_sync.logs import Throttle
from juhe_sync.records import ContactSeen, IngestOutcome, MessageRecord
from juhe_sync.storage import effects
from juhe_sync.storage.batches import Outcome, WriteJob
from juhe_sync.storage.journal import IngestJob
from juhe_sync.storage.sql import Conn, Prepared, run_job
from juhe_sync.storage.writer import Writer
from juhe_sync.timeutil import iso_utc

log = logging.getLogger("juhe_sync.storage")
_fell_back = Throttle(log)

#: Rows per multi-row statement, largest first: a group of 13 goes as 8 + 4 + 1. Each row count
#: is a statement of its own for the database to compile (SQLite) or prepare (PostgreSQL), and
#: their caches hold a few dozen; so few shapes, whatever the sizes of the groups. 64 rows stay
#: well within both databases' limits on parameters.
LADDER = (64, 32, 16, 8, 4, 2, 1)


def run_jobs(
    conn: Conn, writer: Writer, jobs: list[WriteJob], sync: Callable[[], None] | None = None
) -> list[Outcome]:
    """The jobs of a transaction: callbacks together when every job is one (in one savepoint;
    a single callback's messages together too), else, or when that fails, each job in a
    savepoint of its own (see :func:`run_job`)."""
    callbacks = [job.fn for job in jobs if isinstance(job.fn, IngestJob)]
    if callbacks and writer.group_callbacks and len(callbacks) == len(jobs):
        group = functools.partial(ingest_many, writer, callbacks)
        results, error = run_job(conn, writer, group, sync)
        if error is None and results is not None:
            return [(job, result, None) for job, result in zip(jobs, results, strict=True)]
        if error is not None:  # a callback that cannot be applied (its own error says why), or a bug
            _fell_back.log(logging.WARNING, "callbacks of a transaction written one by one after %s: %s",
                           type(error).__name__, error)  # fmt: skip
    return [(job, *run_job(conn, writer, job.fn, sync)) for job in jobs]


class _Callback:
    """One callback of the group: its job, device, and what became of it."""

    __slots__ = ("added", "device_id", "job", "journal_id", "prepared", "refused")

    def __init__(self, job: IngestJob, device_id: int, prepared: Prepared):
        self.job, self.device_id, self.prepared = job, device_id, prepared
        self.journal_id: int | None = None
        self.added = self.refused = 0


def ingest_many(writer: Writer, jobs: list[IngestJob], conn: Conn) -> list[IngestOutcome] | None:
    """Journal and apply plain callbacks together, as :func:`juhe_sync.storage.journal.ingest`
    does one by one; None (nothing written but devices) when one of them is not plain."""
    callbacks: list[_Callback] = []
    for job in jobs:
        device_id, account, kind = writer.ensure_device(conn, job.event.guid, job.received_at)
        writer.device_hints[job.event.guid] = (account, kind)
        prepared = job.prepared
        if prepared is None or prepared.account != account or prepared.kind != kind:
            # Kept: written one by one after all, the callback need not be normalised again.
            prepared = job.prepared = writer.prepare(job.event, account, kind, job.received_at)
        found = prepared.effects
        if found.device is not None or found.device_kind is not None or found.revokes:
            return None
        callbacks.append(_Callback(job, device_id, prepared))
    new = _journal(conn, callbacks)
    _messages(writer, conn, new)
    rooms = _rooms(conn, new)
    contacts = _contacts(writer, conn, new)
    for cb in new:
        if cb.refused and not cb.added:  # as ingest() does: keep only the key
            conn.execute("UPDATE journal SET body = '' WHERE id = ?", (cb.journal_id,))
        writer.count(cb.device_id, cb.added, seen_at=iso_utc(cb.job.received_at))
    for device_id in {cb.device_id for cb in new}:
        writer.count(device_id, 0, rooms.get(device_id, 0), contacts.get(device_id, 0))
    return [
        IngestOutcome("duplicate")
        if cb.journal_id is None
        else IngestOutcome(
            "stored", cb.journal_id, cb.added, cb.prepared.effects.pulls, cb.prepared.effects.skipped
        )
        for cb in callbacks
    ]


def _journal(conn: Conn, callbacks: list[_Callback]) -> list[_Callback]:
    """Journal the callbacks; the new ones (the first of any key seen twice), in order."""
    owners: dict[bytes, _Callback] = {}
    for cb in callbacks:
        owners.setdefault(cb.job.event.key, cb)
    for chunk in _chunks(list(owners.values())):
        rows = conn.execute(
            "INSERT INTO journal (device_id, event_key, notify_type, received_at, body, status) VALUES "
            + _marks(len(chunk), "(?, ?, ?, ?, ?, 'ok')")
            + " ON CONFLICT (event_key) DO NOTHING RETURNING id, event_key",
            [v for cb in chunk for v in (cb.device_id, cb.job.event.key, cb.job.event.notify_type,
                                         cb.job.received_at, cb.job.raw)],
        ).fetchall()  # fmt: skip
        for journal_id, key in rows:
            owners[bytes(key)].journal_id = int(journal_id)
    return [cb for cb in callbacks if cb.journal_id is not None]


def _messages(writer: Writer, conn: Conn, callbacks: list[_Callback]) -> None:
    """Insert the messages of the new callbacks (dedup, retention, conversations, search index)."""
    rows: list[tuple[_Callback, int, MessageRecord, str, Any]] = []  # (callback, device, record, fp, index)
    keys: set[tuple[int, str]] = set()
    for cb in callbacks:
        found = cb.prepared
        oldest = writer.oldest_kept(conn, cb.device_id) if found.effects.messages else None
        for record, fp, index in zip(found.effects.messages, found.fingerprints, found.index, strict=True):
            if oldest is not None and record.sendtime < oldest:
                cb.refused += 1
            elif (cb.device_id, record.dedup_key) not in keys:  # a later copy is a duplicate
                keys.add((cb.device_id, record.dedup_key))
                rows.append((cb, cb.device_id, record, fp, index))
    if not rows:
        return
    conversations = _conversations(conn, [(device, record.conversation) for _, device, record, _, _ in rows])
    ids = writer.dialect.message_ids(conn, [record.sendtime for _, _, record, _, _ in rows])
    delta: dict[int, list[int]] = {}
    for chunk in _chunks(list(zip(rows, ids, strict=True))):
        id_sql = chunk[0][1][0]
        values: list[Any] = []
        for (cb, device, record, fp, index), (_, id_param) in chunk:
            conv_id = conversations[device, record.conversation]
            values.append(id_param)
            values.extend(effects.message_values(writer, device, conv_id, record, fp, index, cb.journal_id))
        inserted = {
            (int(device), key): int(message_id)
            for message_id, device, key in conn.execute(
                effects.insert_messages_sql(writer.dialect.extra_columns, id_sql, len(chunk), keys=True),
                values,
            ).fetchall()
        }
        missing = [(device, record.dedup_key) for (_, device, record, _, _), _ in chunk
                   if (device, record.dedup_key) not in inserted]  # fmt: skip
        if missing and len(_stored_keys(conn, missing)) < len(set(missing)):
            raise RuntimeError("a message id was taken by a concurrent writer")  # one by one retries it
        for (cb, device, record, _, index), _ in chunk:
            message_id = inserted.pop((device, record.dedup_key), None)
            if message_id is None:
                continue  # stored before, or by an earlier callback of this group
            cb.added += 1
            conv_id = conversations[device, record.conversation]
            effects.bump(delta, conv_id, 1, message_id)
            if index is not None:
                writer.dialect.index_message(conn, message_id, device, conv_id, index)
    for chunk_delta in _chunks(list(delta.items())):
        conn.execute(
            "UPDATE conversations SET message_count = message_count + d.column2, "
            "last_message_id = CASE WHEN last_message_id IS NULL OR last_message_id < d.column3 "
            "THEN d.column3 ELSE last_message_id END FROM (VALUES "
            + _marks(len(chunk_delta), "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))")
            + ") AS d WHERE conversations.id = d.column1",
            [v for conv_id, (count, last) in chunk_delta for v in (conv_id, count, last)],
        )  # fmt: skip


def _conversations(conn: Conn, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Ids of the (device, conversation key) pairs, creating those that are new, in order."""
    wanted = list(dict.fromkeys(keys))
    found = _conversation_ids(conn, wanted)
    missing = [key for key in wanted if key not in found]
    for chunk in _chunks(missing):
        rows = conn.execute(
            "INSERT INTO conversations (device_id, conv_key) VALUES " + _marks(len(chunk), "(?, ?)")
            + " ON CONFLICT (device_id, conv_key) DO NOTHING RETURNING id, device_id, conv_key",
            [v for key in chunk for v in key],
        ).fetchall()  # fmt: skip
        found.update({(int(device), conv_key): int(conv_id) for conv_id, device, conv_key in rows})
    late = [key for key in missing if key not in found]  # created meanwhile by another process
    if late:
        found.update(_conversation_ids(conn, late))
        if any(key not in found for key in late):
            raise RuntimeError("a conversation could be neither found nor created")
    return found


def _conversation_ids(conn: Conn, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    sql = "SELECT id, conv_key FROM conversations WHERE device_id = ? AND conv_key IN ({})"
    return {(device, conv_key): int(conv_id) for device, (conv_id, conv_key) in _per_device(conn, sql, keys)}


def _stored_keys(conn: Conn, keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
    sql = "SELECT dedup_key FROM messages WHERE device_id = ? AND dedup_key IN ({})"
    return {(device, row[0]) for device, row in _per_device(conn, sql, keys)}


def _per_device(conn: Conn, sql: str, keys: list[tuple[int, str]]) -> Iterator[tuple[int, Any]]:
    """The rows of ``sql`` (a device, then ``{}`` for a list of values) for (device, value)
    pairs, each with its device: one statement per device and chunk of values."""
    grouped: dict[int, list[str]] = {}
    for device, value in dict.fromkeys(keys):
        grouped.setdefault(device, []).append(value)
    for device, values in grouped.items():
        for chunk in _chunks(values):
            for row in conn.execute(sql.format(_marks(len(chunk))), [device, *chunk]).fetchall():
                yield device, row


def _rooms(conn: Conn, callbacks: list[_Callback]) -> dict[int, int]:
    """Rooms named by the new callbacks; rooms added per device."""
    keys = list(dict.fromkeys((cb.device_id, room) for cb in callbacks for room in cb.prepared.effects.rooms))
    added: dict[int, int] = {}
    for chunk in _chunks(keys):
        rows = conn.execute(
            "INSERT INTO rooms (device_id, room_id) VALUES " + _marks(len(chunk), "(?, ?)")
            + " ON CONFLICT DO NOTHING RETURNING device_id",
            [v for key in chunk for v in key],
        ).fetchall()  # fmt: skip
        for (device,) in rows:
            added[int(device)] = added.get(int(device), 0) + 1
    return added


def _contacts(writer: Writer, conn: Conn, callbacks: list[_Callback]) -> dict[int, int]:
    """Contacts named by the new callbacks; contacts added per device.

    One by one, the first sighting of a contact inserts it and each later one with a name
    replaces the name if it is newer (ties: the larger string), so the outcome is the first
    sighting's type and the newest name of all: that is what is written here, once."""
    first: dict[tuple[int, str], ContactSeen] = {}
    newest: dict[tuple[int, str], ContactSeen] = {}
    for cb in callbacks:
        for seen in cb.prepared.effects.contacts:
            key = (cb.device_id, seen.user_id)
            first.setdefault(key, seen)
            best = newest.get(key)
            if seen.name and (best is None or (seen.seen_at, seen.name) > (best.seen_at, best.name or "")):
                newest[key] = seen
    added: dict[int, int] = {}
    inserted: set[tuple[int, str]] = set()
    for chunk in _chunks(list(first.items())):
        values: list[Any] = []
        for (device, user_id), seen in chunk:
            named = newest.get((device, user_id), seen)
            values.extend((device, user_id, named.name, seen.type, named.seen_at if named.name else None))
        rows = conn.execute(
            "INSERT INTO contacts (device_id, user_id, name, type, source, name_seen_at) VALUES "
            + _marks(len(chunk), "(?, ?, ?, ?, 'message', ?)")
            + " ON CONFLICT DO NOTHING RETURNING device_id, user_id",
            values,
        ).fetchall()  # fmt: skip
        for device, user_id in rows:
            inserted.add((int(device), user_id))
            added[int(device)] = added.get(int(device), 0) + 1
    for (device, user_id), seen in newest.items():
        if (device, user_id) not in inserted:
            effects.rename_contact(writer, conn, device, seen)
    return added


def _marks(count: int, row: str = "?") -> str:
    return ", ".join([row] * count)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    start = 0
    for size in LADDER:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size
