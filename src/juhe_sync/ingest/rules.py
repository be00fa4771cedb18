"""The ingest rules as the store takes them (see :class:`juhe_sync.storage.sql.Rules`)."""

from __future__ import annotations

from typing import Any

from juhe_sync.ingest.envelope import parse_body
from juhe_sync.ingest.normalize import normalize_event, normalize_pulled_messages
from juhe_sync.records import Effects, Event


class IngestRules:
    def parse(self, raw: str, key: bytes | None = None) -> Event:
        return parse_body(raw, key)

    def normalize(self, event: Event, account: str | None, received_at: int, kind: str) -> Effects:
        return normalize_event(event, account, received_at, kind)

    def normalize_pulled(self, items: list[Any], account: str | None, received_at: int) -> Effects:
        return normalize_pulled_messages(items, account, received_at)


RULES = IngestRules()
