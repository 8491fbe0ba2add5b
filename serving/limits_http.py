"""An ASGI middleware that refuses request bodies over a size limit with 413, audited."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

from serving.api import ROUTE_NAMES, audit_async, presented_key

Scope = dict[str, Any]


def body_too_large(limit: int) -> HTTPException:
    """Raised while a streamed body arrives; FastAPI passes HTTP errors through its body parser
    (anything else it turns into a 400)."""
    return HTTPException(
        413,
        detail={
            "error": "body_too_large",
            "message": f"request bodies are limited to {limit} bytes",
        },
    )


class BodyLimit:
    """Refuse bodies larger than `max_bytes` (from the service's config when it has started)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.default = max_bytes

    def _limit(self, scope: Scope) -> int:
        state = getattr(getattr(scope.get("app"), "state", None), "carerisk", None)
        return int(state.config.max_body_bytes) if state is not None else self.default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            try:
                await _audit_refusal(scope)
            except HTTPException as error:  # the audit cannot be written: 503
                await _answer(send, error.status_code, error.detail)
                return
            await _answer(send, 413, body_too_large(limit).detail)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    await _audit_refusal(scope)
                    raise body_too_large(limit)
            return message

        await self.app(scope, counted, send)


async def _audit_refusal(scope: Scope) -> None:
    """One audit record of the refusal, naming the caller when the key is valid."""
    state = getattr(getattr(scope.get("app"), "state", None), "carerisk", None)
    if state is None:  # the service has not started; nothing is answered but 503 anyway
        return
    request = Request(scope)
    principal = state.keys.check(presented_key(request) or "").principal
    route = ROUTE_NAMES.get(request.url.path, "unknown")
    await audit_async(state, principal, route, "refused", 413)


async def _answer(send: Any, status: int, detail: Any) -> None:
    body = json.dumps(detail).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
