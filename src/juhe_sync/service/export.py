"""Exports: the messages a selection names, streamed in time order in constant memory, as JSON
lines, CSV or Markdown; and the import that restores an export of JSON lines. Knows no HTTP.

Every format is a generator of text chunks, one per batch of messages read, so the same code
feeds a file, a terminal and an HTTP response, and memory holds one batch whatever the size.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from juhe_sync.errors import InvalidParams, NotFound
from juhe_sync.records import Effects, MessageQuery, MessageRecord
from juhe_sync.service.previews import LABELS
from juhe_sync.service.queries import check_conversation, keyword_param, require_guid, text_param, time_bounds
from juhe_sync.storage.sql import Applied
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import iso_local, now_seconds

#: Every format the command writes; the HTTP API streams the first two.
FORMATS = ("jsonl", "csv", "html", "markdown")
STREAMED = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}
#: Messages read per query.
BATCH = 500
CSV_COLUMNS = ("time", "conversation_id", "conversation", "from", "sender_name", "direction", "type", "text",
               "revoked", "quote_content", "id", "content")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Selection:
    """Which messages of which device: the filters of ``GET /api/messages``."""

    guid: str
    device_id: int
    conversation: str | None = None
    keyword: str | None = None
    start: int | None = None
    end: int | None = None

    def query(self, **changes: Any) -> MessageQuery:
        return MessageQuery(self.device_id, self.conversation, self.keyword, self.start, self.end, **changes)


def select(
    store: SQLStore,
    guid: str | None,
    *,
    conversation_id: str | None = None,
    keyword: str | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
) -> Selection:
    """Validate the filters as ``/api/messages`` does; an unknown device is a 404."""
    guid = require_guid(guid)
    conversation = check_conversation(text_param("conversation_id", conversation_id))
    keyword = keyword_param(keyword) or None
    start, end = time_bounds(start_time, end_time)
    device = store.device(guid)
    if device is None:
        raise NotFound(f"Device {guid} not found")
    return Selection(guid, device.id, conversation, keyword, start, end)


def count(store: SQLStore, selection: Selection) -> int:
    """How many messages the selection holds (one counted query, for a progress bar)."""
    return store.messages(selection.query(limit=1)).total


def messages(store: SQLStore, selection: Selection) -> Iterator[list[dict[str, Any]]]:
    """The selected messages, oldest first, in batches of :data:`BATCH`; each message as the API
    shows it plus the rest of its row (what an import needs)."""
    after: int | None = None
    while True:
        page = store.messages(
            selection.query(limit=BATCH, ascending=True, after=after, count=False, full=True)
        )
        if page.items:
            yield page.items
        if page.next_key is None:
            return
        after = page.next_key


def conversation_names(store: SQLStore, device_id: int) -> dict[str, str]:
    """Every conversation's display name (remark, nickname or room name), by ``S:``/``R:`` id."""
    names: dict[str, str] = {}
    after: int | None = None
    while True:
        page = store.conversations(device_id, None, None, 0, 100, after)
        names.update((c["conversation_id"], c["name"]) for c in page.items)
        if page.next_key is None:
            return names
        after = page.next_key


def text_of(message: dict[str, Any]) -> str:
    """The message as a person reads it: its text, or a label such as ``[图片]``."""
    label = LABELS.get(message["type"])
    return str(message["content"] or "") if label is None else label


# --- formats ------------------------------------------------------------------------------------


