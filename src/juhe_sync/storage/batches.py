"""The write queue both SQL stores share: jobs, batches drained from a queue, and their outcomes."""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from juhe_sync.errors import StorageUnavailable

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


def enqueue(jobs: queue.SimpleQueue[Any], job: WriteJob) -> None:
    if jobs.qsize() >= MAX_QUEUED:
        raise StorageUnavailable("The database is falling behind; nothing was stored, try again shortly")
    jobs.put(job)


def next_batch(jobs: queue.SimpleQueue[Any], most: int) -> tuple[list[WriteJob], bool]:
    """Wait for a job, then take whatever else is queued (up to ``most``): (live jobs, stop seen).
    Jobs whose futures were cancelled are left out."""
    first = jobs.get()
    if first is STOP:
        return [], True
    batch = [first]
    stop = False
    while len(batch) < most:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            break
        if job is STOP:
            stop = True
            break
        batch.append(job)
    return [job for job in batch if job.future.set_running_or_notify_cancel()], stop


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
