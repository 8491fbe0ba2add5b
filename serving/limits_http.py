"""An ASGI middleware that refuses request bodies over a size limit with 413."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

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
            await _too_large(send, limit)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise body_too_large(limit)
            return message

        await self.app(scope, counted, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {"error": "body_too_large", "message": f"request bodies are limited to {limit} bytes"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
