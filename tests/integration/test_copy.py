"""``copy`` moves a whole store between backends; the copy answers every query like the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import juhe_sync.storage.copy as copy_module
from juhe_sync.records import MessageQuery
from juhe_sync.service.stores import open_store
from juhe_sync.storage.copy import copy_store
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.sync.jobs import Syncer
from tests.conftest import BACKENDS, GUID, SIM_GUID, Simulator, fixture_text, fresh_database
from tests.helpers import feed, feed_fixtures, snapshot
from tests.integration.test_pull_sync import stored
from tests.integration.test_store_queries import corpus  # noqa: F401  (fixture)


def queries(store: SQLStore) -> list:
    device = store.device(GUID)
    assert device is not None
    out = [snapshot(store)]
    for keyword in ("的", "报价", "报价单", "a", "👍", "ab c", "%"):
        page = store.messages(MessageQuery(device.id, keyword=keyword, limit=100))
        out.append((keyword, page.total, [m["id"] for m in page.items]))
    return out


@pytest.mark.parametrize("target", BACKENDS)
def test_copy_answers_like_the_source(store: SQLStore, corpus: list, target: str, tmp_path: Path) -> None:  # noqa: F811
    feed_fixtures(store)
    expected = queries(store)
    (tmp_path / "dst").mkdir()
    with fresh_database(target, tmp_path / "dst") as url:
        dst = open_store(url)
        dst.migrate()
        try:
            inserted = copy_store(store, dst)
            assert inserted["messages"] == expected[0]["counts"][2] == len(expected[0]["messages"])
            assert inserted["journal"] == store.journal_size()
            assert queries(dst) == expected
            assert set(copy_store(store, dst).values()) == {0}  # a repeated copy inserts nothing
            # the copy keeps ingesting: ids continue after the copied ones
            out = feed(dst, {"guid": "new-device", "notify_type": 11001, "data": {}})
            assert out.status == "stored"
            assert dst.device("new-device") is not None
        finally:
            dst.close()


def test_interrupted_copy_resumes(store: SQLStore, corpus: list, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    feed_fixtures(store)
    expected = queries(store)
    monkeypatch.setattr(copy_module, "CHUNK", 50)
    dst = open_store(f"sqlite:///{tmp_path / 'dst.db'}")
    dst.migrate()
    calls = {"n": 0}
    real = copy_module._insert

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("connection lost")
        return real(*args)

    monkeypatch.setattr(copy_module, "_insert", flaky)
    with pytest.raises(RuntimeError):
        copy_store(store, dst)
    monkeypatch.setattr(copy_module, "_insert", real)
    copy_store(store, dst)
    try:
        assert queries(dst) == expected
    finally:
        dst.close()


def test_copy_refuses_a_destination_with_other_data(store: SQLStore, tmp_path: Path) -> None:
    feed_fixtures(store)
    dst = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    dst.migrate()
    feed(dst, {"guid": "someone-else", "notify_type": 11001, "data": {}})
    try:
        with pytest.raises(Exception, match="other devices"):
            copy_store(store, dst)
    finally:
        dst.close()


def table_rows(store: SQLStore, table: copy_module.Table) -> list[tuple[Any, ...]]:
    order = ", ".join(table.key)
    rows = store.read(lambda c: c.execute(f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {order}").fetchall())
    # bytes/memoryview (BLOB/BYTEA) compare as bytes
    return [tuple(bytes(v) if isinstance(v, bytes | memoryview) else v for v in row) for row in rows]


def test_every_table_and_column_of_the_schema_is_copied(store: SQLStore) -> None:
    tables = {t.name: t for t in copy_module.tables(store, store)}
    schema = store.schema()
    for name, (columns, _) in schema.items():
        skipped = name in copy_module.SKIPPED or any(name.startswith(f"{s}_") for s in copy_module.SKIPPED)
        if skipped:
            assert name not in tables
            continue
        derived = set(store.writer.dialect.extra_columns)
        assert set(tables[name].columns) == set(columns) - derived, name


@pytest.mark.parametrize("target", BACKENDS)
def test_copy_after_pull_sync_keeps_every_row(store: SQLStore, simulator: Simulator, target: str, tmp_path: Path) -> None:
    """A full pull sync, upstream changes, callbacks and a token: every table arrives exactly, there
    and back again, and the counters equal what the API lists."""
    syncer = Syncer(store, simulator.client())  # type: ignore[arg-type]
    assert syncer.sync(SIM_GUID, full=True).errors == []
    simulator.post("/_sim/mutate", {"guid": SIM_GUID, "changes": 60})
    assert syncer.sync(SIM_GUID).errors == []
    feed_fixtures(store)
    store.create_token("crm", b"\x01" * 32, [SIM_GUID], False)
    store.mark_verified(SIM_GUID)
    tables = copy_module.tables(store, store)
    before = {t.name: table_rows(store, t) for t in tables}
    assert before["room_members"] and before["sync_state"] and any(r for r in before["contacts"])
    (tmp_path / "there").mkdir()
    (tmp_path / "back").mkdir()
    with fresh_database(target, tmp_path / "there") as there_url, fresh_database("sqlite", tmp_path / "back") as back_url:
        there, back = open_store(there_url), open_store(back_url)
        try:
            for dst in (there, back):
                dst.migrate()
            copy_store(store, there)
            copy_store(there, back)
            for copied in (there, back):
                for table in tables:
                    assert table_rows(copied, table) == before[table.name], table.name
                api = stored(copied)
                device = copied.device(SIM_GUID)
                assert device is not None
                assert device.contacts_count == len(api["contacts"]) and device.rooms_count == len(api["rooms"])
                assert api == stored(store)
            # Upstream changes after the copy reach the destination on the next copy.
            simulator.post("/_sim/mutate", {"guid": SIM_GUID, "changes": 30})
            assert syncer.sync(SIM_GUID).errors == []
            copy_store(store, there)
            assert stored(there) == stored(store)
            assert table_rows(there, tables[0]) == table_rows(store, tables[0])  # devices
        finally:
            there.close()
            back.close()


@pytest.mark.parametrize("target", BACKENDS)
def test_a_repeated_copy_carries_revokes_and_replays(store: SQLStore, target: str, tmp_path: Path, monkeypatch) -> None:
    """Rows of the append-only tables that change in place (a message revoked, a failed journal
    entry replayed) reach a destination that already has them."""
    from juhe_sync.storage.writer import Writer

    feed(store, fixture_text("callback_11010_text_private_outbound.json"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(Writer, "prepare", broken)  # normalising fails: whichever way it is written
    assert feed(store, fixture_text("callback_11010_text_room.json")).status == "failed"
    monkeypatch.undo()
    (tmp_path / "dst").mkdir()
    with fresh_database(target, tmp_path / "dst") as url:
        dst = open_store(url)
        dst.migrate()
        try:
            copy_store(store, dst)
            feed(store, fixture_text("callback_11010_revoke.json"))
            assert store.replay().failed == 0
            copy_store(store, dst)
            assert queries(dst) == queries(store)
            statuses = dst.read(lambda c: [r[0] for r in c.execute("SELECT status FROM journal").fetchall()])
            assert set(statuses) == {"ok"}
            assert set(copy_store(store, dst).values()) == {0}
        finally:
            dst.close()
