"""The request being answered, as the request guard (serving/request_guard.py) judged it: who is
calling from where, with which key, and whether a route handler has audited it yet.

The request guard sets it for every /v1 request before the handlers run; the audit functions read it
(to name the client and the key presented) and mark it audited, so the request guard writes a record
only for the answers no handler recorded. It also carries the service state the request uses,
pinned to the scorer served when the request was admitted (a reload swaps the scorer between
requests, never within one). A context variable carries it: handlers that run in
a worker thread see the same object (the context is copied, the object shared).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from serving.keys import Principal

# the key id a key text presents, crk_<id>_...: read without checking the rest (never the secret)
_PRESENTED_ID = re.compile(r"^crk_([0-9a-f]{12})_")


@dataclass
class Call:
    client: str  # the client's address (`TrustedProxies.client`)
    endpoint: str  # route name (serving.roles.ROUTE_ROLES) or "unknown"
    key_id: str  # the key id presented ("none" without one); verified only when key_check is ok
    key_check: str  # ok, missing, malformed, unknown, bad_secret, revoked, expired, unchecked
    principal: Principal | None = None
    audited: bool = False
    state: Any = None  # the ServiceState pinned to one scorer for this request (serving/state.py)


CURRENT: ContextVar[Call | None] = ContextVar("carerisk_call", default=None)


def current_call() -> Call | None:
    return CURRENT.get()


def mark_audited() -> None:
    call = CURRENT.get()
    if call is not None:
        call.audited = True


def presented_key_id(text: str | None) -> str:
    """The key id in a presented key's text, or "none"; the secret is never read."""
    match = _PRESENTED_ID.match(text or "")
    return match.group(1) if match else "none"


def bearer_key(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header value."""
    header = authorization or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed (none by default)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address: the socket's peer, unless the peer is a trusted proxy; then
        the right-most hop of X-Forwarded-For that is not a trusted proxy. A hop that is not an
        address ends the walk at the proxy that passed it on."""
        if not self.trusts(peer):
            return peer
        nearest = peer
        for hop in reversed(hops(forwarded_for)):
            if not _is_address(hop):
                return nearest
            if not self.trusts(hop):
                return hop
            nearest = hop
        return nearest


def hops(values: Sequence[str]) -> list[str]:
    """The addresses of X-Forwarded-For headers, in order (several headers are one list)."""
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
