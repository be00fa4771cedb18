"""The ``juhe-sync`` command: a thin shell over the library."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from juhe_sync.config import Settings, settings_table
from juhe_sync.errors import ApiError
from juhe_sync.records import IngestOutcome
from juhe_sync.redact import mask, safe_url
from juhe_sync.service.access import TokenAdmin
from juhe_sync.service.ingest import Ingestor
from juhe_sync.service.stores import open_store
from juhe_sync.storage.sqlstore import SQLStore

app = typer.Typer(help="juhe-sync: your own durable copy of every juhebot device.", no_args_is_help=True)
console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Overrides JUHE_SYNC_DATABASE_URL.", show_default=False)
]


def _settings(database_url: str | None = None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


def _open(settings: Settings) -> SQLStore:
    try:
        store = open_store(settings.database_url, write_batch=settings.write_batch)
        store.migrate()
    except Exception as exc:
        _fail(f"cannot open {safe_url(settings.database_url)}: {mask(str(exc), settings.secrets())}")
    return store


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(mask(message, ()), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides JUHE_SYNC_HOST.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Overrides JUHE_SYNC_PORT.", show_default=False)] = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[
        int | None, typer.Option(help="Overrides JUHE_SYNC_WORKERS.", show_default=False)
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Listen on a public address without tokens (JUHE_SYNC_INSECURE)."),
    ] = False,
) -> None:
    """Run the HTTP service (callbacks and queries). Creates and migrates the database first."""
    import uvicorn

    from juhe_sync.web.protocol import IMPORT_PATH

    for name, value in (("HOST", host), ("PORT", port), ("DATABASE_URL", database_url), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"JUHE_SYNC_{name}"] = str(value)
    if insecure:
        os.environ["JUHE_SYNC_INSECURE"] = "1"
    settings = Settings()
    store = _open(settings)  # migrate once, before any request
    try:
        api_tokens = store.count_tokens()
    finally:
        store.close()
    guarded = bool(
        settings.api_tokens or api_tokens or settings.callback_tokens or settings.device_callback_tokens()
    )
    if not settings.loopback and not guarded and not settings.insecure:
        _fail(
            f"refusing to listen on {settings.host} with no token: set JUHE_SYNC_API_TOKEN and "
            "JUHE_SYNC_CALLBACK_TOKEN (or pass --insecure)"
        )
    _raise_file_limit(settings.max_connections)
    console.print(
        f"juhe-sync on http://{settings.host}:{settings.port} ({safe_url(settings.database_url)}, "
        f"{settings.workers} process(es)){_exposure(settings, api_tokens)}",
        markup=False,
        highlight=False,
    )
    uvicorn.run(
        "juhe_sync.web.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        http=IMPORT_PATH,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.client_timeout),
    )


def _exposure(settings: Settings, api_tokens: int) -> str:
    api = bool(settings.api_tokens or api_tokens)
    callback = bool(settings.callback_tokens or settings.device_callback_tokens())
    if api and callback:
        return ""
    missing = [
        name for name, on in (("JUHE_SYNC_API_TOKEN", api), ("JUHE_SYNC_CALLBACK_TOKEN", callback)) if not on
    ]
    return f"; WARNING: no {' or '.join(missing)}" if not settings.loopback or settings.insecure else ""


def _raise_file_limit(connections: int) -> None:
    """Each connection holds a file descriptor: raise the soft limit toward the hard one so that
    the connection cap, not the descriptor table, is what refuses clients."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # database files, sockets of the pool, logs
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            console.print(
                f"warning: open-file limit {target} is below JUHE_SYNC_MAX_CONNECTIONS + 256; "
                "raise it (ulimit -n, LimitNOFILE=) or lower the connection cap",
                markup=False,
            )


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create the database or bring its schema up to date."""
    settings = _settings(database_url)
    store = _open(settings)
    store.close()
    console.print(f"schema up to date: {safe_url(settings.database_url)}", markup=False, highlight=False)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSON lines, one callback body per line; - for stdin.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Feed callbacks from a JSON-lines file through the same pipeline as POST /callback."""
    settings = _settings(database_url)
    if str(file) != "-" and not file.is_file():
        console.print(f"[red]no such file: {file}[/red]")
        raise typer.Exit(2)
    stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    lines = None if str(file) == "-" else sum(1 for _ in file.open("rb"))
    store = _open(settings)
    ingestor = Ingestor(store)
    counts: Counter[str] = Counter()
    pending: list[Future[IngestOutcome]] = []

    def drain(keep: int) -> None:
        while len(pending) > keep:
            outcome = pending.pop(0).result()
            counts[outcome.status] += 1
            counts["skipped"] += outcome.skipped

    try:
        with _progress() as progress:
            task = progress.add_task("import", total=lines)
            for number, line in enumerate(stream, 1):
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


