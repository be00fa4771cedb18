from __future__ import annotations

import json
from typing import Any

import pytest

from juhe_sync.ingest.envelope import parse_body
from juhe_sync.ingest.normalize import normalize_event, normalize_message
from tests.conftest import ACCOUNT, GUID, fixture_text

# The derivation table of the fixtures' README.
EXPECTED = {
    "callback_11010_text_private_inbound.json": [("S:7881300000001234", "7881300000001234", "inbound", "text", 1718000000)],
    "callback_11010_text_private_outbound.json": [("S:7881300000001234", ACCOUNT, "outbound", "text", 1718000095)],
    "callback_11010_text_room.json": [("R:10696052788813579", "7881300000005678", "inbound", "text", 1718000300)],
    "callback_11010_image.json": [("S:7881300000001234", "7881300000001234", "inbound", "image", 1718000420)],
    "callback_11010_file.json": [("S:1688850000067890", "1688850000067890", "inbound", "file", 1718000610)],
    "callback_11010_voice.json": [("S:1688850000067890", "1688850000067890", "inbound", "voice", 1718000700)],
    "callback_11010_text_quote.json": [("S:7881300000001234", ACCOUNT, "outbound", "text", 1718000820)],
    "callback_11010_revoke.json": [],
    "callback_11010_system_room.json": [("R:10772491266604821", "1688850000067890", "inbound", "system", 1718000900)],
    "callback_11013_batch_3.json": [
        ("R:10772491266604821", "7881300000009012", "inbound", "text", 1718000960),
        ("S:7881300000005678", "7881300000005678", "inbound", "text", 1718000961),
        ("R:10696052788813579", "1688850000067890", "inbound", "image", 1718000963),
    ],
}


@pytest.mark.parametrize("account", [ACCOUNT, None], ids=["account-known", "account-unknown"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_derivations(name: str, account: str | None) -> None:
    effects = normalize_event(parse_body(fixture_text(name)), account, 0)
    got = [(m.conversation, m.sender, m.direction, m.type, m.sendtime) for m in effects.messages]
    assert got == EXPECTED[name]


def test_revoke_is_a_subsidiary_record() -> None:
    effects = normalize_event(parse_body(fixture_text("callback_11010_revoke.json")), ACCOUNT, 0)
    assert effects.messages == [] and effects.revokes == ["1067201"]


def test_quote_keeps_its_own_content_and_the_quoted_appinfo() -> None:
    (m,) = normalize_event(parse_body(fixture_text("callback_11010_text_quote.json")), ACCOUNT, 0).messages
    assert m.content == "已经发到您邮箱了，请查收。"
    assert m.quote_appinfo == "CAUQ5ttyQFuiEemBF+8kjnIEJ0FbWk/3"


def test_non_text_content_is_kept_raw_and_not_searchable() -> None:
    raw = json.loads(fixture_text("callback_11010_image.json"))["data"]["content"]
    (m,) = normalize_event(parse_body(fixture_text("callback_11010_image.json")), ACCOUNT, 0).messages
    assert m.content == raw and m.search_text is None


def test_login_remembers_the_account() -> None:
    effects = normalize_event(parse_body(fixture_text("callback_11003_user_login.json")), None, 0)
    assert effects.device is not None
    assert (effects.device.state, effects.device.account_id) == ("online", ACCOUNT)


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("callback_11004_user_logout.json", "offline"),
        ("callback_11011_login_other_device.json", "offline"),
        ("callback_11002_login_qrcode_change.json", "logging_in"),
    ],
)
def test_state_events(name: str, state: str) -> None:
    effects = normalize_event(parse_body(fixture_text(name)), ACCOUNT, 0)
    assert effects.device is not None and effects.device.state == state
    assert effects.messages == []


def msg(**fields: Any) -> dict[str, Any]:
    base = {"sender": "7881300000000001", "receiver": ACCOUNT, "roomid": "0", "msg_type": 2, "content": "hi"}
    base.update(fields)
    return base


def test_text_unwraps_json_msg() -> None:
    m = normalize_message(msg(content='{"msg": "你好"}'), ACCOUNT, 0)
    assert m is not None and m.content == "你好"
    m = normalize_message(msg(content='{"other": 1}'), ACCOUNT, 0)
    assert m is not None and m.content == '{"other": 1}'


def test_object_content_is_serialised() -> None:
    m = normalize_message(msg(msg_type=5, content={"url": "u", "size": 1}), ACCOUNT, 0)
    assert m is not None and json.loads(m.content) == {"url": "u", "size": 1}


