"""The address a request came from, as the login and API-key throttles count it.

Behind ``NUM_PROXIES`` trusted proxies, each appending the address it received from to
``X-Forwarded-For``, the client is the entry the outermost of them wrote: entries to its left are
whatever the client chose to send and are never trusted. With no proxy, ``REMOTE_ADDR``."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.NUM_PROXIES
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    return forwarded[-min(proxies, len(forwarded))]
