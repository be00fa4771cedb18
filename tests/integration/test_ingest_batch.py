"""Callbacks of one transaction written together (storage.ingest_batch), on every backend: the
same rows as written one by one, whatever the mix of events in a transaction; redeliveries, one
message in two events, contacts renamed and rooms named twice inside one transaction; retention;
and a group that fails is written one by one instead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from juhe_sync.ingest.envelope import parse_body
from juhe_sync.records import IngestOutcome, MessageQuery
from juhe_sync.service.stores import open_store
from juhe_sync.storage import ingest_batch
from juhe_sync.storage.batches import WriteJob
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import GUID, callback_fixtures, fixture_text, fresh_database
from tests.helpers import snapshot

OTHER = "batch-device"
#: Ten years: the fixtures (2024) are kept, the message of 2014 below is not.
RETENTION = 10 * 365 * 86400


def _message(
    n: int, *, sender: str, name: str, sendtime: int, room: str = "0", appinfo: str = ""
) -> dict[str, Any]:
    return {
        "seq": str(n), "id": str(n), "appinfo": appinfo or f"batch-{n}", "sender": sender,
        "receiver": "1688850000000001", "roomid": room, "sendtime": sendtime, "sender_name": name,
        "content_type": 2, "referid": "0", "flag": 0, "content": f"第{n}条 报价", "at_list": [],
        "quote_content": "", "quote_appinfo": "", "send_flag": 0, "msg_type": 2,
    }  # fmt: skip


def _single(item: dict[str, Any]) -> str:
    return json.dumps({"guid": OTHER, "notify_type": 11010, "data": item}, ensure_ascii=False)


def _bodies() -> list[str]:
    """Every fixture, then a second device's events that collide inside one transaction."""
    fixtures = ["callback_11003_user_login.json", *callback_fixtures()]
    return [fixture_text(name) for name in fixtures] + _collisions()


def _collisions() -> list[str]:
    """Plain callbacks of a second device that collide inside one transaction."""
    t = 1_718_000_000
    same_second = [_single(_message(n, sender=f"78813000{n:04d}", name="客户", sendtime=t)) for n in range(5)]
    renamed = [  # the newest name wins, whatever the order they come in
        _single(_message(10, sender="7881300000777", name="新名字", sendtime=t + 50)),
        _single(_message(11, sender="7881300000777", name="旧名字", sendtime=t + 10)),
        _single(_message(12, sender="7881300000777", name="", sendtime=t + 60)),
    ]
    room = [_single(_message(20 + n, sender=f"7881300001{n:03d}", name="群友", sendtime=t + n, room="r-1"))
            for n in range(3)]  # fmt: skip
    twice = _message(30, sender="7881300000888", name="重复", sendtime=t + 5, appinfo="in-two-events")
    in_batch = json.dumps({"guid": OTHER, "notify_type": 11013,
                           "data": [twice, _message(31, sender="7881300000889", name="批", sendtime=t + 6)]},
                          ensure_ascii=False)  # fmt: skip
    too_old = _single(_message(40, sender="7881300000999", name="旧", sendtime=1_400_000_000))
    return [*same_second, same_second[0], *renamed, *room, _single(twice), in_batch, too_old, too_old]


def _renames() -> list[str]:
    """Contacts of :func:`_collisions` seen again, in a later transaction: a newer name, an
    older one, and two names seen in the same second (the larger string wins)."""
    t = 1_718_000_000
    return [
        _single(_message(50, sender="7881300000777", name="更新的名字", sendtime=t + 70)),
        _single(_message(51, sender="78813000000000", name="早先", sendtime=t - 100)),
        _single(_message(52, sender="7881300000888", name="甲", sendtime=t + 80)),
        _single(_message(53, sender="7881300000888", name="乙", sendtime=t + 80)),
        _single(_message(54, sender="7881300000888", name="Zed", sendtime=t + 80)),
    ]


def _collisions_then_renames() -> list[str]:
    return _collisions() + _renames()


def _write(store: SQLStore, bodies: list[str], sizes: list[int], first: int = 0) -> list[IngestOutcome]:
    """``bodies`` in transactions of ``sizes`` callbacks (the last size repeats), received a
    second apart from the ``first``-th second on."""
    outcomes: list[IngestOutcome] = []
    start = 0
    for size in iter_sizes(sizes):
        chunk = bodies[start : start + size]
        if not chunk:
            break
        jobs = []
        for n, text in enumerate(chunk):
            event = parse_body(text)
            jobs.append(
                WriteJob(store.ingest_job(event, text, 1_718_100_000 + first + start + n), event.guid)
            )
        store.write_now(jobs)
        outcomes.extend(job.future.result() for job in jobs)
        start += size
    return outcomes


