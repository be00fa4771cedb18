"""Schemathesis against a real server's /openapi.json: no 500s, no response that breaks the schema,
no status or content type the document does not declare, and no route that ignores its token.

The server requires both tokens; schemathesis authenticates from the document's security schemes
(and checks with ``ignored_auth`` that a request without them is refused)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,ignored_auth"
)
API_TOKEN = "schemathesis-api-token"
CALLBACK_TOKEN = "schemathesis-callback-token"


@pytest.fixture(scope="module")
def guarded(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"JUHE_SYNC_API_TOKEN": API_TOKEN, "JUHE_SYNC_CALLBACK_TOKEN": CALLBACK_TOKEN}
    server = Server(module_database_url, tmp_path_factory.mktemp("server") / "server.log", env).start()
    try:
        yield server
    finally:
        server.stop()


def test_schemathesis_run(guarded: Server, tmp_path: Path) -> None:
    seed = os.environ.get("JUHE_SYNC_SCHEMATHESIS_SEED", "20261129")
    examples = os.environ.get("JUHE_SYNC_SCHEMATHESIS_EXAMPLES", "80")
    (tmp_path / "schemathesis.toml").write_text(
        f'[auth.openapi.ApiToken]\nbearer = "{API_TOKEN}"\n\n[auth.openapi.CallbackToken]\napi_key = "{CALLBACK_TOKEN}"\n'
    )
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "--no-color", "run", f"{guarded.url}/openapi.json", "--checks", CHECKS,
         "--max-examples", examples, "--seed", seed, "--workers", "1",
         "-H", f"Authorization: Bearer {API_TOKEN}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
