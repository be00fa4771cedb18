"""Leases: background work for one device runs in one process at a time, across hosts.

A lease is a row (name, owner, expiry) in the shared database. The holder renews it while it
works; a process that dies simply stops renewing, and the lease is free again after its TTL.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from juhe_sync.errors import ApiError

if TYPE_CHECKING:
    from juhe_sync.storage.sqlstore import SQLStore

DEFAULT_TTL = 60.0

#: Who this process is, in lease rows.
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseBusy(ApiError):
    status = 409
    code = "BUSY"


@contextmanager
def lease(store: SQLStore, name: str, *, ttl: float = DEFAULT_TTL, owner: str | None = None) -> Iterator[str]:
    """Hold the lease ``name`` for the duration of the block, renewing it every ttl/3 seconds."""
    owner = owner or f"{PROCESS_ID}:{threading.get_ident()}"
    if not store.acquire_lease(name, owner, ttl):
        raise LeaseBusy(f"{name} is being worked on by another process")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                if not store.acquire_lease(name, owner, ttl):
                    return  # lost it (e.g. paused past the TTL); the work itself is idempotent
            except Exception:  # a failed renewal is retried at the next tick
                continue

    renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    renewer.start()
    try:
        yield owner
    finally:
        stop.set()
        renewer.join()
        store.release_lease(name, owner)


def device_lease(
    store: SQLStore, device_id: int, job: str, *, ttl: float = DEFAULT_TTL
) -> AbstractContextManager[str]:
    """The one lease under which any background job (sync, replay, …) of a device runs."""
    return lease(store, f"device:{device_id}", ttl=ttl, owner=f"{PROCESS_ID}:{threading.get_ident()}:{job}")
