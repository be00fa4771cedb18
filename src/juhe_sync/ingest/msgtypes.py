"""``msg_type`` values to juhe-sync type names (JUHEBOT.md §6)."""

from __future__ import annotations

MSG_TYPES: dict[int, str] = {
    0: "unknown",
    1: "revoke",
    2: "text",
    3: "location",
    4: "link",
    5: "image",
    6: "voice",
    7: "video",
    8: "file",
    9: "hongbao",
    10: "gif",
    11: "card",
    12: "weapp",
    13: "mixed",
    14: "channels",
    15: "text_card",
    16: "merged",
    1011: "system",
    1012: "read_report",
}

REVOKE = 1
TEXT = 2
SYSTEM = 1011

#: Types whose content is human-readable text, and therefore searchable.
TEXT_LIKE = frozenset({TEXT, SYSTEM})


def type_name(msg_type: int | None) -> str:
    if msg_type is None:
        return "unknown"
    return MSG_TYPES.get(msg_type, "unknown")
