"""Exact substring search from an index, for any keyword length (Chinese 1- and 2-character words too).

Every message's searchable text is case-folded and indexed as two token streams: each character
(unigrams) and each pair of neighbouring characters (bigrams). A 1-character keyword is a unigram
lookup; a keyword of n >= 2 characters is a phrase query for its n-1 bigrams at consecutive positions,
which matches exactly the texts that contain the keyword. So results equal a case-insensitive
``LIKE '%kw%'`` scan without reading any message text. Characters are written as hex code points
so that no tokenizer splits or alters them; device and conversation are tokens of their own, so
that the index alone answers "this keyword in this conversation of this device".
"""

from __future__ import annotations

import itertools


def fold(text: str) -> str:
    """The case folding applied to both texts and keywords."""
    return text.lower()


def _hex(ch: str) -> str:
    return format(ord(ch), "x")


def unigrams(text: str) -> str:
    return " ".join(map(_hex, text))


def bigrams(text: str) -> str:
    codes = [format(ord(ch), "x") for ch in text]
    return " ".join(f"{a}x{b}" for a, b in itertools.pairwise(codes))


def device_token(device_id: int) -> str:
    return f"dv{device_id}"


def conversation_token(conversation_id: int) -> str:
    return f"cv{conversation_id}"


def document(device_id: int, conversation_id: int, text: str) -> tuple[str, str, str]:
    """The (meta, uni, bi) columns indexed for one message."""
    folded = fold(text)
    meta = f"{device_token(device_id)} {conversation_token(conversation_id)}"
    return meta, unigrams(folded), bigrams(folded)


def match_expression(device_id: int, conversation_id: int | None, keyword: str) -> str:
    """An FTS5 MATCH expression for ``keyword`` within a device (and a conversation)."""
    folded = fold(keyword)
    meta = device_token(device_id) if conversation_id is None else conversation_token(conversation_id)
    text = f'uni : "{unigrams(folded)}"' if len(folded) == 1 else f'bi : "{bigrams(folded)}"'
    return f"meta : {meta} AND {text}"
