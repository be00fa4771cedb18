"""The viewer's two languages say the same things, and a browser gets the one it asks for."""

from __future__ import annotations

import re
from pathlib import Path

from juhe_sync.web.i18n import STRINGS, pick_language

WEB = Path(__file__).resolve().parents[2] / "src" / "juhe_sync" / "web"


def test_both_languages_have_every_string_and_no_key_shadows_a_dict_method() -> None:
    assert set(STRINGS["zh"]) == set(STRINGS["en"])
    assert not set(STRINGS["zh"]) & set(dir(dict))  # the template reads t.<key>
    used = set()
    for template in (WEB / "templates").glob("*.html"):
        used |= set(re.findall(r"\bt\.(\w+)", template.read_text(encoding="utf-8")))
    for script in (WEB / "static").glob("*.js"):
        used |= set(re.findall(r"\bT\.(\w+)", script.read_text(encoding="utf-8")))
    assert used <= set(STRINGS["zh"]), used - set(STRINGS["zh"])


def test_language_comes_from_the_switch_then_the_browser() -> None:
    assert pick_language(None, None, "en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert pick_language(None, None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert pick_language(None, None, "fr-FR, en;q=0.5, zh;q=0.7") == "zh"
    assert pick_language(None, "en", "zh-CN") == "en"
    assert pick_language("zh", "en", "en") == "zh"
    assert pick_language(None, None, None) == "zh"
    assert pick_language("xx", "yy", "de;q=oops") == "zh"
