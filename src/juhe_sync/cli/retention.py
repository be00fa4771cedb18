"""Commands that delete: purge a device's old messages, forget a device."""

from __future__ import annotations

from typing import Annotated

import typer

from juhe_sync.cli.common import (
    DatabaseUrl,
    advancer,
    app,
    console,
    fail,
    open_migrated,
    progress_bar,
    settings_for,
)
from juhe_sync.errors import ApiError
from juhe_sync.records import PurgeStats
from juhe_sync.service import retention
from juhe_sync.timeutil import iso_local

Guid = Annotated[str, typer.Option("--guid", help="Device GUID.")]


@app.command()
def purge(
    guid: Guid,
    before: Annotated[
        str,
        typer.Option(
            help="Delete messages sent before this ISO date or date-time (a date is midnight, and a time "
            "without an offset is local, in JUHE_SYNC_TIME_ZONE)."
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a device's messages sent before a date, with their search entries and journal bodies.
    Safe while the server runs: small transactions, counters and search exact after each."""
    settings = settings_for(database_url)
    try:
        cutoff = retention.parse_before(before, settings.zone)
    except ApiError as exc:
        fail(exc.message)
    store = open_migrated(settings, existing=True)
    when = iso_local(cutoff, settings.zone)
    try:
        planned = retention.plan(store, guid, cutoff)
        if dry_run:
            _report(f"would purge from {guid} before {when}", planned)
            return
        with progress_bar() as progress:
            task = progress.add_task("purge", total=planned.messages)
            stats = retention.purge(store, guid, cutoff, advancer(progress, task), retention.PAUSE)
    except ApiError as exc:
        fail(exc.message)
    finally:
        store.close()
    _report(f"purged from {guid} before {when}", stats)


@app.command()
def forget(
    guid: Guid,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete everything stored about a device: messages, contacts, rooms, journal, sync state.
    Callbacks that arrive for it afterwards create it anew: stop them first."""
    settings = settings_for(database_url)
    store = open_migrated(settings, existing=True)
    try:
        device = retention.device(store, guid)
        if not yes and not typer.confirm(
            f"Delete device {guid} and its {device.messages_count} messages for good?", err=True
        ):
            raise typer.Exit(1)
        with progress_bar() as progress:
            task = progress.add_task("forget", total=device.messages_count)
            stats = retention.forget(store, guid, advancer(progress, task))
    except ApiError as exc:
        fail(exc.message)
    finally:
        store.close()
    _report(f"forgot {guid}", stats)


def _report(what: str, stats: PurgeStats) -> None:
    console.print(f"{what}: messages {stats.messages}, journal entries {stats.journal}", markup=False,
                  highlight=False, soft_wrap=True)  # fmt: skip
