"""Purge and forget on every backend: what is deleted is gone everywhere (rows, search, journal
bodies), what stays is exact (counters, conversation rows, search totals), a redelivery or a
replay does not bring purged messages back, and callbacks arriving meanwhile are stored exactly."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from juhe_sync.records import MessageQuery
from juhe_sync.service import retention
from juhe_sync.storage.leases import LeaseBusy
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import now_seconds
from tests.conftest import ACCOUNT, GUID
from tests.helpers import feed, snapshot
from tests.integration.test_store_queries import ALPHABET, BASE, _conv, _oracle, _search, build_corpus

CUTOFF = BASE + 25 * 60
OTHER = "retention-other-device"


@pytest.fixture
def corpus(store: SQLStore) -> list[dict]:
    return build_corpus(store)


def _state(store: SQLStore, guid: str = GUID) -> dict[str, Any]:
    """Counters and conversation rows as stored, and as the message rows say they should be."""
    device = store.device(guid)
    assert device is not None

    def run(conn: Any) -> dict[str, Any]:
        q = lambda sql: conn.execute(sql, (device.id,)).fetchall()  # noqa: E731
        return {
            "count": q("SELECT count(*) FROM messages WHERE device_id = ?")[0][0],
            "conversations": sorted(
                tuple(r) for r in q(
                    "SELECT conv_key, message_count, last_message_id FROM conversations WHERE device_id = ?"
                )
            ),
            "expected": sorted(
                tuple(r) for r in q(
                    "SELECT c.conv_key, count(m.id), max(m.id) FROM conversations c "
                    "LEFT JOIN messages m ON m.conversation_id = c.id WHERE c.device_id = ? GROUP BY c.conv_key"
                )
            ),
        }  # fmt: skip

    state = store.read(run)
    state["messages_count"] = device.messages_count
    return state


def _assert_exact(store: SQLStore, guid: str = GUID) -> dict[str, Any]:
    state = _state(store, guid)
    assert state["messages_count"] == state["count"]
    assert state["conversations"] == state["expected"]
    return state


def _keywords(items: list[dict]) -> list[str]:
    rng = random.Random(3)
    words = {"的", "报价", "报价单", "a", "ab", " ", "%", "👍"}
    for item in rng.sample(items, 40):
        text = item["content"]
        if text:
            i = rng.randrange(len(text))
            words.add(text[i : i + rng.choice([1, 2, 3])])
    return sorted(w for w in words if w)


def test_purge_leaves_counters_conversations_and_search_exact(store: SQLStore, corpus: list[dict]) -> None:
    kept = [it for it in corpus if it["sendtime"] >= CUTOFF]
    planned = retention.plan(store, GUID, CUTOFF)
    assert planned.messages == len(corpus) - len(kept) > 0

    stats = retention.purge(store, GUID, CUTOFF)

    assert stats.messages == planned.messages
    assert stats.journal > 0  # the batches that carried purged messages lost their bodies
    state = _assert_exact(store)
    assert state["count"] == len(kept)
    for keyword in _keywords(corpus):
        ids, total = _search(store, keyword)
        assert ids == _oracle(kept, keyword), keyword
        assert total == len(ids)
    # No search entry points at a deleted message, and a second purge finds nothing.
    assert retention.plan(store, GUID, CUTOFF).messages == 0
    assert retention.purge(store, GUID, CUTOFF).messages == 0


def test_purged_messages_do_not_come_back(store: SQLStore, corpus: list[dict]) -> None:
    retention.purge(store, GUID, CUTOFF)
    before = _assert_exact(store)
    # The same callbacks again: duplicates of the journal keys that were kept.
    for start in range(0, len(corpus), 37):
        outcome = feed(store, {"guid": GUID, "notify_type": 11013, "data": corpus[start : start + 37]})
        assert outcome.status == "duplicate"
    # A replay skips the emptied journal bodies.
    store.replay(GUID)
    assert _assert_exact(store) == before


def test_retention_window_refuses_old_messages(store: SQLStore) -> None:
    retention.apply_setting(store, 30)
    now = now_seconds()
    old = {"guid": GUID, "notify_type": 11010, "data": _message("OLD", now - 31 * 86400, "旧消息")}
    new = {"guid": GUID, "notify_type": 11010, "data": _message("NEW", now - 29 * 86400, "新消息")}
    assert feed(store, old).messages_added == 0
    assert feed(store, new).messages_added == 1
    device = store.device(GUID)
    assert device is not None
    page = store.messages(MessageQuery(device.id, keyword="消息"))
    assert [m["content"] for m in page.items] == ["新消息"]
    _assert_exact(store)


def test_retention_pass_purges_every_device(store: SQLStore) -> None:
    now = now_seconds()
    for guid in (GUID, OTHER):
        for n, age in enumerate((40, 20, 1)):
            feed(store, {"guid": guid, "notify_type": 11010, "data": _message(f"{guid}{n}", now - age * 86400, "x")})
    stats = retention.RetentionLoop(store, 30).run_once()
    assert stats.messages == 2
    for guid in (GUID, OTHER):
        assert _assert_exact(store, guid)["count"] == 2


def test_forget_deletes_every_row_of_the_device_and_nothing_else(store: SQLStore, corpus: list[dict]) -> None:
    for start in range(0, 60, 20):
        feed(store, {"guid": OTHER, "notify_type": 11013, "data": corpus[start : start + 20]})
    other = snapshot(store, OTHER)
    device = store.device(GUID)
    assert device is not None

    stats = retention.forget(store, GUID)

    assert stats.messages == len(corpus)
    assert store.device(GUID) is None
    tables = [t for t, (columns, _) in store.schema().items() if "device_id" in columns]
    left = store.read(lambda c: {t: c.execute(f"SELECT count(*) FROM {t} WHERE device_id = ?",
                                             (device.id,)).fetchone()[0] for t in tables})  # fmt: skip
    assert set(left.values()) == {0}, left
    assert snapshot(store, OTHER) == other
    if store.url.startswith("sqlite"):  # the contentless index holds no entry of the device
        hits = store.read(lambda c: c.execute("SELECT count(*) FROM message_fts WHERE message_fts MATCH ?",
                                              (f"meta : dv{device.id}",)).fetchone()[0])  # fmt: skip
        assert hits == 0
    with pytest.raises(Exception, match="not found"):
        retention.forget(store, GUID)


def test_purge_and_forget_while_callbacks_stream_in(store: SQLStore, corpus: list[dict]) -> None:
    """Writers keep sending old and new messages to the device being purged and to another one."""
    for start in range(0, 120, 30):
        feed(store, {"guid": OTHER, "notify_type": 11013, "data": corpus[start : start + 30]})
    stop = threading.Event()
    sent: list[int] = []

    def send(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            n += 1
            when = BASE + rng.randrange(0, 50) * 60  # both sides of the cutoff
            text = "".join(rng.choice(ALPHABET) for _ in range(rng.choice([1, 2, 5, 9])))
            body = {"guid": GUID, "notify_type": 11010, "data": _message(f"S{worker}-{n}", when, text)}
            assert feed(store, body).status == "stored"
            sent.append(when)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        while len(sent) < 30:
            stop.wait(0.01)
        retention.purge(store, GUID, CUTOFF)
        retention.forget(store, OTHER)
        while len(sent) < 90:
            stop.wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert store.device(OTHER) is None
    state = _assert_exact(store)
    device = store.device(GUID)
    assert device is not None

    def contents(conn: Any) -> list[dict]:
        rows = conn.execute(
            "SELECT content FROM messages WHERE device_id = ? AND searchable = 1", (device.id,)
        ).fetchall()
        return [{"content": r[0]} for r in rows]

    texts = store.read(contents)
    assert state["count"] >= len(texts)
    for keyword in ("的", "报价", "a", "ab", "👍"):
        ids, total = _search(store, keyword)
        assert total == len(ids) == sum(keyword.lower() in t["content"].lower() for t in texts), keyword


def _message(key: str, sendtime: int, content: str) -> dict[str, Any]:
    return {"seq": key, "id": key, "appinfo": key, "sender": "7881300000000001", "receiver": ACCOUNT,
            "roomid": "0", "sendtime": sendtime, "msg_type": 2, "content": content, "sender_name": "李雷"}  # fmt: skip


def test_conversation_emptied_by_a_purge_leaves_the_list(store: SQLStore, corpus: list[dict]) -> None:
    retention.purge(store, GUID, BASE + 100 * 60)
    device = store.device(GUID)
    assert device is not None
    assert store.conversations(device.id, None, None, 0, 20, None).total == 0
    assert {c for c in _state(store)["conversations"]} == {(_c, 0, None) for _c in {_conv(i) for i in corpus}}


def test_forget_waits_for_no_one_while_a_sync_holds_the_device(store: SQLStore, corpus: list[dict]) -> None:
    device = store.device(GUID)
    assert device is not None
    assert store.acquire_lease(f"device:{device.id}", "a-sync-elsewhere", 60)
    with pytest.raises(LeaseBusy):
        retention.forget(store, GUID)
    assert _assert_exact(store)["count"] == len(corpus)  # nothing was touched
    store.release_lease(f"device:{device.id}", "a-sync-elsewhere")
    assert retention.forget(store, GUID).messages == len(corpus)


def test_a_purged_message_carried_by_another_event_does_not_come_back(store: SQLStore) -> None:
    """The same message in a single callback and in a batch: two journal entries, one row. After
    a purge, neither a redelivery in a new envelope nor a replay stores it again."""
    message = _message("TWICE", BASE, "两次")
    feed(store, {"guid": GUID, "notify_type": 11010, "data": message})
    feed(store, {"guid": GUID, "notify_type": 11013, "data": [message]})
    planned = retention.plan(store, GUID, CUTOFF)
    assert planned.messages == 1 and planned.journal == 1
    retention.purge(store, GUID, CUTOFF)
    store.replay(GUID)
    outcome = feed(store, {"guid": GUID, "notify_type": 11013, "data": [message, _message("NEW", CUTOFF, "新")]})
    assert outcome.messages_added == 1
    assert [m["id"] for m in store.messages(MessageQuery(store.device(GUID).id)).items] == ["NEW"]  # type: ignore[union-attr]
    _assert_exact(store)


def test_a_refused_callback_keeps_only_its_key(store: SQLStore) -> None:
    retention.apply_setting(store, 30)
    old = {"guid": GUID, "notify_type": 11010, "data": _message("OLD", now_seconds() - 40 * 86400, "太旧了")}
    assert feed(store, old).status == "stored"
    bodies = store.read(lambda c: [r[0] for r in c.execute("SELECT body FROM journal").fetchall()])
    assert bodies == [""]
    assert feed(store, old).status == "duplicate"
    retention.apply_setting(store, None)
    assert store.replay(GUID).messages_added == 0


def test_forget_takes_what_arrived_while_it_ran(store: SQLStore, corpus: list[dict]) -> None:
    """Callbacks for the very device being forgotten: nothing of it is left when forget returns
    (what arrives afterwards starts a new device)."""
    stop = threading.Event()

    def send() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            feed(store, {"guid": GUID, "notify_type": 11010, "data": _message(f"F{n}", CUTOFF + n, "报价")})

    sender = threading.Thread(target=send)
    sender.start()
    try:
        stop.wait(0.1)
        device = store.device(GUID)
        assert device is not None
        retention.forget(store, GUID)
        orphans = store.read(lambda c: c.execute(
            "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = m.conversation_id)"
        ).fetchone()[0])  # fmt: skip
    finally:
        stop.set()
        sender.join()
    assert orphans == 0
    again = store.device(GUID)
    if again is not None:  # the sender's later callbacks made it anew: exact from scratch
        state = _assert_exact(store)
        assert _search(store, "报价")[1] == state["count"]
