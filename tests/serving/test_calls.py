"""The client's address: the socket's peer unless it is a trusted proxy."""

from __future__ import annotations

import pytest

from serving.calls import TrustedProxies
from serving.config import ServingConfig

PROXY = "10.0.0.5"


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert TrustedProxies().client("127.0.0.1", ["203.0.113.7"]) == "127.0.0.1"


def test_a_peer_that_is_not_a_trusted_proxy_is_the_client() -> None:
    proxies = TrustedProxies(["10.0.0.0/24"])
    assert proxies.client("192.0.2.9", ["203.0.113.7"]) == "192.0.2.9"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (["203.0.113.7"], "203.0.113.7"),
        (["198.51.100.1, 203.0.113.7"], "203.0.113.7"),  # the left is the client's to forge
        (["198.51.100.1", "203.0.113.7, 10.0.0.9"], "203.0.113.7"),  # two proxies, two headers
        (["10.0.0.8, 10.0.0.9"], "10.0.0.8"),  # every hop a proxy: the farthest
        (["not-an-address, 203.0.113.7"], "203.0.113.7"),
        (["203.0.113.7, garbage"], PROXY),  # a hop a proxy did not write: the proxy
        ([], PROXY),
    ],
)
def test_behind_trusted_proxies_the_right_most_untrusted_hop(
    forwarded: list[str], client: str
) -> None:
    assert TrustedProxies(["10.0.0.0/24"]).client(PROXY, forwarded) == client


def test_ipv6_proxies_and_clients() -> None:
    proxies = TrustedProxies(["fd00::/8"])
    assert proxies.client("fd00::1", ["2001:db8::7"]) == "2001:db8::7"
    assert proxies.client("2001:db8::9", ["2001:db8::7"]) == "2001:db8::9"


def test_a_trusted_proxy_must_be_an_address_or_network(tmp_path) -> None:
    with pytest.raises(ValueError, match="'proxy.example' is not an address or CIDR"):
        ServingConfig(home=tmp_path, tracking_uri="x", trusted_proxies=("proxy.example",))
    config = ServingConfig(home=tmp_path, tracking_uri="x", trusted_proxies=("10.0.0.0/8",))
    assert ServingConfig.from_env(config.to_env()).trusted_proxies == ("10.0.0.0/8",)
