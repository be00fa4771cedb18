"""Settings, declared once. Every setting is an environment variable ``JUHE_SYNC_<NAME>``.

The README's configuration table is generated from this class (``juhe-sync settings``) and a
test fails when the two drift apart.
"""

from __future__ import annotations

import json

from pydantic import Field, field_validator
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
    saas_base_url: str = Field(
        "https://chat-api.juhebot.com",
        description="The SaaS API root; pull sync calls `{saas_base_url}/open/GuidRequest`.",
    )
    app_key: str = Field("", description="SaaS `app_key`. Pull sync is off while it is empty.")
    app_secret: str = Field("", description="SaaS `app_secret`.")
    device_credentials: str = Field(
        "",
        description='Per-device overrides, JSON: `{"<guid>": {"app_key": "…", "app_secret": "…"}}`.',
    )
    saas_timeout: float = Field(
        15.0, gt=0, description="Seconds before a SaaS call is abandoned (and retried)."
    )
    saas_retries: int = Field(
        5, ge=0, le=20, description="Retries of a SaaS call after network errors, 5xx and rate limits."
    )
    saas_rate: float = Field(5.0, ge=0, description="Most SaaS calls per second per device (0: no limit).")
    sync_interval: float = Field(
        30.0,
        ge=0,
        description="Minutes between periodic incremental syncs of every device, the first 10 s after start (0: never).",
    )
    lease_ttl: float = Field(
        60.0,
        ge=1,
        description="Seconds after which the work lease of a process that died frees itself (another process then resumes its sync).",
    )
    sync_messages: bool = Field(
        False,
        description="Gap recovery: also pull messages with `/sync/sync_msg` (deprecated and rate limited by the platform).",
    )
    ws_enabled: bool = Field(
        False, description="WebSocket mode: connect out to the SaaS and take callbacks over it (behind NAT)."
    )
    ws_url: str = Field("wss://chat-api.juhebot.com/ws/juwe", description="The SaaS WebSocket endpoint.")
    ws_guids: str = Field(
        "",
        description="Comma-separated device GUIDs to connect for in WebSocket mode (devices in `device_credentials` are added).",
    )
    sync_debounce: float = Field(
        2.0, ge=0, description="Seconds a callback-triggered sync waits, so that a burst makes one sync."
    )

    @field_validator("device_credentials")
    @classmethod
    def _json_object(cls, value: str) -> str:
        if value and not isinstance(json.loads(value), dict):
            raise ValueError("device_credentials must be a JSON object keyed by device GUID")
        return value

    @property
    def ws_device_list(self) -> list[str]:
        """Devices WebSocket mode connects for: ``ws_guids`` and every device with own credentials."""
        guids = [g.strip() for g in self.ws_guids.split(",") if g.strip()]
        if self.device_credentials:
            guids += [g for g in json.loads(self.device_credentials) if g not in guids]
        return guids

    def credentials_for(self, guid: str) -> tuple[str, str] | None:
        """(app_key, app_secret) for a device: its override, else the global pair, else None."""
        if self.device_credentials:
            override = json.loads(self.device_credentials).get(guid)
            if isinstance(override, dict) and override.get("app_key"):
                return str(override["app_key"]), str(override.get("app_secret", ""))
        if self.app_key:
            return self.app_key, self.app_secret
        return None

    @property
    def pull_enabled(self) -> bool:
        return bool(self.app_key or self.device_credentials)


def settings_table() -> str:
    """The Markdown table of settings that the README carries."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `JUHE_SYNC_{name.upper()}` | `{field.default}` | {field.description} |")
    return "\n".join(lines)
