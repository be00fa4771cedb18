"""When pull sync runs: on callbacks that ask for it, on a timer, and on request.

Requests are coalesced per device: a burst of 2131 callbacks makes one incremental contact sync,
a burst of room events one refresh of the rooms they name. Work runs on one background thread;
every job takes the device's lease, so in a deployment of several processes each device is synced
by one of them at a time (a process that finds the lease taken leaves the work to its holder).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from juhe_sync.storage.leases import LeaseBusy
from juhe_sync.sync.jobs import Syncer, SyncStopped

log = logging.getLogger("juhe_sync.sync")

#: Seconds after start before the first periodic sync of every device.
STARTUP_DELAY = 10.0


@dataclass
class _Pending:
    full: bool = False
    everything: bool = False
    contacts: bool = False
    rooms: set[str] = field(default_factory=set)
    due: float = 0.0


class SyncManager:
    def __init__(
        self,
        syncer: Syncer,
        *,
        interval_seconds: float = 1800.0,
        debounce: float = 2.0,
        eligible: Callable[[], set[str]] | None = None,
    ):
        self.syncer = syncer
        #: The devices periodic syncs may spend SaaS quota on (None: every stored device).
        self.eligible = eligible
        self.interval = interval_seconds
        self.debounce = debounce
        self._pending: dict[str, _Pending] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="juhe-sync-pull", daemon=True)
        # The first periodic round comes soon after start: it catches up on what changed upstream
        # (and, with gap recovery, on messages) while this process was not running.
        first = min(interval_seconds, STARTUP_DELAY)
        self._next_periodic = time.monotonic() + first if interval_seconds > 0 else float("inf")
        self.running: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.syncer.stopping.set()  # a running sync stops at its next page, resumable
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    # --- requests ------------------------------------------------------------------------

    def request(self, guid: str, pulls: Iterable[str], *, delay: float | None = None) -> bool:
        """Ask for pulls (``full``, ``sync``, ``contacts``, ``rooms``, ``room:<id>``); returns False if
        everything asked for was already waiting."""
        with self._cond:
            pending = self._pending.get(guid)
            new = pending is None
            if pending is None:
                pending = self._pending[guid] = _Pending(
                    due=time.monotonic() + (self.debounce if delay is None else delay)
                )
            before = (pending.full, pending.everything, pending.contacts, len(pending.rooms))
            for pull in pulls:
                if pull == "full":
                    pending.full = pending.everything = True
                elif pull in ("sync", "rooms"):
                    pending.everything = True
                elif pull == "contacts":
                    pending.contacts = True
                elif pull.startswith("room:"):
                    pending.rooms.add(pull[5:])
            changed = new or before != (
                pending.full,
                pending.everything,
                pending.contacts,
                len(pending.rooms),
            )
            self._cond.notify_all()
            return changed

    def busy(self, guid: str) -> bool:
        """Whether a sync of ``guid`` is waiting or running in this process."""
        with self._cond:
            return guid in self._pending or self.running == guid

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    if now >= self._next_periodic:
                        self._queue_periodic()
                        self._next_periodic = now + self.interval
                    due = [g for g, p in self._pending.items() if p.due <= now]
                    if due:
                        guid = min(due, key=lambda g: self._pending[g].due)
                        work = self._pending.pop(guid)
                        self.running = guid
                        break
                    wake = min([p.due for p in self._pending.values()] + [self._next_periodic])
                    self._cond.wait(timeout=max(0.01, min(wake - now, 60.0)))
                else:
                    return
            self._run(guid, work)

    def _requeue(self, guid: str, work: _Pending, delay: float) -> None:
        with self._cond:
            pending = self._pending.setdefault(guid, _Pending(due=time.monotonic() + delay))
            pending.full |= work.full
            pending.everything |= work.everything
            pending.contacts |= work.contacts
            pending.rooms |= work.rooms
            self._cond.notify_all()

    def _queue_periodic(self) -> None:
        guids = [guid for _, guid in self.syncer.store.device_ids()]
        if self.eligible is not None:
            allowed = self.eligible()
            guids = [g for g in guids if g in allowed]
        for guid in guids:
            pending = self._pending.setdefault(guid, _Pending(due=time.monotonic()))
            pending.everything = True

    def _run(self, guid: str, work: _Pending) -> None:
        try:
            if work.everything:
                self.syncer.sync(guid, full=work.full)
            else:
                if work.contacts:
                    self.syncer.sync_contacts(guid)
                if work.rooms:
                    self.syncer.refresh_rooms(guid, sorted(work.rooms))
        except SyncStopped:
            log.info("sync of %s stopped for shutdown; it resumes on the next run", guid)
        except LeaseBusy:
            # Another process syncs this device, or one that died still holds the lease until
            # it expires: try again then (a live holder's work makes the retry a cheap no-op).
            log.info("sync of %s waits: another process holds its lease", guid)
            self._requeue(guid, work, self.syncer.lease_ttl / 2)
        except Exception:
            log.exception("sync of %s failed", guid)  # recorded in sync_state for sync-status
        finally:
            with self._cond:
                self.running = None
