"""Personal-WeChat (个微) messages, best effort (JUHEBOT.md §4.2).

WeChat devices number their events differently (1010 new message, 1011 batch) and their message
object is not the enterprise one: ``from_username`` (``wxid_…``), ``to_username``,
``room_username`` (``…@chatroom``) and WeChat's native ``msg_type`` codes. Only a demo documents
it, so anything beyond those keys is read when present and never required.
"""

from __future__ import annotations

from typing import Any

from juhe_sync.ids import clean_text, int_or_none, norm_id

#: WeChat's native message types -> juhe-sync type names.
WECHAT_TYPES: dict[int, str] = {
    1: "text",
    3: "image",
    34: "voice",
    42: "card",
    43: "video",
    47: "gif",
    48: "location",
    49: "link",
    10000: "system",
    10002: "revoke",
}
WECHAT_TEXT_LIKE = frozenset({1, 10000})

NEW_MSG = 1010
BATCH_NEW_MSG = 1011


def looks_like_wechat(data: Any) -> bool:
    """True for a WeChat message object or a list starting with one."""
    if isinstance(data, list):
        data = next((item for item in data if isinstance(item, dict)), None)
    return isinstance(data, dict) and "from_username" in data


def fields(data: dict[str, Any], account: str | None) -> dict[str, Any] | None:
    """The enterprise-shaped fields of a WeChat message, or ``None`` when it names no sender."""
    sender = norm_id(data.get("from_username"))
    if sender is None:
        return None
    room = norm_id(data.get("room_username"))
    receiver = norm_id(data.get("to_username"))
    outbound = account is not None and sender == account
    if room is None and outbound and receiver is None:
        return None
    msg_type = int_or_none(data.get("msg_type"))
    content = data.get("content")
    return {
        "sender": sender,
        "receiver": receiver,
        "room_id": room,
        "outbound": outbound,
        "peer": receiver if outbound else sender,
        "msg_type": msg_type,
        "type": WECHAT_TYPES.get(msg_type, "unknown") if msg_type is not None else "unknown",
        "text_like": msg_type in WECHAT_TEXT_LIKE,
        "content": content,
        "msg_id": norm_id(data.get("new_msg_id", data.get("msg_id", data.get("id")))),
        "sendtime": data.get("create_time", data.get("sendtime")),
        "sender_name": _name(data),
    }


def _name(data: dict[str, Any]) -> str | None:
    for key in ("from_nickname", "sender_name", "nickname"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return clean_text(value)
    return None
