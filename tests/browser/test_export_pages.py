"""Exports in a real browser: the viewer's export links download the open conversation, and the
HTML export opens from disk with no server and no network, showing the right conversations drawn
by the viewer's own rendering (hostile text as text)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_viewer import ARTIFACTS, GUID, HAN, LI, ROOM, browser, page, server, sign_in  # noqa: F401
from tests.conftest import Server


def test_export_links_download_the_open_conversation(page: object, server: Server) -> None:  # noqa: F811
    sign_in(page, server)
    assert not page.is_visible("#export")
    page.click(f".conversation[data-id='S:{HAN}']")
    page.wait_for_selector(".msg")
    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))
    assert len(rows) == 6 and {r["conversation_id"] for r in rows} == {f"S:{HAN}"}
    assert rows[0]["content"] == "<script>alert(1)</script><img src=x onerror=alert(2)> 报价"
    assert rows[1]["text"] == "[文件]" and rows[0]["conversation"] == "韩梅梅"
    with page.expect_download() as download:
        page.click("#export-jsonl")
    assert len(Path(download.value.path()).read_text(encoding="utf-8").splitlines()) == 6


def test_html_export_opens_from_disk_without_network(page: object, server: Server, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "export"
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": server.database_url}
    done = subprocess.run([sys.executable, "-m", "juhe_sync", "export", "--guid", GUID, "--format", "html",
                           "--output", str(folder)], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 70 messages" in done.stderr and "(3 conversation(s))" in done.stderr
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: requests.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(folder.joinpath("index.html").as_uri())
    names = page.locator(".export-index tbody td a").all_inner_texts()
    assert names == ["韩梅梅", "李雷", ROOM]  # newest activity first, as in the viewer
    assert page.locator(".export-index td.n").all_inner_texts() == ["6", "60", "4"]

    page.click("text=韩梅梅")
    expect(page.locator(".msg")).to_have_count(6)
    box = page.inner_text("#messages")
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in box
    assert page.locator("#messages script, #messages img").count() == 0
    assert "2024年Q2销售合同.pdf" in box and "1.0 MB" in box and "1080×1920" in box
    assert page.locator(".msg .quote").inner_text() == "请把报价单发我"
    assert page.locator("#messages a[href^='javascript']").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "html-export-conversation.png"), full_page=True)

    page.go_back()
    page.click("text=李雷")
    expect(page.locator(".msg")).to_have_count(60)
    texts = page.locator(".msg .bubble").all_inner_texts()
    assert texts[0] == "李雷的第0条消息" and texts[-1] == "李雷的第59条消息"
    assert page.locator(".msg.outbound").count() == 12 and page.locator(".day").count() >= 2
    assert page.dialogs == []
    assert all(url.startswith("file://") for url in requests), requests


@pytest.mark.parametrize("part", [25])
def test_a_long_conversation_is_split_into_linked_parts(page: object, server: Server, tmp_path: Path,  # noqa: F811
                                                        part: int) -> None:  # fmt: skip
    folder = tmp_path / "parts"
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": server.database_url}
    code = ("import sys; from juhe_sync.web import export_html; export_html.PART = int(sys.argv[1]); "
            "from juhe_sync.cli import main; sys.argv = sys.argv[1:2] and ['juhe-sync', *sys.argv[2:]]; main()")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(part), "export", "--guid", GUID, "--format", "html",
                           "--conversation-id", f"S:{LI}", "--output", str(folder), "--language", "en"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page.goto(folder.joinpath("index.html").as_uri())
    with page.expect_navigation():  # a click returns before the page it opens has loaded
        page.click("text=李雷")
    seen = []
    while True:
        seen += page.locator(".msg .bubble").all_inner_texts()
        following = page.locator(".parts a", has_text="Next part")
        if following.count() == 0:
            break
        with page.expect_navigation():
            following.first.click()
    assert seen == [f"李雷的第{n}条消息" if n != 7 else "请把报价单发我" for n in range(60)]


def test_html_export_shows_the_devices_time_zone_wherever_it_is_opened(browser: object, server: Server,  # noqa: F811
                                                                      tmp_path: Path) -> None:  # fmt: skip
    folder = tmp_path / "zoned"
    env = {**os.environ, "JUHE_SYNC_DATABASE_URL": server.database_url, "JUHE_SYNC_TIME_ZONE": "Asia/Shanghai"}
    done = subprocess.run([sys.executable, "-m", "juhe_sync", "export", "--guid", GUID, "--format", "html",
                           "--conversation-id", f"S:{HAN}", "--output", str(folder)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    context = browser.new_context(locale="zh-CN", timezone_id="America/New_York")  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(next((folder / "c").glob("*.html")).as_uri())
        expect(page.locator(".msg")).to_have_count(6)
        # 2024-06-12T13:46:40Z: 21:46 in Shanghai (the export's zone), 09:46 in New York (the reader's).
        assert "21:46" in page.locator(".msg .meta").first.inner_text()
        assert "6月12日" in page.locator(".day").first.inner_text()
    finally:
        context.close()
