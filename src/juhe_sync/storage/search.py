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

import functools
import itertools

#: Characters of a message's text that are indexed. Chat messages are far shorter; the bound keeps
#: a crafted multi-megabyte text from costing the index (and the server's memory) 20 times its size.
#: Text past it is stored and returned, but not found by keyword.
MAX_INDEXED = 100_000


def fold(text: str) -> str:
    """The case folding applied to both texts and keywords."""
    return text.lower()


#: Hex code point of each character seen so far: formatting per character was a third of the cost
#: of building a document. Bounded by the characters texts actually use.
_HEX: dict[str, str] = {}


def _hexes(text: str) -> list[str]:
    cache = _HEX
    out = []
    for ch in text:
        code = cache.get(ch)
        if code is None:
            if len(cache) > 200_000:
                cache.clear()
            code = cache[ch] = format(ord(ch), "x")
        out.append(code)
    return out


def unigrams(text: str) -> str:
    return " ".join(_hexes(text))


def bigrams(text: str) -> str:
    codes = _hexes(text)
    return " ".join([a + "x" + b for a, b in itertools.pairwise(codes)])


def text_tokens(text: str) -> tuple[str, str]:
    """The (uni, bi) columns of a text: everything of a document that does not depend on where it is."""
    codes = _hexes(fold(text[:MAX_INDEXED]))
    return " ".join(codes), " ".join([a + "x" + b for a, b in itertools.pairwise(codes)])


def meta_tokens(device_id: int, conversation_id: int) -> str:
    return f"{device_token(device_id)} {conversation_token(conversation_id)}"


def device_token(device_id: int) -> str:
    return f"dv{device_id}"


def conversation_token(conversation_id: int) -> str:
    return f"cv{conversation_id}"


def document(device_id: int, conversation_id: int, text: str) -> tuple[str, str, str]:
    """The (meta, uni, bi) columns indexed for one message."""
    return (meta_tokens(device_id, conversation_id), *text_tokens(text))


def match_expression(device_id: int, conversation_id: int | None, keyword: str) -> str:
    """An FTS5 MATCH expression for ``keyword`` within a device (and a conversation)."""
    folded = fold(keyword)
    meta = device_token(device_id) if conversation_id is None else conversation_token(conversation_id)
    text = f'uni : "{unigrams(folded)}"' if len(folded) == 1 else f'bi : "{bigrams(folded)}"'
    return f"meta : {meta} AND {text}"


# --- PostgreSQL: the same n-grams as integers in a GIN-indexed array -----------------------------
#
# A text's gram: the code point (unigram) or 2**42 | cp1 << 21 | cp2 (bigram), 43 bits, with its
# device's slot in the 20 bits above, so that a keyword in a device is one posting list of that
# device's rows: a device-wide token intersected with the keyword's lists cost 2.5-4 ms per search
# whatever the keyword (200,000 messages, BENCHMARKS.md). Devices below 2**19 have a slot of their
# own; above, devices 2**19 apart share one, and their searches also check ``device_id``.
# Conversation: -(2**40 + id). Set containment (``grams @> query``) is exact for 1- and
# 2-character keywords; a longer keyword needs all its bigrams (a superset of the matches) and a
# final substring check on those rows only.

_BIGRAM = 1 << 42
_CONVERSATION = 1 << 40
DEVICE_SHIFT = 43
OWN_SLOT_BELOW = 1 << 19


def device_bits(device_id: int) -> int:
    """The bits that put a gram in its device."""
    if device_id < OWN_SLOT_BELOW:
        return device_id << DEVICE_SHIFT
    return (OWN_SLOT_BELOW | device_id & (OWN_SLOT_BELOW - 1)) << DEVICE_SHIFT


def shares_grams(device_id: int) -> bool:
    """Whether other devices' rows may hold this device's grams (see :func:`device_bits`)."""
    return device_id >= OWN_SLOT_BELOW


