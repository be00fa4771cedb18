"""How the assistant tools (``service.assistant``) put data before a language model: what costs its
context and tells it nothing (nulls, avatars, raw media payloads, UTC it has to convert) is left
out; what it cannot guess (a sender's name, a note that a text was cut) is put in. Pure functions."""

from __future__ import annotations

import json
import re
from datetime import datetime, tzinfo
from typing import Any

from juhe_sync.service.previews import LABELS, PREVIEW_CHARS
from juhe_sync.timeutil import iso_local, local_bound

#: Stored times are ISO 8601 UTC with a ``Z`` (``timeutil.iso_utc``).
_UTC_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
#: Keys of a media payload (JSON) or tags (XML) that name what was sent: a file's name, a link's title.
_TITLE_KEYS = ("file_name", "filename", "title", "address", "label")
_XML_TITLE = re.compile(r"<title>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</title>", re.S)
#: Media payloads longer than this are not parsed for a title (real ones are a few hundred bytes).
_PAYLOAD_LIMIT = 64 * 1024


def dumps(data: Any) -> str:
    """Compact JSON that keeps Chinese readable (``\\u`` escapes cost a model six times the tokens)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much is missing (so the cut is never taken
    for the end of the message)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(truncated, {len(text) - limit} more characters)"


def shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    """One line of at most ``limit`` characters: for quotes and details, where the gist is enough."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def local_time(value: Any, zone: tzinfo) -> Any:
    """A stored UTC time (``2024-06-10T06:13:20Z``) in ``zone``; anything else unchanged."""
    if isinstance(value, str) and _UTC_TEXT.match(value):
        return iso_local(int(datetime.fromisoformat(value).timestamp()), zone)
    return value


def localized(data: Any, zone: tzinfo) -> Any:
    """``data`` with every stored UTC time in it in ``zone``."""
    if isinstance(data, dict):
        return {key: localized(value, zone) for key, value in data.items()}
    if isinstance(data, list):
        return [localized(value, zone) for value in data]
    return local_time(data, zone)


def pruned(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys that say nothing (None, empty text, lists and objects)."""
    return {
        key: value
        for key, value in data.items()
        if value is not None and value != "" and value != [] and value != {}
    }


def query_bound(value: str | None, zone: tzinfo, *, end: bool) -> str | None:
    """A time bound as the model means it: a date or a time without an offset is local time in
    ``zone`` (the API reads them as UTC). A date as an end bound covers the whole day. Anything
    that does not parse is passed on unchanged, for the query rules to refuse with their message."""
    if value is None or not value.strip():
        return None
    try:
        return local_bound(value, zone, end=end).isoformat()
    except (ValueError, OverflowError):
        return value.strip()


def message_text(message: dict[str, Any], max_chars: int) -> str:
    """What a message says: its text (cut at ``max_chars``, with a note), or for media the label
    the chat clients show (``[图片]``), with the file name or link title when the payload has one."""
    content = str(message.get("content") or "")
    label = LABELS.get(message["type"])
    if label is None:  # text and system messages
        return truncate(content, max_chars)
    title = _title(content)
    return f"{label} {shorten(title)}" if title else label


def _title(payload: str) -> str | None:
    if not payload or len(payload) > _PAYLOAD_LIMIT:
        return None
    stripped = payload.strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):
            return None
        if isinstance(parsed, dict):
            for key in _TITLE_KEYS:
                value = parsed.get(key)
                if isinstance(value, str) and value.strip():
                    return value
        return None
    found = _XML_TITLE.search(stripped) if stripped.startswith("<") else None
    if found is None:
        return None
    return found.group(1).strip() or None


def compact_message(
    message: dict[str, Any],
    *,
    zone: tzinfo,
    names: dict[str, str],
    account_name: str | None,
    max_chars: int,
    with_conversation: bool,
) -> dict[str, Any]:
    """A message with names beside its ids and its time in ``zone``. ``names`` holds conversation
    names by key (``S:<user_id>``, ``R:<room_id>``); a sender without a name of its own is named
    from there. The conversation is left out when the whole answer is one conversation."""
    sender = message["from"]
    outbound = message["direction"] == "outbound"
    out: dict[str, Any] = {"id": message["id"], "time": local_time(message["timestamp"], zone)}
    if with_conversation:
        out["conversation_id"] = message["conversation_id"]
        out["conversation"] = names.get(message["conversation_id"])
    out["from"] = sender
    out["sender"] = message["sender_name"] or names.get(f"S:{sender}") or (account_name if outbound else None)
    if outbound:
        out["outbound"] = True  # sent by the device's own account
    if message["type"] != "text":
        out["type"] = message["type"]
    out["text"] = message_text(message, max_chars)
    if message["revoked"]:
        out["revoked"] = True
    if message.get("quote_content"):
        out["quote"] = shorten(message["quote_content"])
    return pruned(out)
