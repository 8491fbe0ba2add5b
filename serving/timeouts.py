"""A header read timeout for the HTTP server: a connection that has not sent a whole request
head (request line and headers) within `SETTINGS.seconds` of opening, or of starting a request,
is answered 408 and closed.

uvicorn has no such timeout (a connection that trickles its headers is held as long as it
likes), and BentoML builds uvicorn's configuration itself with the default protocol ("auto").
uvicorn reads which class "auto" means from `uvicorn.config.HTTP_PROTOCOLS` when the server
starts, which in a BentoML worker is after the service module is imported; `install` points it
at `HeaderTimeoutProtocol`, uvicorn's own httptools protocol with a timer added. The body read
timeout is the gate's (serving/gate.py): it is an ASGI matter. tests/serving/test_hardening.py
holds both to a real server over a raw socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "serving.timeouts:HeaderTimeoutProtocol"
TIMEOUT_BODY = json.dumps(
    {"error": "request_timeout", "message": "the request head was not received in time"}
).encode()


@dataclass
class HeadTimeout:
    """The timeout and who to tell (client address, whether the path was under /v1): set by
    the service from its config when it starts, before it accepts connections."""

    seconds: float = 10.0
    on_timeout: Callable[[str, bool], None] | None = None


SETTINGS = HeadTimeout()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 408 to a request head that takes too long."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(SETTINGS.seconds, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if SETTINGS.on_timeout is not None:
            url = getattr(self, "url", b"") or b""
            client = self.client[0] if self.client else "unknown"
            SETTINGS.on_timeout(client, url.startswith(b"/v1"))
        head = (
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(TIMEOUT_BODY)).encode() + b"\r\n"
            b"cache-control: no-store\r\n"
            b"x-content-type-options: nosniff\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + TIMEOUT_BODY)
        self.transport.close()


def install() -> None:
    """Make uvicorn's default protocol ("auto") this one, in the process that serves."""
    from uvicorn import config

    config.HTTP_PROTOCOLS["auto"] = PROTOCOL
