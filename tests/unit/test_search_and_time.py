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
