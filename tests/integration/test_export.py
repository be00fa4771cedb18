"""The export service on every backend: pages bounded by text size as well as count, lines that
restore exactly or are refused whole, and Markdown that shows text as typed."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from juhe_sync.errors import InvalidParams
from juhe_sync.service import export
from juhe_sync.storage import reads
from juhe_sync.storage.sqlstore import SQLStore
from tests.conftest import ACCOUNT, GUID
from tests.helpers import feed

ZONE = ZoneInfo("Asia/Shanghai")


def _message(n: int, content: str) -> dict[str, Any]:
    return {"guid": GUID, "notify_type": 11010, "data": {
        "appinfo": f"EXP-{n}", "id": str(9000 + n), "seq": str(n), "sender": "7881300000000001", "receiver": ACCOUNT,
        "roomid": "0", "sendtime": 1_718_000_000 + n, "msg_type": 2, "content": content, "sender_name": "李雷"}}  # fmt: skip


def test_pages_hold_a_bounded_amount_of_text(store: SQLStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Huge texts (a callback may carry megabytes) make pages of fewer messages, never a page of
    500 huge ones; every message still comes once, in order."""
    for n in range(30):
        feed(store, _message(n, ("大" * 5000 if n % 3 == 0 else "小") + str(n)))
    monkeypatch.setattr(reads, "PAGE_CHARS", 12_000)
    selection = export.select(store, GUID)
    batches = list(export.messages(store, selection))
    assert [m["id"] for batch in batches for m in batch] == [str(9000 + n) for n in range(30)]
    assert max(sum(len(m["content"]) for m in batch) for batch in batches) <= 12_000 + 5002
    assert len(batches) >= 4


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"content": "\ud800"}, "surrogate"),
        ({"content": "a\x00b"}, "NUL"),
        ({"sendtime": 10**19}, "sendtime"),
        ({"direction": "sideways"}, "direction"),
        ({"conversation_id": "garbage"}, "conversation_id"),
        ({"flag": "1"}, "flag"),
        ({"guid": None}, "guid"),
    ],
)
def test_a_damaged_export_line_is_refused_whole(store: SQLStore, change: dict[str, Any], error: str) -> None:
    feed(store, _message(1, "好"))
    line = json.loads(export.Formatter(export.select(store, GUID), ZONE, lambda c: None).jsonl(
        next(export.messages(store, export.select(store, GUID)))).splitlines()[0])  # fmt: skip
    assert export.record_of(line)[0] == GUID
    with pytest.raises(InvalidParams, match=error):
        export.record_of({**line, **change})


def test_markdown_shows_text_as_typed(store: SQLStore) -> None:
    feed(store, _message(1, "---\n- 不是列表\n1. 也不是\n# 不是标题\n<img src=x onerror=alert(1)>\n\x1b[31m红"))
    text = "".join(export.stream(store, export.select(store, GUID), "markdown", ZONE))
    assert "\\---" in text and "\\- 不是列表" in text and "1\\. 也不是" in text and "\\# 不是标题" in text
    assert "<img" not in text and "&lt;img" in text and "\x1b" not in text
