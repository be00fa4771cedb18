"""What the MCP tools put before a model: local times, time bounds read as local time, media as
labels with their titles, long texts cut with a note."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from juhe_sync.service.compact import (
    compact_message,
    dumps,
    local_time,
    localized,
    message_text,
    pruned,
    query_bound,
    truncate,
)
from juhe_sync.timeutil import parse_query_time

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def test_truncate_says_how_much_is_missing() -> None:
    assert truncate("短", 10) == "短"
    assert truncate("一二三四五六七八九十", 10) == "一二三四五六七八九十"
    assert truncate("一二三四五六七八九十十一", 10) == "一二三四五六七八九十…(truncated, 2 more characters)"


def test_stored_utc_times_become_local() -> None:
    assert local_time("2024-06-10T06:13:20Z", SHANGHAI) == "2024-06-10T14:13:20+08:00"
    assert local_time("2024-01-10T06:13:20Z", BERLIN) == "2024-01-10T07:13:20+01:00"
    assert local_time("not a time", SHANGHAI) == "not a time" and local_time(5, SHANGHAI) == 5
    nested = {"a": ["2024-06-10T06:13:20Z"], "b": {"c": "2024-06-10T06:13:20Z", "d": None}}
    assert localized(nested, SHANGHAI) == {"a": ["2024-06-10T14:13:20+08:00"],
                                           "b": {"c": "2024-06-10T14:13:20+08:00", "d": None}}  # fmt: skip


def test_query_bounds_are_local_time() -> None:
    def seconds(value: str | None, end: bool) -> int:
        assert value is not None
        return parse_query_time(value, end=end)

    # A local date covers the local day, whatever the offset (and its DST changes) that day.
    start, end = query_bound("2024-06-10", SHANGHAI, end=False), query_bound("2024-06-10", SHANGHAI, end=True)
    assert start == "2024-06-10T00:00:00+08:00" and end == "2024-06-10T23:59:59+08:00"
    assert seconds(end, True) - seconds(start, False) == 86399
    dst = query_bound("2024-03-31", BERLIN, end=True)  # 23 hours long
    assert dst == "2024-03-31T23:59:59+02:00"
    assert seconds(dst, True) - seconds(query_bound("2024-03-31", BERLIN, end=False), False) == 23 * 3600 - 1
    # A time without an offset is local; with one (or Z) it is what it says.
    assert query_bound("2024-06-10T09:30", SHANGHAI, end=False) == "2024-06-10T09:30:00+08:00"
    assert query_bound("2024-06-10 09:30:00", SHANGHAI, end=False) == "2024-06-10T09:30:00+08:00"
    assert query_bound("2024-06-10T09:30:00Z", SHANGHAI, end=False) == "2024-06-10T09:30:00+00:00"
    # Nothing, or something for the query rules to refuse with their own message.
    assert query_bound(None, SHANGHAI, end=False) is None and query_bound(" ", SHANGHAI, end=True) is None
    assert query_bound("soon", SHANGHAI, end=False) == "soon"


def message(type_: str, content: str, **extra: Any) -> dict[str, Any]:
    base = {"id": "m1", "conversation_id": "S:u1", "from": "u1", "content": content,
            "timestamp": "2024-06-10T06:13:20Z", "type": type_, "direction": "inbound", "sender_name": "",
            "revoked": False, "quote_content": None}  # fmt: skip
    return {**base, **extra}


def test_media_are_labels_with_their_title_never_the_payload() -> None:
    assert message_text(message("image", '{"url":"https://x.invalid/a.jpg","aes_key":"k"}'), 100) == "[图片]"
    assert message_text(message("file", '{"file_name":"合同.pdf","size":1}'), 100) == "[文件] 合同.pdf"
    xml = "<msg><appmsg><title><![CDATA[季度报告]]></title><url>https://x.invalid</url></appmsg></msg>"
    assert message_text(message("link", xml), 100) == "[链接] 季度报告"
    assert message_text(message("voice", "not json"), 100) == "[语音]"
    assert message_text(message("system", "张三加入了群聊"), 100) == "张三加入了群聊"
    assert message_text(message("text", "x" * 30), 20) == "x" * 20 + "…(truncated, 10 more characters)"


def test_a_compact_message_names_its_sender_and_conversation() -> None:
    names = {"S:u1": "张三", "R:r1": "项目群"}
    got = compact_message(message("text", "你好", conversation_id="R:r1"), zone=SHANGHAI, names=names,
                          account_name="我", max_chars=100, with_conversation=True)  # fmt: skip
    assert got == {"id": "m1", "time": "2024-06-10T14:13:20+08:00", "conversation_id": "R:r1",
                   "conversation": "项目群", "from": "u1", "sender": "张三", "text": "你好"}  # fmt: skip
    mine = compact_message(message("image", "{}", direction="outbound", **{"from": "me1"}, revoked=True,
                                   quote_content="上一条\n消息"),
                           zone=SHANGHAI, names={}, account_name="李晓明", max_chars=100, with_conversation=False)  # fmt: skip
    assert mine == {"id": "m1", "time": "2024-06-10T14:13:20+08:00", "from": "me1", "sender": "李晓明",
                    "outbound": True, "type": "image", "text": "[图片]", "revoked": True, "quote": "上一条 消息"}  # fmt: skip


def test_pruned_and_dumps_keep_answers_small() -> None:
    assert pruned({"a": None, "b": "", "c": [], "d": {}, "e": 0, "f": False, "g": "x"}) == {
        "e": 0,
        "f": False,
        "g": "x",
    }
    assert dumps({"名": "张三", "n": 1}) == '{"名":"张三","n":1}'
