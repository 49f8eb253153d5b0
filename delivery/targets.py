"""Where webhooks may be sent: nowhere inside the network Crier runs in.

A webhook URL is chosen by a person, and Crier calls it from inside its own network: without these
checks it could be pointed at Redis, PostgreSQL, a cloud's metadata service (and its credentials) or
any service behind the firewall. Refused, when an endpoint is saved and again at every call against
the addresses its name resolves to then (a name may resolve elsewhere later: DNS rebinding):

- loopback (127.0.0.0/8, ::1, ``localhost``), always: this machine's services are never a webhook;
- cloud metadata addresses and names (169.254.169.254, fd00:ec2::254, Azure's 168.63.129.16,
  ``metadata.google.internal``…), always;
- link-local, site-local (fec0::/10), unspecified, multicast, reserved and every other non-public address, always;
- private networks (RFC 1918, the 100.64.0.0/10 shared range, unique-local fc00::/7) unless
  ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is on, for an HR system on the same network.

IPv4 addresses written as IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64) are judged by the IPv4 address
they carry. ``WEBHOOK_ALLOW_LOOPBACK_TARGETS`` exists for the test suite's local receivers only.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from core import http

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, Azure, Google Cloud, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud Classic
        "168.63.129.16",  # Azure's WireServer and host agent (only this address of 168.63.129.0/24 is special)
    )
)
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.tencentyun.com", "metadata.azure.internal",
})
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.x.x.x to this machine
NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in NAT64_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: Address) -> str | None:
    """Why a webhook may not go to ``address``, or None if it may."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        reason = address_refusal(inner)
        return None if reason is None else f"carries {inner}, which {reason}"
    if address in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if address.is_loopback:
        return None if settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS else "is a loopback address (this machine)"
    if any(address in network for network in PRIVATE_NETWORKS):
        return None if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS else (
            "is a private address (allowed only with WEBHOOK_ALLOW_PRIVATE_TARGETS)"
        )
    if address.is_link_local:
        return "is a link-local address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "is a site-local address (fec0::/10, internal)"
    if address.is_unspecified or address in THIS_NETWORK:
        return "is not an address one can send to"
    if address.is_multicast:
        return "is a multicast address"
    if address.is_reserved or not address.is_global:
        return "is a reserved, non-public address"
    return None


def name_refusal(host: str) -> str | None:
    """Why a webhook may not go to the host name ``host`` whatever it resolves to, or None."""
    name = host.rstrip(".").lower()
    if name in METADATA_NAMES:
        return "is a cloud metadata service"
    if name == "localhost" or name.endswith(".localhost"):
        return None if settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS else "is this machine"
    return None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def endpoint_url_validate(url: str) -> None:
    """Raises ValidationError on ``url`` (the form's field named) for a target Crier must not call.
    A name that does not resolve yet is accepted: every call checks what it resolves to then."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError as exc:
        raise ValidationError({"url": f"This URL's port is not valid ({exc})."}) from exc
    if not host:
        raise ValidationError({"url": "The URL needs a host name."})
    try:
        http.parse_url(url)  # what each call reads: a URL it cannot read would fail every call
    except http.TargetRefused as exc:
        raise ValidationError({"url": "This URL's host is not a valid host name (look for a space or an invisible character)."}) from exc
    loopback_name = host in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback_name):
        raise ValidationError({"url": "Webhooks are sent over HTTPS."})
    reason = name_refusal(host)
    if reason is not None:
        raise ValidationError({"url": f"{host} {reason}: webhooks go to services outside Crier's network."})
    try:
        addresses = http.resolve(host, port or (443 if parts.scheme == "https" else 80))
    except http.HttpTimeout:
        return  # not resolvable now; checked again at each call
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            where = str(address) if _is_literal(host) else f"{host} resolves to {address}, which"
            raise ValidationError({"url": f"{where} {reason}: webhooks go to services outside Crier's network."})


def request(method: str, url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> http.HttpResponse:
    """The webhook call: its name checked, then every address it resolves to, and the connection made
    to a checked address (``http.request_pinned``). Raises http.TargetRefused, http.HttpTimeout."""
    host = (http.parse_url(url).host or "").strip("[]")  # as request_pinned reads it
    reason = name_refusal(host)
    if reason is not None:
        raise http.TargetRefused(f"{host} {reason}")
    return http.request_pinned(method, url, body=body, headers=headers, timeout=timeout, check=address_refusal)

