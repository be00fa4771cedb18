"""Commands on the data: migrate, import, replay, copy, sync, simulate, settings."""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from juhe_sync.cli.common import DatabaseUrl, app, console, fail, open_migrated, progress_bar, settings_for
from juhe_sync.config import settings_table
from juhe_sync.errors import ApiError
from juhe_sync.records import IngestOutcome, MessageRecord
from juhe_sync.redact import safe_url
from juhe_sync.service import export as exports
from juhe_sync.service.ingest import Ingestor
from juhe_sync.storage.sqlstore import SQLStore


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create the database or bring its schema up to date."""
    settings = settings_for(database_url)
    store = open_migrated(settings)
    store.close()
    console.print(f"schema up to date: {safe_url(settings.database_url)}", markup=False, highlight=False)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSON lines, one callback body per line; - for stdin.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Feed callbacks from a JSON-lines file through the same pipeline as POST /callback, or
    restore the messages of a `juhe-sync export --format jsonl` (recognised by its first line)."""
    settings = settings_for(database_url)
    if str(file) != "-" and not file.is_file():
        console.print(f"[red]no such file: {file}[/red]")
        raise typer.Exit(2)
    stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    lines = None if str(file) == "-" else sum(1 for _ in file.open("rb"))
    head = [stream.readline()]
    while head[-1] and not head[-1].strip():  # the first line with something on it decides
        head.append(stream.readline())
    first = head[-1]
    lines_in: Iterable[bytes] = itertools.chain(head, stream)
    store = open_migrated(settings)
    if _exported(first):
        try:
            _restore(store, lines_in, lines)
        finally:
            store.close()
        return
    ingestor = Ingestor(store)
    counts: Counter[str] = Counter()
    pending: list[Future[IngestOutcome]] = []

    def drain(keep: int) -> None:
        while len(pending) > keep:
            outcome = pending.pop(0).result()
            counts[outcome.status] += 1
            counts["skipped"] += outcome.skipped

    try:
        with progress_bar() as progress:
            task = progress.add_task("import", total=lines)
            for number, line in enumerate(lines_in, 1):
                progress.advance(task)
                if not line.strip():
                    continue
                try:
                    _, future = ingestor.submit(line.decode("utf-8").strip())
                except (ApiError, UnicodeDecodeError) as exc:
                    counts["rejected"] += 1
                    console.print(f"line {number}: rejected: {getattr(exc, 'message', exc)}", markup=False)
                    continue
                pending.append(future)
                drain(1000)  # keep the writer's queue full: group commit does the rest
            drain(0)
    finally:
        store.close()
    console.print(
        "stored {stored}, duplicates {duplicate}, failed {failed}, rejected {rejected}, "
        "batch items skipped {skipped}".format(
            stored=counts["stored"],
            duplicate=counts["duplicate"],
            failed=counts["failed"],
            rejected=counts["rejected"],
            skipped=counts["skipped"],
        )
    )
    if counts["rejected"] or counts["failed"]:
        raise typer.Exit(1)


