"""``copy`` moves a whole store between backends; the copy answers every query like the source."""

from __future__ import annotations

from pathlib import Path

import pytest

import juhe_sync.storage.copy as copy_module
from juhe_sync.storage.base import MessageQuery
from juhe_sync.storage.copy import copy_store
from juhe_sync.storage.factory import open_store
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import BACKENDS, GUID, fresh_database
from tests.helpers import feed, feed_fixtures, snapshot
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
            assert isinstance(dst, SQLStore)
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
    assert isinstance(dst, SQLStore)
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
        assert isinstance(dst, SQLStore)
        with pytest.raises(Exception, match="other devices"):
            copy_store(store, dst)
    finally:
        dst.close()
