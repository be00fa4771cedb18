"""Schemathesis against the real server's /openapi.json: no 500s, no response that breaks the schema,
no status or content type the document does not declare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Server

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def test_schemathesis_run(server: Server, tmp_path: Path) -> None:
    seed = os.environ.get("JUHE_SYNC_SCHEMATHESIS_SEED", "20261129")
    examples = os.environ.get("JUHE_SYNC_SCHEMATHESIS_EXAMPLES", "80")
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "--no-color", "run", f"{server.url}/openapi.json", "--checks", CHECKS,
         "--max-examples", examples, "--seed", seed, "--workers", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