def iter_sizes(sizes: list[int]) -> Iterator[int]:
    yield from sizes
    while True:
        yield sizes[-1]


def _rows(store: SQLStore) -> dict[str, Any]:
    """The tables as rows without ids (the two ways may number rows differently)."""

    def run(conn: Any) -> dict[str, Any]:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                          for r in conn.execute(sql).fetchall())  # fmt: skip

        return {
            "journal": rows("SELECT d.guid, j.event_key, j.status, j.body = '', j.received_at "
                            "FROM journal j JOIN devices d ON d.id = j.device_id"),
            "messages": rows("SELECT d.guid, m.dedup_key, c.conv_key, m.revoked, m.fingerprint, j.event_key "
                             "FROM messages m JOIN devices d ON d.id = m.device_id "
                             "JOIN conversations c ON c.id = m.conversation_id "
                             "LEFT JOIN journal j ON j.id = m.journal_id"),
            "conversations": rows("SELECT d.guid, c.conv_key, c.message_count, m.dedup_key FROM conversations c "
                                  "JOIN devices d ON d.id = c.device_id "
                                  "LEFT JOIN messages m ON m.id = c.last_message_id"),
            "contacts": rows("SELECT d.guid, c.user_id, c.name, c.type, c.source, c.name_seen_at FROM contacts c "
                             "JOIN devices d ON d.id = c.device_id"),
            "rooms": rows("SELECT d.guid, r.room_id FROM rooms r JOIN devices d ON d.id = r.device_id"),
            "devices": rows("SELECT guid, messages_count, rooms_count, contacts_count, last_callback_time, "
                            "account_id, state FROM devices"),
        }  # fmt: skip

    return store.read(run)


#: Keywords of one and two characters, and longer, in the fixtures and the messages above.
KEYWORDS = ("报", "报价", "第3条", "合同", "在", "hello")


def _found(store: SQLStore, guid: str) -> dict[str, list[str]]:
    """What a search finds, keyword by keyword: the search index holds the same entries."""
    device = store.device(guid)
    assert device is not None
    return {
        keyword: [m["id"] for m in store.messages(MessageQuery(device.id, keyword=keyword, limit=100)).items]
        for keyword in KEYWORDS
    }


