"""``juhe-sync export``: a device's messages to JSON lines, CSV, Markdown or an HTML folder."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from juhe_sync.cli.common import DatabaseUrl, app, console, fail, open_migrated, progress_bar, settings_for
from juhe_sync.errors import ApiError
from juhe_sync.service import export as exports
from juhe_sync.web.export_html import write_html
from juhe_sync.web.i18n import LANGUAGES


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    html = "html"
    markdown = "markdown"


@app.command()
def export(
    guid: Annotated[str, typer.Option("--guid", help="Device GUID.")],
    format: Annotated[Format, typer.Option("--format", help="jsonl, csv, html (a folder) or markdown.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File (a folder for html); stdout when absent (not for html)."),
    ] = None,
    conversation_id: Annotated[
        str | None, typer.Option("--conversation-id", help="Only S:<user_id> or R:<room_id>.")
    ] = None,
    start_time: Annotated[str | None, typer.Option("--start-time", help="ISO 8601, inclusive.")] = None,
    end_time: Annotated[str | None, typer.Option("--end-time", help="ISO 8601, inclusive.")] = None,
    keyword: Annotated[str | None, typer.Option("--keyword", help="Only messages containing this.")] = None,
    language: Annotated[str, typer.Option("--language", help="Language of the HTML pages: zh or en.")] = "zh",
    database_url: DatabaseUrl = None,
) -> None:
    """Export messages, oldest first, in constant memory. A file is written under a temporary name
    and renamed when complete; `juhe-sync import` of a jsonl export restores its messages."""
    if format is Format.html and output is None:
        fail("--format html writes a folder: give it with --output")
    if language not in LANGUAGES:
        fail(f"--language must be one of {', '.join(LANGUAGES)}")
    if output is not None:
        _check_output(output, folder=format is Format.html)
    settings = settings_for(database_url)
    store = open_migrated(settings, existing=True)
    started = time.monotonic()
    try:
        selection = exports.select(store, guid, conversation_id=conversation_id, keyword=keyword,
                                   start_time=start_time, end_time=end_time)  # fmt: skip
        total = exports.count(store, selection)
        with progress_bar() as progress:
            task = progress.add_task("export", total=total)
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                progress.advance(task, n)

            if format is Format.html:
                assert output is not None
                partial = output.with_name(output.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                summary = write_html(store, selection, partial, settings.zone, language, advance)
                if output.exists():
                    output.rmdir()  # empty, as checked
                partial.rename(output)
                where = f"{output}{os.sep}index.html ({summary.conversations} conversation(s))"
            else:
                _write(exports.stream(store, selection, format.value, settings.zone, advance), output)
                where = str(output or "stdout")
    except ApiError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    finally:
        store.close()
    seconds = time.monotonic() - started
    console.print(f"exported {done} messages to {where} in {seconds:.1f} s ({done / max(seconds, 1e-9):,.0f}/s)",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip


def _check_output(output: Path, *, folder: bool) -> None:
    """Refuse before any work what would fail, or clobber, at the end."""
    if not output.parent.is_dir():
        fail(f"no such folder: {output.parent}")
    if folder and output.exists() and (not output.is_dir() or any(output.iterdir())):
        # Pages of an earlier export would stay beside the new ones (purged text among them).
        fail(f"{output} exists: remove it or give another --output")
    if not folder and output.is_dir():
        fail(f"{output} is a folder: give a file name with --output")


def _write(chunks: Iterator[str], output: Path | None) -> None:
    if output is None:
        _copy(chunks, sys.stdout)
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as file:
            _copy(chunks, file)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def _copy(chunks: Iterator[str], out: TextIO) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()
