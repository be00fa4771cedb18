"""How long to wait before trying again: exponential backoff with full jitter, and ``Retry-After``.

One implementation for every retry loop (SaaS calls, the WebSocket connection, PostgreSQL write
batches): each attempt waits a random time between 0 and ``min(cap, base * 2**attempt)``, so that
many clients failing at once do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next(self, at_least: float | None = None) -> float:
        """The wait before the next attempt; ``at_least`` (a server's Retry-After) wins up to ``cap``."""
        delay = self.rng.uniform(0, min(self.cap, self.base * 2 ** min(self.attempt, 60)))
        self.attempt += 1
        if at_least is not None:
            delay = max(delay, min(at_least, self.cap))
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit() or value.replace(".", "", 1).isdigit():
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
