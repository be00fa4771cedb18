"""Callback envelopes (JUHEBOT.md §13.2 rules 1-3): raw body -> one validated :class:`Event`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from juhe_sync.errors import InvalidParams
from juhe_sync.ids import MAX_ID_LENGTH
from juhe_sync.records import Event

NEW_MSG = 11010
BATCH_NEW_MSG = 11013
MAX_NOTIFY_TYPE = 2**31 - 1
MAX_GUID_LENGTH = 256


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes | str) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity; ints of any size stay exact."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw, parse_constant=_reject_constant)


def canonical_json(value: Any) -> str:
    """Key-sorted ASCII JSON: a stable text to hash (lone surrogates stay escaped)."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


#: Bodies longer than this are hashed piece by piece (see :func:`event_key`).
PIECEWISE = 256 * 1024


def event_key(event: dict[str, Any], size: int = 0) -> bytes:
    """sha256 of :func:`canonical_json` of the event. A body of ``size`` over :data:`PIECEWISE`
    is hashed piece by piece: a multi-megabyte batch is then many short encodings instead of one
    long one that would hold the GIL (and every other request of the process) for a tenth of a
    second. Small ones in one go, which is faster. Both give the same key."""
    if size <= PIECEWISE:
        return hashlib.sha256(canonical_json(event).encode("ascii")).digest()
    digest = hashlib.sha256()
    for piece in _canonical_pieces(event, depth=2):
        digest.update(piece.encode("ascii"))
    return digest.digest()


def _canonical_pieces(value: Any, depth: int) -> Iterator[str]:
    """:func:`canonical_json` of ``value`` in pieces that join to exactly the same text."""
    if depth == 0 or not isinstance(value, dict | list) or len(value) < 2:
        yield canonical_json(value)
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _canonical_pieces(item, depth - 1)
        yield "]"
    else:
        # json.dumps(sort_keys=True) orders items by key; every key of a parsed body is a string.
        yield "{"
        for i, (key, item) in enumerate(sorted(value.items())):
            yield ("," if i else "") + canonical_json(key) + ":"
            yield from _canonical_pieces(item, depth - 1)
        yield "}"


def parse_body(raw: bytes | str, key: bytes | None = None) -> Event:
    """Decode and validate a callback body. Raises :class:`InvalidParams` for anything unprocessable.
    ``key``: the event's key, when whoever parsed the body before computed it (not hashed again)."""
    try:
        body = decode_json(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidParams(f"Body is not valid JSON: {exc}") from None
    return parse_envelope(body, len(raw), key)


def parse_envelope(body: Any, size: int = 0, key: bytes | None = None) -> Event:
    """``size``: the body's length, which decides how its key is hashed (never what it is)."""
    if not isinstance(body, dict):
        raise InvalidParams("Callback body must be a JSON object")
    event = _unwrap(body)
    guid = event.get("guid")
    if guid is None or guid == "":
        guid = body.get("guid")
    if not isinstance(guid, str) or not guid.strip():
        raise InvalidParams("guid must be a non-empty string")
    if len(guid) > MAX_GUID_LENGTH or not _storable(guid):
        raise InvalidParams(f"guid must be printable text of at most {MAX_GUID_LENGTH} characters")
    notify_type = _notify_type(event.get("notify_type"))
    data = event.get("data")
    if notify_type == NEW_MSG and not isinstance(data, dict):
        raise InvalidParams("data of a 11010 callback must be an object")
    if notify_type == NEW_MSG and isinstance(data, dict) and _overlong_ids(data):
        raise InvalidParams(f"message ids and keys are at most {MAX_ID_LENGTH} characters")
    if notify_type == BATCH_NEW_MSG and not isinstance(data, list | dict):
        raise InvalidParams("data of a 11013 callback must be a list of messages")
    key = event_key(event, size) if key is None else key
    return Event(guid=guid.strip(), notify_type=notify_type, data=data, key=key)


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    if "notify_type" in body:
        return body
    if "event" in body:
        inner = body["event"]
        if isinstance(inner, str):
            try:
                inner = decode_json(inner)
            except (ValueError, RecursionError):
                raise InvalidParams("event is a string that is not valid JSON") from None
        if not isinstance(inner, dict):
            raise InvalidParams("event must be an object or a JSON string of one")
        return inner
    inner = body.get("data")
    if isinstance(inner, dict) and "notify_type" in inner:
        return inner
    raise InvalidParams("Not a callback: no notify_type in the body, event or data")


#: The fields of a message that are ids or keys (stored in indexed columns).
_ID_FIELDS = ("appinfo", "id", "seq", "sender", "receiver", "roomid", "referid")


def _overlong_ids(data: dict[str, Any]) -> bool:
    return any(isinstance(v, str | int) and len(str(v)) > MAX_ID_LENGTH for v in map(data.get, _ID_FIELDS))


def _storable(text: str) -> bool:
    if not text.isprintable():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _notify_type(value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        number = int(value.strip())
    if number is None:
        raise InvalidParams("notify_type must be an integer")
    if not 0 <= number <= MAX_NOTIFY_TYPE:
        raise InvalidParams(f"notify_type must be between 0 and {MAX_NOTIFY_TYPE}")
    return number
