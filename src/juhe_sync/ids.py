"""Identifier normalisation (JUHEBOT.md §10.2, §13.2 rule 4)."""

from __future__ import annotations

from typing import Any

_ABSENT = {"", "0", "null", "none"}

#: Longest id or key stored (message ids, appinfo, seq, user and room ids): indexed columns must
#: fit an index entry on every backend (PostgreSQL's B-tree takes ~2.7 KB; 512 characters are at
#: most 2 KB of UTF-8). Real ids are a few dozen characters.
MAX_ID_LENGTH = 512
_INT64 = (-(2**63), 2**63 - 1)


def clean_text(value: str) -> str:
    """Text every backend can store: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def norm_id(value: Any) -> str | None:
    """An id as its exact decimal/text string, or ``None`` for the platform's "no value" markers.

    Integers stay exact (room ids exceed 2**53); floats are refused rather than rounded.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = clean_text(value.strip())
    else:
        return None
    if text.lower() in _ABSENT:
        return None
    if len(text) > 2 and text[1] == ":" and text[0] in "SR":
        text = text[2:]
    return text or None


def int_or_none(value: Any) -> int | None:
    """An integer field that may arrive as an int or a digit string; ``None`` (an unknown value, as
    §13.2 treats them) when it is neither, or beyond 64 bits (no backend stores it)."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and text.isascii() and len(text) <= 20:
            number = int(text)
    if number is None or not _INT64[0] <= number <= _INT64[1]:
        return None
    return number


def too_long(*values: str | None) -> bool:
    """Whether any of these ids is longer than can be stored (see :data:`MAX_ID_LENGTH`)."""
    return any(v is not None and len(v) > MAX_ID_LENGTH for v in values)


def contact_type(user_id: str) -> str:
    """``internal`` for WeCom colleagues (168… ids), ``external`` for everyone else."""
    return "internal" if user_id.startswith("168") else "external"
