"""Helpers shared by tests: feeding callbacks, snapshotting what the API would show."""

from __future__ import annotations

import contextlib
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


class TcpProxy:
    """A TCP forwarder to ``target`` on a port of its own, that a test can cut and restore: the
    network between juhe-sync and its database, without touching the database server."""

    def __init__(self, target: tuple[str, int]):
        import socket
        import threading

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self._pairs: list[tuple[Any, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        import socket

        self.open.clear()
        with self._lock:
            for pair in self._pairs:
                for s in pair:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
            self._pairs.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def scrape(base_url: str, token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``GET /metrics`` parsed: (sample name, labels) -> value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base_url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
