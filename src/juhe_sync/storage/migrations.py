"""Schema migrations for every backend, declared in one place and applied in order.

Each migration is a version, a name and the statements per dialect. Every table is keyed by the
device first, so that a PostgreSQL deployment can partition or distribute by device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from juhe_sync.storage import search
from juhe_sync.timeutil import now_iso


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


_CORE_COMMON = (
    """CREATE TABLE devices (
        id {pk},
        guid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL DEFAULT 'wecom',
        state TEXT NOT NULL DEFAULT 'unknown',
        account_id TEXT,
        account_name TEXT,
        corp_id TEXT,
        avatar TEXT,
        last_callback_time TEXT,
        last_sync_time TEXT,
        last_error TEXT,
        contacts_count BIGINT NOT NULL DEFAULT 0,
        rooms_count BIGINT NOT NULL DEFAULT 0,
        messages_count BIGINT NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE journal (
        id {pk},
        device_id BIGINT NOT NULL,
        event_key {blob} NOT NULL UNIQUE,
        notify_type BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT
    )""",
    "CREATE INDEX journal_device ON journal (device_id, id)",
    "CREATE INDEX journal_failed ON journal (status) WHERE status <> 'ok'",
    """CREATE TABLE contacts (
        device_id BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT,
        remark TEXT,
        avatar TEXT,
        type TEXT NOT NULL,
        corp_id TEXT,
        source TEXT NOT NULL,
        name_seen_at BIGINT,
        deleted SMALLINT NOT NULL DEFAULT 0,
        extra TEXT,
        PRIMARY KEY (device_id, user_id)
    )""",
    """CREATE TABLE rooms (
        device_id BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        name TEXT,
        owner TEXT,
        member_count BIGINT,
        avatar TEXT,
        version BIGINT,
        dismissed SMALLINT NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, room_id)
    )""",
    """CREATE TABLE conversations (
        id {pk},
        device_id BIGINT NOT NULL,
        conv_key TEXT NOT NULL,
        message_count BIGINT NOT NULL DEFAULT 0,
        last_message_id BIGINT,
        UNIQUE (device_id, conv_key)
    )""",
    """CREATE TABLE messages (
        id {ipk},
        device_id BIGINT NOT NULL,
        conversation_id BIGINT NOT NULL,
        dedup_key TEXT NOT NULL,
        msg_id TEXT,
        seq TEXT,
        appinfo TEXT,
        sender TEXT NOT NULL,
        receiver TEXT,
        room_id TEXT,
        sender_name TEXT,
        direction TEXT NOT NULL,
        msg_type BIGINT,
        type TEXT NOT NULL,
        content TEXT NOT NULL,
        searchable SMALLINT NOT NULL,
        sendtime BIGINT NOT NULL,
        flag BIGINT NOT NULL,
        send_flag BIGINT NOT NULL,
        content_type BIGINT,
        at_list TEXT NOT NULL,
        quote_content TEXT,
        quote_appinfo TEXT,
        revoked SMALLINT NOT NULL DEFAULT 0,
        journal_id BIGINT,
        fingerprint TEXT NOT NULL,
        UNIQUE (device_id, dedup_key)
    )""",
    "CREATE INDEX messages_device ON messages (device_id, id)",
    "CREATE INDEX messages_conversation ON messages (conversation_id, id)",
    "CREATE INDEX messages_msg_id ON messages (device_id, msg_id)",
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE revocations (
        device_id BIGINT NOT NULL,
        msg_id TEXT NOT NULL,
        PRIMARY KEY (device_id, msg_id)
    )""",
)


def _dialect(statements: tuple[str, ...], pk: str, ipk: str, blob: str) -> tuple[str, ...]:
    return tuple(s.replace("{pk}", pk).replace("{ipk}", ipk).replace("{blob}", blob) for s in statements)


_PULL = (
    "ALTER TABLE contacts ADD COLUMN labels TEXT",
    # The full contact sync that last listed the contact: one that did not was deleted upstream.
    "ALTER TABLE contacts ADD COLUMN sync_generation BIGINT",
    "ALTER TABLE contacts ADD COLUMN synced_at TEXT",
    "ALTER TABLE rooms ADD COLUMN extra TEXT",
    "ALTER TABLE rooms ADD COLUMN synced_at TEXT",
    """CREATE TABLE room_members (
        device_id BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        nickname TEXT,
        room_nickname TEXT,
        join_time BIGINT,
        inviter TEXT,
        PRIMARY KEY (device_id, room_id, user_id)
    )""",
    # One row per device and kind of pull (contacts, rooms, profile, messages). ``cursor`` is where
    # the next incremental run starts; ``run_*`` is the position of the run in progress, committed
    # with each page, so a run that dies resumes where it stopped.
    """CREATE TABLE sync_state (
        device_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'idle',
        cursor TEXT,
        generation BIGINT NOT NULL DEFAULT 0,
        run_full SMALLINT NOT NULL DEFAULT 0,
        run_cursor TEXT,
        done BIGINT NOT NULL DEFAULT 0,
        total BIGINT,
        started_at TEXT,
        heartbeat_at DOUBLE PRECISION,
        finished_at TEXT,
        succeeded_at TEXT,
        last_error TEXT,
        PRIMARY KEY (device_id, kind)
    )""",
)

# API tokens: only a SHA-256 of each token is kept; ``guids`` is a JSON list (NULL: every device).
_TOKENS = (
    """CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        token_hash {blob} NOT NULL UNIQUE,
        guids TEXT,
        admin SMALLINT NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        last_used_at TEXT
    )""",
    # Devices whose callbacks proved the callback secret (or came over WebSocket): pull sync may
    # spend SaaS quota on them, never on a GUID that only appeared in an unauthenticated request.
    "ALTER TABLE devices ADD COLUMN verified SMALLINT NOT NULL DEFAULT 0",
)

