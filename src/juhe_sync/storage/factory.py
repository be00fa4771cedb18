"""Pick the backend from the database URL."""

from __future__ import annotations

from juhe_sync.storage.base import Store


def open_store(url: str, *, write_batch: int = 256) -> Store:
    if url.startswith("sqlite:"):
        from juhe_sync.storage.sqlite import SQLiteStore

        return SQLiteStore(url, max_batch=write_batch)
    if url.startswith(("postgresql:", "postgres:")):
        from juhe_sync.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
