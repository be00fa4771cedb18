"""The HTML export: a folder that opens in any browser without a server or network. An index
of conversations, and each conversation in pages of :data:`PART` messages drawn by the viewer's
own ``render.js`` from JSON embedded in the page, so an export looks like the viewer.

Memory holds one page of messages at a time, whatever the size of the export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape

from juhe_sync.service import export
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import iso_local, now_seconds
from juhe_sync.web.i18n import STRINGS

#: Messages per page of a conversation, and most characters of text in one.
PART = 2000
PART_CHARS = 4_000_000
ASSETS = ("render.js", "export.js", "viewer.css", "export.css")
#: What a page keeps of each message: what render.js draws.
_SHOWN = ("id", "from", "sender_name", "content", "timestamp", "type", "direction", "revoked",
          "quote_content", "msg_type", "at_list")  # fmt: skip

_templates = Environment(
    loader=PackageLoader("juhe_sync.web", "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)


@dataclass(slots=True)
class HtmlSummary:
    conversations: int = 0
    messages: int = 0


def write_html(
    store: SQLStore,
    selection: export.Selection,
    folder: Path,
    zone: ZoneInfo,
    language: str = "zh",
    progress: Callable[[int], None] | None = None,
) -> HtmlSummary:
    """Write the export of ``selection`` into ``folder`` (created; its files are replaced)."""
    strings = STRINGS[language]
    (folder / "c").mkdir(parents=True, exist_ok=True)
    (folder / "assets").mkdir(exist_ok=True)
    static = resources.files("juhe_sync.web") / "static"
    for name in ASSETS:
        (folder / "assets" / name).write_bytes((static / name).read_bytes())
    names = export.conversation_names(store, selection.device_id)
    summary = HtmlSummary()
    entries = []
    for number, (conversation, one, _) in enumerate(export.per_conversation(store, selection, names), 1):
        name = names.get(conversation) or conversation
        page = _Pages(folder, number, conversation, name, strings, language, zone.key)
        for batch in export.messages(store, one):
            page.add(batch)
            if progress is not None:
                progress(len(batch))
        page.finish()
        summary.conversations += 1
        summary.messages += page.count
        entries.append({
            "id": conversation, "name": page.name, "count": page.count, "href": page.href(1),
            "first": iso_local(page.first, zone)[:16].replace("T", " "),
            "last": iso_local(page.last, zone)[:16].replace("T", " "),
        })  # fmt: skip
    index = _templates.get_template("export_index.html").render(
        lang=language, t=strings, guid=selection.guid, conversations=entries,
        exported_at=iso_local(now_seconds(), zone), filters=_filters(selection, zone),
    )  # fmt: skip
    (folder / "index.html").write_text(index, encoding="utf-8")
    return summary


class _Pages:
    """One conversation's pages: a page is written once the next one is known to exist (for its
    "next" link) or the conversation ends."""

    def __init__(self, folder: Path, number: int, conversation: str, name: str, strings: dict[str, str],
                 language: str, zone: str):  # fmt: skip
        self.folder, self.number, self.conversation, self.name = folder, number, conversation, name
        self.strings, self.language, self.zone = strings, language, zone
        self.buffer: list[dict[str, Any]] = []
        self.chars = 0
        self.part = 1
        self.count = 0
        self.first = self.last = 0

    def href(self, part: int, prefix: str = "c/") -> str:
        return f"{prefix}{self.number:05d}{'' if part == 1 else f'-{part}'}.html"

    def add(self, batch: list[dict[str, Any]]) -> None:
        if not self.count:
            self.first = int(batch[0]["sendtime"])
        self.last = int(batch[-1]["sendtime"])
        self.count += len(batch)
        for message in batch:
            size = len(message["content"]) + len(message["quote_content"] or "")
            if len(self.buffer) == PART or (self.buffer and self.chars + size > PART_CHARS):
                self._write(has_next=True)
            self.buffer.append({k: message[k] for k in _SHOWN})
            self.chars += size

    def finish(self) -> None:
        self._write(has_next=False)

    def _write(self, *, has_next: bool) -> None:
        html = _templates.get_template("export_page.html").render(
            lang=self.language, t=self.strings, name=self.name, id=self.conversation, messages=self.buffer,
            zone=self.zone,
            part_label=self.strings["part"].format(n=self.part),
            previous=self.href(self.part - 1, "") if self.part > 1 else None,
            next=self.href(self.part + 1, "") if has_next else None,
        )  # fmt: skip
        (self.folder / self.href(self.part)).write_text(html, encoding="utf-8")
        self.buffer = []
        self.chars = 0
        self.part += 1


def _filters(selection: export.Selection, zone: ZoneInfo) -> str:
    parts = []
    if selection.keyword:
        parts.append(f"“{selection.keyword}”")
    if selection.start is not None:
        parts.append(f"≥ {iso_local(selection.start, zone)}")
    if selection.end is not None:
        parts.append(f"≤ {iso_local(selection.end, zone)}")
    return " ".join(parts)