def _bigram_code(a: str, b: str) -> int:
    return _BIGRAM | ord(a) << 21 | ord(b)


def text_grams(text: str) -> list[int]:
    """The grams of a text alone (see :func:`scoped_grams`)."""
    folded = fold(text[:MAX_INDEXED])
    codes = {ord(ch) for ch in folded}
    codes.update(_bigram_code(a, b) for a, b in itertools.pairwise(folded))
    return sorted(codes)


def scoped_grams(text_grams: list[int], device_id: int, conversation_id: int) -> list[int]:
    """A text's grams in its device, and its conversation (negative: sorts first)."""
    device = device_bits(device_id)
    return [-(_CONVERSATION + conversation_id), *[device | code for code in text_grams]]


def query_grams(device_id: int, conversation_id: int | None, keyword: str) -> tuple[list[int], bool]:
    """(grams every matching row of the device, or of its conversation, contains; whether rows must
    still be checked for the substring; and, if :func:`shares_grams`, for their device)."""
    folded = fold(keyword)
    device = device_bits(device_id)
    if len(folded) == 1:
        codes = {device | ord(folded)}
    else:
        codes = {device | _bigram_code(a, b) for a, b in itertools.pairwise(folded)}
    if conversation_id is not None:
        codes.add(-(_CONVERSATION + conversation_id))
    return sorted(codes), len(folded) > 2


# --- PostgreSQL: checking a candidate's text for the keyword ------------------------------------
#
# PostgreSQL's lower() folds by the database's locale (under LC_CTYPE "C", ASCII only), Python's by
# Unicode: they disagree on Cyrillic under "C", on İ everywhere. So the check never lower-cases the
# text. A keyword none of whose characters is folded from another (Chinese, digits, most
# punctuation) is looked for as it is; any other as a regular expression that takes, for each of
# its characters, every character that folds to it.

#: Every cased character is below this code point (a test checks the whole range).
CASED_BELOW = 0x20000
#: Characters that fold to two: only İ, to "i" and a combining dot above (a test checks).
EXPANDING = {"\u0130": "i\u0307"}
_HALVES = frozenset("".join(EXPANDING.values()))


@functools.cache
def _folded_from() -> dict[str, frozenset[str]]:
    """Character -> the characters that fold to it besides itself (built once, in ~35 ms)."""
    found: dict[str, set[str]] = {"ς": {"Σ"}}  # Σ folds to ς at the end of a word
    for ch in map(chr, range(CASED_BELOW)):
        low = ch.lower()
        if low != ch and len(low) == 1:
            found.setdefault(low, set()).add(ch)
    return {k: frozenset(v) for k, v in found.items()}


def text_check(folded: str) -> tuple[str, str]:
    """How PostgreSQL finds the folded keyword in a text exactly as in its fold: ("strpos", the
    keyword) or ("regex", a pattern for ``~``)."""
    sources = _folded_from()
    if not any(ch in sources or ch in _HALVES for ch in folded):
        return "strpos", folded
    classes = [{ch, *sources.get(ch, ())} for ch in folded]
    for whole, pair in EXPANDING.items():  # a text's İ may hold the keyword's first or last
        if folded[0] == pair[1]:
            classes[0].add(whole)
        if folded[-1] == pair[0]:
            classes[-1].add(whole)
    parts, i = [], 0
    while i < len(folded):
        expanded = next((w for w, pair in EXPANDING.items() if folded.startswith(pair, i)), None)
        if expanded is None:
            parts.append(_class(classes[i]))
            i += 1
        else:  # both halves, or the one character that folds to them
            parts.append(f"(?:{_class(classes[i])}{_class(classes[i + 1])}|{_class({expanded})})")
            i += 2
    return "regex", "".join(parts)


def _class(chars: set[str]) -> str:
    """A bracket expression of ``chars``, each as an escape (no character is special there)."""
    return "[" + "".join(f"\\U{ord(ch):08x}" for ch in sorted(chars)) + "]"
