"""Helpers shared by tests: feeding callbacks, snapshotting what the API would show."""

from __future__ import annotations

import json
from typing import Any

from juhe_sync.ingest.envelope import parse_body
from juhe_sync.records import IngestOutcome, MessageQuery
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import GUID, callback_fixtures, fixture_text


def feed(store: SQLStore, body: str | dict[str, Any], received_at: int = 1_718_100_000) -> IngestOutcome:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return store.ingest(parse_body(text), text, received_at)


def feed_fixtures(store: SQLStore, names: list[str] | None = None) -> list[IngestOutcome]:
    return [feed(store, fixture_text(name)) for name in (names or callback_fixtures())]


def all_pages(fetch: Any, limit: int = 100) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = fetch(offset, limit)
        out += page.items
        offset += limit
        if offset >= page.total:
            return out


def snapshot(store: SQLStore, guid: str = GUID) -> dict[str, Any]:
    """Everything a client can read about a device, minus arrival-dependent fields."""
    device = store.device(guid)
    assert device is not None
    messages = all_pages(lambda o, n: store.messages(MessageQuery(device.id, offset=o, limit=n)))
    return {
        "counts": (device.contacts_count, device.rooms_count, device.messages_count),
        "account": (device.account_id, device.account_name, device.corp_id),
        "journal": store.journal_size(guid),
        "messages": messages,
        "contacts": all_pages(lambda o, n: store.contacts(device.id, None, o, n)),
        "rooms": all_pages(lambda o, n: store.rooms(device.id, o, n)),
    }
