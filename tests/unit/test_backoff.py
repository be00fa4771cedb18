"""The one backoff rule: full jitter under an exponential cap, Retry-After as seconds or a date."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from juhe_sync.backoff import Backoff, retry_after


def test_full_jitter_under_an_exponential_cap() -> None:
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(1))
    waits = [backoff.next() for _ in range(12)]
    for attempt, wait in enumerate(waits):
        assert 0 <= wait <= min(4.0, 0.5 * 2**attempt)
    assert max(waits[6:]) > 2.0  # the cap is reached, not exceeded
    backoff.reset()
    assert backoff.next() <= 0.5
    huge = Backoff(base=1.0, cap=60.0, attempt=10_000)
    assert 0 <= huge.next() <= 60.0  # no overflow however long it failed


def test_retry_after_raises_the_wait_up_to_the_cap() -> None:
    backoff = Backoff(base=0.01, cap=5.0)
    assert backoff.next(at_least=3.0) >= 3.0
    assert backoff.next(at_least=100.0) == 5.0


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert retry_after("120") == 120.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("Mon, 30 Nov 2026 12:00:30 GMT", now) == 30.0
    assert retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past: at once
    for bad in (None, "", "soon", "-5", "1e400x"):
        assert retry_after(bad, now) is None
