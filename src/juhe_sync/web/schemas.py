"""Request and response models: what the OpenAPI document promises and the server returns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class ErrorBody(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="What went wrong, for people.")
    code: str = Field(description="Machine-readable code, e.g. INVALID_PARAMS, NOT_FOUND, INTERNAL_ERROR.")


class CallbackAck(BaseModel):
    success: Literal[True] = True
    message: Literal["Callback processed"] = "Callback processed"


class Contact(BaseModel):
    id: str
    name: str | None
    remark: str | None
    avatar: str | None
    type: str = Field(description="`internal` (a colleague in the account's corp) or `external`.")
    corp_id: str | None = Field(None, description="The contact's corp, from pull sync.")
    labels: list[str | None] = Field(default_factory=list, description="Label ids, from pull sync.")
    source: Literal["message", "sync"] = Field(
        "message", description="`sync`: filled by the SaaS pull API; `message`: only seen as a sender so far."
    )


_NEXT = (
    "Pass as `cursor` to get the next page at constant cost; null on a page that is not full (after a full "
    "last page, the next one is empty, with null)."
)


class ContactsData(BaseModel):
    contacts: list[Contact]
    total: int
    page: int
    limit: int
    next_cursor: str | None = Field(description=_NEXT)


class ContactsResponse(BaseModel):
    success: Literal[True] = True
    data: ContactsData


class Message(BaseModel):
    id: str = Field(
        description="The platform's message id (`id`); else its appinfo, else its seq, else juhe-sync's own id."
    )
    conversation_id: str = Field(description="`S:<user_id>` for a private chat, `R:<room_id>` for a room.")
    from_: str = Field(alias="from", description="The sender's user id.")
    content: str = Field(description="Text for text messages; the raw payload (JSON) for other types.")
    timestamp: str = Field(description="Send time, ISO 8601 UTC.")
    type: str
    direction: Literal["inbound", "outbound"]
    sender_name: str | None
    revoked: bool
    at_list: list[str]
    quote_appinfo: str | None
    quote_content: str | None
    appinfo: str | None
    seq: str | None
    msg_type: int | None
    room_id: str | None


class MessagesData(BaseModel):
    messages: list[Message]
    total: int
    total_capped: bool = Field(
        False,
        description="A keyword search stopped counting at `JUHE_SYNC_SEARCH_COUNT_LIMIT`: there are at least "
        "`total` matches (pages past them are still served).",
    )
    page: int
    limit: int
    next_cursor: str | None = Field(description=_NEXT)
    conversation_id: str | None = Field(None, description="With `around`: the message's conversation.")
    prev_cursor: str | None = Field(
        None,
        description="With `around`: pass as `cursor` with the opposite `order` to page the other way "
        "from the first message; null when there is nothing more that way.",
    )


class MessagesResponse(BaseModel):
    success: Literal[True] = True
    data: MessagesData


class Device(BaseModel):
    guid: str
    kind: Literal["wecom", "wechat"] | str = Field(description="`wecom` or `wechat`.")
    account_id: str | None = Field(description="The logged-in account's user id.")
    name: str | None = Field(description="The logged-in account's name.")
    corp_id: str | None
    avatar: str | None
    online: bool | None = Field(description="From login/logout callbacks; null before any was seen.")
    login_state: str
    status: Literal["idle", "syncing", "error", "offline"] = Field(description="As in sync-status.")
    messages_count: int
    contacts_count: int
    rooms_count: int
    last_callback_time: str | None
    last_sync_time: str | None
    last_error: str | None


class DevicesData(BaseModel):
    devices: list[Device]
    total: int
    page: int
    limit: int
    next_cursor: str | None = Field(description=_NEXT)


class DevicesResponse(BaseModel):
    success: Literal[True] = True
    data: DevicesData


class LastMessage(BaseModel):
    id: str
    from_: str = Field(alias="from")
    sender_name: str | None
    direction: Literal["inbound", "outbound"]
    type: str
    revoked: bool
    text: str = Field(
        description="The text, cut to 80 characters, or a label such as `[图片]` for other types."
    )


class Conversation(BaseModel):
    conversation_id: str = Field(description="`S:<user_id>` or `R:<room_id>`: pass it to `/api/messages`.")
    kind: Literal["S", "R"] = Field(description="`S`: a private chat; `R`: a room.")
    name: str = Field(description="The contact's remark, else nickname; the room's name; else the id.")
    remark: str | None
    avatar: str | None
    message_count: int
    last_message_time: str = Field(description="ISO 8601 UTC.")
    last_message: LastMessage


class ConversationsData(BaseModel):
    conversations: list[Conversation]
    total: int
    page: int
    limit: int
    next_cursor: str | None = Field(description=_NEXT)


class ConversationsResponse(BaseModel):
    success: Literal[True] = True
    data: ConversationsData


class Room(BaseModel):
    id: str = Field(description="`R:<room_id>`.")
    name: str | None
    owner: str | None
    member_count: int | None
    avatar: str | None


class RoomsData(BaseModel):
    rooms: list[Room]
    total: int
    page: int
    limit: int
    next_cursor: str | None = Field(description=_NEXT)


class RoomsResponse(BaseModel):
    success: Literal[True] = True
    data: RoomsData


class Member(BaseModel):
    id: str = Field(description="The member's user id.")
    name: str | None
    room_nickname: str | None
    remark: str | None = Field(description="The device's remark for this person, if a contact.")
    type: Literal["internal", "external"]
    join_time: str | None
    inviter: str | None


class MembersData(BaseModel):
    room_id: str
    members: list[Member]
    total: int
    page: int
    limit: int
    next_cursor: str | None


class MembersResponse(BaseModel):
    success: Literal[True] = True
    data: MembersData


class SyncKind(BaseModel):
    status: Literal["idle", "running", "error", "interrupted"]
    done: int
    total: int | None
    full: bool
    started_at: str | None
    last_success: str | None
    last_error: str | None


class WebSocketState(BaseModel):
    connected: bool
    connects: int
    callbacks: int = Field(description="Callback frames received on this process's connection.")
    rejected: int
    last_error: str | None


class SyncStarted(BaseModel):
    guid: str
    full: bool
    queued: bool = Field(description="False when a sync of this device was already waiting to run.")


class SyncStartedResponse(BaseModel):
    success: Literal[True] = True
    data: SyncStarted


class Account(BaseModel):
    id: str
    name: str | None
    corp_id: str | None


class SyncStatus(BaseModel):
    guid: str
    status: Literal["idle", "syncing", "error", "offline"]
    last_sync_time: str | None
    contacts_count: int
    messages_count: int
    rooms_count: int
    online: bool | None = Field(description="From login/logout callbacks; null before any was seen.")
    login_state: str
    account: Account | None
    last_callback_time: str | None
    last_error: str | None
    failed_events: int = Field(
        0,
        description="Callbacks journalled but not applied (a bug or a refused value); `juhe-sync replay` retries them.",
    )
    sync: dict[str, SyncKind] = Field(
        description="Pull sync per kind that has run: `contacts`, `rooms`, `profile`, and `messages` with gap recovery."
    )
    websocket: WebSocketState | None = Field(
        None, description="WebSocket mode only: this process's connection for the device (null if none)."
    )


class SyncStatusResponse(BaseModel):
    success: Literal[True] = True
    data: SyncStatus


class TokenSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="Unique name: letters, digits, '.', '_', '-'.")
    guids: list[str] | None = Field(
        None, max_length=1000, description="Devices the token may read; null or absent: every device."
    )
    admin: StrictBool = Field(False, description="May start syncs and manage tokens.")


class TokenInfo(BaseModel):
    name: str
    guids: list[str] | None
    admin: bool
    created_at: str
    last_used_at: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="The token itself, shown this once: only its hash is stored.")


class TokensData(BaseModel):
    tokens: list[TokenInfo]


class TokensResponse(BaseModel):
    success: Literal[True] = True
    data: TokensData


class TokenCreatedResponse(BaseModel):
    success: Literal[True] = True
    data: TokenCreated


class TokenRevoked(BaseModel):
    name: str
    revoked: Literal[True]


class TokenRevokedResponse(BaseModel):
    success: Literal[True] = True
    data: TokenRevoked
