"""The address a request came from, as the login and API-key throttles count it.

Behind ``NUM_PROXIES`` trusted proxies, each appending the address it received from to
``X-Forwarded-For``, the client is the entry the outermost of them wrote: entries to its left are
whatever the client chose to send and are never trusted. With no proxy, or when that entry is not an
address (a miscounted proxy chain), ``REMOTE_ADDR``."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(value: str) -> str | None:
    """The IP address in a forwarded entry (``198.51.100.7``, ``198.51.100.7:51234``, ``[2001:db8::7]:443``)."""
    candidates = [value]
    if value.startswith("[") and "]" in value:
        candidates.append(value[1 : value.index("]")])
    elif value.count(":") == 1:
        candidates.append(value.partition(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.NUM_PROXIES
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    return _address(forwarded[-min(proxies, len(forwarded))]) or remote


def throttle_group(address: str) -> str:
    """What a throttle counts ``address`` as: itself for IPv4, its /64 for IPv6 (one host usually holds
    a whole /64, and would otherwise count as 2^64 callers)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
