"""Deadlines the database cannot enforce itself.

PostgreSQL ends a slow statement after ``statement_timeout``, and TCP keepalives notice a peer
that vanished. Neither helps when the server process is frozen (SIGSTOP, a stuck VM, storage that
stopped answering): its kernel still acknowledges every packet, so a client waits as long as the
freeze lasts. The watchdog cuts the socket of an operation past its deadline; the blocked call
then fails like a lost connection, and the caller's usual error path (503, retry) takes over.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("juhe_sync.storage")

#: How often the watchdog looks (seconds): the precision of every deadline.
TICK = 0.25


class Watchdog:
    def __init__(self, name: str):
        self.name = name
        #: key -> (deadline, socket file descriptor, what runs)
        self._watched: dict[int, tuple[float, int, str]] = {}
        self._keys = itertools.count()
        # Held while cutting and while an operation ends, so that a descriptor is never cut after
        # its operation has ended (and the number perhaps been reused).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, fileno: int, seconds: float, what: str) -> Iterator[None]:
        """Cut ``fileno`` if the block is still running after ``seconds``."""
        key = next(self._keys)
        with self._lock:
            self._watched[key] = (time.monotonic() + seconds, fileno, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self.name}-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._watched.pop(key, None)

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            with self._lock:
                expired = [(key, entry) for key, entry in self._watched.items() if entry[0] <= now]
                for key, (_, fileno, what) in expired:
                    del self._watched[key]
                    _cut(fileno)
                    log.warning("%s: the database did not answer in time; connection cut", what)


def _cut(fileno: int) -> None:
    # Shut down (not close) a duplicate: the blocked call on the original descriptor wakes with an
    # error, and the descriptor stays valid until its owner closes it.
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fileno))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()
