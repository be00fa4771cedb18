"""The write queue both SQL stores share: jobs, batches drained from a queue, and their outcomes."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from juhe_sync import metrics
from juhe_sync.errors import StorageUnavailable
from juhe_sync.logs import Throttle

log = logging.getLogger("juhe_sync.storage")

#: Put on a queue to stop its writer once what is queued before it has run.
STOP = object()
#: Most jobs one writer's queue holds. A writer stuck on a database that stopped answering
#: would otherwise collect every retried callback, and the memory of each.
MAX_QUEUED = 10_000


class WriteJob:
    """``fn(conn)`` to run in a write transaction; ``lock_key`` (a device GUID) names what it writes."""

    __slots__ = ("fn", "future", "lock_key")

    def __init__(self, fn: Callable[[Any], Any], lock_key: str | None = None):
        self.fn = fn
        self.lock_key = lock_key
        self.future: Future[Any] = Future()


Outcome = tuple[WriteJob, Any, BaseException | None]


class JobQueue:
    """One writer's queue, its depth kept in the metrics as jobs come and go."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._depth = metrics.WRITE_QUEUE_DEPTH.labels(name)
        self._full = Throttle(log)

    def put(self, job: WriteJob) -> None:
        if self._jobs.qsize() >= MAX_QUEUED:
            self._full.log(logging.ERROR, "a writer's queue is full (%d jobs): refusing writes", MAX_QUEUED)
            raise StorageUnavailable(
                "The database is falling behind; nothing was stored, try again shortly", logged=True
            )
        self._jobs.put(job)
        self._depth.inc()

    def stop(self) -> None:
        """Stop the writer once what is queued before now has run."""
        self._jobs.put(STOP)

    def next_batch(self, most: int) -> tuple[list[WriteJob], bool]:
        """Wait for a job, then take whatever else is queued (up to ``most``): (live jobs, stop
        seen). Jobs whose futures were cancelled are left out."""
        first = self._jobs.get()
        if first is STOP:
            return [], True
        batch, stop = drain(self._jobs, first, most, STOP)
        self._depth.dec(len(batch))
        return started(batch), stop


def drain(items: queue.SimpleQueue[Any], first: Any, most: int, end: object) -> tuple[list[Any], bool]:
    """``first`` and whatever else ``items`` holds, up to ``most`` in all, stopping at ``end``:
    (them, whether ``end`` was taken)."""
    taken = [first]
    while len(taken) < most:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        if item is end:
            return taken, True
        taken.append(item)
    return taken, False


def started(jobs: list[WriteJob]) -> list[WriteJob]:
    """The jobs whose futures were not cancelled, now marked running."""
    return [job for job in jobs if job.future.set_running_or_notify_cancel()]


def settle(outcomes: list[Outcome]) -> None:
    """Resolve each job's future, after the commit."""
    for job, result, error in outcomes:
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)


def fail(jobs: list[WriteJob], error: BaseException) -> None:
    for job in jobs:
        job.future.set_exception(error)


def record_batch(jobs: int, commit: float | None, total: float | None) -> None:
    """A write transaction's metrics: its jobs, COMMIT's and the whole transaction's seconds (a
    failed transaction has no times)."""
    if commit is None or total is None:
        metrics.WRITE_FAILURES.inc()
        return
    metrics.WRITE_BATCH_JOBS.observe(jobs)
    metrics.WRITE_COMMIT_SECONDS.observe(commit)
    metrics.WRITE_TRANSACTION_SECONDS.observe(total)
