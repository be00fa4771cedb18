"""Normalising an :class:`~juhe_sync.records.Event` into storable records (JUHEBOT.md §13.2).

Everything here is a pure function of (event, the device's account id, receipt time), so that
``juhe-sync replay`` reproduces exactly what live ingestion did, or what a fixed parser does now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from juhe_sync.ids import clean_text, contact_type, int_or_none, norm_id, too_long
from juhe_sync.ingest import msgtypes, wechat
from juhe_sync.ingest.envelope import BATCH_NEW_MSG, NEW_MSG, canonical_json
from juhe_sync.records import ContactSeen, DeviceUpdate, Direction, Effects, Event, MessageRecord

#: Latest second a ``sendtime`` may name (9999-12-31T23:59:59Z); later values are not seconds.
_MAX_SECONDS = 253_402_300_799


def normalize_event(event: Event, account: str | None, received_at: int, kind: str = "wecom") -> Effects:
    """``kind`` is the device's kind as known so far: ``wecom`` (enterprise) or ``wechat``."""
    effects = Effects()
    is_wechat_message = event.notify_type in (
        wechat.NEW_MSG,
        wechat.BATCH_NEW_MSG,
    ) and wechat.looks_like_wechat(event.data)
    if is_wechat_message and kind != "wechat":
        effects.device_kind = kind = "wechat"
    handlers = _WECHAT_HANDLERS if kind == "wechat" else _HANDLERS
    handlers.get(event.notify_type, _other)(event, account, received_at, effects)
    return effects


def normalize_pulled_messages(items: list[Any], account: str | None, received_at: int) -> Effects:
    """Message objects fetched with ``/sync/sync_msg`` (§12): the same records as from callbacks,
    without pretending they were an event."""
    effects = Effects()
    for item in items:
        if isinstance(item, dict):
            _add_message(item, account, received_at, effects)
        else:
            effects.skipped += 1
    return effects


# --- message events ------------------------------------------------------------------------


