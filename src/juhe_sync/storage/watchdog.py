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


class Watch:
    """One watched operation. :meth:`rearm` starts its deadline again: call it when the server
    has just answered, so that a long run of quick statements is not cut, only silence is."""

    __slots__ = ("deadline", "seconds", "sock", "what")

    def __init__(self, sock: socket.socket, seconds: float, what: str):
        # A duplicate of the connection's socket: whatever the connection does with its own
        # descriptor (libpq closes it on an error), this one stays that socket until closed.
        self.sock = sock
        self.seconds = seconds
        self.what = what
        self.deadline = time.monotonic() + seconds

    def rearm(self) -> None:
        self.deadline = time.monotonic() + self.seconds


class Watchdog:
    def __init__(self, name: str):
        self.name = name
        self._watched: dict[int, Watch] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, fileno: int, seconds: float, what: str) -> Iterator[Watch]:
        """Cut the socket ``fileno`` if the block runs past ``seconds`` since it began (or since
        the last :meth:`Watch.rearm`)."""
        duplicate = os.dup(fileno)
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)
            raise
        watch = Watch(sock, seconds, what)
        key = next(self._keys)
        with self._lock:
            self._watched[key] = watch
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"{self.name}-watchdog", daemon=True)
                self._thread.start()
        try:
            yield watch
        finally:
            with self._lock:
                self._watched.pop(key, None)
            sock.close()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            with self._lock:
                expired = [(key, w) for key, w in self._watched.items() if w.deadline <= now]
                for key, watch in expired:
                    del self._watched[key]
                    # Shut down, not close: the blocked call wakes with an error, and the owner
                    # closes its descriptor as it always does.
                    with contextlib.suppress(OSError):
                        watch.sock.shutdown(socket.SHUT_RDWR)
                    log.warning("%s: the database did not answer in time; connection cut", watch.what)
