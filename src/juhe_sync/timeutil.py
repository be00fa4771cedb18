"""Time conversions: platform ``sendtime`` seconds to ISO 8601 UTC, and query-time parsing."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def iso_utc(seconds: int) -> str:
    """``1718000000`` -> ``"2024-06-10T06:13:20Z"``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_local(seconds: int, zone: tzinfo) -> str:
    """``1718000000`` in Asia/Shanghai -> ``"2024-06-10T14:13:20+08:00"``: what a person reads."""
    return datetime.fromtimestamp(seconds, zone).isoformat()


def local_bound(value: str, zone: tzinfo, *, end: bool) -> datetime:
    """An ISO date or date-time as a person means it in ``zone``: a date is the start of that day
    (its last second as an ``end`` bound), a time without an offset is local. Raises ``ValueError``."""
    text = value.strip()
    if _DATE_ONLY.match(text):
        day = date.fromisoformat(text)
        if not end:
            return datetime(day.year, day.month, day.day, tzinfo=zone)
        following = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        return following - timedelta(seconds=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def now_seconds() -> int:
    return int(datetime.now(UTC).timestamp())


def now_iso() -> str:
    return iso_utc(now_seconds())


def parse_query_time(value: str, *, end: bool) -> int:
    """Parse an ISO 8601 query bound into whole Unix seconds, inclusive.

    A date alone covers the whole day (UTC); a time without an offset is UTC. Message times have
    one-second resolution, so a start bound rounds up and an end bound rounds down.
    Raises ``ValueError`` on anything else.
    """
    text = value.strip()
    if _DATE_ONLY.match(text):
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if end:
            return int((start + timedelta(days=1)).timestamp()) - 1
        return int(start.timestamp())
    if "T" not in text and " " not in text:
        raise ValueError(f"not an ISO 8601 date or date-time: {value!r}")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ts = parsed.timestamp()
    return math.floor(ts) if end else math.ceil(ts)
