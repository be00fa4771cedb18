"""Copy a whole store to another (SQLite -> PostgreSQL, or any pair), resumably.

Rows keep their ids, so references between tables stay valid. Every table is copied in chunks in
key order with ``ON CONFLICT DO NOTHING``; a chunk the destination already holds in full is
skipped, so an interrupted copy resumes where it stopped and a repeated copy picks up rows that
arrived meanwhile. Counters are recomputed at the end, and the destination's search index is built
as rows arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from juhe_sync.errors import ApiError
from juhe_sync.storage.sqlstore import SQLStore

CHUNK = 2000

#: Tables not copied, and why: every other table of the schema is, column for column.
SKIPPED = {
    "schema_migrations": "the destination has its own, from migrating",
    "leases": "work leases belong to the running processes of the source",
    "message_fts": "the search index is rebuilt in the destination as messages arrive",
}


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


def tables(source: SQLStore, destination: SQLStore) -> list[Table]:
    """Every table of the source's schema (devices first), with the columns both stores have.

    Columns come from the schema, not from a list here: a migration that adds a table or a
    column is copied without anyone remembering to add it. Columns a backend derives itself (the
    PostgreSQL search grams) are left out and rebuilt."""
    src, dst = source.schema(), destination.schema()
    derived = set(source.writer.dialect.extra_columns) | set(destination.writer.dialect.extra_columns)
    found = []
    for name in sorted(src, key=lambda n: (n != "devices", n)):
        if name in SKIPPED or any(name.startswith(f"{skipped}_") for skipped in SKIPPED):
            continue
        columns, key = src[name]
        if name not in dst:
            raise ApiError(f"the destination has no table {name}: migrate it with this version", status=400,
                           code="INVALID_PARAMS")  # fmt: skip
        missing = [c for c in columns if c not in dst[name][0] and c not in derived]
        if missing:
            raise ApiError(
                f"the destination's {name} lacks {', '.join(missing)}", status=400, code="INVALID_PARAMS"
            )
        if not key:
            raise ApiError(
                f"table {name} has no primary key to copy it by", status=500, code="INTERNAL_ERROR"
            )
        found.append(Table(name, key, tuple(c for c in columns if c not in derived)))
    return found


def count_rows(source: SQLStore, destination: SQLStore) -> int:
    """Rows to read: the total of the progress bar."""
    return sum(
        int(_rows(source, f"SELECT count(*) FROM {t.name}", ())[0][0]) for t in tables(source, destination)
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
    for table in tables(source, destination):
        inserted[table.name] = _copy_table(source, destination, table, progress)
    destination.submit(_finish).result()
    destination.after_copy()
    return inserted


def _copy_table(
    source: SQLStore, destination: SQLStore, table: Table, progress: Callable[[int], None] | None
) -> int:
    total = 0
    for rows in _chunks(source, table, table.columns):
        total += _write(destination, table, rows)
        if progress is not None:
            progress(len(rows))
    if table.name not in _APPEND_ONLY:
        _prune(source, destination, table)
    return total


def _chunks(store: SQLStore, table: Table, columns: tuple[str, ...]) -> Iterator[list[Any]]:
    """``columns`` of every row of ``table``, CHUNK rows at a time in key order (keyset paging:
    each chunk starts after the key of the last, so the cost per chunk stays flat)."""
    cols = ", ".join(columns)
    order = ", ".join(table.key)
    key_index = [columns.index(k) for k in table.key]
    after: tuple[Any, ...] | None = None
    while True:
        if after is None:
            sql, params = f"SELECT {cols} FROM {table.name} ORDER BY {order} LIMIT ?", (CHUNK,)
        else:
            marks = ", ".join("?" * len(table.key))
            sql = f"SELECT {cols} FROM {table.name} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT ?"
            params = (*after, CHUNK)
        rows = _rows(store, sql, params)
        if not rows:
            return
        yield rows
        after = tuple(rows[-1][i] for i in key_index)


#: Large tables that grow and change only in known ways (a message revoked, a journal entry
#: replayed): new rows are inserted, a chunk the destination holds in full is not inserted again,
#: and the known changes are carried over (:func:`_carry_changes`). Every other table is small and
#: upserted, so a repeated copy brings its current state.
_APPEND_ONLY = ("journal", "messages")


def _insert(destination: SQLStore, conn: Any, table: Table, rows: list[Any]) -> int:
    columns = table.columns
    append_only = table.name in _APPEND_ONLY
    if append_only:
        # What changes in place in those tables: a message gets revoked, a journal entry is
        # replayed (failed -> ok) or fails. Carried over whether or not the chunk is new.
        changed = _carry_changes(destination, conn, table, rows)
        lo, hi = rows[0][0], rows[-1][0]
        have = conn.execute(
            f"SELECT count(*) FROM {table.name} WHERE id BETWEEN ? AND ?", (lo, hi)
        ).fetchone()[0]
        if have == len(rows):
            return changed  # the rows are there already (a resumed or repeated copy)
    dialect = destination.writer.dialect
    is_messages = table.name == "messages"
    extra = dialect.extra_columns if is_messages else ()
    names = ", ".join(columns + extra)
    marks = ", ".join("?" * (len(columns) + len(extra)))
    changes = [c for c in columns if c not in table.key]
    if append_only or not changes:
        conflict = "DO NOTHING"
    else:
        assignments = ", ".join(f"{c} = excluded.{c}" for c in changes)
        differs = " OR ".join(f"{table.name}.{c} {destination.distinct} excluded.{c}" for c in changes)
        conflict = f"DO UPDATE SET {assignments} WHERE {differs}"
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT ({', '.join(table.key)}) {conflict} RETURNING 1"
    where = {c: i for i, c in enumerate(columns)}
    inserted = 0
    for row in rows:
        values = tuple(row)
        index = None
        if is_messages:
            device, conversation = row[where["device_id"]], row[where["conversation_id"]]
            index = dialect.text_index(row[where["content"]]) if row[where["searchable"]] else None
            values += dialect.extra_values(device, conversation, index)
        if conn.execute(sql, values).fetchone() is None:
            continue
        inserted += 1
        if index is not None:
            dialect.index_message(conn, row[where["id"]], device, conversation, index)
    return inserted


def _carry_changes(destination: SQLStore, conn: Any, table: Table, rows: list[Any]) -> int:
    where = {c: i for i, c in enumerate(table.columns)}
    changed = 0
    if table.name == "messages":
        for row in rows:
            if row[where["revoked"]]:
                found = conn.execute(
                    "UPDATE messages SET revoked = 1 WHERE id = ? AND revoked = 0 RETURNING 1",
                    (row[where["id"]],),
                ).fetchone()
                changed += found is not None
    else:
        sql = (
            f"UPDATE journal SET status = ?, error = ? WHERE id = ? "
            f"AND (status <> ? OR error {destination.distinct} ?) RETURNING 1"
        )
        for row in rows:
            status, error = row[where["status"]], row[where["error"]]
            found = conn.execute(sql, (status, error, row[where["id"]], status, error)).fetchone()
            changed += found is not None
    return changed


def _rows(store: SQLStore, sql: str, params: Sequence[Any]) -> list[Any]:
    def run(conn: Any) -> list[Any]:
        return list(conn.execute(sql, params).fetchall())

    return store.read(run)


def _write(destination: SQLStore, table: Table, rows: list[Any]) -> int:
    def run(conn: Any) -> int:
        return _insert(destination, conn, table, rows)

    return destination.submit(run).result()


def _delete(destination: SQLStore, sql: str, keys: list[tuple[Any, ...]]) -> None:
    def run(conn: Any) -> None:
        for key in keys:
            conn.execute(sql, key)

    destination.submit(run).result()


def _prune(source: SQLStore, destination: SQLStore, table: Table) -> None:
    """Delete the destination's rows the source no longer has (a member who left a room, a token
    revoked), so that a repeated copy converges to the source."""
    order = ", ".join(table.key)
    key = f"({order})" if len(table.key) > 1 else order
    for chunk in _chunks(destination, table, table.key):
        keys = [tuple(r) for r in chunk]
        one = f"({', '.join('?' * len(table.key))})" if len(table.key) > 1 else "?"
        listed = ", ".join([one] * len(keys))
        flat = [v for k in keys for v in k]
        present = {
            tuple(r)
            for r in _rows(source, f"SELECT {order} FROM {table.name} WHERE {key} IN ({listed})", flat)
        }
        gone = [k for k in keys if k not in present]
        if gone:
            delete = f"DELETE FROM {table.name} WHERE " + " AND ".join(f"{c} = ?" for c in table.key)
            _delete(destination, delete, gone)


def _finish(conn: Any) -> None:
    """Counters from the copied rows (the source may have moved on while it was read)."""
    conn.execute(
        "UPDATE devices SET "
        "contacts_count = (SELECT count(*) FROM contacts c WHERE c.device_id = devices.id AND c.deleted = 0), "
        "rooms_count = (SELECT count(*) FROM rooms r WHERE r.device_id = devices.id), "
        "messages_count = (SELECT count(*) FROM messages m WHERE m.device_id = devices.id)"
    )
    conn.execute(
        "UPDATE conversations SET "
        "message_count = (SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id), "
        "last_message_id = (SELECT max(id) FROM messages m WHERE m.conversation_id = conversations.id)"
    )
