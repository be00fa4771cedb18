"""Who may do what: API tokens, their device scopes, and callback secrets. Knows no HTTP.

API tokens are random 256-bit strings; the database keeps only their SHA-256, so a stolen backup
holds no usable token. A lookup by that hash cannot leak the token through timing (an attacker
controls the token, not its hash); the operator's ``JUHE_SYNC_API_TOKEN`` and callback secrets are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

from juhe_sync.errors import ApiError, Forbidden, InvalidParams, NotFound
from juhe_sync.records import TokenRecord
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import now_iso

log = logging.getLogger("juhe_sync.service.access")

TOKEN_PREFIX = "jst_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Seconds a token lookup (and whether any token exists) is remembered: a revoked token stops
#: working within this time in every process.
CACHE_SECONDS = 2.0
#: Seconds between two writes of a token's ``last_used_at``.
TOUCH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    #: None: every device.
    guids: frozenset[str] | None
    admin: bool

    def may_read(self, guid: str) -> bool:
        return self.guids is None or guid in self.guids

    def require_device(self, guid: str) -> None:
        if not self.may_read(guid):
            raise Forbidden(f"this token may not read device {guid}")

    def require_admin(self, action: str) -> None:
        if not self.admin:
            raise Forbidden(f"only an admin token may {action}")


#: Who calls when no token is configured: the server is then reachable from loopback only
#: (``serve`` refuses anything else without ``--insecure``).
OPEN = Principal("open", None, True)
OPERATOR = Principal("JUHE_SYNC_API_TOKEN", None, True)
#: Who calls a public route (probes, /callback, the viewer's page): no device, no admin.
ANONYMOUS = Principal("anonymous", frozenset(), False)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def same_secret(presented: str | None, expected: str) -> bool:
    if presented is None or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def any_secret(presented: str | None, expected: list[str]) -> bool:
    """Whether ``presented`` is one of ``expected``; every one is compared, so timing tells nothing."""
    matches = [same_secret(presented, secret) for secret in expected]
    return any(matches)


def _principal(record: TokenRecord) -> Principal:
    return Principal(record.name, None if record.guids is None else frozenset(record.guids), record.admin)


class Authenticator:
    """Turns a presented bearer token into a :class:`Principal`. Blocking: call it off the event loop
    when :meth:`cached` has no answer."""

    def __init__(self, store: SQLStore, api_tokens: list[str] | None = None):
        self.store = store
        self.api_tokens = api_tokens or []
        self._lock = threading.Lock()
        self._tokens: dict[bytes, tuple[float, Principal | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)
        self._touched: dict[str, float] = {}

    def forget(self) -> None:
        """Drop what is cached, after a token was created or revoked in this process."""
        with self._lock:
            self._tokens.clear()
            self._any = (0.0, False)

    def required_cached(self) -> bool | None:
        """Whether a token is required, if known without I/O."""
        if self.api_tokens:
            return True
        expires, value = self._any
        return value if expires > time.monotonic() else None

    def required(self) -> bool:
        """A token is required once ``JUHE_SYNC_API_TOKEN`` is set or the database holds a token."""
        known = self.required_cached()
        if known is not None:
            return known
        value = self.store.count_tokens() > 0
        self._any = (time.monotonic() + CACHE_SECONDS, value)
        return value

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal) without I/O."""
        if any_secret(token, self.api_tokens):
            return True, OPERATOR
        entry = self._tokens.get(hash_token(token))
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def authenticate(self, token: str) -> Principal | None:
        known, principal = self.cached(token)
        if known:
            self._touch(principal)
            return principal
        digest = hash_token(token)
        found = self.store.token_by_hash(digest)
        principal = None
        if found is not None and hmac.compare_digest(found[1], digest):
            principal = _principal(found[0])
        with self._lock:
            if len(self._tokens) > 10_000:  # random tokens sprayed at us must not grow memory
                self._tokens.clear()
            self._tokens[digest] = (time.monotonic() + CACHE_SECONDS, principal)
        self._touch(principal)
        return principal

    def _touch(self, principal: Principal | None) -> None:
        if principal is None or principal is OPERATOR:
            return
        now = time.monotonic()
        if now - self._touched.get(principal.name, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[principal.name] = now
        try:
            self.store.touch_token(principal.name, now_iso())
        except Exception as exc:  # bookkeeping only: never fail a request over it
            log.warning("could not record the use of token %s: %s", principal.name, exc)


class TokenAdmin:
    """Creating, listing and revoking API tokens (the CLI and the admin routes)."""

    def __init__(self, store: SQLStore):
        self.store = store

    def create(self, name: str, guids: list[str] | None, admin: bool) -> tuple[str, TokenRecord]:
        """A new token: (the token, shown once and never stored, and its record)."""
        if not _NAME.match(name):
            raise InvalidParams(
                "token name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        scope = None
        if admin and guids is not None:
            # An admin manages tokens, so it could always mint itself a wider one: it covers all.
            raise InvalidParams("an admin token covers every device: leave out guids (or --guid)")
        if guids is not None:
            if not guids:
                raise InvalidParams("guids: name at least one device, or leave it out for every device")
            scope = [g.strip() for g in guids]
            if any(not g or not g.isprintable() or len(g) > 256 for g in scope):
                raise InvalidParams("every guid must be printable text of at most 256 characters")
        token = new_token()
        record = self.store.create_token(name, hash_token(token), scope, admin)
        if record is None:
            raise ApiError(f"a token named {name} exists; revoke it first", status=409, code="CONFLICT")
        return token, record

    def list(self) -> list[TokenRecord]:
        return self.store.list_tokens()

    def revoke(self, name: str) -> None:
        if not self.store.revoke_token(name):
            raise NotFound(f"no token named {name}")


class CallbackSecrets:
    """Which secret a callback must carry in ``?token=``: the device's own if it has one, else the
    global one. When any is configured, a callback without the right one is refused."""

    def __init__(self, global_tokens: list[str], per_device: dict[str, str]):
        self.global_tokens = global_tokens
        self.per_device = per_device

    @property
    def required(self) -> bool:
        return bool(self.global_tokens or self.per_device)

    @property
    def needs_guid(self) -> bool:
        """Whether the device must be known (the body parsed) before the token can be judged."""
        return bool(self.per_device)

    def plausible(self, token: str | None) -> bool:
        """Whether ``token`` is any configured secret: checked before the body is read, so that a
        sender without one never gets as far as the parser (or a large body's turn)."""
        return any_secret(token, [*self.global_tokens, *self.per_device.values()])

    def accepts(self, token: str | None, guid: str | None = None) -> bool:
        if guid is not None and guid in self.per_device:
            return same_secret(token, self.per_device[guid])
        return any_secret(token, self.global_tokens)
