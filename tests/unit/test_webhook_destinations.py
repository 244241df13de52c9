"""The destination rules of webhook URLs (CONTRACT §8.1), through the resolver seam: no name is
looked up on the network and no connection is opened."""

from __future__ import annotations

import ipaddress

import pytest

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import UrlNotAllowed
from cardkeep.webhooks.destinations import DestinationRules, allow_list

DNS = {
    "public.example.com": ["93.184.216.34"],
    "rebind.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": ["93.184.216.34", "10.1.2.3"],
    "v6.example.com": ["::ffff:10.0.0.1"],
    "localhost": ["127.0.0.1"],
}


def resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("no such name")
    return DNS[host]


RULES = DestinationRules(resolver)


def test_prod_goes_to_public_https_only() -> None:
    target = RULES.resolve("https://public.example.com/in?x=1", Mode.PROD)
    assert (target.address, target.port, target.host_header) == (
        "93.184.216.34",
        443,
        "public.example.com",
    )
    assert target.connect_url == "https://93.184.216.34:443/in?x=1"
    refused = [
        "http://public.example.com/in",
        "https://rebind.example.com/",
        "https://metadata.example.com/",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8/",
        "https://[::1]/",
        "https://[fd00:ec2::254]/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://mixed.example.com/",
        "https://v6.example.com/",
        "https://localhost/",
        "https://nowhere.example.com/",
        "https://user:pw@public.example.com/",
        "https://public.example.com/#frag",
        "https://public.example.com:99999/",
        "https:///nohost",
        "ftp://public.example.com/",
    ]
    for url in refused:
        with pytest.raises(UrlNotAllowed):
            RULES.resolve(url, Mode.PROD)


def test_sandbox_may_use_http_and_loopback_but_nothing_else_internal() -> None:
    assert RULES.check("http://localhost:8080/hook", Mode.SANDBOX) == "http://localhost:8080/hook"
    target = RULES.resolve("http://[::1]:9/x", Mode.SANDBOX)
    assert (target.connect_url, target.host_header) == ("http://[::1]:9/x", "[::1]:9")
    assert RULES.resolve("http://public.example.com/", Mode.SANDBOX).port == 80
    for url in ("http://10.0.0.1/", "http://metadata.example.com/", "ftp://localhost/"):
        with pytest.raises(UrlNotAllowed):
            RULES.resolve(url, Mode.SANDBOX)


def test_an_allow_listed_network_is_reachable() -> None:
    nets = allow_list("10.0.0.0/8, ,fd00::/8")
    assert nets == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    rules = DestinationRules(resolver, nets)
    assert rules.resolve("https://mixed.example.com/", Mode.PROD).address == "93.184.216.34"
    assert rules.resolve("https://v6.example.com/", Mode.PROD).address == "::ffff:10.0.0.1"
    with pytest.raises(UrlNotAllowed):
        rules.resolve("https://rebind.example.com/", Mode.PROD)
