"""Deployment checks of Crier's own settings (``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def proxy_count_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A trusted TLS proxy header means a proxy is in front; counting none, every caller has the proxy's
    address and one stranger's invalid keys or passwords lock everyone out."""
    if settings.SECURE_PROXY_SSL_HEADER and settings.NUM_PROXIES <= 0:
        return [checks.Warning(
            "SECURE_PROXY_SSL_HEADER trusts a proxy in front of Crier, but NUM_PROXIES is 0: every caller "
            "shares the proxy's address, so the login and API-key throttles count them all as one.",
            hint="Set NUM_PROXIES to the number of proxies in front of Crier (each appends to X-Forwarded-For).",
            id="crier.W001",
        )]
    return []
