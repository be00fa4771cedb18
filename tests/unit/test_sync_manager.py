"""When pull sync runs: coalescing, debounce, periodic runs and lease waits (sync jobs recorded)."""

from __future__ import annotations

import threading
import time
from typing import Any

from juhe_sync.storage.leases import LeaseBusy
from juhe_sync.sync.manager import SyncManager


class RecordingSyncer:
    """Stands in for :class:`Syncer` (its own behaviour is tested against the simulator)."""

    lease_ttl = 0.2

    def __init__(self, devices: list[str], busy_times: int = 0):
        self.calls: list[tuple[Any, ...]] = []
        self.devices = devices
        self.busy_times = busy_times
        self.done = threading.Event()
        self.stopping = threading.Event()
        self.store = self

    def device_ids(self) -> list[tuple[int, str]]:
        return list(enumerate(self.devices))

    def _record(self, *call: Any) -> None:
        if self.busy_times > 0:
            self.busy_times -= 1
            raise LeaseBusy("held by another process")
        self.calls.append(call)
        self.done.set()

    def sync(self, guid: str, *, full: bool = False) -> None:
        self._record("sync", guid, full)

    def sync_contacts(self, guid: str) -> None:
        self._record("contacts", guid)

    def refresh_rooms(self, guid: str, rooms: list[str]) -> None:
        self._record("rooms", guid, tuple(rooms))


def wait_calls(syncer: RecordingSyncer, n: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while len(syncer.calls) < n:
        assert time.monotonic() < deadline, syncer.calls
        time.sleep(0.01)


def test_a_burst_of_triggers_makes_one_run_per_kind() -> None:
    syncer = RecordingSyncer(["g1"])
    manager = SyncManager(syncer, interval_seconds=0, debounce=0.2)  # type: ignore[arg-type]
    manager.start()
    try:
        assert manager.request("g1", ["contacts"])
        for _ in range(20):
            manager.request("g1", ["contacts", "room:r2", "room:r1"])
        assert not manager.request("g1", ["contacts"])  # nothing new
        assert manager.busy("g1")
        wait_calls(syncer, 2)
        deadline = time.monotonic() + 10
        while manager.busy("g1"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert syncer.calls == [("contacts", "g1"), ("rooms", "g1", ("r1", "r2"))]
        assert not manager.busy("g1")
        # A login asks for everything: one full sync, which covers the rest.
        manager.request("g1", ["contacts", "full", "room:r3"])
        wait_calls(syncer, 3)
        assert syncer.calls[2] == ("sync", "g1", True)
    finally:
        manager.stop()


def test_periodic_sync_of_every_device() -> None:
    syncer = RecordingSyncer(["g1", "g2"])
    manager = SyncManager(syncer, interval_seconds=0.3, debounce=0)  # type: ignore[arg-type]
    manager.start()
    try:
        wait_calls(syncer, 4, timeout=3)  # two rounds
        assert sorted(syncer.calls[:2]) == [("sync", "g1", False), ("sync", "g2", False)]
    finally:
        manager.stop()


def test_a_taken_lease_is_retried_later() -> None:
    syncer = RecordingSyncer(["g1"], busy_times=2)
    manager = SyncManager(syncer, interval_seconds=0, debounce=0)  # type: ignore[arg-type]
    manager.start()
    try:
        manager.request("g1", ["sync"])
        wait_calls(syncer, 1, timeout=3)
        assert syncer.calls == [("sync", "g1", False)]
    finally:
        manager.stop()


def test_the_first_periodic_round_comes_soon_after_start(monkeypatch) -> None:
    import juhe_sync.sync.manager as manager_module

    monkeypatch.setattr(manager_module, "STARTUP_DELAY", 0.2)
    syncer = RecordingSyncer(["g1"])
    manager = SyncManager(syncer, interval_seconds=3600, debounce=0)  # type: ignore[arg-type]
    manager.start()
    try:
        wait_calls(syncer, 1, timeout=3)
        assert syncer.calls == [("sync", "g1", False)]
    finally:
        manager.stop()
