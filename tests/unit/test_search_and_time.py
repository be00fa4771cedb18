from __future__ import annotations

import pytest

from juhe_sync.storage import search
from juhe_sync.timeutil import iso_utc, parse_query_time


def test_document_and_query_tokens_line_up() -> None:
    meta, uni, bi = search.document(1, 2, "Ab你")
    assert meta == "dv1 cv2"
    assert uni.split() == ["61", "62", "4f60"]
    assert bi.split() == ["61x62", "62x4f60"]
    assert search.match_expression(1, None, "B你") == 'meta : dv1 AND bi : "62x4f60"'
    assert search.match_expression(1, 2, "你") == 'meta : cv2 AND uni : "4f60"'


def test_iso() -> None:
    assert iso_utc(1718000000) == "2024-06-10T06:13:20Z"


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2024-06-10T06:13:20Z", False, 1718000000),
        ("2024-06-10T14:13:20+08:00", False, 1718000000),
        ("2024-06-10T06:13:20", False, 1718000000),
        ("2024-06-10T06:13:20.5Z", False, 1718000001),
        ("2024-06-10T06:13:20.5Z", True, 1718000000),
        ("2024-06-10", False, 1717977600),
        ("2024-06-10", True, 1717977600 + 86399),
    ],
)
def test_parse_query_time(text: str, end: bool, expected: int) -> None:
    assert parse_query_time(text, end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "1718000000", ""])
def test_parse_query_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_query_time(text, end=False)


def test_every_cased_character_and_every_expanding_fold_is_known() -> None:
    expanding = {ch: ch.lower() for ch in map(chr, range(0x110000)) if len(ch.lower()) > 1}
    assert expanding == search.EXPANDING
    cased = max(cp for cp in range(0x110000) if chr(cp).lower() != chr(cp))
    assert cased < search.CASED_BELOW


def test_postgresql_text_check_finds_exactly_what_the_fold_holds() -> None:
    """The check PostgreSQL runs on a candidate (one whose text has every pair of the keyword)
    agrees with Python's fold, whatever the database's own lower() does."""
    import itertools
    import random
    import re

    rng = random.Random(5)
    # Not Σ: Python folds it to σ or ς by the letters around it; the check takes either for it.
    alphabet = list("aAiIkK\u212a\u0130\u0307дДσςοΟ中文 ")
    checked = 0
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(3, 14)))
        start = rng.randrange(0, len(text) - 2)
        keyword = text[start : start + rng.randrange(3, 6)]  # then some of it changed or re-cased
        keyword = "".join(
            rng.choice([ch, ch.upper(), ch.lower(), rng.choice(alphabet)]) if rng.random() < 0.5 else ch
            for ch in keyword
        )
        folded, text_folded = search.fold(keyword), search.fold(text)
        pairs = {a + b for a, b in itertools.pairwise(text_folded)}
        if not all(a + b in pairs for a, b in itertools.pairwise(folded)):
            continue  # not a candidate: the GIN index leaves it out
        how, needle = search.text_check(folded)
        found = needle in text if how == "strpos" else re.search(needle, text) is not None
        assert found == (folded in text_folded), (text, keyword, how, needle)
        checked += 1
    assert checked > 1_000
    assert search.text_check("没问题") == ("strpos", "没问题")
    # A combining dot above is half of what İ folds to: never a plain strpos.
    assert re.search(search.text_check("\u0307中文")[1], "İ中文")
    for text in ("ΟΔΟΣ", "οδος", "ΟΔΟΣ ΟΔΟΣ"):
        assert re.search(search.text_check(search.fold("ΟΔΟΣ"))[1], text)
