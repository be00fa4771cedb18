"""The juhebot pull API's wire format (JUHEBOT.md §2 and §12), as pure functions.

Everything here turns a response body into either data or a :class:`SaasError`, and turns the
platform's contact, room and member items into the rows juhe-sync stores. No I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from juhe_sync.ids import clean_text, contact_type, int_or_none, norm_id
from juhe_sync.records import ContactRow, MemberRow, Profile, RoomDetail, RoomRow

#: Message fragments that mean "slow down" whatever the error code (§2: no documented signal).
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests|频繁", re.IGNORECASE)


def _text(value: Any) -> str | None:
    """A free-text field, or ``None`` when absent or empty."""
    if isinstance(value, str) and value.strip():
        return clean_text(value)
    return None


class SaasError(Exception):
    """The platform refused or failed a call."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None, retryable: bool):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or self.code == 429 or bool(_RATE_LIMITED.search(self.message))

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.code is None else f"error {self.code}"
        return f"{self.message} ({where})"


def _error_fields(body: dict[str, Any]) -> tuple[int | None, str]:
    """(code, message) under any of the spellings seen in the wild; code 0 or None is success."""
    for code_key, message_key in (("error_code", "error_message"), ("err_code", "err_msg")):
        if code_key in body:
            return int_or_none(body.get(code_key)), str(body.get(message_key) or "")
    base = body.get("baseResponse")
    if isinstance(base, dict) and "ret" in base:
        return int_or_none(base.get("ret")), str(base.get("errMsg") or "")
    items = body.get("list")
    if isinstance(items, list) and items and isinstance(items[0], dict) and "ret" in items[0]:
        return int_or_none(items[0].get("ret")), str(items[0].get("errMsg") or "")
    return None, ""


def parse_response(status: int, text: str) -> dict[str, Any]:
    """The ``data`` object of a GuidRequest answer, or :class:`SaasError` saying whether to retry.

    Retried: HTTP 5xx (any body), HTTP 429 and rate-limit answers. Not retried: other HTTP
    errors, unparseable 2xx bodies and non-zero error codes (the platform said no).
    """
    if status >= 500:
        return _raise(f"platform answered HTTP {status}", status=status, retryable=True)
    if status == 429:
        return _raise("rate limited", status=status, retryable=True)
    if status >= 400:
        return _raise(f"platform answered HTTP {status}: {text[:200]}", status=status, retryable=False)
    try:
        body = json.loads(text)
    except ValueError:
        return _raise(f"platform answered a non-JSON body: {text[:200]!r}", status=status, retryable=False)
    if not isinstance(body, dict):
        return _raise("platform answered a JSON body that is not an object", status=status, retryable=False)
    code, message = _error_fields(body)
    if code:
        error = SaasError(message or f"error {code}", code=code, status=status, retryable=False)
        error.retryable = error.rate_limited
        raise error
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def _raise(message: str, *, status: int, retryable: bool) -> dict[str, Any]:
    raise SaasError(message, status=status, retryable=retryable)


# --- contacts --------------------------------------------------------------------------------


#: ``contact_type`` (ContactType, §9) of a contact removed from the account's list: 2049 Del. (8,
#: DelByUser, means the customer removed the account on their side; the contact stays listed
#: and the type is kept in ``extra``.)
_CONTACT_DELETED = 2049
#: Other item keys taken to mean "deleted upstream" (seen in neighbouring APIs, §12 labels).
_DELETED_KEYS = ("deleted", "is_deleted", "del_flag", "bDeleted")


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def contact_row(item: dict[str, Any], account_corp: str | None) -> ContactRow | None:
    """A ``/contact/sync_contact`` item as a row, or ``None`` if it names nobody."""
    user_id = norm_id(item.get("user_id") or item.get("userid") or item.get("username"))
    if user_id is None:
        return None
    extend = _object(item.get("extend_info"))
    corp = norm_id(item.get("corp_id"))
    labels = [label for label in extend.get("label_info_list") or [] if isinstance(label, dict)]
    known = {"user_id", "userid", "username", "name", "avatar", "corp_id", "extend_info", *_DELETED_KEYS}
    extra = {k: v for k, v in item.items() if k not in known}
    extra.update({k: v for k, v in extend.items() if k not in ("remark", "label_info_list")})
    return ContactRow(
        user_id=user_id,
        name=_text(item.get("name")) or _text(item.get("real_name")),
        remark=_text(extend.get("remark") or item.get("remark")),
        avatar=_text(item.get("avatar")),
        type=_contact_kind(user_id, corp, account_corp),
        corp_id=corp,
        labels=labels,
        deleted=int_or_none(item.get("contact_type")) == _CONTACT_DELETED
        or any(bool(int_or_none(item.get(k)) or item.get(k) is True) for k in _DELETED_KEYS),
        extra=extra,
    )


