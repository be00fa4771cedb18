"""The web viewer in a real browser (Debian's Chromium driven by Playwright): signing in, finding
conversations, reading back, searching Chinese words and jumping into context, hostile text
shown as text, and a phone-width screen. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import ACCOUNT, Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it"
)
ARTIFACTS = Path(os.environ.get("JUHE_SYNC_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
#: As the probe of this machine starts it: no network of its own, no first-run work.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

TOKEN = "viewer-test-operator-token"
GUID = "viewer-device"
LI, HAN, ZOE = "7881300000000201", "7881300000000202", "7881300000000203"
ROOM = "10696052799990077"
T0 = 1_718_000_000  # 2024-06-10
COUNT_LIMIT = 40  # keyword searches count this many matches at most


def _event(n: int, peer: str, t: int, content: str, *, msg_type: int = 2, room: bool = False,
           outbound: bool = False, name: str = "", **extra: object) -> dict:  # fmt: skip
    item = {"appinfo": f"VW-{n}", "id": str(600000 + n), "seq": str(n), "sendtime": t, "msg_type": msg_type,
            "sender": ACCOUNT if outbound else peer, "receiver": "0" if room else (peer if outbound else ACCOUNT),
            "roomid": ROOM if room else "0", "content": content, "sender_name": name, **extra}  # fmt: skip
    return {"guid": GUID, "notify_type": 11010, "data": item}


def _events() -> list[dict]:
    # The login tells juhe-sync which account is the device's own (so its messages are outbound).
    events: list[dict] = [{"guid": GUID, "notify_type": 11003, "data": {"user_id": ACCOUNT, "name": "客服小王"}}]
    # 李雷: 60 messages over two days, every fifth sent by the account.
    for n in range(60):
        text = "请把报价单发我" if n == 7 else f"李雷的第{n}条消息"
        events.append(_event(n, LI, T0 + n * 3000, text, name="李雷", outbound=n % 5 == 4))
    # 韩梅梅: hostile text, a file, an image, a quote, a link and something unknown.
    events += [
        _event(100, HAN, T0 + 200_000, "<script>alert(1)</script><img src=x onerror=alert(2)> 报价", name="韩梅梅"),
        _event(101, HAN, T0 + 200_100, json.dumps({"file_name": "2024年Q2销售合同.pdf", "size": 1048576}),
               msg_type=8, name="韩梅梅"),
        _event(102, HAN, T0 + 200_200, json.dumps({"size": 84532, "image_width": 1080, "image_height": 1920}),
               msg_type=5, name="韩梅梅"),
        _event(103, HAN, T0 + 200_300, "好的，马上发\n第二行 https://example.com/a?b=1", name="韩梅梅",
               quote_content="请把报价单发我"),
        _event(104, HAN, T0 + 200_400, json.dumps({"title": "产品介绍", "url": "javascript:alert(3)"}),
               msg_type=4, name="韩梅梅"),
        _event(105, HAN, T0 + 200_500, json.dumps({"what": "<b>new</b>"}), msg_type=777, name="韩梅梅"),
    ]
    events += [_event(200 + n, [LI, ZOE][n % 2], T0 + 100_000 + n, f"群消息 {n} @Zoë", room=True,
                      name=["李雷", "Zoë"][n % 2], at_list=[ACCOUNT]) for n in range(4)]  # fmt: skip
    return events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("viewer")
    env = {"JUHE_SYNC_API_TOKEN": TOKEN, "JUHE_SYNC_SEARCH_COUNT_LIMIT": str(COUNT_LIMIT)}
    srv = Server(f"sqlite:///{directory / 'viewer.db'}", directory / "server.log", env)
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for event in _events():
                assert http.post("/callback", json=event).status_code == 200
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
        context.close()


def sign_in(page: object, server: Server) -> None:
    page.goto(server.url + "/")  # type: ignore[attr-defined]
    page.fill("#token", TOKEN)  # type: ignore[attr-defined]
    page.click("#signin-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector(".conversation")  # type: ignore[attr-defined]


def test_sign_in_and_find_conversations_without_knowing_an_id(page: object, server: Server) -> None:
    page.goto(server.url + "/")
    assert page.is_visible("#signin") and page.get_attribute("#token", "type") == "password"
    page.fill("#token", "not-the-token")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert "令牌无效" in page.inner_text("#signin-error")
    page.fill("#token", TOKEN)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector(".conversation")
    names = page.locator(".conversation .name").all_inner_texts()
    assert names == ["韩梅梅", "李雷", ROOM]  # newest activity first
    previews = page.locator(".conversation .preview").all_inner_texts()
    assert previews[0] == "[消息]"  # the last of 韩梅梅's is of a type nobody knows
    assert previews[1] == "李雷的第59条消息" and previews[2] == "Zoë: 群消息 3 @Zoë"
    cookie = next(c for c in page.context.cookies() if c["name"] == "juhe_sync_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("juhe_sync_token") == -1
    # Filtering by name, and by kind.
    page.fill("#conversation-filter", "韩")
    expect(page.locator(".conversation")).to_have_count(1)
    page.fill("#conversation-filter", "")
    expect(page.locator(".conversation")).to_have_count(3)
    page.click(".kind[data-kind=R]")
    expect(page.locator(".conversation")).to_have_count(1)
    assert page.locator(".conversation .name").all_inner_texts() == [ROOM]


def test_open_a_conversation_and_scroll_back(page: object, server: Server) -> None:
    sign_in(page, server)
    page.click(f".conversation[data-id='S:{LI}']")
    page.wait_for_selector(".msg")
    texts = page.locator(".msg .bubble").all_inner_texts()
    assert len(texts) == 50 and texts[-1] == "李雷的第59条消息"  # newest at the bottom
    assert page.locator(".day").count() >= 1
    page.eval_on_selector("#messages", "box => box.scrollTop = 0")
    expect(page.locator(".msg")).to_have_count(60)
    texts = page.locator(".msg .bubble").all_inner_texts()
    assert texts[0] == "李雷的第0条消息" and texts[-1] == "李雷的第59条消息"
    assert page.locator(".msg.outbound").count() == 12


@pytest.mark.parametrize("word", ["报", "报价"])
def test_search_chinese_words_and_jump_into_context(page: object, server: Server, word: str) -> None:
    sign_in(page, server)
    page.fill("#search", word)
    page.press("#search", "Enter")
    page.wait_for_selector(".hit")
    hits = page.locator(".hit").all_inner_texts()
    assert len(hits) == 2  # 李雷's 7th and 韩梅梅's hostile one (a quote's text is not searched)
    assert page.inner_text("#results-total") == "(2)"
    assert page.locator(".hit mark").first.inner_text() == word
    page.locator(".hit", has_text="请把报价单发我").click()
    page.wait_for_selector(".msg.focus")
    focus = page.locator(".msg.focus")
    assert "请把报价单发我" in focus.inner_text() and focus.locator("mark").first.inner_text() == word
    assert page.inner_text("#chat-title") == "李雷"
    # The page around the hit: older messages above it, newer below.
    texts = page.locator(".msg .bubble").all_inner_texts()
    assert texts[0] == "李雷的第0条消息" and "李雷的第8条消息" in texts


def test_a_capped_count_says_at_least_and_every_hit_still_comes(page: object, server: Server) -> None:
    sign_in(page, server)
    page.fill("#search", "消息")  # 李雷's 59 and the room's 4: more than the server counts
    page.press("#search", "Enter")
    expect(page.locator(".hit")).to_have_count(50)
    assert page.inner_text("#results-total") == f"({COUNT_LIMIT}+)"
    page.click("#more-hits")
    expect(page.locator(".hit")).to_have_count(63)
    assert page.is_hidden("#more-hits") and page.inner_text("#results-total") == f"({COUNT_LIMIT}+)"


def test_hostile_text_is_shown_as_text_and_every_type_is_rendered(page: object, server: Server) -> None:
    sign_in(page, server)
    page.click(f".conversation[data-id='S:{HAN}']")
    page.wait_for_selector(".msg")
    box = page.inner_text("#messages")
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in box
    assert page.locator("#messages script, #messages img").count() == 0
    assert "2024年Q2销售合同.pdf" in box and "1.0 MB" in box  # a file card
    assert "1080×1920" in box  # an image card
    assert page.locator(".msg .quote").inner_text() == "请把报价单发我"
    link = page.locator("#messages a").first
    assert link.get_attribute("href") == "https://example.com/a?b=1" and link.get_attribute("rel") == "noopener noreferrer"
    assert page.locator("#messages a[href^='javascript']").count() == 0  # the link card's URL was refused
    page.click("#toggle-details")
    page.wait_for_selector("#details dl")
    assert "韩梅梅" in page.inner_text("#details") and "S:7881300000000202" in page.inner_text("#details")
    assert "暂不支持的消息类型" in box
    page.locator("#messages details summary").last.click()
    assert "<b>new</b>" in page.locator("#messages details pre").last.inner_text()
    assert page.dialogs == []


def test_phone_width_and_language_switch(browser: object, server: Server) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 375, "height": 740}, is_mobile=True)  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        sign_in(page, server)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.is_visible(".sidebar") and not page.is_visible(".chat")
        page.click(f".conversation[data-id='S:{LI}']")
        page.wait_for_selector(".msg")
        assert page.is_visible(".chat") and not page.is_visible(".sidebar")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "phone-conversation.png"))
        page.click("#back")
        assert page.is_visible(".sidebar")
        assert page.inner_text(".kind[data-kind=R]") == "Rooms"  # Accept-Language: English
        page.click(".lang[data-lang=zh]")
        page.wait_for_selector(".conversation")
        assert page.inner_text(".kind[data-kind=R]") == "群聊"
    finally:
        context.close()


def test_the_page_is_locked_down(server: Server) -> None:
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(server.url + "/static/viewer.js", timeout=10).status_code == 200
    assert httpx.get(server.url + "/api/devices", timeout=10).status_code == 401
    assert httpx.get(server.url + "/api/devices", cookies={"juhe_sync_token": "wrong"}, timeout=10).status_code == 401
    ok = httpx.get(server.url + "/api/devices", cookies={"juhe_sync_token": TOKEN}, timeout=10)
    assert ok.status_code == 200 and ok.json()["data"]["devices"][0]["guid"] == GUID
    assert ok.headers["cache-control"] == "private, no-store"
    # Behind a proxy with its own (Basic) Authorization, the cookie still signs the browser in.
    basic = httpx.get(server.url + "/api/devices", cookies={"juhe_sync_token": TOKEN},
                      headers={"Authorization": "Basic dXNlcjpwYXNz"}, timeout=10)  # fmt: skip
    assert basic.status_code == 200
    refused = httpx.post(server.url + "/session", json={"token": "wrong"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHORIZED"
    cross = httpx.post(server.url + "/session", json={"token": TOKEN}, headers={"Origin": "https://evil.example"}, timeout=10)
    assert cross.status_code == 403
    # What a cross-site page can post without a preflight is refused before the token is looked at.
    plain = httpx.post(server.url + "/session", content=json.dumps({"token": TOKEN}),
                       headers={"Content-Type": "text/plain"}, timeout=10)  # fmt: skip
    assert plain.status_code == 400 and "set-cookie" not in plain.headers
    # A write with the cookie from any other origin (a sibling subdomain included) is refused.
    sibling = httpx.post(server.url + "/api/sync", params={"guid": GUID}, cookies={"juhe_sync_token": TOKEN},
                         headers={"Origin": "http://other.127.0.0.1.nip.io"}, timeout=10)  # fmt: skip
    assert sibling.status_code == 403