# The conversation list: a device's conversations by latest activity (message ids follow time).
_CONVERSATION_LIST = ("CREATE INDEX conversations_recent ON conversations (device_id, last_message_id)",)

# sync-status counts a device's failed journal entries: from the few failed rows, not from every
# row of the device (which the planner picked over the status-only partial index: 87 ms at 550k).
_FAILED_PER_DEVICE = ("CREATE INDEX journal_failed_device ON journal (device_id) WHERE status <> 'ok'",)

# A device's purge watermark: nothing sent before it is stored again, whatever brings it (a
# redelivery in another envelope, a replay of an event that also carried it, a pull, an import).
_PURGED_BEFORE = ("ALTER TABLE devices ADD COLUMN purged_before BIGINT",)

# FTS5 keeps its index as segments, merged level by level. Every write transaction adds a small
# one, and by default FTS5 merges 4 of a level into one of the next: a posting was rewritten at
# every level (FTS5 pages were 3.4 of the 9.2 pages a single callback wrote to the WAL, 1M
# messages), and the merging came in bursts, a work unit of 64 pages per level inside every
# 64th commit, or a whole level at once when it reached 16 segments (a commit of 7.6 s measured
# on a grown index). So the index no longer merges on its own: merges take 16 segments of a level
# at a time (a posting is rewritten a third as often), and the write transactions that index
# something merge in bounded steps before their COMMIT (storage.sqlite, MERGE_STEP).
# At 64 segments a level is still merged at once, as a safety valve (BENCHMARKS.md).
_MERGE_SETTINGS = (
    "INSERT INTO message_fts (message_fts, rank) VALUES ('automerge', 0)",
    "INSERT INTO message_fts (message_fts, rank) VALUES ('usermerge', 16)",
    "INSERT INTO message_fts (message_fts, rank) VALUES ('crisismerge', 64)",
)

# PostgreSQL's search grams carry their device (storage.search): a text gram takes the device's
# slot, and the device-wide token, which every search intersected with the keyword's posting
# lists, goes. Only rows that still have that token change; running it on a row already changed
# changes nothing (the slot's bits are OR-ed in again). The table is rewritten in place (as fast as
# dropping the index and building it again, measured on 200,000 messages, and the index keeps
# its settings), which takes minutes per ten million messages and leaves the old row versions to
# (auto)vacuum.


def _device_grams(where: str) -> str:
    slot = (
        f"CASE WHEN device_id < {search.OWN_SLOT_BELOW} THEN device_id "
        f"ELSE {search.OWN_SLOT_BELOW} | (device_id & {search.OWN_SLOT_BELOW - 1}) END"
    )
    return (
        f"UPDATE messages SET grams = ARRAY(SELECT CASE WHEN g >= 0 THEN ({slot} << {search.DEVICE_SHIFT}) | g "
        f"ELSE g END FROM unnest(grams) AS g WHERE g <> -device_id) WHERE {where}"
    )


_DEVICE_GRAMS = (_device_grams("grams @> ARRAY[-device_id]"),)

#: Run by every migration on PostgreSQL, after the pending ones: rows that a process of an earlier
#: release wrote after migration 8 (while a new one had already started) still have the device
#: token. The index finds them: when there are none, this is a lookup per device.
STRAY_DEVICE_GRAMS = _device_grams("grams && (SELECT array_agg(-id) FROM devices)")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "core schema",
        sqlite=(
            *_dialect(_CORE_COMMON, "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY", "BLOB"),
            # Contentless: the text lives in messages; the index holds only hex-coded n-grams.
            "CREATE VIRTUAL TABLE message_fts USING fts5("
            "meta, uni, bi, content='', detail=full, tokenize='ascii')",
        ),
        postgresql=(
            *_dialect(_CORE_COMMON, "BIGSERIAL PRIMARY KEY", "BIGINT PRIMARY KEY", "BYTEA"),
            # Low bits of the time-ordered message ids; wraps, and a rare collision draws again.
            "CREATE SEQUENCE message_id_low CYCLE MAXVALUE 1048575",
            "ALTER TABLE messages ADD COLUMN grams BIGINT[]",
            "CREATE INDEX messages_grams ON messages USING gin (grams)",
        ),
    ),
    Migration(
        2, "pull sync: contact and room details, room members, sync state", sqlite=_PULL, postgresql=_PULL
    ),
    Migration(
        3,
        "API tokens, verified devices",
        sqlite=_dialect(_TOKENS, "", "", "BLOB"),
        postgresql=_dialect(_TOKENS, "", "", "BYTEA"),
    ),
    Migration(4, "conversation list", sqlite=_CONVERSATION_LIST, postgresql=_CONVERSATION_LIST),
    Migration(5, "failed events per device", sqlite=_FAILED_PER_DEVICE, postgresql=_FAILED_PER_DEVICE),
    Migration(6, "purge watermark", sqlite=_PURGED_BEFORE, postgresql=_PURGED_BEFORE),
    Migration(7, "search index merged a step at every write", sqlite=_MERGE_SETTINGS, postgresql=()),
    Migration(8, "search grams scoped to their device", sqlite=(), postgresql=_DEVICE_GRAMS),
)


def apply_pending(conn: Any, dialect: str) -> list[str]:
    """Apply the migrations ``conn`` lacks, in the caller's transaction; returns their names."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in getattr(migration, dialect):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, now_iso()),
        )
        applied.append(f"{migration.version} {migration.name}")
    return applied
