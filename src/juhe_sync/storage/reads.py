"""Read queries shared by every backend. Plain functions of a connection; no writes."""

from __future__ import annotations

import json
from typing import Any

from juhe_sync.ids import contact_type
from juhe_sync.records import Device, MessageQuery, Page
from juhe_sync.storage.sql import Conn, id_range
from juhe_sync.timeutil import iso_utc

_DEVICE_COLUMNS = (
    "id, guid, state, account_id, account_name, corp_id, last_callback_time, last_sync_time, "
    "last_error, contacts_count, rooms_count, messages_count"
)

_MESSAGE_COLUMNS = (
    "m.id, c.conv_key, m.msg_id, m.seq, m.appinfo, m.sender, m.content, m.sendtime, m.type, m.msg_type, "
    "m.direction, m.sender_name, m.revoked, m.at_list, m.quote_content, m.quote_appinfo, m.room_id"
)
#: What an export adds to each message: the rest of the row, so that importing it restores the row.
RESTORE_FIELDS = (
    "msg_id",
    "dedup_key",
    "receiver",
    "searchable",
    "flag",
    "send_flag",
    "content_type",
    "sendtime",
)
_RESTORE_COLUMNS = ", ".join(f"m.{name}" for name in RESTORE_FIELDS)


def device(conn: Conn, guid: str) -> Device | None:
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE guid = ?", (guid,)).fetchone()
    return None if row is None else Device(*row)


