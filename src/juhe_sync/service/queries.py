"""Query rules of the HTTP API (validation, paging, search) on top of a SQLStore. Knows no HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

from juhe_sync.errors import InvalidParams, NotFound
from juhe_sync.ids import norm_id
from juhe_sync.records import Device, MessageQuery, Page
from juhe_sync.service.previews import preview
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import parse_query_time

_CONVERSATION = re.compile(r"^[SR]:\S+$")

#: Device state (from login/logout callbacks) -> the documented sync-status ``status``.
_STATUS = {"offline": "offline", "logging_in": "offline", "verify": "offline", "error": "error"}
_ONLINE = {"online": True, "offline": False, "logging_in": False, "verify": False, "error": False}


def require_guid(guid: str | None) -> str:
    if guid is None or not guid.strip():
        raise InvalidParams("guid is required")
    text_param("guid", guid)
    return guid.strip()


#: Longest message keyword: a search's statements grow with it (PostgreSQL compiles a keyword
#: with cased letters into a regular expression of a class per character: 1.4 s for 30,000).
MAX_KEYWORD = 1000


def keyword_param(value: str | None) -> str | None:
    """A message search's keyword, as :func:`text_param` takes it and at most :data:`MAX_KEYWORD` long."""
    value = text_param("keyword", value)
    if value is not None and len(value) > MAX_KEYWORD:
        raise InvalidParams(f"keyword must be at most {MAX_KEYWORD} characters")
    return value


def text_param(name: str, value: str | None) -> str | None:
    """Query text as the stores can take it: PostgreSQL refuses NUL characters, and neither store
    takes text that is not Unicode (lone surrogates), so they are a 400."""
    if value is not None and not _storable(value):
        raise InvalidParams(f"{name} must be text without NUL characters or lone surrogates")
    return value


