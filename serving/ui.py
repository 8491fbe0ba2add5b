"""Practitioner pages under /ui: sign in, person view, register view.

The pages are static files shipped in `serving/static/` (plain HTML, CSS and one small script;
no external fonts, scripts or CDNs, no build step). They hold no data of their own: every score
a page shows is fetched by the browser from the same audited HTTP API under /v1 that other
callers use (`GET /v1/whoami`, `GET /v1/outcomes` for the outcomes' titles, cohorts and band
labels, `POST /v1/person`, `GET /v1/register`, and the register CSV from
`GET /v1/register?format=csv`, which `serving.risk_register` builds exactly as `carerisk register`
does). So a page view that shows a score is audited like any API call, scoped by the key's role,
and the numbers on the page are the API's numbers.

The API key is typed into the sign-in page and kept in the tab's `sessionStorage` (gone when the
tab closes); it is sent only as the `Authorization: Bearer` header of those requests, never put
in a cookie or a URL. The key field has no `name`, so even a form submitted without the script
cannot carry it anywhere. Every page is sent with a Content-Security-Policy that allows only
this origin, so the pages cannot load or send anything elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).resolve().parent / "static"

# URL path under /ui -> HTML file
PAGES: dict[str, str] = {
    "/": "signin.html",
    "/person": "person.html",
    "/register": "register.html",
    "/referrals": "referrals.html",  # the fire service's referral queue (referrals.js)
}
# the only other files served, with their media types
ASSETS: dict[str, str] = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "referrals.css": "text/css; charset=utf-8",
    "referrals.js": "text/javascript; charset=utf-8",
}

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def static_file(name: str, media_type: str) -> Response:
    """One shipped file with the security headers; 404 when the package lacks it."""
    path = STATIC / name
    if not path.is_file():
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)
    return Response(path.read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


def page(filename: str) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint serving one HTML page."""

    async def endpoint(request: Request) -> Response:
        return static_file(filename, "text/html; charset=utf-8")

    return endpoint


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)
    return static_file(name, ASSETS[name])


def build_ui_app() -> Starlette:
    """The pages as a small ASGI app, mounted by the service at /ui."""
    routes = [Route(path, page(filename), methods=["GET"]) for path, filename in PAGES.items()]
    routes.append(Route("/static/{name}", asset, methods=["GET"]))
    return Starlette(routes=routes)
