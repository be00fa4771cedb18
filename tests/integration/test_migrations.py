"""Upgrading a populated database from the first schema: every later migration applies on top of
real data, nothing is lost, and the new features work on the old rows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import juhe_sync.storage.migrations as migrations
import juhe_sync.storage.writer as writer
from juhe_sync.records import MessageQuery
from juhe_sync.service.stores import open_store
from juhe_sync.storage import search, sqlite
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.sync.jobs import Syncer
from tests.conftest import PG_URL, SIM_GUID, Simulator, fresh_database
from tests.helpers import feed, feed_fixtures, snapshot


def rows(store: SQLStore, table: str, columns: tuple[str, ...]) -> list[tuple[object, ...]]:
    found = store.read(
        lambda c: c.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2").fetchall()
    )
    return [tuple(bytes(v) if isinstance(v, bytes | memoryview) else v for v in r) for r in found]


def test_upgrade_from_the_first_schema(
    database_url: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    # Today's write path, minus what it reads of later migrations (the old code never did).
    monkeypatch.setattr(writer, "DEVICE_ROW", "SELECT id, account_id, kind, NULL FROM devices WHERE guid = ?")
    old = open_store(database_url)
    try:
        assert old.migrate() == ["1 core schema"]
        feed_fixtures(old)
        feed(old, {"guid": SIM_GUID, "notify_type": 11010, "data": {"appinfo": "m1", "id": "1", "seq": "1",
             "sender": "7881300000001234", "receiver": "1688850000012345", "roomid": "0", "sendtime": 1718000000,
             "msg_type": 2, "content": "升级之前的消息"}})  # fmt: skip
        schema = {
            t: cols
            for t, (cols, _) in old.schema().items()
            if t not in ("schema_migrations", "message_fts") and not t.startswith("message_fts_")
        }
        before = {t: rows(old, t, cols) for t, cols in schema.items()}
    finally:
        old.close()
    monkeypatch.undo()

    store: SQLStore = open_store(database_url)
    try:
        applied = store.migrate()
        assert [a.split()[0] for a in applied] == [str(m.version) for m in migrations.MIGRATIONS[1:]]
        assert store.migrate() == []
        assert {t: rows(store, t, cols) for t, cols in schema.items()} == before
        view = snapshot(store)  # the API's view of the old rows, through today's queries
        assert view["counts"][2] == len(view["messages"]) == len([r for r in before["messages"] if r[1] == 1])
        # What the later migrations brought works on the old rows: pull sync, tokens, verified devices.
        assert Syncer(store, simulator.client()).sync(SIM_GUID, full=True).errors == []  # type: ignore[arg-type]
        device = store.device(SIM_GUID)
        assert device is not None and device.messages_count == 1 and device.contacts_count > 1
        assert store.create_token("after-upgrade", b"\x02" * 32, None, True) is not None
        store.mark_verified(SIM_GUID)
        assert store.verified_guids() == [SIM_GUID]
    finally:
        store.close()


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_a_database_not_in_utf8_is_refused_with_what_to_do() -> None:
    """Searches compare text by code point: in SQL_ASCII (what initdb makes under LC_ALL=C) they
    would quietly find nothing, so the store refuses such a database up front."""
    import random

    import psycopg

    from juhe_sync.errors import StorageError

    name = f"juhe_sql_ascii_{random.randrange(10**9)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    try:
        store = open_store(PG_URL.rsplit("/", 1)[0] + f"/{name}")
        try:
            with pytest.raises(StorageError, match="needs a UTF8 database, and this one is SQL_ASCII"):
                store.migrate()
        finally:
            store.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_postgres_search_grams_of_older_rows_are_scoped_to_their_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 8 rewrites the grams of rows written before it (a device-wide token, text grams
    without their device) into today's, and leaves rows already written today's way alone."""
    texts = ["升级之前的消息", "Upgrade 之前", "前", ""]

    def write(store: SQLStore, guid: str, first: int) -> None:
        feed(store, {"guid": guid, "notify_type": 11013, "data": [
            {"appinfo": f"{guid}-{first + n}", "sender": "7881300000001234", "sendtime": 1718000000 + first + n,
             "msg_type": 2, "content": text} for n, text in enumerate(texts)]})  # fmt: skip

    with fresh_database("postgresql", tmp_path) as url:
        monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:7])
        old = open_store(url)
        try:
            old.migrate()
            write(old, "grams-new", 0)  # today's grams, before the migration
            monkeypatch.setattr(search, "scoped_grams", lambda grams, d, c: [-(2**40 + c), -d, *grams])
            write(old, "grams-old-a", 0)
            # a device past the ids with a slot of their own (search.device_bits)
            old.submit(lambda c: c.execute("SELECT setval(pg_get_serial_sequence('devices', 'id'), ?)",
                                            (2**20 + 2,)).fetchone()).result()  # fmt: skip
            write(old, "grams-old-b", 0)
        finally:
            old.close()
        monkeypatch.undo()

        store = open_store(url)
        try:
            assert store.migrate() == ["8 search grams scoped to their device"]
            rows = store.read(
                lambda c: c.execute("SELECT device_id, conversation_id, content, grams FROM messages").fetchall()
            )
            assert len(rows) == 12
            for device_id, conversation_id, content, grams in rows:
                expected = search.scoped_grams(search.text_grams(content), device_id, conversation_id)
                assert sorted(grams) == sorted(expected), content
            # A process of the earlier release still writing after the migration (a rolling
            # upgrade): its rows are brought up to date by the next migration run, at any start.
            with monkeypatch.context() as patch:
                patch.setattr(search, "scoped_grams", lambda grams, d, c: [-(2**40 + c), -d, *grams])
                write(store, "grams-old-a", 20)
            assert store.migrate() == []
            for guid in ("grams-old-a", "grams-old-b", "grams-new"):
                write(store, guid, 10)  # and after it
                device = store.device(guid)
                assert device is not None and (device.id > 2**20) == (guid == "grams-old-b")
                rounds = 3 if guid == "grams-old-a" else 2
                for keyword, total in (("升级之前", 1), ("之前", 2), ("前", 3), ("upgrade", 1)):
                    page = store.messages(MessageQuery(device.id, keyword=keyword, limit=50))
                    assert page.total == total * rounds, keyword
                    assert all(m["id"].startswith(guid) for m in page.items), keyword
            rows = store.read(lambda c: c.execute("SELECT device_id, conversation_id, content, grams FROM messages").fetchall())
            assert len(rows) == 12 + 4 + 12
            for device_id, conversation_id, content, grams in rows:
                assert sorted(grams) == sorted(search.scoped_grams(search.text_grams(content), device_id, conversation_id))
        finally:
            store.close()


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_postgres_without_autovacuum_is_warned_about_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every callback updates its conversation's row: a server without autovacuum slows down."""
    with fresh_database("postgresql", tmp_path) as url:
        store = open_store(url)
        try:
            with caplog.at_level(logging.WARNING, logger="juhe_sync.storage"):
                store.migrate()
            setting = store.read(lambda c: c.execute("SHOW autovacuum").fetchone()[0])
        finally:
            store.close()
    warned = [r.getMessage() for r in caplog.records if "autovacuum is off" in r.getMessage()]
    assert len(warned) == (setting != "on")


