"""The storage interface every backend implements, and the records it returns."""

from __future__ import annotations

import abc
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from juhe_sync.ingest.envelope import Event
from juhe_sync.storage.tokens import TokenRecord

IngestStatus = Literal["stored", "duplicate", "failed"]


@dataclass(slots=True)
class IngestOutcome:
    #: ``stored``: journalled and applied; ``duplicate``: this event was journalled before, nothing
    #: changed; ``failed``: journalled, but normalising or applying it raised (``replay`` retries).
    status: IngestStatus
    journal_id: int | None = None
    messages_added: int = 0
    #: Pulls the event asks for (``full``, ``contacts``, ``rooms``, ``room:<id>``), for pull sync.
    pulls: list[str] = field(default_factory=list)
    #: Items of the event that were not messages and were left out (the journal keeps them).
    skipped: int = 0


@dataclass(slots=True)
class ReplayStats:
    events: int = 0
    failed: int = 0
    messages_added: int = 0
    messages_changed: int = 0


@dataclass(slots=True)
class MessageQuery:
    device_id: int
    conversation: str | None = None
    keyword: str | None = None
    start: int | None = None
    end: int | None = None
    offset: int = 0
    limit: int = 20
    ascending: bool = False
    #: Keyset pagination: only messages after this internal id (in the query's order); wins over offset.
    after: int | None = None


@dataclass(slots=True)
class Device:
    id: int
    guid: str
    state: str
    account_id: str | None
    account_name: str | None
    corp_id: str | None
    last_callback_time: str | None
    last_sync_time: str | None
    last_error: str | None
    contacts_count: int
    rooms_count: int
    messages_count: int


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    #: Key of the last item when the page is full (the next page starts after it), else None.
    next_key: Any = None


ProgressFn = Callable[[int], None]


class Store(abc.ABC):
    """Durable storage of devices, journal, contacts, rooms and messages.

    Writes are serialised and group-committed by the backend; ``submit_event`` resolves its future
    only after the transaction holding the event is durably committed. Reads are plain blocking
    calls, safe from any thread.
    """

    url: str

    @abc.abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    @abc.abstractmethod
    def submit_event(self, event: Event, raw: str, received_at: int) -> Future[IngestOutcome]: ...

    def ingest(self, event: Event, raw: str, received_at: int) -> IngestOutcome:
        return self.submit_event(event, raw, received_at).result()

    @abc.abstractmethod
    def replay(self, guid: str | None = None, progress: ProgressFn | None = None) -> ReplayStats: ...

    @abc.abstractmethod
    def journal_size(self, guid: str | None = None) -> int: ...

    @abc.abstractmethod
    def device(self, guid: str) -> Device | None: ...

    @abc.abstractmethod
    def contacts(
        self, device_id: int, keyword: str | None, offset: int, limit: int, after: str | None = None
    ) -> Page: ...

    @abc.abstractmethod
    def rooms(self, device_id: int, offset: int, limit: int, after: str | None = None) -> Page: ...

    @abc.abstractmethod
    def room_members(
        self, device_id: int, room_id: str, offset: int, limit: int, after: str | None = None
    ) -> Page | None: ...

    @abc.abstractmethod
    def sync_states(self, device_id: int) -> list[dict[str, Any]]:
        """One dict per kind of pull sync the device has run (see ``storage.pulls.sync_states``)."""

    @abc.abstractmethod
    def messages(self, query: MessageQuery) -> Page: ...

    @abc.abstractmethod
    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take (or extend) the lease ``name`` for ``owner`` unless another owner holds it unexpired."""

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abc.abstractmethod
    def device_ids(self) -> list[tuple[int, str]]:
        """(id, guid) of every device."""

    # --- API tokens and verified devices ----------------------------------------------------

    @abc.abstractmethod
    def create_token(
        self, name: str, token_hash: bytes, guids: list[str] | None, admin: bool
    ) -> TokenRecord | None:
        """Store a new token (its hash only); None if ``name`` is taken."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: bytes) -> tuple[TokenRecord, bytes] | None: ...

    @abc.abstractmethod
    def list_tokens(self) -> list[TokenRecord]: ...

    @abc.abstractmethod
    def count_tokens(self) -> int: ...

    @abc.abstractmethod
    def revoke_token(self, name: str) -> bool: ...

    @abc.abstractmethod
    def touch_token(self, name: str, when: str) -> None: ...

    @abc.abstractmethod
    def mark_verified(self, guid: str) -> None:
        """The device's callbacks proved a secret: pull sync may run for it."""

    @abc.abstractmethod
    def verified_guids(self) -> list[str]: ...

    @abc.abstractmethod
    def close(self) -> None: ...
