"""Pick the backend from the database URL."""

from __future__ import annotations

import dataclasses

from juhe_sync.storage.ingest_process import ProcessOptions
from juhe_sync.storage.sql import Rules
from juhe_sync.storage.sqlstore import SQLStore


def open_store(
    url: str,
    rules: Rules,
    *,
    write_batch: int = 256,
    timeout: float = 30.0,
    process: ProcessOptions | None = None,
) -> SQLStore:
    """The store at ``url``; ``rules`` parse and normalise events (the service layer passes them);
    ``process``: callbacks are written by a child process (with this store's batch size and timeout)."""
    if process is not None:
        process = dataclasses.replace(process, max_batch=write_batch, timeout=timeout)
    if url.startswith("sqlite:"):
        from juhe_sync.storage.sqlite import SQLiteStore

        return SQLiteStore(url, rules, max_batch=write_batch, process=process)
    if url.startswith(("postgresql:", "postgres:")):
        from juhe_sync.storage.postgres import PostgresStore

        return PostgresStore(url, rules, timeout=timeout, process=process)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
