"""Retention: purging a device's old messages, forgetting a device, and the background pass that
applies ``JUHE_SYNC_RETENTION_DAYS``. Knows no HTTP or terminal."""

from __future__ import annotations

import logging
import threading
from zoneinfo import ZoneInfo

from juhe_sync.errors import InvalidParams, NotFound
from juhe_sync.metrics import PURGED_MESSAGES
from juhe_sync.records import Device, ProgressFn, PurgeStats
from juhe_sync.storage import retention
from juhe_sync.storage.leases import LeaseBusy, device_lease, lease
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import local_bound, now_seconds

log = logging.getLogger("juhe_sync.service.retention")

DAY = 86_400
#: Seconds between background passes, and before the first one (the server settles first).
PERIOD = 3600.0
FIRST_PASS = 60.0
#: Seconds a purge rests between steps. Back to back, a purge from another process kept winning
#: SQLite's write lock while the server's writer slept in its busy handler (callbacks' p99 went
#: from 51 to 231 ms in the benchmark); resting lets waiting writers in.
PAUSE = 0.02


def apply_setting(store: SQLStore, days: int | None) -> None:
    """Make the store refuse messages older than the window (they would be purged at once)."""
    store.set_retention(None if days is None else days * DAY)


def parse_before(value: str, zone: ZoneInfo) -> int:
    """``--before``: an ISO date (midnight in ``zone``) or date-time (``zone`` unless it has an offset)."""
    try:
        seconds = int(local_bound(value, zone, end=False).timestamp())
        if not 0 <= seconds < 1 << 40:
            raise ValueError("before 1970 or too far ahead")
        return seconds
    except (ValueError, OverflowError, OSError):
        raise InvalidParams(f"--before must be an ISO 8601 date or date-time, not {value!r}") from None


def device(store: SQLStore, guid: str) -> Device:
    found = store.device(guid)
    if found is None:
        raise NotFound(f"Device {guid} not found")
    return found


def plan(store: SQLStore, guid: str, before: int) -> PurgeStats:
    """What a purge before ``before`` would remove now (``--dry-run``)."""
    return retention.plan(store, device(store, guid).id, before)


def purge(
    store: SQLStore, guid: str, before: int, progress: ProgressFn | None = None, pause: float = 0.0
) -> PurgeStats:
    stats = retention.purge(store, guid, device(store, guid).id, before, _counted(progress), pause)
    log.info("purged %s messages and %s journal entries of %s before %s",
             stats.messages, stats.journal, guid, before)  # fmt: skip
    return stats


def forget(store: SQLStore, guid: str, progress: ProgressFn | None = None) -> PurgeStats:
    """Delete everything about the device, holding its work lease: no sync or replay of it runs
    meanwhile (one that does makes this fail with 409 BUSY; try again when it is done)."""
    device_id = device(store, guid).id
    with device_lease(store, device_id, "forget"):
        stats = retention.forget(store, guid, device_id, _counted(progress))
    log.info("forgot device %s: %s messages, %s journal entries", guid, stats.messages, stats.journal)
    return stats


def _counted(progress: ProgressFn | None) -> ProgressFn:
    def step(done: int) -> None:
        PURGED_MESSAGES.inc(done)
        if progress is not None:
            progress(done)

    return step


class RetentionLoop:
    """Purges every device to the retention window once an hour, in one process at a time."""

    def __init__(self, store: SQLStore, days: int):
        self.store, self.days = store, days
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="juhe-sync-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        wait = FIRST_PASS
        while not self._stop.wait(wait):
            wait = PERIOD
            try:
                self.run_once()
            except LeaseBusy:
                log.debug("another process is applying retention")
            except Exception:
                log.exception("retention pass failed; the next one retries")

    def run_once(self) -> PurgeStats:
        total = PurgeStats()
        with lease(self.store, "retention"):
            before = now_seconds() - self.days * DAY
            for _, guid in self.store.device_ids():
                if self._stop.is_set():
                    break
                stats = purge(self.store, guid, before, pause=PAUSE)
                total.messages += stats.messages
                total.journal += stats.journal
        return total
