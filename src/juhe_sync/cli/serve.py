"""``juhe-sync serve``: refuse an unprotected public address, raise the file limit, run uvicorn."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from juhe_sync import logs
from juhe_sync.cli.common import DatabaseUrl, app, fail, open_migrated, settings_for
from juhe_sync.config import Settings
from juhe_sync.redact import safe_url

log = logging.getLogger("juhe_sync.serve")


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
    settings = settings_for()
    store = open_migrated(settings)  # migrate once, before any request
    try:
        api_tokens = store.count_tokens()
    finally:
        store.close()
    missing = _missing_tokens(settings, api_tokens)
    if not settings.loopback and missing and not settings.insecure:
        # Either one missing is enough to lose everything: without the API token anyone reads every
        # message (and creates an admin token); without the callback secret anyone writes them.
        fail(f"refusing to listen on {settings.host} without {' and '.join(missing)} (or pass --insecure)")
    log_config = logs.dict_config(settings.log_level, settings.log_format, settings.secrets())
    logs.configure(settings.log_level, settings.log_format, settings.secrets())
    _raise_file_limit(settings.max_connections)
    log.info(
        "juhe-sync on http://%s:%s (%s, %d process(es))%s", settings.host, settings.port,
        safe_url(settings.database_url), settings.workers, _exposure(settings, api_tokens),
    )  # fmt: skip
    with _metrics_dir(settings.workers):
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
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
            log_config=log_config,
        )


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers write their metrics to files in one directory, which every scrape sums
    (prometheus-client's multiprocess mode). The workers are spawned, so setting the variable here
    reaches them before their first import of prometheus-client."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1 and not given:
        yield
        return
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        # Values left by an earlier run would be summed with this one's.
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    directory = tempfile.mkdtemp(prefix="juhe-sync-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def _missing_tokens(settings: Settings, api_tokens: int) -> list[str]:
    api = bool(settings.api_tokens or api_tokens)
    callback = bool(settings.callback_tokens or settings.device_callback_tokens())
    return [
        name for name, on in (("JUHE_SYNC_API_TOKEN", api), ("JUHE_SYNC_CALLBACK_TOKEN", callback)) if not on
    ]


def _exposure(settings: Settings, api_tokens: int) -> str:
    missing = _missing_tokens(settings, api_tokens)
    return f"; WARNING: no {' or '.join(missing)}" if missing and not settings.loopback else ""


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
            log.warning(
                "open-file limit %d is below JUHE_SYNC_MAX_CONNECTIONS + 256; raise it (ulimit -n, "
                "LimitNOFILE=) or lower the connection cap",
                target,
            )