@pytest.fixture
def pair(database_url: str, tmp_path: Path) -> Iterator[tuple[SQLStore, SQLStore]]:
    """A store that writes callbacks together and one that writes them one by one."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path / "one-by-one") as other_url:
        grouped, single = open_store(database_url), open_store(other_url)
        single.writer.group_callbacks = False
        try:
            for store in (grouped, single):
                store.migrate()
                store.set_retention(RETENTION)
            yield grouped, single
        finally:
            grouped.close()
            single.close()


#: (bodies, transaction sizes; the last repeats)
CASES = {
    "one by one": (_bodies, [1]),
    "mixed": (_bodies, [7, 3, 11]),
    "all in one": (_bodies, [200]),
    "collisions in one": (_collisions, [200]),
    "renamed in a later one": (_collisions_then_renames, [len(_collisions()), 200]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_written_together_the_rows_are_those_written_one_by_one(
    pair: tuple[SQLStore, SQLStore], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped, single = pair
    groups = []
    real = ingest_batch.ingest_many

    def spy(writer: Any, jobs: list[Any], conn: Any) -> Any:
        try:
            result = real(writer, jobs, conn)
        except Exception:
            groups.append("raised")  # written one by one after all: never for these callbacks
            raise
        groups.append(result is not None)
        return result

    monkeypatch.setattr(ingest_batch, "ingest_many", spy)
    make, sizes = CASES[case]
    bodies = make()
    together = _write(grouped, bodies, sizes)
    # Transactions of plain callbacks were written together; one that holds device changes or
    # a revoke was written one by one.
    assert "raised" not in groups
    if case in ("one by one", "mixed"):
        assert True in groups and False in groups
        assert case == "mixed" or len(groups) == len(bodies)  # a single callback goes this way too
    else:
        assert (
            groups
            == {"all in one": [False], "collisions in one": [True], "renamed in a later one": [True, True]}[
                case
            ]
        )
    alone = _write(single, bodies, sizes)
    assert [(o.status, o.messages_added, o.pulls, o.skipped) for o in together] == [
        (o.status, o.messages_added, o.pulls, o.skipped) for o in alone
    ]
    assert _rows(grouped) == _rows(single)
    for guid in (GUID, OTHER) if make is _bodies else (OTHER,):
        assert snapshot(grouped, guid) == snapshot(single, guid)
        assert _found(grouped, guid) == _found(single, guid)
    statuses = [o.status for o in together]
    assert statuses.count("failed") == 0 and "duplicate" in statuses
    # Redelivered, everything is a duplicate and nothing changes.
    before = _rows(grouped)
    assert {o.status for o in _write(grouped, bodies, sizes)} == {"duplicate"}
    assert _rows(grouped) == before


def test_what_is_stored_in_a_group(pair: tuple[SQLStore, SQLStore], monkeypatch: pytest.MonkeyPatch) -> None:
    grouped, _ = pair
    real = ingest_batch.ingest_many
    groups = []
    monkeypatch.setattr(ingest_batch, "ingest_many", lambda *a: groups.append(real(*a)) or groups[-1])
    _write(grouped, _collisions(), [200])
    assert len(groups) == 1 and groups[0] is not None
    rows = _rows(grouped)
    names = {user: (name, seen) for guid, user, name, _, _, seen in rows["contacts"] if guid == OTHER}
    assert names["7881300000777"] == ("新名字", 1_718_000_050)
    # One message in two events of one transaction: stored once, from the first of them.
    (twice,) = [r for r in rows["messages"] if r[1] == "in-two-events"]
    first = next(b for b in _collisions() if "in-two-events" in b)
    assert twice[5] == parse_body(first).key
    refused = [r[3] for r in rows["journal"] if r[0] == OTHER]
    assert refused.count(True) == 1  # the callback whose messages are too old keeps only its key
    device = grouped.device(OTHER)
    assert device is not None and device.messages_count == 5 + 3 + 3 + 2 and device.rooms_count == 1


def test_a_group_that_fails_is_written_one_by_one(pair: tuple[SQLStore, SQLStore], monkeypatch) -> None:
    """A failure after the group wrote its rows and search entries: all of it is rolled back, and
    the callbacks are written one by one (each with its own outcome)."""
    grouped, single = pair
    real = ingest_batch.ingest_many
    attempts = []

    def fail_after_writing(writer: Any, jobs: list[Any], conn: Any) -> Any:
        attempts.append(len(jobs))
        real(writer, jobs, conn)
        raise RuntimeError("a bug after the group's rows were written")

    monkeypatch.setattr(ingest_batch, "ingest_many", fail_after_writing)
    bodies = _collisions()
    together = _write(grouped, bodies, [200])
    assert attempts == [len(bodies)]
    monkeypatch.undo()
    alone = _write(single, bodies, [200])
    assert [(o.status, o.messages_added) for o in together] == [(o.status, o.messages_added) for o in alone]
    assert "stored" in {o.status for o in together}
    assert _rows(grouped) == _rows(single)
    assert snapshot(grouped, OTHER) == snapshot(single, OTHER)
    assert _found(grouped, OTHER) == _found(single, OTHER)


def test_a_message_id_taken_meanwhile_is_written_one_by_one(
    pair: tuple[SQLStore, SQLStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose id was taken (on PostgreSQL, a concurrent writer's in the same second)
    is not inserted and is not a duplicate either: the group gives up, and written one by one
    the message gets another id."""
    grouped, single = pair
    bodies = _collisions()
    _write(grouped, bodies[:1], [1])
    taken = grouped.read(lambda conn: conn.execute("SELECT max(id) FROM messages").fetchone()[0])
    monkeypatch.setattr(
        grouped.writer.dialect, "message_ids", lambda conn, sendtimes: [("?", taken)] * len(sendtimes)
    )
    attempts = []
    real = ingest_batch.ingest_many
    monkeypatch.setattr(ingest_batch, "ingest_many", lambda *a: attempts.append(1) or real(*a))
    together = _write(grouped, bodies[1:], [200], first=1)
    assert attempts == [1]
    monkeypatch.undo()
    alone = _write(single, bodies, [1, 200])
    assert [(o.status, o.messages_added) for o in together] == [
        (o.status, o.messages_added) for o in alone[1:]
    ]
    assert _rows(grouped) == _rows(single)
