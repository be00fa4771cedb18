"""Queries on every backend: search equals a case-insensitive substring scan; paging; time ranges."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from juhe_sync.records import MessageQuery
from juhe_sync.service.stores import open_store
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import ACCOUNT, GUID, PG_URL, fresh_database
from tests.helpers import feed

ALPHABET = list("的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会好报价单合同") + list(
    "aAbBcC xyZ%_\\'\"👍😀-:*()"
)
PEERS = ["7881300000000001", "7881300000000002", "1688850000000003"]
ROOMS = ["10696052788800001", "10696052788800002"]
BASE = 1_718_000_000


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 30])))


@pytest.fixture
def corpus(store: SQLStore) -> list[dict]:
    return build_corpus(store)


def build_corpus(store: SQLStore) -> list[dict]:
    """400 messages of random text in 3 private chats and 2 rooms over 50 minutes, in batches."""
    rng = random.Random(7)
    feed(store, {"guid": GUID, "notify_type": 11003, "data": {"user_id": ACCOUNT}})
    items = []
    for i in range(400):
        room = rng.random() < 0.4
        peer = rng.choice(PEERS)
        outbound = rng.random() < 0.3
        item = {
            "seq": str(1000 + i),
            "id": str(5000 + i),
            "appinfo": f"APP{i}",
            "sender": ACCOUNT if outbound else peer,
            "receiver": "0" if room else (peer if outbound else ACCOUNT),
            "roomid": rng.choice(ROOMS) if room else "0",
            "sendtime": BASE + rng.randrange(0, 50) * 60,
            "msg_type": 2 if rng.random() < 0.85 else 5,
            "content": _text(rng),
            "sender_name": "n",
        }
        items.append(item)
    for start in range(0, len(items), 37):
        feed(store, {"guid": GUID, "notify_type": 11013, "data": items[start : start + 37]})
    return items


def _conv(item: dict) -> str:
    if item["roomid"] != "0":
        return "R:" + item["roomid"]
    return "S:" + (item["receiver"] if item["sender"] == ACCOUNT else item["sender"])


def _oracle(items: list[dict], keyword: str, conv: str | None = None, start=None, end=None) -> list[str]:
    kw = keyword.lower()
    hits = [
        it
        for it in items
        if it["msg_type"] == 2
        and kw in it["content"].lower()
        and (conv is None or _conv(it) == conv)
        and (start is None or it["sendtime"] >= start)
        and (end is None or it["sendtime"] <= end)
    ]
    return sorted(it["id"] for it in hits)


def _search(store: SQLStore, keyword: str, **kw) -> tuple[list[str], int]:
    device = store.device(GUID)
    assert device is not None
    page = store.messages(MessageQuery(device.id, keyword=keyword, limit=100, offset=0, **kw))
    ids = [m["id"] for m in page.items]
    offset = 100
    while offset < page.total:
        ids += [m["id"] for m in store.messages(MessageQuery(device.id, keyword=keyword, limit=100, offset=offset, **kw)).items]
        offset += 100
    return sorted(ids), page.total


def test_search_equals_substring_scan(store: SQLStore, corpus: list[dict]) -> None:
    rng = random.Random(11)
    keywords = {"的", "报价", "报价单", "a", "A", "ab", "Z", " ", "%", "_", "\\", "'", '"', "👍", "😀的", "*", "-:", "()"}
    for item in rng.sample(corpus, 60):
        text = item["content"]
        if text:
            i = rng.randrange(len(text))
            keywords.add(text[i : i + rng.choice([1, 2, 3, 5])])
    keywords |= {"".join(rng.choice(ALPHABET) for _ in range(n)) for n in (1, 2, 2, 3, 4) for _ in range(8)}
    checked = 0
    for keyword in sorted(keywords):
        if not keyword:
            continue
        ids, total = _search(store, keyword)
        assert ids == _oracle(corpus, keyword), keyword
        assert total == len(ids)
        checked += 1
    assert checked > 80


def test_search_within_conversation_and_time(store: SQLStore, corpus: list[dict]) -> None:
    for keyword in ("的", "报价", "a", "ab c"):
        for conv in ("R:" + ROOMS[0], "S:" + PEERS[1]):
            assert _search(store, keyword, conversation=conv)[0] == _oracle(corpus, keyword, conv)
        start, end = BASE + 600, BASE + 1800
        assert _search(store, keyword, start=start, end=end)[0] == _oracle(corpus, keyword, None, start, end)


def test_pages_are_newest_first_and_complete(store: SQLStore, corpus: list[dict]) -> None:
    device = store.device(GUID)
    assert device is not None
    seen = []
    for offset in range(0, 400, 30):
        page = store.messages(MessageQuery(device.id, offset=offset, limit=30))
        assert page.total == 400
        seen += page.items
    stamps = [m["timestamp"] for m in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert len({m["id"] for m in seen}) == 400
    asc = store.messages(MessageQuery(device.id, limit=5, ascending=True)).items
    assert [m["timestamp"] for m in asc] == sorted(stamps)[:5]


def test_conversation_and_time_filters(store: SQLStore, corpus: list[dict]) -> None:
    device = store.device(GUID)
    assert device is not None
    conv = "R:" + ROOMS[1]
    page = store.messages(MessageQuery(device.id, conversation=conv, limit=100))
    expected = sorted(it["id"] for it in corpus if _conv(it) == conv)
    assert sorted(m["id"] for m in page.items) == expected and page.total == len(expected)
    start, end = BASE + 300, BASE + 900
    page = store.messages(MessageQuery(device.id, start=start, end=end, limit=100))
    expected = sorted(it["id"] for it in corpus if start <= it["sendtime"] <= end)
    assert sorted(m["id"] for m in page.items) == expected and page.total == len(expected)
    assert store.messages(MessageQuery(device.id, conversation="S:nobody")).total == 0


def test_contacts_keyword(store: SQLStore) -> None:
    for i, name in enumerate(["张伟", "Zhang Wei", "王芳", "50%_off"]):
        feed(store, {"guid": GUID, "notify_type": 11010, "data": {
            "appinfo": f"c{i}", "sender": f"78813000000000{i}", "receiver": ACCOUNT, "roomid": "0",
            "sendtime": BASE, "msg_type": 2, "content": "hi", "sender_name": name}})
    device = store.device(GUID)
    assert device is not None

    def names(keyword: str) -> list[str]:
        return sorted(c["name"] for c in store.contacts(device.id, keyword, 0, 20).items)

    assert names("张") == ["张伟"]
    assert names("zhang") == ["Zhang Wei"]
    assert names("%_") == ["50%_off"]
    assert names("_") == ["50%_off"]
    assert names("nobody") == []
    assert store.contacts(device.id, None, 2, 1).total == 4


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"order": "asc"},
        {"keyword": "的"},
        {"keyword": "ab", "order": "asc"},
        {"conversation_id": "R:" + ROOMS[0]},
        {"start_time": "2024-06-10T06:23:20Z", "end_time": "2024-06-10T06:53:20Z"},
    ],
)
def test_cursor_walks_every_row_once_in_order(store: SQLStore, corpus: list[dict], filters: dict) -> None:
    from juhe_sync.service.queries import QueryService

    service = QueryService(store)
    args = {"conversation_id": None, "keyword": None, "start_time": None, "end_time": None, "order": "desc"}
    args.update(filters)
    everything = service.messages(GUID, page=1, limit=100, **args)
    expected = []
    for page in range(1, everything["total"] // 100 + 2):
        expected += service.messages(GUID, page=page, limit=100, **args)["messages"]
    assert len(expected) == everything["total"]
    walked, cursor, pages = [], None, 0
    while True:
        data = service.messages(GUID, page=1, limit=7, cursor=cursor, **args)
        assert data["total"] == everything["total"]
        walked += data["messages"]
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert [m["appinfo"] for m in walked] == [m["appinfo"] for m in expected]
    assert pages == len(expected) // 7 + 1


def test_contacts_and_rooms_cursors(store: SQLStore, corpus: list[dict]) -> None:
    from juhe_sync.service.queries import QueryService

    service = QueryService(store)
    for kind in ("contacts", "rooms"):
        fetch = getattr(service, kind)
        full = fetch(GUID, 1, 100, *([None] if kind == "contacts" else []))
        walked, cursor = [], None
        while True:
            data = fetch(GUID, 1, 1, *([None] if kind == "contacts" else []), cursor=cursor)
            walked += data[kind]
            cursor = data["next_cursor"]
            if cursor is None:
                break
        assert walked == full[kind] and len(walked) == full["total"] >= 2


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "W10", "eyJhIjoxfQ"])
def test_bad_cursors_are_invalid_params(store: SQLStore, corpus: list[dict], cursor: str) -> None:
    from juhe_sync.errors import InvalidParams
    from juhe_sync.service.queries import QueryService, encode_cursor

    service = QueryService(store)
    args = {"conversation_id": None, "keyword": None, "start_time": None, "end_time": None, "order": "desc"}
    with pytest.raises(InvalidParams):
        service.messages(GUID, page=1, limit=5, cursor=cursor, **args)
    with pytest.raises(InvalidParams):  # a rooms cursor is not a messages cursor
        service.messages(GUID, page=1, limit=5, cursor=encode_cursor("rooms", "x"), **args)


def _all_pages(store: SQLStore, keyword: str, limit: int, **kw) -> tuple[list[list[str]], list[tuple[int, bool]]]:
    """Every page of a search by offset, then by cursor: (the pages' appinfos, their counts)."""
    device = store.device(GUID)
    assert device is not None
    pages, counts = [], []
    offset = 0
    while True:
        page = store.messages(MessageQuery(device.id, keyword=keyword, limit=limit, offset=offset, **kw))
        counts.append((page.total, page.capped))
        if not page.items:
            break
        pages.append([m["appinfo"] for m in page.items])
        offset += limit
    after = None
    while True:
        page = store.messages(MessageQuery(device.id, keyword=keyword, limit=limit, after=after, **kw))
        pages.append([m["appinfo"] for m in page.items])
        counts.append((page.total, page.capped))
        after = page.next_key
        if after is None:
            break
    return pages, counts


@pytest.mark.parametrize("count_limit", [1, 9, 10_000])
def test_a_count_limit_caps_the_total_never_the_pages(store: SQLStore, corpus: list[dict], count_limit: int) -> None:
    for keyword in ("的", "a", "ab", "报价"):
        matches = len(_oracle(corpus, keyword))
        exact, counts = _all_pages(store, keyword, 4)
        assert set(counts) == {(matches, False)}
        capped, counts = _all_pages(store, keyword, 4, count_limit=count_limit)
        assert capped == exact, keyword  # every match is still served, past the limit too
        assert set(counts) == {(min(matches, count_limit), matches > count_limit)}, keyword


@pytest.mark.parametrize("window", ["holds the page", "too small"])
def test_search_pages_are_the_same_however_they_are_found(
    store: SQLStore, corpus: list[dict], monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """PostgreSQL finds a common keyword's page newest first through the id index, and from the
    GIN index when that window does not hold it: every page is the GIN index's own."""
    from juhe_sync.storage import pgsearch

    common = max("的一是了我不人在", key=lambda ch: len(_oracle(corpus, ch)))
    appinfos = {it["id"]: it["appinfo"] for it in corpus}
    start, end = BASE + 600, BASE + 2400
    shapes = {
        "device": ({}, _oracle(corpus, common)),
        "ascending": ({"ascending": True}, _oracle(corpus, common)),
        "room": ({"conversation": "R:" + ROOMS[0]}, _oracle(corpus, common, "R:" + ROOMS[0])),
        "time range": ({"start": start, "end": end}, _oracle(corpus, common, None, start, end)),
        "capped": ({"count_limit": 5}, _oracle(corpus, common)),
    }
    monkeypatch.setattr(pgsearch, "walk_window", lambda *a: None)  # the GIN index alone
    expected = {name: _all_pages(store, common, 2, **q) for name, (q, _) in shapes.items()}
    for name, (_, oracle) in shapes.items():
        offset_pages = expected[name][0][: (len(oracle) + 1) // 2]
        assert sorted(a for page in offset_pages for a in page) == sorted(appinfos[i] for i in oracle), name
    walks: dict[str, list[bool]] = {name: [] for name in shapes}
    shape = ""
    walk = pgsearch._walk
    monkeypatch.setattr(pgsearch, "_walk", lambda *a: walks[shape].append(bool(found := walk(*a))) or found)
    monkeypatch.setattr(pgsearch, "WALK_ABOVE", 0)
    monkeypatch.setattr(pgsearch, "walk_window", lambda *a: 10_000 if window == "holds the page" else 1)
    for shape, (q, _) in shapes.items():
        assert _all_pages(store, common, 2, **q) == expected[shape], shape
    if "postgresql" in store.url:  # SQLite's FTS5 index gives pages in order by itself
        if window == "holds the page":
            assert all(any(tried) for tried in walks.values()), walks
        else:
            assert all(tried and not any(tried) for tried in walks.values()), walks


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
@pytest.mark.parametrize("fails", [False, True])
def test_a_capped_count_leaves_its_connection_as_it_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The capped count plans with sequential and index scans off, in a transaction of its own: the
    pooled connection comes back out of it, settings restored, also when the count fails."""
    from juhe_sync.storage import pgsearch

    with fresh_database("postgresql", tmp_path) as url:
        store = open_store(url)
        store.migrate()
        try:
            build_corpus(store)
            device = store.device(GUID)
            assert device is not None
            if fails:
                count_sql = pgsearch.count_sql
                monkeypatch.setattr(pgsearch, "count_sql", lambda *a: (count_sql(*a)[0] + " / 0", count_sql(*a)[1]))

            def run(conn: Any) -> tuple[Any, ...]:
                query = MessageQuery(device.id, keyword="的", count_limit=3)
                try:
                    outcome: Any = store.search_messages(conn, query, None).total
                except Exception as exc:
                    outcome = type(exc).__name__
                state = conn.execute("SHOW enable_seqscan").fetchone()[0], conn.execute("SHOW enable_indexscan").fetchone()[0]
                return outcome, state, conn.raw.info.transaction_status.name

            assert store.read(run) == ("DivisionByZero" if fails else 3, ("on", "on"), "IDLE")
        finally:
            store.close()


CASED = ["İstanbul'da buluşalım", "ДОМ Привет ÄPFEL Hello", "Καλημέρα ΟΔΟΣ", "5 \u212aelvin", "ǅemal said ǆ"]
CASED_KEYWORDS = ["İstanbul", "istanbul", "İSTANBUL", "ДОМ", "дом", "привет", "ПРИВЕТ", "äpfel", "ÄPFEL", "hello",
                  "ΟΔΟΣ", "οδος", "ΚΑΛΗΜΈΡΑ", "kelvin", "KELVIN", "ǆemal", "ǅEMAL", "d ǆ", "uşa", "UŞA"]  # fmt: skip


def _cased_corpus(store: SQLStore) -> list[dict]:
    feed(store, {"guid": GUID, "notify_type": 11003, "data": {"user_id": ACCOUNT}})
    items = [
        {"seq": str(n), "id": str(9000 + n), "appinfo": f"CASE{n}", "sender": PEERS[0], "receiver": ACCOUNT,
         "roomid": "0", "sendtime": BASE + n, "msg_type": 2, "content": text}
        for n, text in enumerate(CASED)
    ]  # fmt: skip
    feed(store, {"guid": GUID, "notify_type": 11013, "data": items})
    return items


def test_search_folds_case_as_python_does_whatever_the_database_locale(store: SQLStore) -> None:
    items = _cased_corpus(store)
    for keyword in CASED_KEYWORDS:
        assert _search(store, keyword)[0] == _oracle(items, keyword), keyword


@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL test database")
def test_search_folds_case_as_python_does_in_a_database_of_the_c_locale() -> None:
    """PostgreSQL's lower() folds ASCII only under LC_CTYPE C: the search must not depend on it."""
    import psycopg

    name = f"juhe_c_locale_{random.randrange(10**9)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C' ENCODING 'UTF8'")
    try:
        url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
        store = open_store(url)
        store.migrate()
        try:
            items = _cased_corpus(store)
            assert store.read(lambda c: c.execute("SELECT lower('ДОМ')").fetchone()[0]) == "ДОМ"  # as said
            for keyword in CASED_KEYWORDS:
                assert _search(store, keyword)[0] == _oracle(items, keyword), keyword
        finally:
            store.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_search_keeps_to_its_device_also_where_devices_share_grams(store: SQLStore) -> None:
    """PostgreSQL's grams carry their device's slot: devices from 2**19 on share a slot with those
    2**19 apart, and each device's search still finds only its own messages."""
    postgres = "postgresql" in store.url

    def write(guid: str, tag: str, device_id: int | None = None) -> int:
        if postgres and device_id is not None:
            store.submit(
                lambda c: c.execute(
                    "SELECT setval(pg_get_serial_sequence('devices', 'id'), ?)", (device_id - 1,)
                ).fetchone()
            ).result()
        texts = ["共享的词 Shared", "共享", "共", "shared words 共享的词"]
        feed(store, {"guid": guid, "notify_type": 11013, "data": [
            {"appinfo": f"{tag}{n}", "sender": PEERS[n % 2], "receiver": ACCOUNT, "roomid": "0",
             "sendtime": BASE + n, "msg_type": 2, "content": text} for n, text in enumerate(texts)]})  # fmt: skip
        device = store.device(guid)
        assert device is not None
        assert not postgres or device_id is None or device.id == device_id
        return device.id

    small = write("grams-small", "A")
    devices = [(small, "A")]
    # the last device with a slot of its own, the first without, and two that share one
    for tag, device_id in (("B", 2**19 - 1), ("C", 2**19), ("D", 2**19 + small), ("E", 2**20 + small)):
        devices.append((write(f"grams-{tag}", tag, device_id), tag))
    expected = {"共": (4, 2), "共享": (3, 1), "共享的词": (2, 1), "shared": (2, 1), "SHARED W": (1, 0)}
    for device_id, tag in devices:
        for keyword, totals in expected.items():
            for conversation, total in zip((None, "S:" + PEERS[0]), totals, strict=True):
                for count_limit in (None, 1):  # a capped count: the page through the id index first
                    query = MessageQuery(device_id, keyword=keyword, conversation=conversation, count_limit=count_limit)
                    page = store.messages(query)
                    ids = {m["id"] for m in page.items}
                    assert all(i.startswith(tag) for i in ids), (keyword, conversation, ids)
                    assert len(ids) == total, (keyword, conversation, ids)
                    assert page.total == (total if count_limit is None else min(total, 1))
