"""What every command shares: the Typer app, the console, opening the store, failing, progress bars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from juhe_sync.config import Settings
from juhe_sync.redact import mask, safe_url
from juhe_sync.service import retention
from juhe_sync.service.stores import open_store
from juhe_sync.storage.sqlstore import SQLStore

app = typer.Typer(help="juhe-sync: your own durable copy of every juhebot device.", no_args_is_help=True)
console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Overrides JUHE_SYNC_DATABASE_URL.", show_default=False)
]


def settings_for(database_url: str | None = None) -> Settings:
    """The settings, or a one-line error per bad one (never the value: it may be a secret)."""
    try:
        return Settings(database_url=database_url) if database_url else Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"JUHE_SYNC_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        fail(f"invalid settings: {problems}")


def open_migrated(settings: Settings, *, existing: bool = False) -> SQLStore:
    """The store, migrated. ``existing``: a command that only reads or deletes refuses a SQLite
    file that is not there (a mistyped path), instead of creating an empty database."""
    if existing and settings.database_url.startswith("sqlite:"):
        path = Path(settings.database_url[len("sqlite:///") :].split("?", 1)[0])
        if not path.is_file():
            fail(
                f"no database at {safe_url(settings.database_url)}: check JUHE_SYNC_DATABASE_URL or --database-url"
            )
    try:
        store = open_store(settings.database_url, write_batch=settings.write_batch)
        store.migrate()
        retention.apply_setting(store, settings.retention_days)
    except Exception as exc:
        fail(f"cannot open {safe_url(settings.database_url)}: {mask(str(exc), settings.secrets())}")
    return store


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(mask(message, ()), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def advancer(progress: Progress, task: TaskID) -> Callable[[int], None]:
    """Advance ``task`` by n; its total grows when the work does (callbacks arriving meanwhile)."""

    def advance(n: int) -> None:
        progress.advance(task, n)
        done = progress.tasks[task].completed
        total = progress.tasks[task].total
        if total is not None and done > total:
            progress.update(task, total=done)

    return advance