def test_sqlite_search_index_merges_in_steps_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index does not merge on its own (its merges came in bursts inside commits); the writes
    that index something merge in steps, so its segments stay few."""
    store = open_store(f"sqlite:///{tmp_path / 'fts.db'}")
    try:
        store.migrate()
        config = dict(store.read(lambda c: c.execute("SELECT k, v FROM message_fts_config").fetchall()))
        assert (config["automerge"], config["usermerge"], config["crisismerge"]) == (0, 16, 64)

        def segments() -> int:
            return int(
                store.read(
                    lambda c: c.execute("SELECT count(DISTINCT segid) FROM message_fts_idx").fetchone()[0]
                )
            )

        def write(first: int, count: int) -> None:
            for n in range(first, first + count):  # one transaction each, as a quiet server writes them
                feed(store, {"guid": "merge-device", "notify_type": 11010, "data": {"appinfo": f"m{n}",
                     "sender": "7881300000001234", "sendtime": 1718000000 + n, "msg_type": 2, "content": f"第{n}条"}})  # fmt: skip

        write(0, 300)
        merged = segments()
        monkeypatch.setattr(sqlite, "_FTS_MERGE", "SELECT ?")  # the steps left out
        write(300, 300)
        assert merged <= 32 < segments()  # without the step they pile up (to 64: the safety valve)
        page = store.messages(MessageQuery(store.device("merge-device").id, keyword="条", limit=5))  # type: ignore[union-attr]
        assert page.total == 600
    finally:
        store.close()


def test_a_bulk_write_pays_its_merging_over_the_next_writes(tmp_path: Path) -> None:
    """At most MERGE_MOST pages of merging in one commit, whatever a transaction indexed."""
    store = open_store(f"sqlite:///{tmp_path / 'bulk.db'}")
    try:
        store.migrate()
        items = [{"appinfo": f"b{n}", "sender": "7881300000001234", "sendtime": 1718000000 + n, "msg_type": 2,
                  "content": f"批量{n}"} for n in range(600)]  # fmt: skip
        feed(store, {"guid": "bulk-device", "notify_type": 11013, "data": items})
        assert store.dialect.merge_owed == 600 - sqlite.MERGE_MOST  # type: ignore[attr-defined]
        feed(
            store, {"guid": "bulk-device", "notify_type": 11010, "data": {**items[0], "appinfo": "one-more"}}
        )
        assert store.dialect.merge_owed == 600 - sqlite.MERGE_MOST + sqlite.MERGE_PER_WRITE  # type: ignore[attr-defined]
    finally:
        store.close()
