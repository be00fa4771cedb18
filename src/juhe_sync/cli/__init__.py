"""The ``juhe-sync`` command: a thin shell over the service layer, one module per group of commands."""

from __future__ import annotations

import os
import sys

# The metrics directory is the server's (``serve`` sums its workers' files there). Any other
# command would add its own counters to the server's and leave gauges behind, so it keeps its
# metrics in memory. This must happen before prometheus-client is first imported.
if sys.argv[1:2] != ["serve"]:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# Each module registers its commands; ``--help`` lists them in this order, ``serve`` first.
# isort: off
from juhe_sync.cli import serve  # noqa: F401
from juhe_sync.cli import data, export, retention, tokens  # noqa: F401
from juhe_sync.cli import mcp  # noqa: F401
from juhe_sync.cli.common import app

# isort: on


def main() -> None:
    app()
