"""Limits on the request head for the HTTP server: a connection that has not sent a whole
request head (request line and headers) within `SETTINGS.seconds` of opening, or of starting a
request, is answered 408 and closed; a head of more than `SETTINGS.max_bytes`, or with more than
`SETTINGS.max_headers` headers, is answered 431 and closed. The protocol also leaves out
uvicorn's proxy-header middleware, which believes X-Forwarded-For from loopback peers by
default: the request's `client` is the socket's peer, and the request guard alone decides which
forwarded addresses to believe (serving/calls.py), so a forged header reaches neither the
audit nor the access log.

uvicorn has no such timeout (a connection that trickles its headers is held as long as it
likes), and BentoML builds uvicorn's configuration itself with the default protocol ("auto").
uvicorn reads which class "auto" means from `uvicorn.config.HTTP_PROTOCOLS` when the server
starts, which in a BentoML worker is after the service module is imported; `install` points it
at `HeaderTimeoutProtocol`, uvicorn's own httptools protocol with a timer added. The body read
timeout is the request guard's (serving/request_guard.py): it is an ASGI matter.
tests/serving/test_hardening.py holds both to a real server over a raw socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "serving.timeouts:HeaderTimeoutProtocol"
REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
BODIES = {
    408: {"error": "request_timeout", "message": "the request head was not received in time"},
    431: {"error": "head_too_large", "message": "the request head is too large"},
}


OPEN_HEAD_FACTOR = 4  # an unfinished head is refused past four times the limit of a whole one
QUIET = logging.getLogger("carerisk.serving.refused_heads")
QUIET.disabled = True


class HeadRefused(Exception):
    """Raised from a parser callback to stop reading a head that was refused."""


@dataclass
class HeadLimits:
    """The limits and who to tell of a refusal (client address, whether the path was under
    /v1, the status): set by the service from its config when it starts, before it accepts
    connections."""

    seconds: float = 10.0
    max_bytes: int = 32_768
    max_headers: int = 100
    on_refused: Callable[[str, bool, int], None] | None = None  # (client, audited path, status)


SETTINGS = HeadLimits()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 408 to a request head that takes too long and
    431 to one that is too large."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _head_count = 0
    _open_bytes = 0  # bytes received since the head began (reset when it is complete)
    _refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(
            self.app, ProxyHeadersMiddleware
        ):  # the request guard reads forwarded addresses
            self.app = self.app.app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        # the parser gives a header only once it has ended: a head that never ends is bounded
        # by the bytes received while it is still open (a chunk may also hold the next head)
        if self._head_timer is not None and not self._refused:
            self._open_bytes += len(data)
            if self._open_bytes > OPEN_HEAD_FACTOR * SETTINGS.max_bytes:
                self._refuse(431)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refused head stops the parser; it has been answered
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._open_bytes = 0
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

    def _count(self, size: int, headers: int) -> None:
        self._head_bytes += size
        self._head_count += headers
        if self._head_bytes > SETTINGS.max_bytes or self._head_count > SETTINGS.max_headers:
            self._refuse(431)
            raise HeadRefused

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(408)

    def _refuse(self, status: int) -> None:
        """Answer `status` to this head, tell the service, and close the connection."""
        self._disarm()
        self._refused = True
        self.logger = QUIET  # the parser's complaint at being stopped is not news
        if SETTINGS.on_refused is not None:
            url = getattr(self, "url", b"") or b""
            client = self.client[0] if self.client else "unknown"
            SETTINGS.on_refused(client, url.startswith((b"/v1", b"/cds-services")), status)
        body = json.dumps(BODIES[status]).encode()
        head = (
            b"HTTP/1.1 %d %s\r\n"
            % (status, REASONS[status])
            + b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"cache-control: no-store\r\n"
            b"x-content-type-options: nosniff\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()


def install() -> None:
    """Make uvicorn's default protocol ("auto") this one, in the process that serves."""
    from uvicorn import config

    config.HTTP_PROTOCOLS["auto"] = PROTOCOL