class Formatter:
    """Turns batches of messages into text chunks of one format."""

    def __init__(self, selection: Selection, zone: ZoneInfo, names: Callable[[str], str | None]):
        self.selection, self.zone, self.names = selection, zone, names

    def local(self, message: dict[str, Any]) -> str:
        return iso_local(int(message["sendtime"]), self.zone)

    def jsonl(self, batch: list[dict[str, Any]]) -> str:
        lines = (
            json.dumps({"guid": self.selection.guid, **m, "local_time": self.local(m)}, ensure_ascii=False)
            for m in batch
        )
        return "".join(line + "\n" for line in lines)

    def csv_header(self) -> str:
        return _csv_line(CSV_COLUMNS)

    def csv(self, batch: list[dict[str, Any]]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for m in batch:
            writer.writerow(_csv_safe([
                self.local(m), m["conversation_id"], self.names(m["conversation_id"]) or "", m["from"],
                m["sender_name"] or "", m["direction"], m["type"], text_of(m), int(m["revoked"]),
                m["quote_content"] or "", m["id"], m["content"],
            ]))  # fmt: skip
        return buffer.getvalue()

    def markdown_heading(self, conversation: str, total: int) -> str:
        name = self.names(conversation) or conversation
        return f"\n## {_md(name)} ({_md(conversation)})\n\n{total} messages\n\n"

    def markdown(self, batch: list[dict[str, Any]]) -> str:
        out = []
        for m in batch:
            who = "me" if m["direction"] == "outbound" else (m["sender_name"] or m["from"])
            text = "  \n  ".join(_md_line(line) for line in text_of(m).splitlines() or [""])
            revoked = " *(revoked)*" if m["revoked"] else ""
            quote = f"\n  > {_md(m['quote_content'])}" if m["quote_content"] else ""
            out.append(f"- {self.local(m)[:19].replace('T', ' ')} **{_md(who)}**{revoked}: {text}{quote}\n")
        return "".join(out)


def stream(store: SQLStore, selection: Selection, fmt: str, zone: ZoneInfo,
           progress: Callable[[int], None] | None = None) -> Iterator[str]:  # fmt: skip
    """The whole export of ``selection`` in ``fmt`` (jsonl, csv or markdown), chunk by chunk."""
    if fmt not in ("jsonl", "csv", "markdown"):
        raise InvalidParams("format must be jsonl, csv, html or markdown")
    names = _Names(store, selection.device_id)
    out = Formatter(selection, zone, names)
    if fmt == "markdown":
        yield from _markdown(store, selection, out, names.all(), progress)
        return
    if fmt == "csv":
        yield "\ufeff" + out.csv_header()  # the byte-order mark makes spreadsheets read UTF-8
    for batch in messages(store, selection):
        yield out.jsonl(batch) if fmt == "jsonl" else out.csv(batch)
        if progress is not None:
            progress(len(batch))


class _Names:
    """The device's conversation names, listed once and only if a format asks for one."""

    def __init__(self, store: SQLStore, device_id: int):
        self.store, self.device_id = store, device_id
        self._names: dict[str, str] | None = None

    def all(self) -> dict[str, str]:
        if self._names is None:
            self._names = conversation_names(self.store, self.device_id)
        return self._names

    def __call__(self, conversation: str) -> str | None:
        return self.all().get(conversation)


def per_conversation(
    store: SQLStore, selection: Selection, names: dict[str, str]
) -> Iterator[tuple[str, Selection, int]]:
    """Each conversation with selected messages, newest activity first (``names``, from
    :func:`conversation_names`, lists them in that order): (id, its selection, count)."""
    conversations = [selection.conversation] if selection.conversation is not None else list(names)
    for conversation in conversations:
        one = replace(selection, conversation=conversation)
        total = count(store, one)
        if total:
            yield conversation, one, total


def _markdown(store: SQLStore, selection: Selection, out: Formatter, names: dict[str, str],
              progress: Callable[[int], None] | None) -> Iterator[str]:  # fmt: skip
    yield f"# {_md(selection.guid)}\n"
    for conversation, one, total in per_conversation(store, selection, names):
        yield out.markdown_heading(conversation, total)
        for batch in messages(store, one):
            yield out.markdown(batch)
            if progress is not None:
                progress(len(batch))


def _csv_line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _csv_safe(values: list[Any]) -> list[Any]:
    """A cell starting with = + - @ (or a tab or CR) is a formula to a spreadsheet: a message
    could run one on the reader's machine. Such cells get a leading apostrophe (OWASP's advice)."""
    return [
        f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in values
    ]


#: What Markdown could read as markup inside a line (a line of ours never starts with the text).
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]#|~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def _md(text: str) -> str:
    """Text that Markdown (and the HTML it allows) shows as typed, on one line."""
    return _md_line(" ".join(text.splitlines()))