@app.command()
def replay(
    guid: Annotated[str | None, typer.Option(help="Only this device's callbacks.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Re-normalise journalled callbacks (e.g. after a parser fix). Safe to run any number of times."""
    settings = _settings(database_url)
    store = _open(settings)
    try:
        total = store.journal_size(guid)
        with _progress() as progress:
            task = progress.add_task("replay", total=total)
            stats = store.replay(guid, progress=lambda n: progress.advance(task, n))
    except ApiError as exc:
        _fail(exc.message)
    finally:
        store.close()
    console.print(
        f"events {stats.events}, messages added {stats.messages_added}, "
        f"changed {stats.messages_changed}, failed {stats.failed}"
    )
    if stats.failed:
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

    src = _open(_settings(source))
    dst = _open(_settings(destination))
    try:
        with _progress() as progress:
            task = progress.add_task("copy", total=count_rows(src, dst))
            inserted = copy_store(src, dst, progress=lambda n: progress.advance(task, n))
    except ApiError as exc:
        _fail(exc.message)
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

    cfg = _settings(database_url)
    if cfg.credentials_for(guid) is None:
        console.print("[red]no SaaS credentials: set JUHE_SYNC_APP_KEY and JUHE_SYNC_APP_SECRET[/red]")
        raise typer.Exit(2)
    store = _open(cfg)
    syncer = Syncer.from_settings(store, cfg)
    try:
        with _progress() as bar:
            tasks: dict[str, TaskID] = {}

            def progress(kind: str, done: int, total: int | None) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(kind, total=total)
                bar.update(tasks[kind], completed=done, total=total)

            report = syncer.sync(guid, full=full, progress=progress)
    except ApiError as exc:
        _fail(exc.message, 1)
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


token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. the client that will use it.")],
    guid: Annotated[
        list[str] | None, typer.Option("--guid", help="Limit the token to this device (repeatable).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May start syncs and manage tokens.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    store = _open(_settings(database_url))
    try:
        token, record = TokenAdmin(store).create(name, guid, admin)
    except ApiError as exc:
        _fail(exc.message)
    finally:
        store.close()
    scope = "every device" if record.guids is None else ", ".join(record.guids)
    console.print(
        f"token {record.name} ({'admin, ' if record.admin else ''}{scope}); store it now, it is not shown again:"
    )
    print(token)


@token_app.command("list")
def token_list(database_url: DatabaseUrl = None) -> None:
    """Names, scopes, creation and last use of every token (never the tokens)."""
    from rich.table import Table

    store = _open(_settings(database_url))
    try:
        records = TokenAdmin(store).list()
    finally:
        store.close()
    table = Table("name", "devices", "admin", "created", "last used")
    for r in records:
        devices = "all" if r.guids is None else ", ".join(r.guids)
        table.add_row(r.name, devices, "yes" if r.admin else "no", r.created_at, r.last_used_at or "never")
    Console().print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")], database_url: DatabaseUrl = None
) -> None:
    """Revoke a token: every running server refuses it within two seconds."""
    store = _open(_settings(database_url))
    try:
        TokenAdmin(store).revoke(name)
    except ApiError as exc:
        _fail(exc.message)
    finally:
        store.close()
    console.print(f"revoked {name}")


@app.command()
def settings() -> None:
    """Print every setting as the README's Markdown table."""
    print(settings_table())


def main() -> None:
    app()
