"""The guard in front of every route: allowed ``Host``, no cross-site writes, API tokens and their
device scope. A plain ASGI middleware (it sits on the callback path, which must stay cheap).

Every route needs a token unless it is listed in ``public``: a route added later is protected
without anyone remembering to protect it.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterable

from starlette.datastructures import QueryParams
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from juhe_sync.errors import ApiError, Forbidden, InvalidParams, ServerStarting, Unauthorized
from juhe_sync.logs import request_id
from juhe_sync.service.access import ANONYMOUS, OPEN, Authenticator, Principal
from juhe_sync.web.responses import error_response

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes only admin tokens may use at all: refused before their body is read.
ADMIN_PREFIXES = ("/api/tokens", "/api/sync")
#: Largest body of any route but ``/callback`` (which has JUHE_SYNC_MAX_BODY_BYTES).
MAX_API_BODY = 64 * 1024

#: The cookie of a browser signed in to the viewer: its API token (HttpOnly, SameSite=Strict),
#: and the route that sets it.
SESSION_COOKIE = "juhe_sync_token"
SESSION_PATH = "/session"


def split_host(value: str) -> tuple[str, str | None]:
    """``"Example.com:8070"`` -> ``("example.com", "8070")``; IPv6 stays bracketed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        rest = value[end + 1 :]
        if not rest:
            return value, None
        if rest.startswith(":") and rest[1:].isdigit() and rest[1:].isascii():
            return value[: end + 1], rest[1:]
        return value, None
    host, sep, port = value.rpartition(":")
    return (host, port) if sep and host and port.isdigit() and port.isascii() else (value, None)


class HostRule:
    """``*``, ``name``, ``name:port`` or ``*.domain`` (the domain's subdomains)."""

    def __init__(self, patterns: Iterable[str]):
        self.any = False
        self.exact: set[tuple[str, str | None]] = set()
        self.suffixes: list[str] = []
        for pattern in patterns:
            if pattern == "*":
                self.any = True
            elif pattern.startswith("*."):
                self.suffixes.append(pattern[1:])
            else:
                self.exact.add(split_host(pattern))

    def allows(self, value: str | None) -> bool:
        return self.any or self.listed(value)

    def listed(self, value: str | None) -> bool:
        """Named by a pattern other than ``*``."""
        if not value:
            return False
        host, port = split_host(value)
        if (host, None) in self.exact or (host, port) in self.exact:
            return True
        return any(host.endswith(suffix) for suffix in self.suffixes)


def principal_of(scope: Scope) -> Principal:
    """The caller of a request that passed the guard."""
    principal = scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else OPEN


class EdgeGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: HostRule,
        public: Iterable[str] = (),
        public_prefixes: tuple[str, ...] = (),
        unchecked_host: Iterable[str] = (),
    ):
        self.app = app
        self.hosts = hosts
        self.public = frozenset(public)
        self.public_prefixes = public_prefixes
        self.unchecked_host = frozenset(unchecked_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id.set(rid)
        rid_header = (b"x-request-id", rid.encode("ascii"))

        extra = [rid_header]
        if _under(scope["path"], ("/api",)):
            # Answers for one token (or one browser's cookie) are nobody else's to cache or keep.
            extra += [(b"cache-control", b"private, no-store"), (b"x-content-type-options", b"nosniff")]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            try:
                scope.setdefault("state", {})["principal"] = await self._admit(scope)
            except ApiError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                await error_response(exc, headers)(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)

    async def _admit(self, scope: Scope) -> Principal:
        host = origin = fetch_site = authorization = length = session = None
        hosts = 0
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cookie":
                # The viewer's session: the API token in an HttpOnly, SameSite=Strict cookie.
                token = cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE)
                if token:
                    session = f"Bearer {token}"
        path = scope["path"]
        # A bearer header wins; a proxy's own Authorization (Basic, say) leaves the cookie to us.
        by_cookie = session is not None and not (authorization or "").lower().startswith("bearer ")
        if by_cookie:
            authorization = session
        public = path in self.public or _under(path, self.public_prefixes)
        if hosts > 1:
            raise InvalidParams("more than one Host header")
        if path not in self.unchecked_host and not self.hosts.allows(host):
            raise InvalidParams(
                "Host not allowed: set JUHE_SYNC_ALLOWED_HOSTS to the names this server answers to"
            )
        if scope["method"] not in _SAFE_METHODS and _cross_site(origin, fetch_site, host, self.hosts):
            raise Forbidden("cross-site requests may not change anything")
        if scope["method"] not in _SAFE_METHODS and (by_cookie or path == SESSION_PATH):
            # A browser's writes: only from this very origin (a sibling subdomain an allowed-host
            # wildcard admits is same-site, so SameSite=Strict alone would let it through).
            require_same_origin(origin, fetch_site, host)
        if not public and scope["method"] not in _SAFE_METHODS:
            # Bodies of the API are small JSON; only /callback takes large ones (and its own limit).
            if chunked:
                raise ApiError("send a Content-Length with the body", status=411, code="LENGTH_REQUIRED")
            if length is not None and (not length.isdigit() or int(length) > MAX_API_BODY):
                raise ApiError(f"Body larger than {MAX_API_BODY} bytes", status=413, code="PAYLOAD_TOO_LARGE")
        if public:
            return ANONYMOUS
        # The application's lifespan opens the store and puts its authenticator in app.state.
        auth = getattr(scope["app"].state, "auth", None)
        if not isinstance(auth, Authenticator):
            raise ServerStarting()
        principal = await _authenticate(auth, authorization)
        if (
            not principal.admin
            and _under(path, ADMIN_PREFIXES)
            and scope["method"] not in ("HEAD", "OPTIONS")
        ):
            raise Forbidden("only an admin token may use this route")
        if principal.guids is not None:
            for guid in QueryParams(scope["query_string"]).getlist("guid"):
                principal.require_device(guid.strip())
        return principal


async def _authenticate(auth: Authenticator, authorization: str | None) -> Principal:
    required = auth.required_cached()
    if required is None:
        required = await asyncio.to_thread(auth.required)
    if not required:
        return OPEN
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("an API token is required: send Authorization: Bearer <token>")
    known, principal = auth.cached(token)
    if not known:
        principal = await asyncio.to_thread(auth.authenticate, token)
    if principal is None:
        raise Unauthorized("the API token is not valid")
    return principal


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """``path`` is one of ``prefixes`` or below it (whole segments: /api/sync-status is not /api/sync)."""
    return any(path == p or path.startswith(p + "/") for p in prefixes)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: The generator of request ids: its own, so that nothing seeding the shared one repeats them.
_IDS = random.Random()


def _request_id(scope: Scope) -> str:
    """The client's (or the proxy's) ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _REQUEST_ID.match(text):
                return text
            break
    # A label to find a request's log lines by, not a secret: the process's own generator is
    # enough, and costs no system call per request as uuid4's did (measured under load).
    return f"{_IDS.getrandbits(128):032x}"


def require_same_origin(origin: str | None, fetch_site: str | None, host: str | None) -> None:
    if fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("this request must come from the viewer's own page")
    if origin is None:
        return  # not a browser's cross-origin request (they all send Origin on writes)
    _, sep, authority = origin.strip().partition("://")
    if not sep or host is None or authority.split("/", 1)[0].lower() != host.strip().lower():
        raise Forbidden("this request must come from the viewer's own page")


def _cross_site(origin: str | None, fetch_site: str | None, host: str | None, hosts: HostRule) -> bool:
    if fetch_site == "cross-site":
        return True
    if origin is None:
        return False
    _, sep, authority = origin.strip().partition("://")
    if not sep:  # "null" (sandboxed frames, file: pages) or garbage
        return True
    authority = authority.split("/", 1)[0].lower()
    if host is not None and authority == host.strip().lower():
        return False
    # Behind a proxy the Host may be the upstream's; an origin the operator allowed is ours.
    return not hosts.listed(authority)
