"""Settings, declared once. Every setting is an environment variable ``JUHE_SYNC_<NAME>``.

The README's configuration table is generated from this class (``juhe-sync settings``) and a
test fails when the two drift apart.
"""

from __future__ import annotations

import ipaddress
import json
import warnings
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Host names a loopback-bound server answers to by default (any port): DNS rebinding defence.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUHE_SYNC_", extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address `serve` listens on. Use `0.0.0.0` to accept callbacks from other hosts "
        "(then set `API_TOKEN` and `CALLBACK_TOKEN`, see Security).",
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
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`, or `json`: one JSON object per line (time, level, logger, message, request_id, "
        "exception) for everything the server logs, uvicorn included.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest callback body accepted, in bytes; larger bodies get 413.",
    )
    api_token: SecretStr = Field(
        SecretStr(""),
        description="When set, every route but `/healthz`, `/readyz` and `/callback` requires `Authorization: Bearer <token>` "
        "(an admin token; several, comma-separated, while rotating). More tokens, scoped to devices: `juhe-sync token create`.",
    )
    callback_token: SecretStr = Field(
        SecretStr(""),
        description="When set, `POST /callback` requires `?token=<this>` (the notify URL becomes "
        "`https://host/callback?token=…`); several, comma-separated, while rotating. Per-device secrets: "
        "`callback_token` in `DEVICE_CREDENTIALS`.",
    )
    insecure: bool = Field(
        False,
        description="Lets `serve` listen on a non-loopback address without both tokens (`API_TOKEN` and `CALLBACK_TOKEN`): for a private network you trust, never the internet.",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated `Host` names (optionally `:port`, `*.example.com` for subdomains) the server "
        "answers; others get 400. Empty: localhost, 127.0.0.1 and [::1] when bound to loopback, else any.",
    )
    client_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a complete request (headers and body) before it is disconnected.",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Largest request line plus headers, in bytes; larger gets 431.",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a stopping server waits for requests in flight before it exits whatever is stuck.",
    )
    storage_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request waits for the database. A callback not committed by then gets 503 "
        "STORAGE_UNAVAILABLE (nothing acknowledged; the sender retries) and a PostgreSQL read is cancelled, "
        "even when the database has stopped answering altogether.",
    )
    time_zone: str = Field(
        "Asia/Shanghai",
        description="IANA time zone of the devices' accounts: exports and the MCP server show local times in it "
        "(the HTTP API keeps UTC).",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Most open client connections per process; more are answered 503 and closed at once.",
    )
    search_count_limit: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Keyword searches (`/api/messages?keyword=`, the viewer, the MCP server) count matches up to "
        "this many; past it, `total` is this number and `total_capped` is `true` (a client that works out the "
        "last page from `total` stops there; later pages are still served). Counting reads every match, on "
        "PostgreSQL a table page each (BENCHMARKS.md). 0: count every match, as the API document has it.",
    )
    bench_routes: bool = Field(
        False,
        description="Adds `POST /_bench/parse` (parses a callback like `/callback`, stores nothing): the HTTP-stack baseline of the benchmarks.",
    )
    write_batch: int = Field(
        256, ge=1, le=10000, description="Most write jobs committed together in one group commit (SQLite)."
    )
    callback_writer_process: bool = Field(
        True,
        description="The server writes callbacks in a child process with its own interpreter lock and database "
        "connection, so that storing them does not wait on the HTTP event loop (about 1.5x the callbacks per "
        "second on two cores, see BENCHMARKS.md). Off: the server's own writer threads store them.",
    )
    saas_base_url: str = Field(
        "https://chat-api.juhebot.com",
        description="The SaaS API root; pull sync calls `{saas_base_url}/open/GuidRequest`.",
    )
    app_key: str = Field("", description="SaaS `app_key`. Pull sync is off while it is empty.")
    app_secret: str = Field("", description="SaaS `app_secret`.")
    device_credentials: str = Field(
        "",
        description='Per-device overrides, JSON: `{"<guid>": {"app_key": "…", "app_secret": "…", "callback_token": "…"}}`.',
    )
    saas_timeout: float = Field(
        15.0, gt=0, description="Seconds before a SaaS call is abandoned (and retried)."
    )
    saas_retries: int = Field(
        5, ge=0, le=20, description="Retries of a SaaS call after network errors, 5xx and rate limits."
    )
    saas_rate: float = Field(5.0, ge=0, description="Most SaaS calls per second per device (0: no limit).")
    sync_period: float = Field(
        1800.0,
        ge=0,
        description="Seconds between periodic incremental syncs of every device, the first 10 s after start (0: never).",
    )
    sync_interval: float | None = Field(
        None,
        ge=0,
        description="Deprecated: the same period in minutes. Use `SYNC_PERIOD`; when only this is set it is still honoured, with a warning.",
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
    sync_guids: str = Field(
        "",
        description="Comma-separated device GUIDs pull sync may run for without the callback secret (devices in "
        "`ws_guids` and `device_credentials` are added). With `CALLBACK_TOKEN` set, devices whose callbacks carry it qualify too.",
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        description="Keep messages this many days: older ones, their search entries and their journal bodies are "
        "purged in the background (hourly, in small transactions), and an older message arriving later is not "
        "stored. Unset: keep everything.",
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

    @model_validator(mode="after")
    def _period_in_minutes(self) -> Settings:
        if self.sync_interval is not None:
            warnings.warn(
                "JUHE_SYNC_SYNC_INTERVAL (minutes) is deprecated: set JUHE_SYNC_SYNC_PERIOD in seconds",
                FutureWarning,
                stacklevel=2,
            )
            if "sync_period" not in self.model_fields_set:
                self.sync_period = self.sync_interval * 60
        return self

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone must be an IANA time zone such as Asia/Shanghai or UTC, not {value!r}"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @field_validator("host")
    @classmethod
    def _host_text(cls, value: str) -> str:
        return value.strip()

    @property
    def loopback(self) -> bool:
        """Bound to a loopback address only (reachable from this machine alone)."""
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def host_patterns(self) -> list[str]:
        """Allowed ``Host`` header names, lower case; ``*`` allows any."""
        names = [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]
        if names:
            return names
        if not self.loopback:
            return ["*"]
        bound = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host  # e.g. 127.0.0.2
        return [*LOOPBACK_HOSTS, *([bound.lower()] if bound.lower() not in LOOPBACK_HOSTS else [])]

    @property
    def api_tokens(self) -> list[str]:
        return _split(self.api_token.get_secret_value())

    @property
    def callback_tokens(self) -> list[str]:
        return _split(self.callback_token.get_secret_value())

    @cached_property
    def devices(self) -> dict[str, dict[str, Any]]:
        """``device_credentials`` parsed once: each device's own settings (entries that are objects)."""
        if not self.device_credentials:
            return {}
        return {g: e for g, e in json.loads(self.device_credentials).items() if isinstance(e, dict)}

    def device_callback_tokens(self) -> dict[str, str]:
        """Per-device callback secrets from ``device_credentials`` (``callback_token``)."""
        return {g: str(e["callback_token"]) for g, e in self.devices.items() if e.get("callback_token")}

    @property
    def configured_devices(self) -> set[str]:
        """Devices the operator named: sync and WebSocket GUIDs, devices with their own credentials."""
        return set(self.ws_device_list) | {g.strip() for g in self.sync_guids.split(",") if g.strip()}

    def secrets(self) -> list[str]:
        """Every secret in the settings, for masking wherever text is printed or logged."""
        from juhe_sync.redact import url_secrets

        found = [*self.api_tokens, *self.callback_tokens, self.app_secret]
        found += url_secrets(self.database_url)
        for entry in self.devices.values():
            found += [str(entry.get(k) or "") for k in ("app_secret", "callback_token")]
        return [s for s in found if s]

    @property
    def ws_device_list(self) -> list[str]:
        """Devices WebSocket mode connects for: ``ws_guids`` and every device with own credentials."""
        guids = [g.strip() for g in self.ws_guids.split(",") if g.strip()]
        return guids + [g for g in self.devices if g not in guids]

    def credentials_for(self, guid: str) -> tuple[str, str] | None:
        """(app_key, app_secret) for a device: its override, else the global pair, else None."""
        override = self.devices.get(guid)
        if override is not None and override.get("app_key"):
            return str(override["app_key"]), str(override.get("app_secret", ""))
        if self.app_key:
            return self.app_key, self.app_secret
        return None

    @property
    def pull_enabled(self) -> bool:
        return bool(self.app_key) or any(e.get("app_key") for e in self.devices.values())


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def settings_table() -> str:
    """The Markdown table of settings that the README carries."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = "" if isinstance(field.default, SecretStr) else field.default
        lines.append(f"| `JUHE_SYNC_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)
