"""Identifier normalisation (JUHEBOT.md §10.2, §13.2 rule 4)."""

from __future__ import annotations

from typing import Any

_ABSENT = {"", "0", "null", "none"}


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
    """An integer field that may arrive as an int or a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def contact_type(user_id: str) -> str:
    """``internal`` for WeCom colleagues (168… ids), ``external`` for everyone else."""
    return "internal" if user_id.startswith("168") else "external"