#: What starts a block at the start of a line: a heading or setext underline, a list, a quote.
_BLOCK_START = re.compile(r"^(\s*)(\d*)([-+=.)])")
#: Control characters (a terminal reading the export would act on them), but tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _md_line(line: str) -> str:
    escaped = _CONTROL.sub("\ufffd", line).translate(_MD_SPECIAL)
    # "\-" and "1\." are the escapes CommonMark knows (a backslash before a digit is shown).
    return _BLOCK_START.sub(lambda m: m.group(1) + m.group(2) + "\\" + m.group(3), escaped)


# --- import of an export --------------------------------------------------------------------------


def is_exported(line: dict[str, Any]) -> bool:
    """Whether a JSON line is a message of a ``jsonl`` export (not a callback body)."""
    return "dedup_key" in line and "conversation_id" in line and "notify_type" not in line


def record_of(line: dict[str, Any]) -> tuple[str, MessageRecord, bool]:
    """(device GUID, the message row, whether it was revoked) of one exported line, checked as
    strictly as a callback: a damaged line is refused, never stored half right."""
    try:
        record = MessageRecord(
            dedup_key=_text(line, "dedup_key"), msg_id=_opt(line, "msg_id"), seq=_opt(line, "seq"),
            appinfo=_opt(line, "appinfo"), conversation=_text(line, "conversation_id"),
            room_id=_opt(line, "room_id"), sender=_text(line, "from"), receiver=_opt(line, "receiver"),
            sender_name=_opt(line, "sender_name"), direction=line["direction"], msg_type=_int(line, "msg_type"),
            type=_text(line, "type"), content=_text(line, "content"),
            search_text=_text(line, "content") if line["searchable"] else None,
            sendtime=_int(line, "sendtime", 0, 1 << 42) or 0, flag=_int(line, "flag") or 0,
            send_flag=_int(line, "send_flag") or 0, content_type=_int(line, "content_type"),
            at_list=[_checked("at_list", str(a)) for a in line["at_list"]],
            quote_content=_opt(line, "quote_content"), quote_appinfo=_opt(line, "quote_appinfo"),
        )  # fmt: skip
        guid = _text(line, "guid")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidParams(f"not an exported message: {type(exc).__name__} {exc}") from None
    if record.direction not in ("inbound", "outbound"):
        raise InvalidParams("not an exported message: direction must be inbound or outbound")
    if check_conversation(record.conversation) is None:
        raise InvalidParams("not an exported message: conversation_id is empty")
    return guid, record, bool(line["revoked"])


def _checked(key: str, value: str) -> str:
    text_param(key, value)  # NUL characters and lone surrogates: no store takes them
    return value


def _text(line: dict[str, Any], key: str) -> str:
    value = line[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be text")
    return _checked(key, value)


def _opt(line: dict[str, Any], key: str) -> str | None:
    value = line.get(key)
    return None if value is None else _checked(key, str(value))


def _int(line: dict[str, Any], key: str, low: int = -(2**63), high: int = 2**63 - 1) -> int | None:
    value = line.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}")
    return value


def restore(store: SQLStore, guid: str, lines: list[tuple[MessageRecord, bool]]) -> Applied:
    """Store exported messages of one device as they were (no normalising: they are rows already):
    ``messages_added`` new, ``messages_refused`` older than the device keeps (retention, a purge);
    messages the device has already are left alone."""
    records = [record for record, _ in lines]
    # A revoked message comes back revoked: its revocation is stored first, as if it had arrived.
    revokes = [record.msg_id for record, revoked in lines if revoked and record.msg_id]
    writer = store.writer

    def job(conn: Any) -> Applied:
        device_id, account, kind = writer.ensure_device(conn, guid, now_seconds())
        prepared = writer.prepare_effects(Effects(messages=records, revokes=revokes), account, kind)
        return writer.apply(conn, device_id, prepared, None, replay=False)

    return store.pull_write(guid, job)
