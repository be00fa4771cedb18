"""Durable storage: :class:`~juhe_sync.storage.sqlstore.SQLStore`, with a SQLite and a PostgreSQL backend."""
