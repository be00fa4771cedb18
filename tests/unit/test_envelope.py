from __future__ import annotations

import json

import pytest

from juhe_sync.errors import InvalidParams
from juhe_sync.ingest.envelope import parse_body
from tests.conftest import GUID, fixture_json, fixture_text

INNER = {"guid": GUID, "notify_type": 11010, "data": {"sender": "1", "receiver": "2"}}


def test_plain_event() -> None:
    event = parse_body(fixture_text("callback_11010_text_private_inbound.json"))
    assert (event.guid, event.notify_type) == (GUID, 11010)
    assert event.data["appinfo"] == "CAUQ5ttyQFuiEemBF+8kjnIEJ0FbWk/3"


@pytest.mark.parametrize(
    "name", ["ws_callback_event_object.json", "ws_callback_event_string.json", "ws_callback_data_wrapper.json"]
)
def test_websocket_wrappers_unwrap_to_the_same_event(name: str) -> None:
    wrapped = parse_body(fixture_text(name))
    frame = fixture_json(name)
    inner = frame.get("event", frame.get("data"))
    inner = json.loads(inner) if isinstance(inner, str) else inner
    plain = parse_body(json.dumps(inner))
    assert wrapped == plain  # same event, same journal key, whatever the wrapper


def test_guid_falls_back_to_the_wrapper() -> None:
    event = parse_body(json.dumps({"guid": GUID, "event": {"notify_type": 11001, "data": {}}}))
    assert event.guid == GUID


def test_notify_type_digit_string_is_coerced() -> None:
    assert parse_body(json.dumps({"guid": GUID, "notify_type": "11001", "data": {}})).notify_type == 11001


def test_big_integers_stay_exact() -> None:
    body = '{"guid": "g", "notify_type": 11010, "data": {"roomid": 10696052799990001}}'
    assert parse_body(body).data["roomid"] == 10696052799990001


def test_unknown_types_are_accepted() -> None:
    assert parse_body(json.dumps({"guid": GUID, "notify_type": 99999, "data": None})).notify_type == 99999


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '"a string"',
        "null",
        "{}",
        '{"guid": "g"}',
        '{"type": "auth_success"}',
        '{"type": "callback", "event": "not json"}',
        '{"type": "callback", "event": "[1]"}',
        '{"type": "callback", "event": 5}',
        '{"type": "callback", "data": {"guid": "g"}}',
        '{"notify_type": 11010, "data": {}}',
        '{"guid": "", "notify_type": 11010, "data": {}}',
        '{"guid": 5, "notify_type": 11010, "data": {}}',
        '{"guid": "g", "notify_type": "abc", "data": {}}',
        '{"guid": "g", "notify_type": 1.5, "data": {}}',
        '{"guid": "g", "notify_type": true, "data": {}}',
        '{"guid": "g", "notify_type": 11010, "data": []}',
        '{"guid": "g", "notify_type": 11010}',
        '{"guid": "g", "notify_type": 11013, "data": "x"}',
        '{"guid": "g", "notify_type": 11013, "data": NaN}',
        '{"guid": "g", "notify_type": "١٢"}',
    ],
)
def test_unprocessable_bodies_are_invalid_params(body: str) -> None:
    with pytest.raises(InvalidParams):
        parse_body(body)


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    with pytest.raises(InvalidParams):
        parse_body("[" * 100000 + "]" * 100000)


def test_lone_surrogates_hash() -> None:
    event = parse_body('{"guid": "g", "notify_type": 11010, "data": {"content": "\\ud800"}}')
    assert len(event.key) == 32


@pytest.mark.parametrize(
    "body",
    [
        '{"guid": "g", "notify_type": -1}',
        '{"guid": "g", "notify_type": 30584125968751574088941568}',
        '{"guid": "\\ud800", "notify_type": 1}',
        '{"guid": "a\\u0000b", "notify_type": 1}',
        '{"guid": "' + "x" * 300 + '", "notify_type": 1}',
    ],
)
def test_out_of_range_values_are_invalid(body: str) -> None:
    with pytest.raises(InvalidParams):
        parse_body(body)


def test_a_key_already_computed_is_taken_and_the_body_still_checked() -> None:
    raw = json.dumps({"guid": GUID, "notify_type": 11010, "data": {"id": "1", "content": "你好"}})
    hashed = parse_body(raw)
    assert parse_body(raw, hashed.key) == hashed
    assert parse_body(raw, b"the server's").key == b"the server's"  # the callback writer trusts its server
    with pytest.raises(InvalidParams):
        parse_body('{"guid": "", "notify_type": 11010}', hashed.key)
