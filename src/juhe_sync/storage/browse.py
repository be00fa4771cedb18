"""Reads for finding things without knowing an id: devices, conversations by recent activity, and
the messages around one message. Served from maintained rows (devices' counters, conversations'
``message_count`` and ``last_message_id``), never from a scan of messages."""

from __future__ import annotations

import json
from typing import Any

from juhe_sync.records import Page
from juhe_sync.storage import reads
from juhe_sync.storage.sql import ID_SHIFT, Conn
from juhe_sync.timeutil import iso_utc

_DEVICE_LIST = (
    "id", "guid", "kind", "state", "account_id", "account_name", "corp_id", "avatar", "last_callback_time",
    "last_sync_time", "last_error", "contacts_count", "rooms_count", "messages_count",
)  # fmt: skip


def devices(
    conn: Conn, guids: frozenset[str] | None, offset: int, limit: int, after: str | None = None
) -> Page:
    """Devices by GUID; only ``guids`` when given (a token scoped to them)."""
    where, params = "1 = 1", []
    if guids is not None:
        if not guids:
            return Page([], 0)
        where = f"guid IN ({', '.join('?' * len(guids))})"
        params = sorted(guids)
    total = conn.execute(f"SELECT count(*) FROM devices WHERE {where}", params).fetchone()[0]
    page_where, page_params = reads.keyset(where, list(params), "guid", after)
    rows = conn.execute(
        f"SELECT {', '.join(_DEVICE_LIST)} FROM devices WHERE {page_where} ORDER BY guid LIMIT ? OFFSET ?",
        (*page_params, limit, 0 if after is not None else offset),
    ).fetchall()
    items = [dict(zip(_DEVICE_LIST, row, strict=True)) for row in rows]
    return Page(items, int(total), rows[-1][1] if len(rows) == limit else None)


#: The conversation list: names from contacts (remark, else name) and rooms, and the last message.
_CONVERSATIONS = """
    SELECT c.conv_key, c.message_count, c.last_message_id, ct.remark, ct.name, ct.avatar, r.name, r.avatar,
           m.sender, m.sender_name, m.type, m.content, m.revoked, m.direction, m.msg_id, m.appinfo, m.seq
    FROM conversations c
    LEFT JOIN contacts ct ON ct.device_id = c.device_id AND substr(c.conv_key, 1, 2) = 'S:'
         AND ct.user_id = substr(c.conv_key, 3)
    LEFT JOIN rooms r ON r.device_id = c.device_id AND substr(c.conv_key, 1, 2) = 'R:' AND r.room_id = substr(c.conv_key, 3)
    LEFT JOIN messages m ON m.id = c.last_message_id
"""


def conversations(
    conn: Conn,
    device_id: int,
    *,
    keyword: str | None,
    kind: str | None,
    offset: int,
    limit: int,
    contains: str,
    after: int | None = None,
) -> Page:
    """Conversations with messages, newest activity first (keyset on ``last_message_id``, which
    is time-ordered); ``keyword`` matches the display name, remark, nickname or id."""
    where = "c.device_id = ? AND c.last_message_id IS NOT NULL"
    params: list[Any] = [device_id]
    if kind is not None:
        where += " AND c.conv_key LIKE ?"
        params.append(f"{kind}:%")
    if keyword:
        pattern = reads.like_pattern(keyword.lower())
        names = ("ct.remark", "ct.name", "r.name", "c.conv_key")
        where += " AND (" + " OR ".join(contains.format(n) for n in names) + ")"
        params += [pattern] * len(names)
    if keyword:
        total = conn.execute(f"SELECT count(*) FROM ({_CONVERSATIONS} WHERE {where}) t", params).fetchone()[0]
    else:  # the names are not needed to count
        total = conn.execute(f"SELECT count(*) FROM conversations c WHERE {where}", params).fetchone()[0]
    page_where, page_params = reads.keyset(where, params, "c.last_message_id", after, ascending=False)
    rows = conn.execute(
        f"{_CONVERSATIONS} WHERE {page_where} ORDER BY c.last_message_id DESC LIMIT ? OFFSET ?",
        (*page_params, limit, 0 if after is not None else offset),
    ).fetchall()
    items = [_conversation(row) for row in rows]
    return Page(items, int(total), rows[-1][2] if len(rows) == limit else None)


def _conversation(row: Any) -> dict[str, Any]:
    key, count, last_id, remark, nickname, contact_avatar, room_name, room_avatar = row[:8]
    sender, sender_name, type_, content, revoked, direction, msg_id, appinfo, seq = row[8:]
    room = key.startswith("R:")
    return {
        "conversation_id": key,
        "kind": key[0],
        "name": (room_name if room else remark or nickname) or key[2:],
        "remark": None if room else remark,
        "avatar": room_avatar if room else contact_avatar,
        "message_count": int(count),
        "last_message_time": iso_utc(int(last_id) >> ID_SHIFT),
        "last_message": {
            "id": msg_id or appinfo or seq or str(last_id),
            "from": sender,
            "sender_name": sender_name,
            "direction": direction,
            "type": type_,
            "content": content,
            "revoked": bool(revoked),
        },
    }


