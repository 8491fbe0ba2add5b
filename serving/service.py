"""The carerisk scoring service: a BentoML 1.4 service with its HTTP API under /v1.

Start it with `carerisk serve` (which imports the champions and checks them first). Every route
but BentoML's health probes (/livez, /readyz) needs an API key; every scoring answer is audited
before it is returned, and none is returned when the audit cannot be written (503).

Probabilities are calibrated fractions from 0 to 1. FHIR `probabilityDecimal` uses the same
scale (see serving/fhir.py).
"""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match

from serving import timeouts
from serving.api import V1
from serving.cds_hooks import build_cds_app
from serving.config import ServingConfig
from serving.refusals import Refusal, group_access_lines
from serving.request_guard import RequestGuard
from serving.request_metrics import Metrics
from serving.roles import ROUTE
from serving.routes import v1_routers
from serving.state import build_state
from serving.ui import build_ui_app
from serving.watch import Reloads, watch

log = logging.getLogger("carerisk.serving")

api = FastAPI(
    title="carerisk scoring API",
    version="1",
    description=(
        "Calibrated risk of each outcome served (GET /v1/outcomes lists them with their cohorts), "
        "with each person's top reasons from TreeSHAP in plain words. Authenticate with "
        "`Authorization: Bearer <key>`. Probabilities are fractions from 0 to 1, also in FHIR "
        "RiskAssessment.prediction.probabilityDecimal. The fire role receives band, rank and "
        "non-clinical reasons only."
    ),
    docs_url=None,  # the Swagger page loads scripts from a CDN; /v1/openapi.json is served
    redoc_url=None,
    openapi_url=ROUTE["openapi"].path.removeprefix(V1),
)


ERROR_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field's path, never its value (the request guard audits it)."""
    errors = [
        {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    return JSONResponse(
        {"error": "invalid_request", "message": "the request does not fit", "fields": errors},
        status_code=422,
    )


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Every HTTP error, FastAPI's and Starlette's (400, 405), as an ErrorBody."""
    detail: Any = exc.detail
    if not isinstance(detail, dict):
        code = ERROR_NAMES.get(exc.status_code, f"http_{exc.status_code}")
        detail = {"error": code, "message": str(detail)}
    headers = exc.headers
    if exc.status_code == 405:  # every method the path takes, not only the first route's
        headers = {**(headers or {}), "Allow": ", ".join(_methods_of(request))}
    return JSONResponse(detail, status_code=exc.status_code, headers=headers)


def _methods_of(request: Request) -> list[str]:
    """The methods the routes at this request's path answer (GET and POST /v1/referrals are two
    routes, and Starlette's 405 names only the first)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected %s on %s", type(exc).__name__, request.url.path)
    return JSONResponse({"error": "internal", "message": "unexpected error"}, status_code=500)


# uvicorn's protocol with a header read timeout (serving/timeouts.py): in effect in the process
# that imports the service, which is the BentoML worker, before its server starts.
timeouts.install()


@bentoml.service(
    name="carerisk",
    traffic={"timeout": 30},
    metrics={"enabled": False},  # it labels series by raw path; serving/request_metrics.py
)
@bentoml.asgi_app(api, path="/v1")
@bentoml.asgi_app(build_ui_app(), path="/ui")  # practitioner pages (serving/ui.py)
@bentoml.asgi_app(build_cds_app(api), path="/")  # CDS Hooks: only /cds-services (cds_hooks.py)
class CareRisk:
    """Loads the verified champions and opens their scores exports at the latest snapshot, adds
    the routes for the outcomes served (serving/routes.py), then answers; a reload swaps in new
    champions and a new snapshot's scores while it answers (serving/watch.py)."""

    def __init__(self) -> None:
        logging.getLogger("carerisk").setLevel(logging.INFO)  # counts and names, no people
        group_access_lines()  # a refusal counted in a group is one log line a group
        config = ServingConfig.from_env()
        self.state = build_state(config)
        self.state.metrics = Metrics()
        # reloads swap the scorer while the service answers (serving/swap.py, serving/watch.py)
        self.state.reloads = Reloads(self.state.holder, config, self.state.outcomes, frozen=True)
        self._stop_watching = threading.Event()
        timeouts.SETTINGS.seconds = config.header_timeout_seconds
        timeouts.SETTINGS.max_bytes = config.max_head_bytes
        timeouts.SETTINGS.max_headers = config.max_headers
        timeouts.SETTINGS.on_refused = self._head_refused
        for routes in v1_routers(self.state.outcomes, config):
            api.include_router(routes)
        api.state.carerisk = self.state  # last: the request guard serves /v1 once the state is here
        # The state's long-lived objects (champions, keys, routes) never become garbage; kept out
        # of the collector's full passes, they do not stall requests. A reload unfreezes,
        # collects the old state and freezes again.
        gc.freeze()
        watch(self.state.reloads, self._stop_watching)

    def _head_refused(self, client: str, audited: bool, status: int) -> None:
        """A head refused by the server protocol (408, 431), audited in groups."""
        if audited:
            refusal = Refusal(client, "unknown", status, "none", "unchecked")
            # in a context of its own: the connection's callbacks share theirs
            contextvars.copy_context().run(self.state.refusals.add, refusal)

    @bentoml.on_shutdown
    async def _flush_audit(self) -> None:
        """Stop watching for reloads; write the refusals still counted, then what the audit
        writer holds."""
        self._stop_watching.set()
        await self.state.refusals.close()
        self.state.writer.close()


# Every request passes the request guard first (serving/request_guard.py): what the origin serves,
# who may call, body limits and timeouts, the audit of every /v1 answer, headers and metrics.
CareRisk.add_asgi_middleware(RequestGuard, api=api)  # type: ignore[attr-defined]
