"""Copy a whole store to another (SQLite -> PostgreSQL, or any pair), resumably.

Rows keep their ids, so references between tables stay valid. Every table is copied in chunks in
key order with ``ON CONFLICT DO NOTHING``; a chunk the destination already holds in full is
skipped, so an interrupted copy resumes where it stopped and a repeated copy picks up rows that
arrived meanwhile. Counters are recomputed at the end, and the destination's search index is built
as rows arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from juhe_sync.errors import ApiError
from juhe_sync.storage.sqlstore import SQLStore

CHUNK = 2000


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


TABLES = (
    Table(
        "devices",
        ("id",),
        (
            "id", "guid", "kind", "state", "account_id", "account_name", "corp_id", "avatar", "last_callback_time",
            "last_sync_time", "last_error", "contacts_count", "rooms_count", "messages_count", "created_at",
            "verified",
        ),
    ),
    Table("journal", ("id",), ("id", "device_id", "event_key", "notify_type", "received_at", "body", "status", "error")),
    Table("conversations", ("id",), ("id", "device_id", "conv_key", "message_count", "last_message_id")),
    Table(
        "messages",
        ("id",),
        (
            "id", "device_id", "conversation_id", "dedup_key", "msg_id", "seq", "appinfo", "sender", "receiver",
            "room_id", "sender_name", "direction", "msg_type", "type", "content", "searchable", "sendtime", "flag",
            "send_flag", "content_type", "at_list", "quote_content", "quote_appinfo", "revoked", "journal_id",
            "fingerprint",
        ),
    ),
    Table(
        "contacts",
        ("device_id", "user_id"),
        ("device_id", "user_id", "name", "remark", "avatar", "type", "corp_id", "source", "name_seen_at", "deleted", "extra"),
    ),
    Table(
        "rooms",
        ("device_id", "room_id"),
        ("device_id", "room_id", "name", "owner", "member_count", "avatar", "version", "dismissed"),
    ),
    Table("revocations", ("device_id", "msg_id"), ("device_id", "msg_id")),
    Table("api_tokens", ("name",), ("name", "token_hash", "guids", "admin", "created_at", "last_used_at")),
)  # fmt: skip


_MESSAGE_COLUMNS = TABLES[3].columns
_DEVICE, _CONVERSATION = _MESSAGE_COLUMNS.index("device_id"), _MESSAGE_COLUMNS.index("conversation_id")
_CONTENT, _SEARCHABLE = _MESSAGE_COLUMNS.index("content"), _MESSAGE_COLUMNS.index("searchable")


def count_rows(store: SQLStore) -> int:
    return sum(
        store.read(lambda c, t=t: c.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]) for t in TABLES
    )


def check_destination(source: SQLStore, destination: SQLStore) -> None:
    """Refuse a destination that holds other data: ids would clash."""
    src = dict(source.device_ids())
    dst = dict(destination.device_ids())
    clash = {i: g for i, g in dst.items() if src.get(i) != g}
    if clash:
        raise ApiError(
            f"the destination holds other devices ({len(clash)}); copy into an empty database",
            status=400,
            code="INVALID_PARAMS",
        )


def copy_store(
    source: SQLStore, destination: SQLStore, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Copy every table; returns the rows inserted per table (0 everywhere on a repeated copy)."""
    check_destination(source, destination)
    inserted: dict[str, int] = {}
    for table in TABLES:
        inserted[table.name] = _copy_table(source, destination, table, progress)
    destination.submit(_finish).result()
    destination.after_copy()
    return inserted


def _copy_table(
    source: SQLStore, destination: SQLStore, table: Table, progress: Callable[[int], None] | None
) -> int:
    cols = ", ".join(table.columns)
    order = ", ".join(table.key)
    key_index = [table.columns.index(k) for k in table.key]
    after: tuple[Any, ...] | None = None
    total = 0
    while True:
        if after is None:
            sql, params = f"SELECT {cols} FROM {table.name} ORDER BY {order} LIMIT ?", (CHUNK,)
        else:
            marks = ", ".join("?" * len(table.key))
            sql = f"SELECT {cols} FROM {table.name} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT ?"
            params = (*after, CHUNK)
        rows = source.read(lambda c, sql=sql, params=params: c.execute(sql, params).fetchall())
        if not rows:
            return total
        after = tuple(rows[-1][i] for i in key_index)
        total += destination.submit(lambda c, rows=rows: _insert(destination, c, table, rows)).result()
        if progress is not None:
            progress(len(rows))


def _insert(destination: SQLStore, conn: Any, table: Table, rows: list[Any]) -> int:
    if table.key == ("id",):
        lo, hi = rows[0][0], rows[-1][0]
        have = conn.execute(
            f"SELECT count(*) FROM {table.name} WHERE id BETWEEN ? AND ?", (lo, hi)
        ).fetchone()[0]
        if have == len(rows):
            return 0  # already copied (a resumed or repeated copy)
    columns = table.columns
    dialect = destination.writer.dialect
    extra = dialect.extra_columns if table.name == "messages" else ()
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns + extra)}) VALUES ({', '.join('?' * (len(columns) + len(extra)))}) "
        "ON CONFLICT DO NOTHING RETURNING 1"
    )
    is_messages = table.name == "messages"
    inserted = 0
    for row in rows:
        values = tuple(row)
        index = None
        if is_messages:
            index = dialect.text_index(row[_CONTENT]) if row[_SEARCHABLE] else None
            values += dialect.extra_values(row[_DEVICE], row[_CONVERSATION], index)
        if conn.execute(sql, values).fetchone() is None:
            continue
        inserted += 1
        if index is not None:
            dialect.index_message(conn, row[0], row[_DEVICE], row[_CONVERSATION], index)
    return inserted


def _finish(conn: Any) -> None:
    """Counters from the copied rows (the source may have moved on while it was read)."""
    conn.execute(
        "UPDATE devices SET "
        "contacts_count = (SELECT count(*) FROM contacts c WHERE c.device_id = devices.id), "
        "rooms_count = (SELECT count(*) FROM rooms r WHERE r.device_id = devices.id), "
        "messages_count = (SELECT count(*) FROM messages m WHERE m.device_id = devices.id)"
    )
    conn.execute(
        "UPDATE conversations SET "
        "message_count = (SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id), "
        "last_message_id = (SELECT max(id) FROM messages m WHERE m.conversation_id = conversations.id)"
    )