def like_pattern(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def keyset(
    where: str, params: list[Any], column: str, after: Any, ascending: bool = True
) -> tuple[str, list[Any]]:
    """The page's condition: ``where`` plus "after the cursor" when there is one."""
    if after is None:
        return where, params
    return f"{where} AND {column} {'>' if ascending else '<'} ?", [*params, after]


def contacts(
    conn: Conn,
    device_id: int,
    keyword: str | None,
    offset: int,
    limit: int,
    contains: str,
    after: str | None = None,
) -> Page:
    # Contacts deleted upstream stay stored (flagged) but are not listed.
    where = "device_id = ? AND deleted = 0"
    params: list[Any] = [device_id]
    if keyword:
        pattern = like_pattern(keyword.lower())
        where += f" AND ({contains.format('name')} OR {contains.format('remark')})"
        params += [pattern, pattern]
    total = conn.execute(f"SELECT count(*) FROM contacts WHERE {where}", params).fetchone()[0]
    page_where, page_params = keyset(where, params, "user_id", after)
    rows = conn.execute(
        f"SELECT user_id, name, remark, avatar, type, corp_id, labels, source FROM contacts WHERE {page_where} "
        "ORDER BY user_id LIMIT ? OFFSET ?",
        (*page_params, limit, 0 if after is not None else offset),
    ).fetchall()
    items = [
        {"id": r[0], "name": r[1], "remark": r[2], "avatar": r[3], "type": r[4], "corp_id": r[5],
         "labels": [label.get("label_id") for label in json.loads(r[6] or "[]")], "source": r[7]}
        for r in rows
    ]  # fmt: skip
    return Page(items, int(total), rows[-1][0] if len(rows) == limit else None)


def rooms(conn: Conn, device_id: int, offset: int, limit: int, after: str | None = None) -> Page:
    total = conn.execute("SELECT rooms_count FROM devices WHERE id = ?", (device_id,)).fetchone()[0]
    where, params = keyset("device_id = ?", [device_id], "room_id", after)
    rows = conn.execute(
        f"SELECT room_id, name, owner, member_count, avatar FROM rooms WHERE {where} "
        "ORDER BY room_id LIMIT ? OFFSET ?",
        (*params, limit, 0 if after is not None else offset),
    ).fetchall()
    items = [
        {"id": "R:" + r[0], "name": r[1], "owner": r[2], "member_count": r[3], "avatar": r[4]} for r in rows
    ]
    return Page(items, int(total), rows[-1][0] if len(rows) == limit else None)


def room_members(
    conn: Conn, device_id: int, room_id: str, offset: int, limit: int, after: str | None = None
) -> Page | None:
    """Members of a room, by user id; ``None`` if the device has no such room."""
    room = conn.execute(
        "SELECT 1 FROM rooms WHERE device_id = ? AND room_id = ?", (device_id, room_id)
    ).fetchone()
    if room is None:
        return None
    base = "m.device_id = ? AND m.room_id = ?"
    total = conn.execute(
        f"SELECT count(*) FROM room_members m WHERE {base}", (device_id, room_id)
    ).fetchone()[0]
    where, params = keyset(base, [device_id, room_id], "m.user_id", after)
    rows = conn.execute(
        "SELECT m.user_id, m.nickname, m.room_nickname, m.join_time, m.inviter, c.name, c.remark, c.type "
        "FROM room_members m LEFT JOIN contacts c ON c.device_id = m.device_id AND c.user_id = m.user_id "
        f"WHERE {where} ORDER BY m.user_id LIMIT ? OFFSET ?",
        (*params, limit, 0 if after is not None else offset),
    ).fetchall()
    items = [
        {
            "id": r[0],
            "name": r[1] or r[5],
            "room_nickname": r[2],
            "remark": r[6],
            "type": r[7] or contact_type(r[0]),
            "join_time": None if r[3] is None else iso_utc(r[3]),
            "inviter": r[4],
        }
        for r in rows
    ]
    return Page(items, int(total), rows[-1][0] if len(rows) == limit else None)


def conversation_id(conn: Conn, device_id: int, key: str) -> tuple[int, int] | None:
    row = conn.execute(
        "SELECT id, message_count FROM conversations WHERE device_id = ? AND conv_key = ?", (device_id, key)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def message_rows(conn: Conn, ids: list[int], ascending: bool, full: bool = False) -> list[dict[str, Any]]:
    """The messages ``ids`` as the API shows them; ``full`` adds :data:`RESTORE_FIELDS`."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    order = "ASC" if ascending else "DESC"
    columns = f"{_MESSAGE_COLUMNS}, {_RESTORE_COLUMNS}" if full else _MESSAGE_COLUMNS
    rows = conn.execute(
        f"SELECT {columns} FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        f"WHERE m.id IN ({marks}) ORDER BY m.id {order}",
        ids,
    ).fetchall()
    if not full:
        return [_message(r) for r in rows]
    width = len(RESTORE_FIELDS)
    return [{**_message(r[:-width]), **dict(zip(RESTORE_FIELDS, r[-width:], strict=True))} for r in rows]


def messages_plain(conn: Conn, q: MessageQuery) -> Page:
    """Messages without a keyword: an index range scan on (device or conversation, time-ordered id)."""
    lo, hi = id_range(q.start, q.end)
    bounded = q.start is not None or q.end is not None
    if q.conversation is not None:
        conv = conversation_id(conn, q.device_id, q.conversation)
        if conv is None:
            return Page([], 0)
        where, params = "conversation_id = ?", [conv[0]]
        known_total: int | None = None if bounded else conv[1]
    else:
        where, params = "device_id = ?", [q.device_id]
        known_total = None
        if not bounded:
            known_total = conn.execute(
                "SELECT messages_count FROM devices WHERE id = ?", (q.device_id,)
            ).fetchone()[0]
    if bounded:
        where += " AND id BETWEEN ? AND ?"
        params += [lo, hi]
    return message_page(conn, "messages", "id", where, params, q, known_total)


def message_page(
    conn: Conn, table: str, key: str, where: str, params: list[Any], q: MessageQuery, total: int | None = None
) -> Page:
    """One page of messages: ids in time order from ``table`` (by offset or after the cursor),
    the total of the whole query (unless already known), then the rows."""
    order = "ASC" if q.ascending else "DESC"
    page_where, page_params = keyset(where, params, key, q.after, q.ascending)
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT {key} FROM {table} WHERE {page_where} ORDER BY {key} {order} LIMIT ? OFFSET ?",
            (*page_params, q.limit, page_offset(q)),
        ).fetchall()
    ]
    capped = False
    if total is None:
        total, capped = count_matches(conn, f"SELECT 1 FROM {table} WHERE {where}", params, q)
    return page_of(conn, ids, total, capped, q)


def count_matches(conn: Conn, select: str, params: list[Any], q: MessageQuery) -> tuple[int, bool]:
    """(how many rows ``select`` gives, whether counting stopped at ``q.count_limit``); -1 when
    ``q`` asks for no count."""
    if not q.count:
        return -1, False
    if q.count_limit is None:
        return int(conn.execute(f"SELECT count(*) FROM ({select}) AS hits", params).fetchone()[0]), False
    found = conn.execute(f"SELECT count(*) FROM ({select} LIMIT ?) AS hits", (*params, q.count_limit + 1))
    return capped_total(int(found.fetchone()[0]), q.count_limit)


def capped_total(counted: int, limit: int | None) -> tuple[int, bool]:
    """(the total to report, whether it is capped) of ``counted`` rows, counted to one past ``limit``."""
    return (limit, True) if limit is not None and counted > limit else (counted, False)


def page_offset(q: MessageQuery) -> int:
    """Rows skipped before the page: none after a cursor, which says where the page starts."""
    return 0 if q.after is not None else q.offset


def page_of(conn: Conn, ids: list[int], total: int, capped: bool, q: MessageQuery) -> Page:
    """The page of messages ``ids`` (found in ``q``'s order) of a query of ``total`` matches."""
    next_key = ids[-1] if len(ids) == q.limit else None
    if q.full and ids:
        kept = _within_budget(conn, ids)
        if len(kept) < len(ids):
            ids, next_key = kept, kept[-1]
    return Page(message_rows(conn, ids, q.ascending, q.full), total, next_key, capped)


#: Most characters of message text one export page holds: a page is 500 messages, but callbacks
#: may carry texts of megabytes, and 500 of those would be gigabytes in memory.
PAGE_CHARS = 4_000_000


def _within_budget(conn: Conn, ids: list[int]) -> list[int]:
    """The longest prefix of ``ids`` whose texts fit :data:`PAGE_CHARS` (at least one message)."""
    marks = ", ".join("?" * len(ids))
    sizes = dict(
        conn.execute(
            "SELECT id, length(content) + coalesce(length(quote_content), 0) "
            f"FROM messages WHERE id IN ({marks})",
            ids,
        ).fetchall()
    )
    used = 0
    for n, message_id in enumerate(ids):
        used += int(sizes.get(message_id) or 0)
        if used > PAGE_CHARS and n > 0:
            return ids[:n]
    return ids


def _message(r: Any) -> dict[str, Any]:
    (
        mid,
        conv_key,
        msg_id,
        seq,
        appinfo,
        sender,
        content,
        sendtime,
        type_,
        msg_type,
        direction,
        sender_name,
        revoked,
        at_list,
        quote_content,
        quote_appinfo,
        room_id,
    ) = r
    return {
        "id": msg_id or appinfo or seq or str(mid),
        "conversation_id": conv_key,
        "from": sender,
        "content": content,
        "timestamp": iso_utc(sendtime),
        "type": type_,
        "direction": direction,
        "sender_name": sender_name,
        "revoked": bool(revoked),
        "at_list": json.loads(at_list),
        "quote_appinfo": quote_appinfo or None,
        "quote_content": quote_content or None,
        "appinfo": appinfo,
        "seq": seq,
        "msg_type": msg_type,
        "room_id": room_id,
    }
