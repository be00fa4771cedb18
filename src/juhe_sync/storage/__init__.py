"""Durable storage: one :class:`~juhe_sync.storage.base.Store` interface, SQLite and PostgreSQL adapters."""
