"""The SaaS wire format and the client's retry rules, against the protocol fixtures."""

from __future__ import annotations

import json

import httpx
import pytest

from juhe_sync.records import Profile
from juhe_sync.saas import protocol
from juhe_sync.saas.client import Credentials, RateLimiter, SaasClient
from juhe_sync.saas.protocol import SaasError, parse_response
from tests.conftest import fixture_json, fixture_text


def test_success_answer_gives_its_data() -> None:
    data = parse_response(200, fixture_text("api_contact_sync_contact.json"))
    items, last_seq = protocol.contact_page(data)
    assert len(items) == 4 and last_seq == "8620145"


@pytest.mark.parametrize("name", ["api_error_response.json", "api_error_response_err_code_variant.json"])
def test_both_error_spellings_are_refusals(name: str) -> None:
    with pytest.raises(SaasError) as err:
        parse_response(200, fixture_text(name))
    assert err.value.code == 1002 and err.value.message == "user is offline"
    assert not err.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (500, "oops", True),
        (502, "<html>502 Bad Gateway</html>", True),
        (429, "", True),
        (200, '{"error_code": 429, "error_message": "slow down"}', True),
        (200, '{"err_code": 7, "err_msg": "操作过于频繁"}', True),
        (200, '{"error_code": 1, "error_message": "Too Many Requests"}', True),
        (200, '{"baseResponse": {"ret": -1, "errMsg": "bad"}}', False),
        (200, '{"list": [{"ret": 5, "errMsg": "bad"}]}', False),
        (404, "not here", False),
        (200, "<html>not json</html>", False),
    ],
)
def test_what_is_retried(status: int, body: str, retryable: bool) -> None:
    with pytest.raises(SaasError) as err:
        parse_response(status, body)
    assert err.value.retryable is retryable


def test_contact_items() -> None:
    items, _ = protocol.contact_page(fixture_json("api_contact_sync_contact.json")["data"])
    rows = [protocol.contact_row(i, "1970325012345678") for i in items]
    first = rows[0]
    assert first is not None
    assert (first.user_id, first.name, first.remark, first.type) == ("7881300000001234", "张伟", "张伟-宁波海拓", "external")
    assert first.labels[0]["label_id"] == "14073750001234567"
    assert first.extra["company_remark"] == "宁波海拓贸易有限公司"
    assert rows[2] is not None and rows[2].type == "internal"
    assert rows[3] is not None and rows[3].deleted and not rows[0].deleted  # contact_type 2049: Del
    # A colleague-looking id of another corp is external; the other id keys are accepted too.
    other = protocol.contact_row({"userid": "1688850000000009", "corp_id": "1970000000000001"}, "1970325012345678")
    assert other is not None and other.type == "external"
    assert protocol.contact_row({"username": "wxid_abc", "deleted": 1}, None).deleted  # type: ignore[union-attr]
    assert protocol.contact_row({"name": "nobody"}, None) is None


def test_room_items() -> None:
    rooms, next_start, total = protocol.room_list_page(fixture_json("api_room_get_room_list.json")["data"])
    assert [r.room_id for r in rooms] == ["10696052788813579", "10772491266604821"]
    assert (next_start, total, rooms[0].owner) == (2, 2, "1688850000012345")
    details = protocol.room_details(fixture_json("api_room_batch_get_room_detail.json")["data"])
    assert details[0].room.version == 36 and details[0].members is not None
    assert [m.user_id for m in details[0].members] == ["1688850000012345", "7881300000005678", "1688850000067890"]
    assert details[0].members[0].inviter is None and details[0].members[1].inviter == "1688850000012345"
    synced = protocol.room_details(fixture_json("api_room_sync_room_info.json")["data"])
    assert synced[0].room.name == "星河科技-VIP客户服务群" and synced[0].room.version == 37


@pytest.mark.parametrize(
    ("start", "count", "next_start", "total", "expected"),
    [
        (0, 100, 100, 250, 100),  # as documented
        (200, 50, 250, 250, None),  # the last page
        (0, 100, None, None, 100),  # no paging keys: until an empty page
        (100, 0, None, None, None),
        (0, 100, 0, 250, 100),  # a next_start that does not move still moves on
        (0, 2, 2, 2, None),  # the fixture
    ],
)
def test_room_list_paging(start: int, count: int, next_start: int | None, total: int | None, expected: int | None) -> None:
    assert protocol.next_room_start(start, count, next_start, total) == expected


def test_profile() -> None:
    found = protocol.profile(fixture_json("api_user_get_profile.json")["data"])
    assert found == Profile("1688850000012345", "李晓明", "1970325012345678", found.avatar)  # type: ignore[union-attr]
    assert protocol.profile({"persons": {"user_id": "1688850000000001"}}) is not None  # one object, not a list
    assert protocol.profile({}) is None


def test_rate_limiter_spaces_calls_per_device() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert limiter.delay("a") == 0 and limiter.delay("a") == 0
    assert limiter.delay("a") == pytest.approx(0.5)
    assert limiter.delay("b") == 0  # another device has its own bucket
    now[0] = 10.0
    assert limiter.delay("a") == 0


def _client(handler, **options) -> tuple[SaasClient, list[float]]:
    sleeps: list[float] = []
    client = SaasClient(
        "http://saas.test", lambda guid: Credentials("k", "s"), transport=httpx.MockTransport(handler),
        sleep=sleeps.append, rate=0, **options,
    )  # fmt: skip
    return client, sleeps


def test_client_retries_transient_failures_then_succeeds() -> None:
    answers = iter([httpx.Response(503), httpx.Response(429, headers={"retry-after": "2"}),
                    httpx.Response(200, json={"error_code": 0, "data": {"x": 1}})])  # fmt: skip
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return next(answers)

    client, sleeps = _client(handler, backoff=0.1)
    assert client.call("g1", "/contact/sync_contact", {"seq": ""}) == {"x": 1}
    assert seen[0] == {"app_key": "k", "app_secret": "s", "path": "/contact/sync_contact", "data": {"seq": "", "guid": "g1"}}
    assert len(sleeps) == 2 and sleeps[0] <= 0.1 and sleeps[1] >= 2  # jittered backoff; Retry-After honoured


def test_client_does_not_retry_refusals_and_gives_up_after_retries() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"err_code": 1002, "err_msg": "user is offline"})

    client, _ = _client(refuse)
    with pytest.raises(SaasError, match="user is offline"):
        client.call("g1", "/user/get_profile")
    assert len(calls) == 1

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused")

    calls.clear()
    client, sleeps = _client(broken, retries=3)
    with pytest.raises(SaasError) as err:
        client.call("g1", "/user/get_profile")
    assert err.value.retryable and len(calls) == 4 and len(sleeps) == 3


def test_client_without_credentials_refuses() -> None:
    client = SaasClient("http://saas.test", lambda guid: None, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(SaasError, match="app_key"):
        client.call("g1", "/user/get_profile")