def _exported(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and exports.is_exported(value)


def _restore(store: SQLStore, stream: Iterable[bytes], lines: int | None) -> None:
    """Restore exported messages in batches of 500 per device; a bad line stops nothing else."""
    counts: Counter[str] = Counter()
    pending: dict[str, list[tuple[MessageRecord, bool]]] = {}

    def flush(guid: str) -> None:
        batch = pending.pop(guid, [])
        if not batch:
            return
        applied = exports.restore(store, guid, batch)
        counts["stored"] += applied.messages_added
        counts["refused"] += applied.messages_refused
        counts["duplicate"] += len(batch) - applied.messages_added - applied.messages_refused

    with progress_bar() as progress:
        task = progress.add_task("restore", total=lines)
        for number, line in enumerate(stream, 1):
            progress.advance(task)
            if not line.strip():
                continue
            try:
                guid, record, revoked = exports.record_of(json.loads(line))
            except (ValueError, ApiError) as exc:
                counts["rejected"] += 1
                console.print(f"line {number}: rejected: {getattr(exc, 'message', exc)}", markup=False)
                continue
            pending.setdefault(guid, []).append((record, revoked))
            if len(pending[guid]) >= 500:
                flush(guid)
        for guid in list(pending):
            flush(guid)
    refused = f", older than the device keeps {counts['refused']}" if counts["refused"] else ""
    console.print(f"restored {counts['stored']} messages, already there {counts['duplicate']}{refused}, "
                  f"rejected {counts['rejected']}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    if counts["rejected"]:
        raise typer.Exit(1)


@app.command()
def replay(
    guid: Annotated[str | None, typer.Option(help="Only this device's callbacks.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Re-normalise journalled callbacks (e.g. after a parser fix). Safe to run any number of times."""
    settings = settings_for(database_url)
    store = open_migrated(settings)
    try:
        total = store.journal_size(guid)
        with progress_bar() as progress:
            task = progress.add_task("replay", total=total)
            stats = store.replay(guid, progress=lambda n: progress.advance(task, n))
    except ApiError as exc:
        fail(exc.message)
    finally:
        store.close()
    console.print(
        f"events {stats.events}, messages added {stats.messages_added}, "
        f"changed {stats.messages_changed}, failed {stats.failed}, not matching their key {stats.mismatched}"
    )
    if stats.failed or stats.mismatched:
        raise typer.Exit(1)


@app.command()
def copy(
    source: Annotated[str, typer.Option("--from", help="Database URL to copy from.")],
    destination: Annotated[
        str, typer.Option("--to", help="Database URL to copy into (created and migrated).")
    ],
) -> None:
    """Copy a whole store, journal included, e.g. from SQLite to PostgreSQL. Resumable: run it again
    after an interruption, or after the source received more data."""
    from juhe_sync.storage.copy import copy_store, count_rows

    src = open_migrated(settings_for(source))
    dst = open_migrated(settings_for(destination))
    try:
        with progress_bar() as progress:
            task = progress.add_task("copy", total=count_rows(src, dst))
            inserted = copy_store(src, dst, progress=lambda n: progress.advance(task, n))
    except ApiError as exc:
        fail(exc.message)
    finally:
        src.close()
        dst.close()
    console.print("copied " + ", ".join(f"{name} {n}" for name, n in inserted.items()))


@app.command()
def sync(
    guid: Annotated[str, typer.Option("--guid", help="Device GUID to sync.")],
    full: Annotated[
        bool, typer.Option("--full", help="Re-list everything; mark contacts gone upstream.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Pull contacts, rooms with members, and the account of one device from the SaaS."""
    from juhe_sync.sync.jobs import Syncer

    cfg = settings_for(database_url)
    if cfg.credentials_for(guid) is None:
        console.print("[red]no SaaS credentials: set JUHE_SYNC_APP_KEY and JUHE_SYNC_APP_SECRET[/red]")
        raise typer.Exit(2)
    store = open_migrated(cfg)
    syncer = Syncer.from_settings(store, cfg)
    try:
        with progress_bar() as bar:
            tasks: dict[str, TaskID] = {}

            def progress(kind: str, done: int, total: int | None) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(kind, total=total)
                bar.update(tasks[kind], completed=done, total=total)

            report = syncer.sync(guid, full=full, progress=progress)
    except ApiError as exc:
        fail(exc.message, 1)
    finally:
        syncer.close()
        store.close()
    console.print(
        f"contacts {report.contacts}, rooms {report.rooms}, members {report.members}, messages {report.messages}"
    )
    for error in report.errors:
        console.print(f"[red]failed: {error}[/red]")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port of the simulated SaaS.")] = 8090,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    guid: Annotated[
        list[str] | None, typer.Option("--guid", help="Simulated device GUIDs (repeatable).")
    ] = None,
    contacts: Annotated[int, typer.Option(help="Contacts per device.")] = 2000,
    rooms: Annotated[int, typer.Option(help="Rooms per device.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 1,
    push_to: Annotated[
        str | None,
        typer.Option(help="juhe-sync callback URL to push events to, e.g. http://127.0.0.1:8070/callback."),
    ] = None,
    app_key: Annotated[str, typer.Option(help="app_key the simulator accepts.")] = "sim-key",
    app_secret: Annotated[str, typer.Option(help="app_secret the simulator accepts.")] = "sim-secret",
) -> None:
    """Run a simulated juhebot SaaS (pull API, callbacks, WebSocket) for tests and demos."""
    import uvicorn

    from juhe_sync.simulator.server import build_state, create_simulator

    state = build_state(guid or ["sim-device-1"], seed=seed, contacts=contacts, rooms=rooms, app_key=app_key,
                        app_secret=app_secret, push_to=push_to)  # fmt: skip
    console.print(
        f"simulated SaaS on http://{host}:{port} (app_key {app_key}, devices {', '.join(state.devices)})"
    )
    uvicorn.run(create_simulator(state), host=host, port=port, log_level="warning")


@app.command()
def settings() -> None:
    """Print every setting as the README's Markdown table."""
    print(settings_table())
