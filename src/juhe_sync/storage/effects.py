"""Applying normalised effects to rows: messages (with dedup, ids and the search index),
revocations, conversations, rooms and contacts seen in messages, and the device."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from juhe_sync.records import ContactSeen, Effects, MessageRecord
from juhe_sync.storage.sql import ID_SHIFT, Applied, Conn, Prepared

if TYPE_CHECKING:
    from juhe_sync.storage.writer import Writer


def apply_effects(
    writer: Writer,
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
        writer.forget_devices()
    if effects.device is not None:
        _apply_device(writer, conn, device_id, effects, replay=replay)
        writer.forget_devices()
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
    oldest = writer.oldest_kept(conn, device_id) if effects.messages else None
    for record, fp, index in zip(effects.messages, prepared.fingerprints, prepared.index, strict=True):
        if oldest is not None and record.sendtime < oldest:
            # Purged already, or it would be at the next retention pass: neither a redelivery
            # nor a replay of another event that carried it brings it back.
            applied.messages_refused += 1
            continue
        conv_id = conversations.get(record.conversation)
        if conv_id is None:
            conv_id = _conversation(writer, conn, device_id, record.conversation)
            conversations[record.conversation] = conv_id
        if replay:
            added, changed = _replace_message(
                writer, conn, device_id, conv_id, record, fp, index, journal_id, conv_delta
            )
            applied.messages_added += added
            applied.messages_changed += changed
        else:
            message_id = _insert_message(writer, conn, device_id, conv_id, record, fp, index, journal_id)
            if message_id is not None:
                applied.messages_added += 1
                bump(conv_delta, conv_id, 1, message_id)
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
            rename_contact(writer, conn, device_id, seen)
    if seen_at is not None or applied.messages_added or rooms_added or contacts_added:
        writer.count(device_id, applied.messages_added, rooms_added, contacts_added, seen_at)
    return applied


def rename_contact(writer: Writer, conn: Conn, device_id: int, seen: ContactSeen) -> None:
    """Give a contact seen in a message the name it had there, if that is its newest."""
    # The newest name wins (ties: the larger string, by code point on every backend and in
    # ingest_batch), so arrival order never matters; a contact filled by pull sync keeps the
    # name the SaaS gave it.
    conn.execute(
        "UPDATE contacts SET name = ?, name_seen_at = ? WHERE device_id = ? AND user_id = ? "
        "AND source = 'message' AND (name_seen_at IS NULL OR name_seen_at < ? "
        f"OR (name_seen_at = ? AND name{writer.dialect.bytewise} < ?))",
        (seen.name, seen.seen_at, device_id, seen.user_id, seen.seen_at, seen.seen_at, seen.name),
    )


def _apply_device(writer: Writer, conn: Conn, device_id: int, effects: Effects, *, replay: bool) -> None:
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


def _conversation(writer: Writer, conn: Conn, device_id: int, key: str) -> int:
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
    writer: Writer,
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
    values = message_values(writer, device_id, conv_id, record, fp, index, journal_id)
    for _ in range(8):
        id_sql, id_param = (
            ("?", message_id)
            if message_id is not None
            else writer.dialect.message_id_expr(conn, record.sendtime)
        )
        sql = insert_messages_sql(writer.dialect.extra_columns, id_sql)
        row = conn.execute(sql, (id_param, *values)).fetchone()
        if row is not None:
            message_id = int(row[0])
            if index is not None:
                writer.dialect.index_message(conn, message_id, device_id, conv_id, index)
            return message_id
        duplicate = conn.execute(
            "SELECT 1 FROM messages WHERE device_id = ? AND dedup_key = ?", (device_id, record.dedup_key)
        ).fetchone()
        if duplicate is not None:
            return None
        message_id = None  # the time-ordered id was taken by a concurrent writer: draw another
    raise RuntimeError(f"could not allocate a message id for second {record.sendtime}")


def _replace_message(
    writer: Writer,
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
        message_id = _insert_message(writer, conn, device_id, conv_id, record, fp, index, journal_id)
        if message_id is None:
            return 0, 0
        bump(conv_delta, conv_id, 1, message_id)
        return 1, 0
    old_id, old_fp, old_conv, old_searchable, old_content = old
    if old_fp == fp:
        return 0, 0
    if old_searchable:
        old_index = writer.dialect.text_index(old_content)
        writer.dialect.unindex_message(conn, old_id, device_id, old_conv, old_index)
    conn.execute("DELETE FROM messages WHERE id = ?", (old_id,))
    conn.execute(
        "UPDATE conversations SET message_count = message_count - 1, last_message_id = "
        "(SELECT max(id) FROM messages WHERE conversation_id = ?) WHERE id = ?",
        (old_conv, old_conv),
    )
    keep_id = old_id if (old_id >> ID_SHIFT) == record.sendtime else None
    message_id = _insert_message(writer, conn, device_id, conv_id, record, fp, index, journal_id, keep_id)
    assert message_id is not None
    bump(conv_delta, conv_id, 1, message_id)
    return 0, 1


_MESSAGE_COLUMNS = (
    "id", "device_id", "conversation_id", "dedup_key", "msg_id", "seq", "appinfo", "sender", "receiver",
    "room_id", "sender_name", "direction", "msg_type", "type", "content", "searchable", "sendtime", "flag",
    "send_flag", "content_type", "at_list", "quote_content", "quote_appinfo", "revoked", "journal_id",
    "fingerprint",
)  # fmt: skip


def message_values(
    writer: Writer,
    device_id: int,
    conv_id: int,
    record: MessageRecord,
    fp: str,
    index: Any | None,
    journal_id: int | None,
) -> tuple[Any, ...]:
    """The parameters of a message's row in :func:`insert_messages_sql`, but its id's."""
    return (
        device_id, conv_id, record.dedup_key, record.msg_id, record.seq, record.appinfo,
        record.sender, record.receiver, record.room_id, record.sender_name, record.direction,
        record.msg_type, record.type, record.content, int(record.search_text is not None),
        record.sendtime, record.flag, record.send_flag, record.content_type,
        json.dumps(record.at_list, ensure_ascii=False), record.quote_content, record.quote_appinfo,
        device_id, record.msg_id, journal_id, fp,
        *writer.dialect.extra_values(device_id, conv_id, index),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def insert_messages_sql(
    extra_columns: tuple[str, ...], id_sql: str, rows: int = 1, keys: bool = False
) -> str:
    """The INSERT of ``rows`` messages, built once per dialect, id expression and row count
    rather than per message. It returns the id of each row inserted, with ``keys`` (id, device,
    dedup key)."""
    columns = _MESSAGE_COLUMNS + extra_columns
    # ``revoked``: a revoke may arrive before its message; the revocation row waits for it.
    marks = [id_sql] + ["?"] * (len(columns) - 1)
    marks[columns.index("revoked")] = "(SELECT count(*) FROM revocations WHERE device_id = ? AND msg_id = ?)"
    row = f"({', '.join(marks)})"
    returning = "id, device_id, dedup_key" if keys else "id"
    return (
        f"INSERT INTO messages ({', '.join(columns)}) VALUES {', '.join([row] * rows)} "
        f"ON CONFLICT DO NOTHING RETURNING {returning}"
    )


def bump(delta: dict[int, list[int]], conv_id: int, count: int, message_id: int) -> None:
    entry = delta.setdefault(conv_id, [0, message_id])
    entry[0] += count
    entry[1] = max(entry[1], message_id)
