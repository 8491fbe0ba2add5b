"""The request guard: one ASGI middleware in front of everything the service's origin answers.

BentoML adds it around its own routing (`add_asgi_middleware`, serving/service.py), so it sees
every request, and it is the one place that decides:

- **What the origin serves**: the API under /v1, the pages under /ui/, BentoML's probes
  /livez and /readyz (open: they say only whether the process is up and ready), and /metrics
  (a key whose role may read metrics). `/` and `/ui` redirect to `/ui/` with a relative
  Location (the Host header is never echoed). Everything else, BentoML's index, docs, schema
  and static files included, is 404.
- **Who is calling from where**: the client's address is the socket's peer, unless that peer
  is a trusted proxy (`trusted_proxies`, none by default); only then is X-Forwarded-For read,
  right-most untrusted hop first (serving/calls.py `TrustedProxies`).
- **Who may call /v1**, before any body is read or validated: the key is checked first (one
  SHA-256, bench/bench_bad_keys.py); a key that verifies is limited only by its own rate (429)
  and its role for the route (serving/roles.py, 403), whatever its address has done. A call
  without a key that verifies counts against its address's failed authentications: 401 while
  the address is within them, 429 once it is over. A request to a /v1 path that does not exist
  is 404 for a valid key and 401 for anyone else.
- **How the body is read**: within the byte limit (413; POST /v1/score/records has a limit of
  its own, `records_limit`, that fits a full batch) and within `body_timeout_seconds` for
  the whole body (408, audited); then handed to the route already read.
- **That every /v1 answer is audited**: refusals that disclose nothing (401, 429, 408) are
  counted in groups (serving/refusals.py); everything else a route handler did not record
  (403, 404, 405, 400, 413, 422, the OpenAPI document, errors) gets one record, written
  before the answer leaves, naming the key id presented and the client's address. A handler
  that audited marks the request (serving/calls.py), so no answer gets a second record.
- **The headers**: `Cache-Control: no-store` and `X-Content-Type-Options: nosniff` on every
  answer, no `Server` header, and every error under /v1 in the one `ErrorBody` shape.
- **Metrics**: one count and one latency per answer, labelled by route template.
- **One scorer per request**: the state a request is answered from is pinned to the scorer
  served when it arrived (serving/state.py `pin`), so a reload never splits a request.
- **CDS Hooks** (/cds-services, serving/cds_hooks.py): no API key; the client's signed JWT
  (serving/jwt_auth.py) is checked here before the body is read, for the audience of the
  service's own address (`public_url`, else the address it was started on, never the Host
  header; without either the CDS routes are off, 404). A refused token counts against the
  address's failed authentications and is audited in groups like a refused key; then the body
  limit and deadline, and the route gets the client's principal on the call.

Nothing here leaves the event loop but the check of a CDS token (a signature and a write of its
id against replay, in a thread): the key check is one SHA-256, the limits are in memory, and the
one audit write it may make goes through the service's audit writer like a route's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any

from serving.api import audit_entry
from serving.audit import AuditUnavailable
from serving.calls import CURRENT, Call, TrustedProxies, bearer_key, presented_key_id
from serving.cds_hooks import clients_at
from serving.jwt_auth import CdsClient, TokenRefused, bearer_token, verify_client_token
from serving.refusals import Refusal
from serving.request_metrics import route_label
from serving.roles import ROUTE, is_allowed, route_name
from serving.state import ServiceState
from serving.token_memory import used_tokens_at

log = logging.getLogger("carerisk.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROBES = frozenset({"/livez", "/readyz"})
CDS = "/cds-services"
RECORDS = ROUTE["score_records"].path  # the route whose body limit is records_body_bytes
PARAMETER = r"[^/\n]+"  # a path parameter as the mounted app's routing matches it
SECURITY_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
OUTCOMES = {
    400: "bad_request", 403: "forbidden", 404: "not_found", 405: "wrong_method",
    408: "timeout", 413: "refused", 415: "wrong_media_type", 422: "invalid", 431: "refused",
    429: "rate_limited", 500: "error", 503: "unavailable",
}  # fmt: skip
KEY_MESSAGES = {
    "expired": "this API key has expired; ask an administrator for a new one",
    "revoked": "this API key has been revoked",
}


def error(code: str, message: str) -> dict[str, str]:
    """An ErrorBody (serving/score_results.py) as plain data."""
    return {"error": code, "message": message}


NOT_FOUND = error("not_found", "nothing is served at this path")
STARTING = error("starting", "the service is starting")
UNAUDITED = error("audit_unavailable", "the audit trail cannot be written, so nothing is returned")
CDS_OFF = error(
    "cds_off", "CDS Hooks is off: the service listens on every address and has no --public-url"
)


class BodyRefused(Exception):
    def __init__(self, status: int, detail: dict[str, str]) -> None:
        super().__init__(detail["message"])
        self.status, self.detail = status, detail


class RequestGuard:
    """The service's ASGI middleware; `api` is the /v1 FastAPI app (it holds the state)."""

    def __init__(self, app: Any, api: Any) -> None:
        self.app = app
        self.api = api
        self._v1_paths: frozenset[str] = frozenset()
        self._templates: tuple[tuple[re.Pattern[str], str], ...] = ()
        self._proxies: TrustedProxies | None = None

    def state(self) -> ServiceState | None:
        return getattr(self.api.state, "carerisk", None)

    def client(self, state: ServiceState, scope: Scope) -> str:
        """The client's address: the socket's peer, or behind a trusted proxy the address it
        forwarded (serving/calls.py)."""
        if self._proxies is None:
            self._proxies = TrustedProxies(state.config.trusted_proxies)
        return self._proxies.client(_peer(scope), _headers(scope, b"x-forwarded-for"))

    def v1_paths(self) -> frozenset[str]:
        """The /v1 paths served: those the OpenAPI document lists, and the document itself
        (the routes are added when the service starts, before the state is set)."""
        if not self._v1_paths and self.state() is not None:
            paths = [*self.api.openapi()["paths"], self.api.openapi_url]
            self._v1_paths = frozenset("/v1" + path for path in paths)
            self._templates = tuple(
                (re.compile(re.sub(r"\\\{[^/]+?\\\}", lambda _: PARAMETER, re.escape(path))), path)
                for path in self._v1_paths
                if "{" in path
            )
        return self._v1_paths

    def template_of(self, path: str) -> str | None:
        """The /v1 path template a path answers to (`/v1/referrals/{referral_id}`), or None."""
        if path in self.v1_paths():
            return path
        return next((t for pattern, t in self._templates if pattern.fullmatch(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), [0]

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = _secured(message.get("headers") or [])
            await send(message)

        try:
            await self._route(scope, receive, sent)
        except Exception as exc:  # noqa: BLE001 - logged by type only: no values, no traceback
            log.error("unexpected %s answering %s", type(exc).__name__,
                      route_label(scope["path"], self.v1_paths()))  # fmt: skip
            if not status[0]:
                await answer(sent, 500, error("internal", "unexpected error"))
        finally:
            self._observe(scope, status[0] or 500, time.perf_counter() - began)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in PROBES or path.startswith("/ui/"):
            await self.app(scope, receive, send)
        elif path in ("/", "/ui"):
            await answer(send, 307, None, [(b"location", b"/ui/")])
        elif path == ROUTE["metrics"].path:
            await self._metrics(scope, send)
        elif path == "/v1" or path.startswith("/v1/"):
            await self._v1(scope, receive, send)
        elif path == CDS or path.startswith(CDS + "/"):
            await self._cds(scope, receive, send)
        else:
            await answer(send, 404, NOT_FOUND)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        state = self.state()
        if state is not None and state.metrics is not None:
            path = scope["path"]
            route = route_label(self.template_of(path) or path, self.v1_paths())
            state.metrics.observe(route, scope.get("method", ""), status, seconds)

    # --- /v1 --------------------------------------------------------------------------

    async def _v1(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = self.state()
        if served is None:
            await answer(send, 503, STARTING)
            return
        state = served.pin()  # one scorer for the whole request, whatever a reload swaps
        path = scope["path"]
        known = self.template_of(path) is not None
        endpoint = route_name(scope.get("method", ""), path)
        call = await self._admit(state, scope, endpoint, send)
        if call is None:
            return
        call.state = state
        token = CURRENT.set(call)
        try:
            await self._v1_call(state, scope, receive, send, call, known)
        finally:
            CURRENT.reset(token)

    async def _v1_call(
        self, state: ServiceState, scope: Scope, receive: Receive, send: Send, call: Call,
        known: bool,
    ) -> None:  # fmt: skip
        if not known:
            await self._refuse(state, call, send, 404, NOT_FOUND)
            return
        limit = state.config.records_limit if scope["path"] == RECORDS else None
        try:
            body = await read_body(scope, receive, limit or state.config.max_body_bytes,
                                   state.config.body_timeout_seconds)  # fmt: skip
        except BodyRefused as refused:
            await self._refuse(state, call, send, refused.status, refused.detail, close=True)
            return
        if body is None:  # the client went away
            return
        await self.app(scope, replay(body, receive), self._audited(state, call, send))

    def _audited(self, state: ServiceState, call: Call, send: Send) -> Send:
        """`send` that first audits an answer no route handler recorded."""
        swallow = False

        async def audited(message: Message) -> None:
            nonlocal swallow
            if swallow:
                return
            if message["type"] == "http.response.start" and not call.audited:
                status = message["status"]
                if not await self._record(state, call, status) and status != 503:
                    swallow = True
                    await answer(send, 503, UNAUDITED)
                    return
            await send(message)

        return audited

    async def _record(self, state: ServiceState, call: Call, status: int) -> bool:
        """One audit record of this answer; False when it cannot be written."""
        outcome = OUTCOMES.get(status, "ok" if status < 400 else "refused")
        entry = audit_entry(state, call.principal, call.endpoint, outcome, status, call=call)
        try:
            await state.writer.append_async(entry)
        except AuditUnavailable:
            log.error("audit store unavailable; refusing to answer %s", call.endpoint)
            return False
        call.audited = True
        return True

    async def _refuse(
        self, state: ServiceState, call: Call, send: Send, status: int,
        detail: dict[str, str], *, close: bool = False,
    ) -> None:  # fmt: skip
        """Refuse a request from a valid key: audited before the answer."""
        if not await self._record(state, call, status):
            await answer(send, 503, UNAUDITED)
            return
        extra = [(b"connection", b"close")] if close else []
        await answer(send, status, detail, extra)

    # --- who may call ----------------------------------------------------------------------

    async def _admit(
        self, state: ServiceState, scope: Scope, endpoint: str, send: Send
    ) -> Call | None:
        """The call when the key, rate and role allow it; else answer and None. A key that does
        not verify counts against the address's failed authentications (429 when over)."""
        client = self.client(state, scope)
        presented = bearer_key(_header(scope, b"authorization"))
        key_id = presented_key_id(presented)
        check = state.keys.check(presented or "")
        call = Call(client, endpoint, key_id, "missing" if presented is None else check.reason,
                    check.principal)  # fmt: skip
        principal = check.principal
        if principal is None:
            message = KEY_MESSAGES.get(call.key_check, "a valid API key is needed "
                                       "(Authorization: Bearer <key>)")  # fmt: skip
            await self._unauthenticated(state, send, Refusal(client, endpoint, 401, key_id,
                                        call.key_check), message, b"Bearer")  # fmt: skip
            return None
        if not state.limiter.allow(principal.key_id):
            wait = state.limiter.retry_after(principal.key_id)
            state.refusals.add(Refusal(client, endpoint, 429, key_id, "ok", principal.org,
                                       principal.role))  # fmt: skip
            await answer(send, 429, error("rate_limited", _retry(wait)), _retry_after(wait))
            return None
        if endpoint != "unknown" and not is_allowed(endpoint, principal.role):
            detail = error("forbidden", f"the {principal.role} role may not use {endpoint}")
            await self._refuse(state, call, send, 403, detail)
            return None
        return call

    async def _unauthenticated(
        self, state: ServiceState, send: Send, refusal: Refusal, message: str, scheme: bytes
    ) -> None:
        """Refuse a call with no credential that verifies: 401 while its address is within its
        failed authentications, 429 once over; audited in groups."""
        client = refusal.client
        if not state.address_limiter.allow(client):
            wait = state.address_limiter.retry_after(client)
            state.refusals.add(replace(refusal, status=429))
            await answer(send, 429, error("rate_limited", _retry(wait)), _retry_after(wait))
            return
        state.refusals.add(refusal)
        await answer(send, 401, error("unauthenticated", message),
                     [(b"www-authenticate", scheme)])  # fmt: skip

    # --- CDS Hooks ----------------------------------------------------------------------------

    async def _cds(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A CDS Hooks call: the client's JWT, the limits and the body here; the hook itself in
        serving/cds_hooks.py."""
        state = self.state()
        if state is None:
            await answer(send, 503, STARTING)
            return
        if scope.get("method") == "OPTIONS":  # a CORS preflight: no body, no credentials
            await self.app(scope, receive, send)
            return
        own = with_cors(send, _header(scope, b"origin"), state.config.cds_cors_origins)
        base = state.config.base_url
        if not base:
            await answer(own, 404, CDS_OFF)
            return
        client = self.client(state, scope)
        endpoint = "cds_discovery" if scope["path"].rstrip("/") == CDS else "cds_service"
        authorization = _header(scope, b"authorization")
        try:
            found = await cds_client(state, authorization, base + scope["path"])
        except TokenRefused as refusal:
            check = "missing" if authorization is None else "bad_jwt"
            await self._unauthenticated(state, own, Refusal(client, endpoint, 401, "none",
                                        check), str(refusal), b"Bearer")  # fmt: skip
            return
        who = found.principal()
        try:
            body = await read_body(scope, receive, state.config.max_body_bytes,
                                   state.config.body_timeout_seconds)  # fmt: skip
        except BodyRefused as refused:
            state.refusals.add(Refusal(client, endpoint, refused.status, who.key_id,
                                       "client_jwt", who.org, who.role))  # fmt: skip
            await answer(own, refused.status, refused.detail, [(b"connection", b"close")])
            return
        if body is None:
            return
        call = Call(client, endpoint, who.key_id, "client_jwt", who, state=state.pin())
        token = CURRENT.set(call)
        try:
            await self.app(scope, replay(body, receive), send)
        finally:
            CURRENT.reset(token)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        state = self.state()
        if state is None or state.metrics is None:
            await answer(send, 503, STARTING)
            return
        if await self._admit(state, scope, "metrics", send) is None:
            return
        body, media_type = state.metrics.exposition()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


# --- helpers -----------------------------------------------------------------------------


def with_cors(send: Send, origin: str | None, allowed: tuple[str, ...]) -> Send:
    """`send` for the request guard's own CDS answers: readable by an allowed browser origin, as the
    CDS app's answers are (its CORS middleware adds the same)."""
    if origin is None or origin not in allowed:
        return send

    async def readable(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")),
                     (b"vary", b"Origin")]  # fmt: skip
            message["headers"] = [*(message.get("headers") or []), *extra]
        await send(message)

    return readable


async def cds_client(state: ServiceState, authorization: str | None, audience: str) -> CdsClient:
    """The registered CDS client whose JWT the call carries, for `audience`; TokenRefused
    otherwise. A call without a token is refused at once; a token is checked in a thread (its
    id is written against replay)."""
    token = bearer_token(authorization or "")
    clients = clients_at(state.config.layout.cds_clients_path)
    first_use = used_tokens_at(state.config.layout.referrals_path).first_use
    found, _ = await asyncio.to_thread(verify_client_token, token, clients, audience, first_use)
    return found


async def read_body(scope: Scope, receive: Receive, limit: int, seconds: float) -> bytes | None:
    """The whole body: over `limit` bytes is 413, not all there within `seconds` of the first
    wait is 408 (however it is dripped); None when the client disconnected."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, _too_large(limit))
    parts, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                part = message.get("body", b"")
                size += len(part)
                if size > limit:
                    raise BodyRefused(413, _too_large(limit))
                parts.append(part)
                if not message.get("more_body", False):
                    return b"".join(parts)
    except TimeoutError:
        raise BodyRefused(
            408, error("request_timeout", f"the body did not arrive within {seconds:g} s")
        ) from None


def _too_large(limit: int) -> dict[str, str]:
    return error("body_too_large", f"request bodies are limited to {limit} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then whatever comes next (a disconnect)."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def answer(
    send: Send,
    status: int,
    detail: dict[str, str] | None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A JSON answer (an ErrorBody) or, without detail, an empty one."""
    body = json.dumps(detail).encode() if detail is not None else b""
    head = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    if detail is not None:
        head.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers without `server`, with no-store and nosniff unless already set."""
    kept = [(k, v) for k, v in headers if k.lower() != b"server"]
    names = {k.lower() for k, _ in kept}
    return kept + [(k, v) for k, v in SECURITY_HEADERS if k not in names]


def _peer(scope: Scope) -> str:
    """The socket's peer (uvicorn's proxy headers are left out: serving/timeouts.py)."""
    return str((scope.get("client") or ("unknown",))[0] or "unknown")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers") or [] if k == name]


def _retry(wait: float) -> str:
    return f"too many requests; retry in {max(1, round(wait))}s"


def _retry_after(wait: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(max(1, round(wait))).encode())]
