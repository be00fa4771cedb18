"""The ``juhe-sync`` command: a thin shell over the service layer, one module per group of commands."""

from __future__ import annotations

# Each module registers its commands; ``--help`` lists them in this order, ``serve`` first.
# isort: off
from juhe_sync.cli import serve  # noqa: F401
from juhe_sync.cli import data, tokens  # noqa: F401
from juhe_sync.cli.common import app

# isort: on


def main() -> None:
    app()
