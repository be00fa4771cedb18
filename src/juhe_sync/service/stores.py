"""Opening the store, with the ingest rules it applies."""

from __future__ import annotations

from juhe_sync.ingest.rules import RULES
from juhe_sync.storage import factory
from juhe_sync.storage.ingest_process import ProcessOptions
from juhe_sync.storage.sqlstore import SQLStore


def open_store(
    url: str, *, write_batch: int = 256, timeout: float = 30.0, process: ProcessOptions | None = None
) -> SQLStore:
    """The store at ``url`` (``sqlite:///…`` or ``postgresql://…``), not yet migrated; ``timeout``
    bounds a read on PostgreSQL (JUHE_SYNC_STORAGE_TIMEOUT); with ``process``, callbacks are
    written by a child process (JUHE_SYNC_CALLBACK_WRITER_PROCESS)."""
    return factory.open_store(url, RULES, write_batch=write_batch, timeout=timeout, process=process)
