"""Plain records every layer shares: events, what normalising makes of them, rows pulled from the
SaaS, what the store answers. No behaviour and no I/O; every other module may import this one,
and this one imports nothing of juhe-sync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    guid: str
    notify_type: int
    data: Any
    #: sha256 of the canonical JSON of the event: the same event in any wrapper has the same key.
    key: bytes


# --- what an event means: normalised effects ---------------------------------------------

Direction = Literal["inbound", "outbound"]


@dataclass(slots=True)
class MessageRecord:
    dedup_key: str
    msg_id: str | None
    seq: str | None
    appinfo: str | None
    conversation: str
    room_id: str | None
    sender: str
    receiver: str | None
    sender_name: str | None
    direction: Direction
    msg_type: int | None
    type: str
    content: str
    #: The text keyword search sees: the content of text-like messages, else ``None``.
    search_text: str | None
    sendtime: int
    flag: int
    send_flag: int
    content_type: int | None
    at_list: list[str]
    quote_content: str | None
    quote_appinfo: str | None


@dataclass(slots=True)
class ContactSeen:
    user_id: str
    name: str | None
    #: ``sendtime`` of the message the name came from: the newest name wins, whatever the order.
    seen_at: int
    type: str


@dataclass(slots=True)
class DeviceUpdate:
    state: Literal["online", "offline", "logging_in", "error", "verify"]
    account_id: str | None = None
    account_name: str | None = None
    corp_id: str | None = None
    avatar: str | None = None


@dataclass(slots=True)
class Effects:
    messages: list[MessageRecord] = field(default_factory=list)
    revokes: list[str] = field(default_factory=list)
    contacts: list[ContactSeen] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    device: DeviceUpdate | None = None
    #: Pulls this event asks for ("contacts", "room:<id>", "rooms", "full"); acted on by pull sync.
    pulls: list[str] = field(default_factory=list)
    skipped: int = 0
    #: Set when this event shows the device is a personal-WeChat one.
    device_kind: str | None = None


# --- rows pulled from the SaaS -------------------------------------------------------------


@dataclass(slots=True)
class ContactRow:
    user_id: str
    name: str | None
    remark: str | None
    avatar: str | None
    type: str
    corp_id: str | None
    labels: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    #: Everything else the platform said about the contact, kept as JSON.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RoomRow:
    room_id: str
    name: str | None
    owner: str | None
    member_count: int | None
    avatar: str | None
    version: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class MemberRow:
    user_id: str
    nickname: str | None
    room_nickname: str | None
    join_time: int | None
    inviter: str | None


@dataclass(slots=True)
class RoomDetail:
    room: RoomRow
    #: ``None`` when the answer carried no member list (keep what is stored).
    members: list[MemberRow] | None


@dataclass(slots=True)
class Profile:
    account_id: str
    name: str | None
    corp_id: str | None
    avatar: str | None


# --- what the store answers -----------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class Around:
    """The messages around one message of a conversation, oldest first."""

    conversation: str
    #: Messages in the conversation.
    total: int
    #: Row ids of ``items`` (keyset positions for cursors).
    ids: list[int]
    items: list[dict[str, Any]]
    older: bool
    newer: bool


@dataclass(slots=True)
class ReplayStats:
    events: int = 0
    failed: int = 0
    #: Bodies that no longer match the key they were journalled under: reported, not applied.
    mismatched: int = 0
    messages_added: int = 0
    messages_changed: int = 0


@dataclass(slots=True)
class PurgeStats:
    """What a purge removed (or, in a dry run, would remove)."""

    messages: int = 0
    #: Journal entries whose bodies were emptied or, for failed entries, deleted.
    journal: int = 0


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
    #: False: the page's total is -1, not counted (an export walks every page; one count is enough).
    count: bool = True
    #: Count at most this many matches (the total is then this, and the page says it is capped);
    #: the service sets it for keyword searches. None: count every match.
    count_limit: int | None = None
    #: Each message with the rest of its row (``reads.RESTORE_FIELDS``), as an export writes it.
    full: bool = False


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
    #: The total stopped at the query's ``count_limit``: there are at least that many.
    capped: bool = False


ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    #: None: every device; else the GUIDs the token may read.
    guids: tuple[str, ...] | None
    admin: bool
    created_at: str
    last_used_at: str | None