def find_message(
    conn: Conn, device_id: int, message_id: str, conversation: str | None
) -> tuple[int, str] | None:
    """(row id, conversation) of the message the API calls ``message_id`` (its platform id, else
    appinfo, else seq, else row id), in ``conversation`` when given. Every lookup is an index
    probe: the (device, msg_id) index, then the unique (device, dedup key) one, whose key is the
    appinfo, else ``seq:`` and the seq."""
    base = (
        "SELECT m.id, c.conv_key FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.device_id = ?"
    )
    extra, params = ("", []) if conversation is None else (" AND c.conv_key = ?", [conversation])
    probes: list[tuple[str, Any]] = [("m.msg_id = ?", message_id), ("m.dedup_key = ?", message_id),
                                     ("m.dedup_key = ?", "seq:" + message_id)]  # fmt: skip
    if message_id.isdigit() and int(message_id) < 2**63:
        probes.append(("m.id = ?", int(message_id)))
    for condition, value in probes:
        row = conn.execute(
            f"{base} AND {condition}{extra} ORDER BY m.id LIMIT 1", (device_id, value, *params)
        ).fetchone()
        if row is not None:
            return int(row[0]), row[1]
    return None


def around(conn: Conn, conversation_id: int, message_row: int, limit: int) -> tuple[list[int], bool, bool]:
    """Row ids of the page centred on ``message_row`` (oldest first), and whether there are older
    and newer messages beyond it."""
    older = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (conversation_id, message_row, limit),
        ).fetchall()
    ]
    newer = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND id > ? ORDER BY id ASC LIMIT ?",
            (conversation_id, message_row, limit),
        ).fetchall()
    ]
    # Centred where both sides have enough; a side that runs out leaves its room to the other.
    half = (limit - 1) // 2
    take_newer = min(len(newer), limit - 1 - min(len(older), half))
    take_older = min(len(older), limit - 1 - take_newer)
    ids = [*reversed(older[:take_older]), message_row, *newer[:take_newer]]
    return ids, len(older) > take_older, len(newer) > take_newer


#: One contact with the counters of its private chat (the conversation ``S:<user_id>``, if any).
_CONTACT = (
    "SELECT ct.user_id, ct.name, ct.remark, ct.type, ct.corp_id, ct.labels, ct.source, ct.deleted, ct.extra, "
    "c.message_count, c.last_message_id FROM contacts ct "
    "LEFT JOIN conversations c ON c.device_id = ct.device_id AND c.conv_key = 'S:' || ct.user_id "
    "WHERE ct.device_id = ? AND ct.user_id = ?"
)


def contact(conn: Conn, device_id: int, user_id: str) -> dict[str, Any] | None:
    """A contact by user id, deleted ones included (flagged): an assistant asking about someone
    it saw in a message should learn that they were removed, not that they never existed."""
    row = conn.execute(_CONTACT, (device_id, user_id)).fetchone()
    if row is None:
        return None
    user, name, remark, type_, corp, labels, source, deleted, extra, count, last_id = row
    return {
        "id": user,
        "name": name,
        "remark": remark,
        "type": type_,
        "corp_id": corp,
        "labels": json.loads(labels or "[]"),
        "source": source,
        "deleted": bool(deleted),
        "extra": json.loads(extra or "{}"),
        "message_count": int(count or 0),
        "last_message_time": None if last_id is None else iso_utc(int(last_id) >> ID_SHIFT),
    }


def display_names(conn: Conn, device_id: int, keys: list[str]) -> dict[str, str]:
    """The names of the conversation keys that have one: ``S:<user_id>`` a contact's remark, else
    its name; ``R:<room_id>`` a room's name. Two primary-key lookups, whatever the number of keys."""
    names: dict[str, str] = {}
    for prefix, sql in (
        ("S:", "SELECT user_id, remark, name FROM contacts WHERE device_id = ? AND user_id IN ({})"),
        ("R:", "SELECT room_id, NULL, name FROM rooms WHERE device_id = ? AND room_id IN ({})"),
    ):
        ids = sorted({key[2:] for key in keys if key.startswith(prefix) and len(key) > 2})
        if not ids:
            continue
        rows = conn.execute(sql.format(", ".join("?" * len(ids))), (device_id, *ids)).fetchall()
        names.update({prefix + r[0]: r[1] or r[2] for r in rows if r[1] or r[2]})
    return names