def _storable(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _page_data(key: str, page: Page, page_no: int, limit: int) -> dict[str, Any]:
    next_cursor = None if page.next_key is None else encode_cursor(key, page.next_key)
    return {key: page.items, "total": page.total, "page": page_no, "limit": limit, "next_cursor": next_cursor}


def encode_cursor(kind: str, key: Any) -> str:
    """An opaque keyset cursor: where the next page of ``kind`` starts."""
    raw = json.dumps([kind, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: Longer than any cursor this server hands out (a key is an id or a contact, room or user id).
MAX_CURSOR = 2048


def decode_cursor(kind: str, cursor: str | None, key_type: type) -> Any:
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR:
        raise InvalidParams("cursor is not valid: pass the next_cursor of a previous page")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        got_kind, key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, TypeError, UnicodeError, RecursionError):
        raise InvalidParams("cursor is not valid: pass the next_cursor of a previous page") from None
    if got_kind != kind or type(key) is not key_type or not _key_fits(key):
        raise InvalidParams("cursor is not valid: pass the next_cursor of a previous page")
    return key


def _key_fits(key: Any) -> bool:
    """What a store can compare with: a signed 64-bit integer, or storable text."""
    if isinstance(key, int):
        return -(2**63) <= key < 2**63
    return isinstance(key, str) and _storable(key)


class QueryService:
    def __init__(self, store: SQLStore, count_limit: int = 0):
        self.store = store
        #: Keyword searches count at most this many matches (0: all of them).
        self.count_limit = count_limit or None

    def _device(self, guid: str | None) -> Device | None:
        return self.store.device(require_guid(guid))

    def contacts(
        self, guid: str | None, page: int, limit: int, keyword: str | None, cursor: str | None = None
    ) -> dict[str, Any]:
        after = decode_cursor("contacts", cursor, str)
        keyword = text_param("keyword", keyword)
        device = self._device(guid)
        result = Page()
        if device is not None:
            result = self.store.contacts(device.id, keyword or None, (page - 1) * limit, limit, after)
        return _page_data("contacts", result, page, limit)

    def rooms(self, guid: str | None, page: int, limit: int, cursor: str | None = None) -> dict[str, Any]:
        after = decode_cursor("rooms", cursor, str)
        device = self._device(guid)
        result = Page()
        if device is not None:
            result = self.store.rooms(device.id, (page - 1) * limit, limit, after)
        return _page_data("rooms", result, page, limit)

    def room_members(
        self, guid: str | None, room_id: str, page: int, limit: int, cursor: str | None = None
    ) -> dict[str, Any]:
        after = decode_cursor("members", cursor, str)
        room = norm_id(text_param("room_id", room_id))
        device = self._device(guid)
        result = None
        if device is not None and room is not None:
            result = self.store.room_members(device.id, room, (page - 1) * limit, limit, after)
        if result is None:
            raise NotFound(f"Room {room_id} not found")
        return {"room_id": f"R:{room}", **_page_data("members", result, page, limit)}

    def devices(
        self,
        guids: frozenset[str] | None,
        page: int,
        limit: int,
        cursor: str | None,
        busy: Callable[[str], bool],
    ) -> dict[str, Any]:
        """Every device ``guids`` allows (None: all), with its account, counters and state."""
        after = decode_cursor("devices", cursor, str)
        result = self.store.devices(guids, (page - 1) * limit, limit, after)
        for row in result.items:
            kinds = _sync_kinds(self.store, row.pop("id"))
            state = row.pop("state")
            row.update(
                name=row.pop("account_name"),
                online=_ONLINE.get(state),
                login_state=state,
                status=_overall_status(state, kinds, busy(row["guid"])),
            )
        return _page_data("devices", result, page, limit)

    def conversations(
        self,
        guid: str | None,
        *,
        keyword: str | None,
        kind: str | None,
        page: int,
        limit: int,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        after = decode_cursor("conversations", cursor, int)
        keyword = text_param("keyword", keyword)
        device = self._device(guid)
        result = Page()
        if device is not None:
            result = self.store.conversations(
                device.id, keyword or None, kind, (page - 1) * limit, limit, after
            )
        for item in result.items:
            item["last_message"] = preview(item["last_message"])
        return _page_data("conversations", result, page, limit)

    def messages(
        self,
        guid: str | None,
        *,
        conversation_id: str | None,
        keyword: str | None,
        start_time: str | None,
        end_time: str | None,
        page: int,
        limit: int,
        order: str,
        cursor: str | None = None,
        around: str | None = None,
    ) -> dict[str, Any]:
        guid = require_guid(guid)
        after = decode_cursor("messages", cursor, int)
        keyword = keyword_param(keyword)
        conversation_id = check_conversation(text_param("conversation_id", conversation_id))
        if around:  # empty: not given, as with cursor
            if keyword or cursor or start_time or end_time or page != 1:
                raise InvalidParams("around takes only guid, conversation_id, limit and order")
            return self._around(guid, text_param("around", around) or "", conversation_id, limit, order)
        start, end = time_bounds(start_time, end_time)
        device = self.store.device(guid)
        result = Page()
        if device is not None:
            result = self.store.messages(
                MessageQuery(
                    device_id=device.id,
                    conversation=conversation_id,
                    keyword=keyword or None,
                    start=start,
                    end=end,
                    offset=(page - 1) * limit,
                    limit=limit,
                    ascending=order == "asc",
                    after=after,
                    count_limit=self.count_limit if keyword else None,
                )
            )
        return {**_page_data("messages", result, page, limit), "total_capped": result.capped}

    def _around(
        self, guid: str, message_id: str, conversation: str | None, limit: int, order: str
    ) -> dict[str, Any]:
        device = self.store.device(guid)
        found = None if device is None or not message_id else (
            self.store.messages_around(device.id, message_id, conversation, limit)
        )  # fmt: skip
        if found is None:
            raise NotFound(f"Message {message_id} not found")
        items, ids, forward, backward = found.items, found.ids, found.newer, found.older
        if order == "desc":
            items, ids, forward, backward = items[::-1], ids[::-1], found.older, found.newer
        return {
            "messages": items,
            "total": found.total,
            "total_capped": False,
            "page": 1,
            "limit": limit,
            "conversation_id": found.conversation,
            "next_cursor": encode_cursor("messages", ids[-1]) if forward else None,
            # The other way: pass it with the opposite order.
            "prev_cursor": encode_cursor("messages", ids[0]) if backward else None,
        }

    def sync_status(self, guid: str | None, queued: bool = False) -> dict[str, Any]:
        """``queued``: a sync of the device waits or runs in this process (it counts as syncing)."""
        guid = require_guid(guid)
        device = self.store.device(guid)
        if device is None:
            raise NotFound(f"Device {guid} not found")
        kinds = _sync_kinds(self.store, device.id)
        return {
            "guid": device.guid,
            "status": _overall_status(device.state, kinds, queued),
            "last_sync_time": device.last_sync_time,
            "contacts_count": device.contacts_count,
            "messages_count": device.messages_count,
            "rooms_count": device.rooms_count,
            "online": _ONLINE.get(device.state),
            "login_state": device.state,
            "account": (
                None
                if device.account_id is None
                else {"id": device.account_id, "name": device.account_name, "corp_id": device.corp_id}
            ),
            "last_callback_time": device.last_callback_time,
            "last_error": device.last_error,
            "failed_events": self.store.failed_events(device.id),
            "sync": {
                k["kind"]: {
                    "status": k["status"],
                    "done": k["done"],
                    "total": k["total"],
                    "full": bool(k["full"]),
                    "started_at": k["started_at"],
                    "last_success": k["succeeded_at"],
                    "last_error": k["last_error"],
                }
                for k in kinds
            },
        }


def _sync_kinds(store: SQLStore, device_id: int) -> list[dict[str, Any]]:
    kinds = store.sync_states(device_id)
    for kind in kinds:
        # A run whose process died (its lease lapsed) is not syncing; the next run resumes it.
        if kind["status"] == "running" and not kind["alive"]:
            kind["status"] = "interrupted"
    return kinds


def _overall_status(state: str, kinds: list[dict[str, Any]], queued: bool) -> str:
    """offline after logout; syncing while a pull waits or runs; error after a failed pull; else idle."""
    if _STATUS.get(state) == "offline":
        return "offline"
    if queued or any(k["status"] == "running" for k in kinds):
        return "syncing"
    if state == "error" or any(k["status"] == "error" for k in kinds):
        return "error"
    return "idle"


def check_conversation(conversation_id: str | None) -> str | None:
    """A conversation filter: ``S:<user_id>`` or ``R:<room_id>``; empty is none."""
    if conversation_id is not None and conversation_id != "" and not _CONVERSATION.match(conversation_id):
        raise InvalidParams("conversation_id must be S:<user_id> or R:<room_id>")
    return conversation_id or None


def time_bounds(start_time: str | None, end_time: str | None) -> tuple[int | None, int | None]:
    """Inclusive second bounds of ``start_time`` and ``end_time`` (either may be absent)."""
    start = _time_bound("start_time", start_time, end=False)
    end = _time_bound("end_time", end_time, end=True)
    if start is not None and end is not None and start > end:
        raise InvalidParams("start_time is after end_time")
    return start, end


def _time_bound(name: str, value: str | None, *, end: bool) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_query_time(value, end=end)
    except (ValueError, OverflowError, OSError):
        raise InvalidParams(
            f"{name} must be an ISO 8601 date or date-time, e.g. 2024-01-15T10:30:00Z"
        ) from None
