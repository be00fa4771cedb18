"""The web viewer at ``/``: one page, its script and style, and signing in with an API token.

The page holds no data; its script reads the same ``/api/*`` routes as anyone, with the token
kept in an HttpOnly, SameSite=Strict cookie (the edge accepts it in place of the header). The
page's Content-Security-Policy allows only its own script and style, so even text that escaped
the script's escaping could not run.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from juhe_sync import __version__
from juhe_sync.errors import InvalidParams, Unauthorized
from juhe_sync.web.body import read_body
from juhe_sync.web.edge import SESSION_COOKIE
from juhe_sync.web.i18n import LANGUAGES, STRINGS, pick_language

LANGUAGE_COOKIE = "juhe_sync_lang"
#: Seconds a sign-in lasts in the browser.
SESSION_SECONDS = 7 * 24 * 3600
#: A sign-in body: one token.
MAX_SESSION_BODY = 4096

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=PackageLoader("juhe_sync.web", "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(packages=[("juhe_sync.web", "static")])


@router.get("/")
async def page(request: Request) -> Response:
    language = pick_language(
        request.query_params.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
    )
    html = _templates.get_template("index.html").render(
        lang=language,
        t=STRINGS[language],
        languages=LANGUAGES,
        version=__version__,
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.post("/session", status_code=204)
async def sign_in(request: Request) -> Response:
    """Body ``{"token": "..."}``: a valid API token becomes the browser's session cookie."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # A form or text/plain body is what a cross-site page can post without asking first.
        raise InvalidParams("send the token as application/json")
    try:
        body: Any = json.loads(await read_body(request, MAX_SESSION_BODY))
    except ValueError:
        raise InvalidParams('send {"token": "<API token>"}') from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise InvalidParams('send {"token": "<API token>"}')
    auth = request.app.state.auth
    if (
        await asyncio.to_thread(auth.required)
        and await asyncio.to_thread(auth.authenticate, token.strip()) is None
    ):
        raise Unauthorized("the API token is not valid")
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE, token.strip(), max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict",
        secure=_https(request),
    )  # fmt: skip
    return response


@router.delete("/session", status_code=204)
async def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_https(request))
    return response


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"
