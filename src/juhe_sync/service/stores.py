"""Opening the store, with the ingest rules it applies."""

from __future__ import annotations

from juhe_sync.ingest.rules import RULES
from juhe_sync.storage import factory
from juhe_sync.storage.sqlstore import SQLStore


def open_store(url: str, *, write_batch: int = 256) -> SQLStore:
    """The store at ``url`` (``sqlite:///…`` or ``postgresql://…``), not yet migrated."""
    return factory.open_store(url, RULES, write_batch=write_batch)
