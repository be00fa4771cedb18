"""The HTTP client of the juhebot pull API: ``POST {base}/open/GuidRequest`` (JUHEBOT.md §2).

Every call has a timeout. Network errors, HTTP 5xx and rate-limit answers are retried with
exponential backoff and full jitter; any other error is the platform saying no and is raised at
once. Calls for one device are spaced by a token bucket, so a full sync never floods the platform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from juhe_sync import metrics
from juhe_sync.backoff import Backoff
from juhe_sync.backoff import retry_after as parse_retry_after
from juhe_sync.saas.protocol import SaasError, parse_response

if TYPE_CHECKING:
    from juhe_sync.config import Settings

log = logging.getLogger("juhe_sync.saas")


@dataclass(frozen=True, slots=True)
class Credentials:
    app_key: str
    app_secret: str


class RateLimiter:
    """A token bucket per key: ``rate`` calls a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int = 5, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def delay(self, key: str) -> float:
        """Take a token for ``key``; returns how long to wait before using it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate) - 1.0
            self._buckets[key] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / self.rate


class SaasClient:
    def __init__(
        self,
        base_url: str,
        credentials: Callable[[str], Credentials | None],
        *,
        timeout: float = 15.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        rate: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = base_url.rstrip("/") + "/open/GuidRequest"
        self.credentials = credentials
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.limiter = RateLimiter(rate)
        self.sleep = sleep
        self.http = httpx.Client(timeout=timeout, transport=transport)
        self.calls = 0  # attempts made, for metrics and tests

    def close(self) -> None:
        self.http.close()

    def call(self, guid: str, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a successful answer; :class:`SaasError` once retries are exhausted."""
        creds = self.credentials(guid)
        if creds is None:
            raise SaasError("no app_key/app_secret configured for this device", retryable=False)
        body = {
            "app_key": creds.app_key,
            "app_secret": creds.app_secret,
            "path": path,
            "data": {**(data or {}), "guid": guid},
        }
        attempt = 0
        backoff = Backoff(self.backoff, self.max_backoff)
        while True:
            wait = self.limiter.delay(guid)
            if wait > 0:
                self.sleep(wait)
            self.calls += 1
            retry_after: float | None = None
            started = time.perf_counter()
            try:
                response = self.http.post(self.url, json=body)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                answer = parse_response(response.status_code, response.text)
                metrics.SAAS_CALLS.labels(path, "ok").inc()
                return answer
            except httpx.TransportError as exc:
                error = SaasError(f"{type(exc).__name__}: {exc}", retryable=True)
            except SaasError as exc:
                error = exc
            finally:
                metrics.SAAS_SECONDS.labels(path).observe(time.perf_counter() - started)
            metrics.SAAS_CALLS.labels(path, "retryable" if error.retryable else "refused").inc()
            if not error.retryable or attempt >= self.retries:
                raise error
            metrics.SAAS_RETRIES.labels(path).inc()
            pause = backoff.next(at_least=retry_after)
            log.info("%s for %s failed (%s); retry %d in %.2f s", path, guid, error, attempt + 1, pause)
            self.sleep(pause)
            attempt += 1


def client_from_settings(settings: Settings, **overrides: Any) -> SaasClient:
    def credentials(guid: str) -> Credentials | None:
        pair = settings.credentials_for(guid)
        return None if pair is None else Credentials(*pair)

    options: dict[str, Any] = {
        "timeout": settings.saas_timeout,
        "retries": settings.saas_retries,
        "rate": settings.saas_rate,
        **overrides,
    }
    return SaasClient(settings.saas_base_url, credentials, **options)
