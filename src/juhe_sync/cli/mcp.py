"""``juhe-sync mcp``: the MCP server over standard input and output, for an AI assistant that
starts it as a subprocess. Standard output is the protocol's: everything else goes to stderr."""

from __future__ import annotations

from typing import Annotated

import anyio
import typer

from juhe_sync import logs
from juhe_sync.cli.common import DatabaseUrl, app, open_migrated, settings_for


@app.command()
def mcp(
    guid: Annotated[
        list[str] | None, typer.Option("--guid", help="Only this device (repeatable); default every device.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the read-only MCP tools (devices, conversations, search, messages, contacts) over stdio."""
    # Here, not at the top: the SDK takes most of a second to import, which no other command should pay.
    from juhe_sync.service.assistant import Assistant, local_principal
    from juhe_sync.service.queries import QueryService
    from juhe_sync.web.mcp import serve_stdio

    settings = settings_for(database_url)
    logs.configure(settings.log_level, settings.log_format, settings.secrets())
    store = open_migrated(settings)
    try:
        assistant = Assistant(QueryService(store, settings.search_count_limit), settings.zone)
        anyio.run(serve_stdio, assistant, local_principal(guid or ()))
    finally:
        store.close()
