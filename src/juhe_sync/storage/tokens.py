"""API tokens and verified devices in the database (SQL shared by every backend)."""

from __future__ import annotations

import json
from typing import Any

from juhe_sync.records import TokenRecord
from juhe_sync.timeutil import now_iso

_COLUMNS = "name, guids, admin, created_at, last_used_at"


def _record(row: Any) -> TokenRecord:
    guids = None if row[1] is None else tuple(json.loads(row[1]))
    return TokenRecord(row[0], guids, bool(row[2]), row[3], row[4])


def create(
    conn: Any, name: str, token_hash: bytes, guids: list[str] | None, admin: bool
) -> TokenRecord | None:
    """Insert a token; None if the name is taken."""
    row = conn.execute(
        f"INSERT INTO api_tokens (name, token_hash, guids, admin, created_at) VALUES (?, ?, ?, ?, ?) "
        f"ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
        (name, token_hash, None if guids is None else json.dumps(sorted(set(guids))), int(admin), now_iso()),
    ).fetchone()
    return None if row is None else _record(row)


def by_hash(conn: Any, token_hash: bytes) -> tuple[TokenRecord, bytes] | None:
    row = conn.execute(
        f"SELECT {_COLUMNS}, token_hash FROM api_tokens WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    return None if row is None else (_record(row), bytes(row[5]))


def listing(conn: Any) -> list[TokenRecord]:
    return [_record(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY name").fetchall()]


def count(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0])


def revoke(conn: Any, name: str) -> bool:
    return (
        conn.execute("DELETE FROM api_tokens WHERE name = ? RETURNING name", (name,)).fetchone() is not None
    )


def touch(conn: Any, name: str, when: str) -> None:
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (when, name))


def mark_verified(conn: Any, guid: str) -> None:
    conn.execute("UPDATE devices SET verified = 1 WHERE guid = ? AND verified = 0", (guid,))


def verified_guids(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT guid FROM devices WHERE verified = 1 ORDER BY id").fetchall()]
