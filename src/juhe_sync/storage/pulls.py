"""Storing what pull sync fetched, and the sync state that makes every run resumable.

Each function runs inside one write transaction owned by the caller: the rows of a page and the
position after that page are committed together, so a run killed at any point resumes from the
last committed page and never stores a page twice or skips one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from juhe_sync.records import ContactRow, MemberRow, Profile, RoomDetail, RoomRow
from juhe_sync.storage.sql import Conn
from juhe_sync.timeutil import now_iso


@dataclass(slots=True)
class SyncRun:
    """Where a run starts: a fresh one, or the continuation of one that stopped."""

    kind: str
    full: bool
    generation: int
    #: Position to resume from: ``run_cursor`` of a resumed run, else the incremental cursor.
    cursor: str | None
    done: int


def begin(conn: Conn, device_id: int, kind: str, full: bool) -> SyncRun:
    """Start a run of ``kind``, or resume the last one if it did not finish.

    Runs happen only under the device's work lease, so a run found ``running`` died with its
    process, and one found in ``error`` stopped at a failed page: both resume from their last
    committed page (a full run stays full). Asking for a full run over an unfinished incremental
    one starts afresh.
    """
    conn.execute(
        "INSERT INTO sync_state (device_id, kind) VALUES (?, ?) ON CONFLICT DO NOTHING", (device_id, kind)
    )
    status, cursor, generation, run_full, run_cursor, done = conn.execute(
        "SELECT status, cursor, generation, run_full, run_cursor, done FROM sync_state "
        "WHERE device_id = ? AND kind = ?",
        (device_id, kind),
    ).fetchone()
    now = time.time()
    unfinished = status in ("running", "error") and run_cursor is not None
    if unfinished and (run_full or not full):
        conn.execute(
            "UPDATE sync_state SET status = 'running', heartbeat_at = ?, last_error = NULL "
            "WHERE device_id = ? AND kind = ?",
            (now, device_id, kind),
        )
        return SyncRun(kind, bool(run_full), int(generation), run_cursor, int(done))
    generation = int(generation) + (1 if full else 0)
    conn.execute(
        "UPDATE sync_state SET status = 'running', generation = ?, run_full = ?, run_cursor = NULL, done = 0, "
        "total = NULL, started_at = ?, heartbeat_at = ?, last_error = NULL WHERE device_id = ? AND kind = ?",
        (generation, int(full), now_iso(), now, device_id, kind),
    )
    return SyncRun(kind, full, generation, None if full else cursor, 0)


def progress(
    conn: Conn, device_id: int, kind: str, run_cursor: str | None, done: int, total: int | None = None
) -> None:
    conn.execute(
        "UPDATE sync_state SET run_cursor = ?, done = ?, total = coalesce(?, total), heartbeat_at = ? "
        "WHERE device_id = ? AND kind = ?",
        (run_cursor, done, total, time.time(), device_id, kind),
    )


def finish(conn: Conn, device_id: int, kind: str, cursor: str | None = None) -> None:
    """The run succeeded: ``cursor`` (if given) is where the next incremental run starts."""
    now = now_iso()
    conn.execute(
        "UPDATE sync_state SET status = 'idle', cursor = coalesce(?, cursor), run_cursor = NULL, run_full = 0, "
        "finished_at = ?, succeeded_at = ?, heartbeat_at = NULL, last_error = NULL WHERE device_id = ? AND kind = ?",
        (cursor, now, now, device_id, kind),
    )
    # The device's error stays while another kind is still failed.
    conn.execute(
        "UPDATE devices SET last_sync_time = ?, last_error = CASE WHEN EXISTS "
        "(SELECT 1 FROM sync_state WHERE device_id = ? AND status = 'error') THEN last_error ELSE NULL END "
        "WHERE id = ?",
        (now, device_id, device_id),
    )


def fail(conn: Conn, device_id: int, kind: str, error: str) -> None:
    """The run failed: its position is kept, so the next run of the same kind resumes it."""
    conn.execute(
        "UPDATE sync_state SET status = 'error', finished_at = ?, heartbeat_at = NULL, last_error = ? "
        "WHERE device_id = ? AND kind = ?",
        (now_iso(), error[:2000], device_id, kind),
    )
    conn.execute(
        "UPDATE devices SET last_error = ? WHERE id = ?", (f"{kind} sync: {error}"[:2000], device_id)
    )


# --- contacts --------------------------------------------------------------------------------


def store_contacts(conn: Conn, device_id: int, rows: list[ContactRow], generation: int | None) -> None:
    """Upsert contacts from the platform (its name wins over names seen in messages). A row marked
    deleted upstream is flagged, never removed; ``generation`` is set on rows a full run listed."""
    now = now_iso()
    for row in rows:
        if row.deleted:
            conn.execute(
                "UPDATE contacts SET deleted = 1, synced_at = ? WHERE device_id = ? AND user_id = ?",
                (now, device_id, row.user_id),
            )
            continue
        conn.execute(
            "INSERT INTO contacts (device_id, user_id, name, remark, avatar, type, corp_id, source, deleted, "
            "extra, labels, sync_generation, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'sync', 0, ?, ?, ?, ?) "
            "ON CONFLICT (device_id, user_id) DO UPDATE SET name = excluded.name, remark = excluded.remark, "
            "avatar = excluded.avatar, type = excluded.type, corp_id = excluded.corp_id, source = 'sync', "
            "deleted = 0, extra = excluded.extra, labels = excluded.labels, "
            "sync_generation = coalesce(excluded.sync_generation, contacts.sync_generation), "
            "synced_at = excluded.synced_at",
            (device_id, row.user_id, row.name, row.remark, row.avatar, row.type, row.corp_id,
             _json(row.extra), _json(row.labels), generation, now),
        )  # fmt: skip
    _count_contacts(conn, device_id)


def mark_unlisted_deleted(conn: Conn, device_id: int, generation: int) -> None:
    """After a complete full run: platform contacts it did not list are gone upstream."""
    conn.execute(
        "UPDATE contacts SET deleted = 1 WHERE device_id = ? AND source = 'sync' AND deleted = 0 "
        "AND (sync_generation IS NULL OR sync_generation < ?)",
        (device_id, generation),
    )
    _count_contacts(conn, device_id)


def _count_contacts(conn: Conn, device_id: int) -> None:
    conn.execute(
        "UPDATE devices SET contacts_count = "
        "(SELECT count(*) FROM contacts WHERE device_id = ? AND deleted = 0) WHERE id = ?",
        (device_id, device_id),
    )


# --- rooms -----------------------------------------------------------------------------------


def store_rooms(conn: Conn, device_id: int, rooms: list[RoomRow]) -> None:
    """Rooms from ``get_room_list``: name and owner now; members and version come with details."""
    for room in rooms:
        conn.execute(
            "INSERT INTO rooms (device_id, room_id, name, owner, member_count, avatar, extra, synced_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, room_id) DO UPDATE SET "
            "name = coalesce(excluded.name, rooms.name), owner = coalesce(excluded.owner, rooms.owner), "
            "member_count = coalesce(rooms.member_count, excluded.member_count), "
            "avatar = coalesce(excluded.avatar, rooms.avatar), synced_at = excluded.synced_at",
            (device_id, room.room_id, room.name, room.owner, room.member_count, room.avatar, _json(room.extra),
             now_iso()),
        )  # fmt: skip
    _count_rooms(conn, device_id)


def store_room_details(conn: Conn, device_id: int, details: list[RoomDetail]) -> None:
    """Rooms with their member lists; the stored members become exactly the listed ones."""
    for detail in details:
        room = detail.room
        count = len(detail.members) if detail.members is not None else room.member_count
        conn.execute(
            "INSERT INTO rooms (device_id, room_id, name, owner, member_count, avatar, version, extra, synced_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, room_id) DO UPDATE SET "
            "name = coalesce(excluded.name, rooms.name), owner = coalesce(excluded.owner, rooms.owner), "
            "member_count = coalesce(excluded.member_count, rooms.member_count), "
            "avatar = coalesce(excluded.avatar, rooms.avatar), version = excluded.version, "
            "extra = excluded.extra, synced_at = excluded.synced_at",
            (device_id, room.room_id, room.name, room.owner, count, room.avatar, room.version, _json(room.extra),
             now_iso()),
        )  # fmt: skip
        if detail.members is not None:
            _replace_members(conn, device_id, room.room_id, detail.members)
    _count_rooms(conn, device_id)


def _replace_members(conn: Conn, device_id: int, room_id: str, members: list[MemberRow]) -> None:
    listed = {m.user_id for m in members}
    stored = {
        r[0]
        for r in conn.execute(
            "SELECT user_id FROM room_members WHERE device_id = ? AND room_id = ?", (device_id, room_id)
        ).fetchall()
    }
    for gone in stored - listed:
        conn.execute(
            "DELETE FROM room_members WHERE device_id = ? AND room_id = ? AND user_id = ?",
            (device_id, room_id, gone),
        )
    for m in members:
        conn.execute(
            "INSERT INTO room_members (device_id, room_id, user_id, nickname, room_nickname, join_time, inviter) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, room_id, user_id) DO UPDATE SET "
            "nickname = excluded.nickname, room_nickname = excluded.room_nickname, "
            "join_time = excluded.join_time, inviter = excluded.inviter",
            (device_id, room_id, m.user_id, m.nickname, m.room_nickname, m.join_time, m.inviter),
        )


def _count_rooms(conn: Conn, device_id: int) -> None:
    conn.execute(
        "UPDATE devices SET rooms_count = (SELECT count(*) FROM rooms WHERE device_id = ?) WHERE id = ?",
        (device_id, device_id),
    )


def room_versions(conn: Conn, device_id: int) -> dict[str, int | None]:
    """Every room of the device (listed or only seen in messages) with its stored version."""
    rows = conn.execute(
        "SELECT room_id, version FROM rooms WHERE device_id = ? ORDER BY room_id", (device_id,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


# --- messages ------------------------------------------------------------------------------


def newest_seq(conn: Conn, device_id: int) -> str | None:
    """The largest numeric ``seq`` among the device's newest messages (a first ``sync_key``)."""
    rows = conn.execute(
        "SELECT seq FROM messages WHERE device_id = ? ORDER BY id DESC LIMIT 200", (device_id,)
    ).fetchall()
    seqs = [int(r[0]) for r in rows if r[0] and str(r[0]).isdigit()]
    return str(max(seqs)) if seqs else None


# --- the account -----------------------------------------------------------------------------


def store_profile(conn: Conn, device_id: int, profile: Profile) -> None:
    conn.execute(
        "UPDATE devices SET account_id = ?, account_name = coalesce(?, account_name), "
        "corp_id = coalesce(?, corp_id), avatar = coalesce(?, avatar) WHERE id = ?",
        (profile.account_id, profile.name, profile.corp_id, profile.avatar, device_id),
    )


def sync_states(conn: Conn, device_id: int) -> list[dict[str, Any]]:
    """Each kind's run state, with ``alive``: whether some process holds the device's work lease
    now (a run left ``running`` without it died with its process)."""
    lease = conn.execute("SELECT expires_at FROM leases WHERE name = ?", (f"device:{device_id}",)).fetchone()
    alive = lease is not None and lease[0] > time.time()
    rows = conn.execute(
        "SELECT kind, status, done, total, started_at, succeeded_at, last_error, run_full "
        "FROM sync_state WHERE device_id = ? ORDER BY kind",
        (device_id,),
    ).fetchall()
    keys = ("kind", "status", "done", "total", "started_at", "succeeded_at", "last_error", "full")
    return [{**dict(zip(keys, r, strict=True)), "alive": alive} for r in rows]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
