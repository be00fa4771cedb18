"""Settings, declared once. Every setting is an environment variable ``JUHE_SYNC_<NAME>``.

The README's configuration table is generated from this class (``juhe-sync settings``) and a
test fails when the two drift apart.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUHE_SYNC_", extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address `serve` listens on. Use `0.0.0.0` to accept callbacks from other hosts.",
    )
    port: int = Field(8070, ge=1, le=65535, description="Port `serve` listens on.")
    database_url: str = Field(
        "sqlite:///./juhe-sync.db",
        description="Where data lives: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `postgresql://user@host/db`.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes `serve` runs. More than one wants PostgreSQL (see Deployment).",
    )
    log_level: str = Field("info", description="Log level: `debug`, `info`, `warning` or `error`.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest callback body accepted, in bytes; larger bodies get 413.",
    )
    bench_routes: bool = Field(
        False,
        description="Adds `POST /_bench/parse` (parses a callback like `/callback`, stores nothing): the HTTP-stack baseline of the benchmarks.",
    )
    write_batch: int = Field(
        256, ge=1, le=10000, description="Most write jobs committed together in one group commit (SQLite)."
    )


def settings_table() -> str:
    """The Markdown table of settings that the README carries."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `JUHE_SYNC_{name.upper()}` | `{field.default}` | {field.description} |")
    return "\n".join(lines)
