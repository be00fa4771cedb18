"""Leases coordinate background work per device across processes, through the database."""

from __future__ import annotations

import time

import pytest

from juhe_sync.service.stores import open_store
from juhe_sync.storage.leases import LeaseBusy, device_lease, lease
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import GUID
from tests.helpers import feed_fixtures


def test_one_holder_at_a_time(store: SQLStore, database_url: str) -> None:
    other = open_store(database_url)  # another process's view of the same database
    try:
        assert store.acquire_lease("device:1", "a", 30)
        assert not other.acquire_lease("device:1", "b", 30)
        assert store.acquire_lease("device:1", "a", 30)  # renewal by the holder
        store.release_lease("device:1", "a")
        assert other.acquire_lease("device:1", "b", 30)
        assert not store.acquire_lease("device:1", "a", 30)
    finally:
        other.close()


def test_a_dead_holder_frees_the_lease_after_its_ttl(store: SQLStore) -> None:
    assert store.acquire_lease("device:2", "dead-process", 0.3)  # never renewed, never released
    assert not store.acquire_lease("device:2", "b", 30)
    time.sleep(0.4)
    assert store.acquire_lease("device:2", "b", 30)


def test_context_manager_renews_and_releases(store: SQLStore) -> None:
    with lease(store, "job", ttl=0.3):
        time.sleep(0.5)  # longer than the TTL: the renewer kept it
        assert not store.acquire_lease("job", "someone-else", 30)
        with pytest.raises(LeaseBusy), lease(store, "job", ttl=0.3, owner="another-process"):
            pass
    assert store.acquire_lease("job", "someone-else", 30)


def test_replay_refuses_while_another_process_works_on_the_device(store: SQLStore) -> None:
    feed_fixtures(store)
    device = store.device(GUID)
    assert device is not None
    assert store.acquire_lease(f"device:{device.id}", "another-host:123", 30)
    with pytest.raises(LeaseBusy):
        store.replay(GUID)
    store.release_lease(f"device:{device.id}", "another-host:123")
    with device_lease(store, 999, "sync"):
        assert store.replay(GUID).events > 0  # other devices' leases do not matter