def test_integer_ids_compare_as_strings() -> None:
    m = normalize_message(msg(sender=7881300000000001, receiver=int(ACCOUNT), roomid=0), ACCOUNT, 0)
    assert m is not None and m.conversation == "S:7881300000000001" and m.direction == "inbound"
    big = normalize_message(msg(roomid=10696052799990001), ACCOUNT, 0)
    assert big is not None and big.conversation == "R:10696052799990001"


def test_private_peer_unknown_is_skipped() -> None:
    assert normalize_message(msg(sender="a", receiver="b"), ACCOUNT, 0) is None
    assert normalize_message(msg(sender=None), ACCOUNT, 0) is None


def test_send_flag_fallback_without_account() -> None:
    out = normalize_message(msg(sender=ACCOUNT, receiver="788", send_flag=1), None, 0)
    assert out is not None and (out.direction, out.conversation) == ("outbound", "S:788")


def test_sendtime_rules() -> None:
    assert normalize_message(msg(sendtime="1718000000"), ACCOUNT, 5).sendtime == 1718000000  # type: ignore[union-attr]
    assert normalize_message(msg(), ACCOUNT, 5).sendtime == 5  # type: ignore[union-attr]
    assert normalize_message(msg(sendtime=-3), ACCOUNT, 5).sendtime == 5  # type: ignore[union-attr]


def test_unknown_msg_type() -> None:
    m = normalize_message(msg(msg_type=777), ACCOUNT, 0)
    assert m is not None and (m.type, m.msg_type) == ("unknown", 777)


def test_dedup_key_order() -> None:
    a = normalize_message(msg(appinfo="A", id="1", seq="2"), ACCOUNT, 0)
    b = normalize_message(msg(id="1", seq="2"), ACCOUNT, 0)
    c = normalize_message(msg(seq="2"), ACCOUNT, 0)
    assert (a.dedup_key, b.dedup_key, c.dedup_key) == ("A", "id:1", "seq:2")  # type: ignore[union-attr]


def test_batch_skips_bad_items() -> None:
    body = json.dumps({"guid": GUID, "notify_type": 11013, "data": [msg(appinfo="x"), 5, "y", None]})
    effects = normalize_event(parse_body(body), ACCOUNT, 0)
    assert len(effects.messages) == 1 and effects.skipped == 3


def test_nul_and_lone_surrogates_are_made_storable() -> None:
    m = normalize_message(msg(content="a\x00b\ud800c"), ACCOUNT, 0)
    assert m is not None
    m.content.encode("utf-8")
    assert "\x00" not in m.content


# --- personal WeChat (JUHEBOT.md §4.2) ---------------------------------------------------------


def wechat_event(notify_type: int, data: object) -> str:
    return json.dumps({"guid": "wx-device", "notify_type": notify_type, "data": data}, ensure_ascii=False)


def test_wechat_private_and_room_messages() -> None:
    private = {"from_username": "wxid_abc", "msg_type": 1, "content": "在吗", "new_msg_id": 991, "create_time": 1718000000}
    room = {"from_username": "wxid_abc", "room_username": "123@chatroom", "msg_type": 3, "content": "<img/>"}
    effects = normalize_event(parse_body(wechat_event(1011, [private, room])), None, 7)
    assert effects.device_kind == "wechat"
    a, b = effects.messages
    assert (a.conversation, a.direction, a.type, a.content, a.dedup_key, a.sendtime) == (
        "S:wxid_abc", "inbound", "text", "在吗", "id:991", 1718000000)
    assert a.search_text == "在吗"
    assert (b.conversation, b.type, b.search_text, b.sendtime) == ("R:123@chatroom", "image", None, 7)
    assert b.dedup_key.startswith("h:")


def test_wechat_numbering_applies_once_the_device_is_known_as_wechat() -> None:
    login = parse_body(wechat_event(1003, {}))
    assert normalize_event(login, None, 0, "wechat").device is not None  # WeChat: 1003 = login
    enterprise = normalize_event(login, None, 0)
    assert enterprise.device is None and enterprise.pulls  # WeCom: 1003 = room member removed


def test_an_enterprise_1010_without_wechat_fields_is_only_journalled() -> None:
    effects = normalize_event(parse_body(wechat_event(1010, {"x": 1})), None, 0)
    assert effects.messages == [] and effects.device_kind is None
