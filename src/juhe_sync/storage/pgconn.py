"""A PostgreSQL connection as the stores use it: timeouts and keepalives on every connection,
which errors are worth a retry, and the ``?`` placeholders of the shared SQL."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from juhe_sync.storage.watchdog import Watch

#: Seconds: opening a connection, one statement of a writer, a read waiting for a pooled
#: connection. Reads end after the store's ``timeout`` (JUHE_SYNC_STORAGE_TIMEOUT).
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT = 60
READ_WAIT = 5.0
#: Seconds close() waits for each writer, and for the pool, before it gives up on them.
CLOSE_WAIT = 5.0
#: Seconds past its own timeout the server gets before the watchdog cuts the connection.
GRACE = 2.0


def connect_options(conninfo: str, statement_timeout: float = STATEMENT_TIMEOUT) -> dict[str, Any]:
    """Timeouts and keepalives, added to (never replacing) what the URL sets."""
    given = conninfo_to_dict(conninfo)
    options = f"{given.get('options') or ''} -c statement_timeout={round(statement_timeout * 1000)}".strip()
    found: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "keepalives": 1, "keepalives_idle": 10,
                             "keepalives_interval": 5, "keepalives_count": 3}  # fmt: skip
    return {**found, **{k: v for k, v in given.items() if k in found}, "options": options}


#: SQLSTATE classes worth a retry of the whole batch: 40 transaction rollback (serialisation
#: failure, deadlock), 08 connection exception, 57P operator intervention (shutdown, cannot connect
#: now), 53 insufficient resources. Anything else (a value too large for an index row, a number
#: out of range) fails the same way every time: retrying it would fail the good jobs batched with it.
_TRANSIENT_STATES = ("40", "08", "57P", "53")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.errors.PipelineAborted):
        return False  # the error that aborted the pipeline is the one that counts
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # no answer from the server: a lost connection
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith(_TRANSIENT_STATES)


@functools.lru_cache(maxsize=4096)
def _placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the ``?`` placeholders the shared SQL is written with.
    With a ``watch``, each statement starts the watchdog's deadline again: a long transaction of
    quick statements runs, silence is cut."""

    __slots__ = ("raw", "watch")

    def __init__(self, raw: psycopg.Connection[Any], watch: Watch | None = None):
        self.raw = raw
        self.watch = watch

    def execute(self, sql: str, params: Any = None) -> Any:
        if self.watch is not None:
            self.watch.rearm()
        return self.raw.execute(_placeholders(sql), params)
