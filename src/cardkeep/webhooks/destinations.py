"""Where webhooks may go (CONTRACT §8.1): the URL rules, checked at subscription and again at
delivery, against the addresses the host resolves to.

Prod accounts: ``https://`` only, and no address that is loopback, private, link-local (which
holds the cloud metadata address 169.254.169.254), multicast, reserved or unspecified, unless a
network allow-listed in configuration holds it. Sandbox accounts may also use ``http://`` and
loopback hosts, so merchants can test on their machine. ``resolve`` returns the address it
checked, and the dispatcher connects to exactly that address (no second lookup, so a name that
re-binds between the check and the connection cannot slip through). The resolver is a seam:
tests make any name resolve to any address without touching the network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cardkeep.domain.account import Mode
from cardkeep.domain.errors import UrlNotAllowed

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

# Link-local holds AWS/GCP/Azure's 169.254.169.254; these are the others clouds use.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to ``address``, speak to ``host``."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{literal}:{self.port}"
        rest = parts.path or "/"
        if parts.query:
            rest += "?" + parts.query
        return f"{self.scheme}://{netloc}{rest}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


class DestinationRules:
    def __init__(
        self, resolver: Resolver = system_resolver, allow: Sequence[IpNetwork] = ()
    ) -> None:
        self._resolver = resolver
        self._allow = tuple(allow)

    def check(self, url: str, mode: Mode) -> str:
        self.resolve(url, mode)
        return url

    def resolve(self, url: str, mode: Mode) -> Target:
        scheme, host, port = _parse(url, mode)
        try:
            literal: IpAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = list(self._resolver(host, port))
            except (OSError, UnicodeError):
                raise UrlNotAllowed(f"The host {host} does not resolve.") from None
            if not addresses:
                raise UrlNotAllowed(f"The host {host} does not resolve.")
        for text in addresses:  # every address must be allowed: any one may be used
            self._check_address(ipaddress.ip_address(text), host, mode)
        return Target(url, scheme, host, port, addresses[0])

    def _check_address(self, address: IpAddress, host: str, mode: Mode) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self._allow):
            return
        if mode is Mode.SANDBOX and address.is_loopback:
            return
        if _internal(address):
            raise UrlNotAllowed(
                f"The host {host} resolves to an internal address ({address}); webhooks go to "
                "public addresses only (a network can be allow-listed in configuration)."
            )


def _internal(address: IpAddress) -> bool:
    return (
        address in METADATA
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
    )


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public either


def _parse(url: str, mode: Mode) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlNotAllowed("The URL is not valid.") from None
    schemes = ("https", "http") if mode is Mode.SANDBOX else ("https",)
    if parts.scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise UrlNotAllowed(f"A webhook URL must start with {allowed}.")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("A webhook URL may not carry credentials.")
    if parts.fragment:
        raise UrlNotAllowed("A webhook URL may not carry a fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlNotAllowed("The URL names no host.")
    if host in LOOPBACK_NAMES and mode is not Mode.SANDBOX:
        raise UrlNotAllowed("Webhooks of prod accounts never go to localhost.")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def allow_list(text: str) -> list[IpNetwork]:
    """``CARDKEEP_WEBHOOK_ALLOW``: comma-separated networks (``10.0.0.0/8,fd00::/8``)."""
    nets = []
    for part in text.split(","):
        if part.strip():
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
    return nets
