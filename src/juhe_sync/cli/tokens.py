"""``juhe-sync token create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from juhe_sync.cli.common import DatabaseUrl, app, console, fail, open_migrated, settings_for
from juhe_sync.errors import ApiError
from juhe_sync.service.access import TokenAdmin

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
    store = open_migrated(settings_for(database_url))
    try:
        token, record = TokenAdmin(store).create(name, guid, admin)
    except ApiError as exc:
        fail(exc.message)
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

    store = open_migrated(settings_for(database_url))
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
    store = open_migrated(settings_for(database_url))
    try:
        TokenAdmin(store).revoke(name)
    except ApiError as exc:
        fail(exc.message)
    finally:
        store.close()
    console.print(f"revoked {name}")