def _contact_kind(user_id: str, corp: str | None, account_corp: str | None) -> str:
    """§12: ``internal`` for colleagues of the account's own corp, ``external`` otherwise."""
    kind = contact_type(user_id)
    if kind == "internal" and corp and account_corp and corp != account_corp:
        return "external"
    return kind


def contact_page(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """(items, ``last_seq``) of one ``/contact/sync_contact`` page."""
    items = [i for i in data.get("contact_list") or [] if isinstance(i, dict)]
    last = data.get("last_seq")
    return items, None if last is None else str(last)


# --- rooms -----------------------------------------------------------------------------------


def room_row(item: dict[str, Any], version: Any = None) -> RoomRow | None:
    """A room from a ``get_room_list`` item or a detail's ``info``."""
    room_id = norm_id(item.get("roomid") or item.get("room_id") or item.get("id"))
    if room_id is None:
        return None
    known = {"roomid", "room_id", "id", "roomname", "name", "owner", "create_user", "member_count",
             "avatar", "version"}  # fmt: skip
    return RoomRow(
        room_id=room_id,
        name=_text(item.get("roomname") or item.get("name")),
        owner=norm_id(item.get("owner") or item.get("create_user")),
        member_count=int_or_none(item.get("member_count")),
        avatar=_text(item.get("avatar")),
        version=int_or_none(item.get("version") if version is None else version),
        extra={k: v for k, v in item.items() if k not in known},
    )


def member_row(item: dict[str, Any]) -> MemberRow | None:
    user_id = norm_id(item.get("uin") or item.get("user_id") or item.get("userid"))
    if user_id is None:
        return None
    return MemberRow(
        user_id=user_id,
        nickname=_text(item.get("nickname") or item.get("name")),
        room_nickname=_text(item.get("room_nickname")),
        join_time=int_or_none(item.get("join_time")),
        inviter=norm_id(item.get("invite_uin")),
    )


def room_details(data: dict[str, Any]) -> list[RoomDetail]:
    """The ``roominfos`` of ``batch_get_room_detail`` / ``sync_room_info``."""
    details = []
    for entry in data.get("roominfos") or []:
        if not isinstance(entry, dict):
            continue
        info = entry.get("info")
        if not isinstance(info, dict):
            info = entry
        room = room_row(info, entry.get("version"))
        if room is None:
            continue
        raw_members = entry.get("members")
        members = None
        if isinstance(raw_members, list):
            members = [m for m in (member_row(i) for i in raw_members if isinstance(i, dict)) if m]
            if room.member_count is None:
                room.member_count = len(members)
        details.append(RoomDetail(room, members))
    return details


def room_list_page(data: dict[str, Any]) -> tuple[list[RoomRow], int | None, int | None]:
    """(rooms, ``next_start``, ``total``) of one ``/room/get_room_list`` page."""
    roomdata = _object(data.get("roomdata"))
    items = roomdata.get("datas") or data.get("datas") or []
    rooms = [r for r in (room_row(i) for i in items if isinstance(i, dict)) if r]
    total = int_or_none(data.get("total", roomdata.get("total")))
    next_start = int_or_none(data.get("next_start", roomdata.get("next_start")))
    return rooms, next_start, total


def next_room_start(start: int, count: int, next_start: int | None, total: int | None) -> int | None:
    """Where the next ``get_room_list`` page starts, or ``None`` after the last one. §12: go on
    while ``next_start`` moves and is below ``total``; without them, go on until an empty page."""
    if count == 0:
        return None
    following = next_start if next_start is not None and next_start > start else start + count
    if total is not None and following >= total:
        return None
    return following


# --- the account -----------------------------------------------------------------------------


def profile(data: dict[str, Any]) -> Profile | None:
    """The account of ``/user/get_profile`` (``persons`` may be a list or one object, §14.9)."""
    persons = data.get("persons")
    person = persons[0] if isinstance(persons, list) and persons else persons
    if not isinstance(person, dict):
        return None
    account = norm_id(person.get("user_id"))
    if account is None:
        return None
    return Profile(
        account,
        _text(person.get("name")) or _text(person.get("real_name")),
        norm_id(person.get("corp_id")),
        _text(person.get("avatar")),
    )
