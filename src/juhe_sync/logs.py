"""Logging for the whole process, uvicorn's included: plain lines or one JSON object per line
(``JUHE_SYNC_LOG_FORMAT``), the request id of the request being served, and no secrets.

``serve`` hands :func:`dict_config` to uvicorn, which applies it in every worker process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The id of the request this task serves (set by the web edge), for every log line it writes.
request_id: ContextVar[str | None] = ContextVar("juhe_sync_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class Throttle:
    """A failure that recurs (every write on a full disk, every read while the database is away)
    is logged once per ``interval`` seconds, with how often it recurred meanwhile: the log stays
    readable and does not fill the disk that is already full."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0):
        self.logger = logger
        self.interval = interval
        self._last = -interval
        self._suppressed = 0
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            msg, args = f"{msg} (and {suppressed} more like it in the last {self.interval:g} s)", args
        self.logger.log(level, msg, *args)


class ShutdownCancelFilter(logging.Filter):
    """A request still waiting when the shutdown timeout runs out is cancelled, as configured; the
    server reports it as an exception in the application. One line, not a traceback each."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            record.exc_info = record.exc_text = None
            record.msg, record.args = "a request still in flight was cancelled by the shutdown timeout", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request id, and the
    traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def dict_config(level: str, fmt: str, secrets: list[str]) -> dict[str, Any]:
    """One handler on stderr for every logger (juhe-sync's, uvicorn's, libraries'), masking
    ``secrets`` and stamping request ids."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "secrets": {"()": "juhe_sync.redact.SecretFilter", "secrets": secrets},
            "request_id": {"()": RequestIdFilter},
            "shutdown_cancel": {"()": ShutdownCancelFilter},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id", "shutdown_cancel", "secrets"],
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            **{
                name: {"handlers": [], "level": level.upper(), "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            # Its debug lines show frames: the auth frame's secret (cut short, so no mask finds
            # it) and message contents. Never below INFO.
            "websockets": {"level": "INFO" if level.upper() == "DEBUG" else level.upper()},
            # A warning for every failed connection attempt while the database is away, several a
            # second; the store says the same once per 10 s.
            "psycopg.pool": {"level": "ERROR"},
        },
    }


def configure(level: str, fmt: str, secrets: list[str]) -> None:
    logging.config.dictConfig(dict_config(level, fmt, secrets))