def _new_message(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    _add_message(event.data, account, received_at, out)


def _batch(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    items = event.data if isinstance(event.data, list) else [event.data]
    for item in items:
        if isinstance(item, dict):
            _add_message(item, account, received_at, out)
        else:
            out.skipped += 1


def _add_message(data: dict[str, Any], account: str | None, received_at: int, out: Effects) -> None:
    msg_type = int_or_none(data.get("msg_type"))
    referid = norm_id(data.get("referid"))
    if too_long(referid):
        out.skipped += 1
        return
    if referid is not None:
        # A subsidiary record changes an earlier message; it is never a chat message itself.
        if msg_type == msgtypes.REVOKE:
            out.revokes.append(referid)
        return
    _add_record(normalize_message(data, account, received_at), out)


def _add_record(record: MessageRecord | None, out: Effects) -> None:
    if record is None:
        out.skipped += 1
        return
    out.messages.append(record)
    if record.room_id is not None:
        out.rooms.append(record.room_id)
    if record.direction == "inbound":
        out.contacts.append(
            ContactSeen(record.sender, record.sender_name, record.sendtime, contact_type(record.sender))
        )
    if record.room_id is None:
        peer = record.conversation[2:]
        if peer != record.sender:
            out.contacts.append(ContactSeen(peer, None, record.sendtime, contact_type(peer)))


def normalize_message(data: dict[str, Any], account: str | None, received_at: int) -> MessageRecord | None:
    """One message object -> a record, or ``None`` when its conversation cannot be determined."""
    sender = norm_id(data.get("sender"))
    if sender is None:
        return None
    receiver = norm_id(data.get("receiver"))
    room_id = norm_id(data.get("roomid"))
    send_flag = int_or_none(data.get("send_flag")) or 0
    direction: Direction
    if room_id is not None:
        conversation = "R:" + room_id
        if account is not None:
            direction = "outbound" if sender == account else "inbound"
        else:
            direction = "outbound" if send_flag == 1 else "inbound"
    else:
        if account is not None:
            if sender == account:
                direction, peer = "outbound", receiver
            elif receiver == account:
                direction, peer = "inbound", sender
            else:
                return None
        elif send_flag == 1:
            direction, peer = "outbound", receiver
        else:
            direction, peer = "inbound", sender
        if peer is None:
            return None
        conversation = "S:" + peer

    msg_type = int_or_none(data.get("msg_type"))
    content = _content(data.get("content"), msg_type)
    msg_id = norm_id(data.get("id"))
    seq = norm_id(data.get("seq"))
    appinfo = _text(data.get("appinfo"))
    if too_long(sender, receiver, room_id, msg_id, seq, appinfo):
        return None  # never storable: skipped (a single 11010 was refused by the envelope already)
    return MessageRecord(
        dedup_key=message_key(appinfo, msg_id, seq, data),
        msg_id=msg_id,
        seq=seq,
        appinfo=appinfo,
        conversation=conversation,
        room_id=room_id,
        sender=sender,
        receiver=receiver,
        sender_name=_text(data.get("sender_name")),
        direction=direction,
        msg_type=msg_type,
        type=msgtypes.type_name(msg_type),
        content=content,
        search_text=content if msg_type in msgtypes.TEXT_LIKE else None,
        sendtime=_sendtime(data.get("sendtime"), received_at),
        flag=int_or_none(data.get("flag")) or 0,
        send_flag=send_flag,
        content_type=int_or_none(data.get("content_type")),
        at_list=_at_list(data.get("at_list")),
        quote_content=_text(data.get("quote_content")),
        quote_appinfo=_text(data.get("quote_appinfo")),
    )


def _wechat_messages(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    items = event.data if isinstance(event.data, list) else [event.data]
    for item in items:
        _add_record(
            normalize_wechat_message(item, account, received_at) if isinstance(item, dict) else None, out
        )


def normalize_wechat_message(
    data: dict[str, Any], account: str | None, received_at: int
) -> MessageRecord | None:
    f = wechat.fields(data, account)
    if f is None:
        return None
    content = _content(f["content"], msgtypes.TEXT if f["text_like"] else f["msg_type"])
    room_id = f["room_id"]
    conversation = "R:" + room_id if room_id is not None else "S:" + f["peer"]
    return MessageRecord(
        dedup_key=message_key(None, f["msg_id"], None, data),
        msg_id=f["msg_id"],
        seq=None,
        appinfo=None,
        conversation=conversation,
        room_id=room_id,
        sender=f["sender"],
        receiver=f["receiver"],
        sender_name=f["sender_name"],
        direction="outbound" if f["outbound"] else "inbound",
        msg_type=f["msg_type"],
        type=f["type"],
        content=content,
        search_text=content if f["text_like"] else None,
        sendtime=_sendtime(f["sendtime"], received_at),
        flag=0,
        send_flag=0,
        content_type=None,
        at_list=[],
        quote_content=None,
        quote_appinfo=None,
    )


def message_key(appinfo: str | None, msg_id: str | None, seq: str | None, data: Any) -> str:
    """Per-device dedup key (JUHEBOT.md §11): appinfo, else id, else seq, else a content hash."""
    if appinfo:
        return appinfo
    if msg_id:
        return "id:" + msg_id
    if seq:
        return "seq:" + seq
    return "h:" + hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def _content(value: Any, msg_type: int | None) -> str:
    return clean_text(_raw_content(value, msg_type))


def _raw_content(value: Any, msg_type: int | None) -> str:
    if value is None:
        return ""
    if msg_type == msgtypes.TEXT and isinstance(value, str):
        return _unwrap_text(value)
    if isinstance(value, str):
        return value
    if msg_type == msgtypes.TEXT and isinstance(value, dict):
        inner = value.get("msg", value.get("text"))
        if isinstance(inner, str):
            return inner
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _unwrap_text(value: str) -> str:
    stripped = value.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return value
    try:
        parsed = json.loads(stripped)
    except (ValueError, RecursionError):
        return value
    if isinstance(parsed, dict):
        for key in ("msg", "text"):
            text = parsed.get(key)
            if isinstance(text, str):
                return text
    return value


def _sendtime(value: Any, received_at: int) -> int:
    seconds = int_or_none(value)
    if seconds is None or seconds < 0:
        return received_at
    if seconds > _MAX_SECONDS:
        # Milliseconds are not the documented unit, but a value this large cannot be seconds.
        seconds //= 1000
        if seconds > _MAX_SECONDS:
            return received_at
    return seconds


def _at_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        return []
    out = []
    for item in items:
        if isinstance(item, bool):
            continue
        if isinstance(item, int | str):
            out.append(clean_text(str(item).strip()))
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


# --- everything else ------------------------------------------------------------------------


def _login(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    out.device = DeviceUpdate(
        state="online",
        account_id=norm_id(data.get("user_id")),
        account_name=_text(data.get("name")) or _text(data.get("real_name")),
        corp_id=norm_id(data.get("corp_id")),
        avatar=_text(data.get("avatar")),
    )
    out.pulls.append("full")


def _state(state: Any, *pulls: str) -> Callable[[Event, str | None, int, Effects], None]:
    def handler(event: Event, account: str | None, received_at: int, out: Effects) -> None:
        if state is not None:
            out.device = DeviceUpdate(state=state)
        out.pulls.extend(pulls)

    return handler


def _room_change(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    # The payloads of room events are undocumented: treat them as "go pull", reading an id if any.
    data = event.data if isinstance(event.data, dict) else {}
    room_id = norm_id(data.get("roomid", data.get("room_id")))
    out.pulls.append(f"room:{room_id}" if room_id else "rooms")


def _other(event: Event, account: str | None, received_at: int, out: Effects) -> None:
    """Unknown and ignorable types are journalled and otherwise left alone."""


_HANDLERS: dict[int, Callable[[Event, str | None, int, Effects], None]] = {
    NEW_MSG: _new_message,
    BATCH_NEW_MSG: _batch,
    11001: _state("online"),
    11002: _state("logging_in"),
    11003: _login,
    11004: _state("offline"),
    11005: _state("online"),
    11006: _state("error"),
    11007: _state("offline"),
    11008: _state("offline"),
    11009: _state(None, "contacts"),
    11011: _state("offline"),
    11012: _state("verify"),
    2131: _state(None, "contacts"),
    **{nt: _room_change for nt in (1001, 1002, 1003, 1004, 1005, 1006, 1023, 2118)},
}

#: Personal-WeChat numbering (JUHEBOT.md §4.2): 1001-1006 are login events there, not room events.
_WECHAT_HANDLERS: dict[int, Callable[[Event, str | None, int, Effects], None]] = {
    wechat.NEW_MSG: _wechat_messages,
    wechat.BATCH_NEW_MSG: _wechat_messages,
    1002: _state("logging_in"),
    1003: _state("online"),
    1004: _state("offline"),
    1040: _state(None, "contacts"),
    1041: _state(None, "contacts"),
}
