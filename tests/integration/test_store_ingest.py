"""The SQLStore contract, on every backend: fixtures, idempotency, order independence, replay."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from juhe_sync.records import MessageQuery
from juhe_sync.service.queries import QueryService
from juhe_sync.storage import ingest_batch
from juhe_sync.storage.batches import WriteJob
from juhe_sync.storage.sql import Applied
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.storage.writer import Writer
from juhe_sync.web.metrics import StoreCollector, exposition
from tests.conftest import ACCOUNT, GUID, callback_fixtures, fixture_json, fixture_text
from tests.helpers import feed, feed_fixtures, snapshot
from tests.unit.test_normalize import EXPECTED


def messages_by_id(store: SQLStore) -> dict[str, dict]:
    device = store.device(GUID)
    assert device is not None
    return {m["id"]: m for m in store.messages(MessageQuery(device.id, limit=100)).items}


def test_every_fixture_is_stored_as_documented(store: SQLStore) -> None:
    outcomes = feed_fixtures(store, ["callback_11003_user_login.json", *callback_fixtures()])
    assert [o.status for o in outcomes].count("failed") == 0
    stored = messages_by_id(store)
    for name, rows in EXPECTED.items():
        data = fixture_json(name)["data"]
        items = data if isinstance(data, list) else [data]
        for item, (conv, sender, direction, type_, _sendtime) in zip(items, rows, strict=False):
            m = stored[item["id"]]
            assert (m["conversation_id"], m["from"], m["direction"], m["type"]) == (conv, sender, direction, type_)
            assert m["sender_name"] == item["sender_name"]
            assert m["appinfo"] == item["appinfo"]
    assert stored["1067188"]["timestamp"] == "2024-06-10T06:13:20Z"
    assert stored["1067201"]["revoked"] is True  # by callback_11010_revoke
    assert stored["1067188"]["revoked"] is False
    assert stored["1067215"]["at_list"] == [ACCOUNT]
    assert stored["1067266"]["quote_appinfo"] == "CAUQ5ttyQFuiEemBF+8kjnIEJ0FbWk/3"
    assert json.loads(stored["1067230"]["content"])["aes_key"] == "a21af887253cccfcbde13eb534f48660"
    assert len(stored) == 11  # the revoke record is not a message

    device = store.device(GUID)
    assert device is not None
    assert (device.messages_count, device.rooms_count) == (11, 2)
    assert device.account_id == ACCOUNT and device.corp_id == "1970325012345678"
    rooms = store.rooms(device.id, 0, 20).items
    assert [r["id"] for r in rooms] == ["R:10696052788813579", "R:10772491266604821"]
    contacts = {c["id"]: c for c in store.contacts(device.id, None, 0, 50).items}
    assert contacts["7881300000001234"] == {
        "id": "7881300000001234", "name": "张伟", "remark": None, "avatar": None, "type": "external",
        "corp_id": None, "labels": [], "source": "message",
    }
    assert contacts["1688850000067890"]["type"] == "internal"
    assert ACCOUNT not in contacts
    assert device.contacts_count == len(contacts) == 4
    assert store.journal_size(GUID) == len(callback_fixtures())


def test_redelivery_changes_nothing(store: SQLStore) -> None:
    feed_fixtures(store)
    before = snapshot(store)
    again = feed_fixtures(store)
    assert {o.status for o in again} == {"duplicate"}
    # the same events inside WebSocket wrappers are the same events
    for name in ("ws_callback_event_object.json", "ws_callback_event_string.json", "ws_callback_data_wrapper.json"):
        assert feed(store, fixture_text(name)).status == "duplicate"
    assert snapshot(store) == before


@pytest.mark.parametrize("seed", range(4))
def test_any_order_any_number_of_times_same_state(database_url: str, seed: int, tmp_path) -> None:
    from juhe_sync.service.stores import open_store

    names = callback_fixtures()
    reference = open_store(database_url)
    reference.migrate()
    try:
        feed_fixtures(reference)
        expected = snapshot(reference)
    finally:
        reference.close()
    rng = random.Random(seed)
    shuffled = names * 2 + rng.sample(names, 5)
    rng.shuffle(shuffled)
    other_url = database_url.replace("juhe-sync.db", f"juhe-sync-{seed}.db") if database_url.startswith(
        "sqlite") else None
    if other_url is None:
        # PostgreSQL: reuse the schema after emptying it
        _truncate(database_url)
        other_url = database_url
    other = open_store(other_url)
    other.migrate()
    try:
        feed_fixtures(other, shuffled)
        assert snapshot(other) == expected
    finally:
        other.close()


def _truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE devices, journal, contacts, rooms, conversations, messages, revocations RESTART IDENTITY"
        )


def test_revoke_before_the_message_still_revokes(store: SQLStore) -> None:
    feed(store, fixture_text("callback_11010_revoke.json"))
    feed(store, fixture_text("callback_11010_text_private_outbound.json"))
    assert messages_by_id(store)["1067201"]["revoked"] is True


def test_events_normalised_for_an_outdated_device_are_normalised_again(store: SQLStore) -> None:
    """Events are normalised before the write transaction, from the device as last seen; if the
    transaction finds another account, the writer normalises again (direction depends on it)."""
    feed(store, fixture_text("callback_11003_user_login.json"))
    _, kind = store.writer.device_hints[GUID]  # type: ignore[attr-defined]
    store.writer.device_hints[GUID] = ("someone-else", kind)  # type: ignore[attr-defined]
    feed(store, fixture_text("callback_11010_text_private_outbound.json"))
    feed(store, fixture_text("callback_11010_text_private_inbound.json"))
    directions = {m["direction"] for m in messages_by_id(store).values()}
    assert directions == {"inbound", "outbound"}
    assert store.writer.device_hints[GUID] == (ACCOUNT, kind)  # type: ignore[attr-defined]


def test_same_appinfo_on_two_devices_is_two_rows(store: SQLStore) -> None:
    body = fixture_json("callback_11010_text_private_inbound.json")
    feed(store, body)
    body["guid"] = "another-device"
    assert feed(store, body).status == "stored"
    other = store.device("another-device")
    assert other is not None and other.messages_count == 1


def test_unknown_and_bad_batch_items(store: SQLStore) -> None:
    assert feed(store, {"guid": GUID, "notify_type": 424242, "data": {"x": 1}}).status == "stored"
    item = fixture_json("callback_11010_text_private_inbound.json")["data"]
    out = feed(store, {"guid": GUID, "notify_type": 11013, "data": [1, "x", item, None]})
    assert out.status == "stored" and out.messages_added == 1 and out.skipped == 3


def test_a_callback_that_fails_to_apply_is_journalled_and_replayed(store: SQLStore, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(store.writer.rules, "normalize", broken)
    out = feed(store, fixture_text("callback_11010_text_private_inbound.json"))
    assert out.status == "failed"
    device = store.device(GUID)
    assert device is not None and device.messages_count == 0
    monkeypatch.undo()
    stats = store.replay()
    assert (stats.events, stats.failed, stats.messages_added) == (1, 0, 1)
    assert store.device(GUID).messages_count == 1  # type: ignore[union-attr]
    again = store.replay(GUID)
    assert (again.events, again.messages_added, again.messages_changed) == (1, 0, 0)


def test_replay_applies_a_parser_change(store: SQLStore, monkeypatch) -> None:
    feed_fixtures(store)
    before = snapshot(store)
    import juhe_sync.ingest.msgtypes as msgtypes

    monkeypatch.setitem(msgtypes.MSG_TYPES, 5, "picture")
    stats = store.replay()
    assert stats.messages_changed == 2 and stats.messages_added == 0
    after = snapshot(store)
    assert [m["type"] for m in after["messages"]].count("picture") == 2
    assert after["counts"] == before["counts"]
    monkeypatch.undo()
    store.replay()
    assert snapshot(store) == before


def test_counters_match_the_tables(store: SQLStore) -> None:
    feed_fixtures(store)
    device = store.device(GUID)
    assert device is not None
    assert device.messages_count == store.messages(MessageQuery(device.id, start=0)).total
    assert device.contacts_count == store.contacts(device.id, None, 0, 1).total


def test_personal_wechat_device(store: SQLStore) -> None:
    msg = {"from_username": "wxid_abc", "msg_type": 1, "content": "在吗", "new_msg_id": 991, "create_time": 1718000000}
    assert feed(store, {"guid": "wx", "notify_type": 1010, "data": msg}).messages_added == 1
    assert feed(store, {"guid": "wx", "notify_type": 1003, "data": {}}).status == "stored"
    device = store.device("wx")
    assert device is not None and device.state == "online" and device.messages_count == 1
    (m,) = store.messages(MessageQuery(device.id, keyword="在")).items
    assert (m["conversation_id"], m["type"], m["id"]) == ("S:wxid_abc", "text", "991")


@pytest.mark.parametrize("grouped", [False, True], ids=["one by one", "group first"])
def test_a_failed_apply_leaves_no_search_entries(store: SQLStore, monkeypatch, grouped: bool) -> None:
    """Rows of a failed apply are rolled back, and so is anything held back for the search index:
    one callback's, and (``group first``) those of a group of callbacks written together that
    failed after writing them, before its callbacks were written one by one."""
    real = Writer.apply
    store.writer.group_callbacks = grouped
    if grouped:
        real_many = ingest_batch.ingest_many

        def many_then_fail(writer, jobs, conn):
            assert real_many(writer, jobs, conn) is not None
            raise RuntimeError("bug after the group's rows were written")

        monkeypatch.setattr(ingest_batch, "ingest_many", many_then_fail)

    def apply_then_fail(self, conn, device_id, prepared, journal_id, **kw):
        real(self, conn, device_id, prepared, journal_id, **kw)
        if prepared.effects.messages and "报价单" in prepared.effects.messages[0].content:
            raise RuntimeError("bug after the rows were written")
        return Applied()

    monkeypatch.setattr(Writer, "apply", apply_then_fail)
    # One transaction: the first fails inside apply, the second succeeds.
    names = ["callback_11010_text_private_inbound.json", "callback_11010_text_room.json"]
    assert [o.status for o in _in_one_transaction(store, [_event(name) for name in names])] == ["failed", "stored"]
    monkeypatch.undo()
    device = store.device(GUID)
    assert device is not None
    assert store.messages(MessageQuery(device.id, keyword="报价单")).total == 0
    assert store.messages(MessageQuery(device.id, keyword="合同")).total == 1
    assert store.messages(MessageQuery(device.id, keyword="便")).total == 0
    store.replay()  # the fix is deployed: replay applies the journalled event
    page = store.messages(MessageQuery(device.id, keyword="报价单"))
    assert page.total == 1 and len(page.items) == 1


def _event(name: str):
    from juhe_sync.ingest.envelope import parse_body

    text = fixture_text(name)
    return parse_body(text), text, 1_718_100_000


def _in_one_transaction(store: SQLStore, events: list[tuple]) -> list:
    jobs = [WriteJob(store.ingest_job(*event), event[0].guid) for event in events]
    store.write_now(jobs)
    return [job.future.result() for job in jobs]


def test_one_transaction_sees_its_own_device_changes_and_counts_exactly(store: SQLStore, monkeypatch) -> None:
    """Jobs of one group commit share the device row and counters the writer keeps for the
    transaction: a login followed by messages in the same batch must see the new account, and
    the counters must be exact when a job in between fails after writing rows."""
    from juhe_sync.ingest.envelope import parse_body

    real = Writer.apply

    def apply_then_fail(self, conn, device_id, prepared, journal_id, **kw):
        applied = real(self, conn, device_id, prepared, journal_id, **kw)
        if prepared.effects.messages and prepared.effects.messages[0].room_id:
            raise RuntimeError("bug after the rows and counters were written")
        return applied

    monkeypatch.setattr(Writer, "apply", apply_then_fail)

    def event(name: str) -> tuple:
        raw = fixture_text(name)
        return parse_body(raw), raw, 1718000000

    names = ["callback_11003_user_login.json", "callback_11010_text_private_outbound.json",
             "callback_11010_text_room.json", "callback_11010_text_private_inbound.json"]  # fmt: skip
    outcomes = _in_one_transaction(store, [event(name) for name in names])
    assert [o.status for o in outcomes] == ["stored", "stored", "failed", "stored"]
    monkeypatch.undo()
    assert {m["direction"] for m in messages_by_id(store).values()} == {"inbound", "outbound"}
    device = store.device(GUID)
    assert device is not None
    page = store.messages(MessageQuery(device.id, limit=100))
    assert device.messages_count == page.total == len(page.items) == 2
    assert device.contacts_count == len(store.contacts(device.id, None, 0, 100).items)
    assert device.rooms_count == 0  # the room came with the failed event only
    assert device.last_callback_time is not None
    assert store.journal_size(GUID) == 4
    store.replay()  # the fix is deployed
    device = store.device(GUID)
    assert device is not None and device.messages_count == 3 and device.rooms_count == 1


def test_replay_refuses_a_body_that_no_longer_matches_its_key(store: SQLStore) -> None:
    """A journal body changed after it was stored (damage, a hand edit) that still parses must not
    rewrite its message on replay: it is reported and left alone."""
    feed(store, fixture_text("callback_11010_text_private_inbound.json"))
    before = snapshot(store)

    def tamper(conn: Any) -> None:
        body = conn.execute("SELECT body FROM journal").fetchone()[0]
        conn.execute("UPDATE journal SET body = ?", (body.replace("报价单", "付款单"),))

    store.submit(tamper).result()
    stats = store.replay()
    assert (stats.events, stats.mismatched, stats.messages_changed) == (1, 1, 0)
    assert snapshot(store)["messages"] == before["messages"]


@pytest.mark.parametrize("grouped", [False, True], ids=["one by one", "group first"])
def test_a_database_error_in_apply_is_journalled_as_failed_on_every_backend(
    store: SQLStore, monkeypatch, grouped: bool
) -> None:
    """The database refusing what an apply wrote (on PostgreSQL only at the pipeline's sync, after
    the job returned) journals the callback as failed and acknowledges it; replay applies it later.
    Before, PostgreSQL answered 500 and the platform would redeliver it forever. ``group first``:
    the database refuses the callbacks written together too, and then the callback alone."""
    real = Writer.apply
    refuse = "INSERT INTO leases (name, owner, expires_at) VALUES ('refused', NULL, 0)"  # NOT NULL

    def apply_then_refused(self, conn, device_id, prepared, journal_id, **kw):
        applied = real(self, conn, device_id, prepared, journal_id, **kw)
        conn.execute(refuse)
        return applied

    monkeypatch.setattr(Writer, "apply", apply_then_refused)
    store.writer.group_callbacks = grouped
    if grouped:
        real_many = ingest_batch.ingest_many

        def many_then_refused(writer, jobs, conn):
            outcomes = real_many(writer, jobs, conn)
            conn.execute(refuse)
            return outcomes

        monkeypatch.setattr(ingest_batch, "ingest_many", many_then_refused)
    bad = store.submit_event(*_event("callback_11010_text_private_inbound.json"))
    assert bad.result(timeout=30).status == "failed"
    status = QueryService(store).sync_status(GUID)
    assert status["failed_events"] == 1 and "not applied" in status["last_error"]
    assert "juhe_sync_journal_failed_events 1.0" in exposition(StoreCollector(store)).decode()
    monkeypatch.undo()
    good = store.submit_event(*_event("callback_11010_text_room.json"))
    assert good.result(timeout=30).status == "stored"
    device = store.device(GUID)
    assert device is not None and device.messages_count == 1
    assert store.replay().messages_added == 1
    assert store.device(GUID).messages_count == 2  # type: ignore[union-attr]
    assert QueryService(store).sync_status(GUID)["failed_events"] == 0
    assert "juhe_sync_journal_failed_events 0.0" in exposition(StoreCollector(store)).decode()
