"""Checks of Crier's own settings (``manage.py check``; the deployment ones with ``--deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from core.errors import ApplicationError

from .entra_fields import configuration_require


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


@checks.register()
def entra_sync_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With the Entra ID sync on, its configuration must be one a run can work with (``manage.py migrate``
    and ``check`` refuse to go on otherwise, rather than every run failing later)."""
    if not settings.ENTRA_SYNC:
        return []
    try:
        configuration_require()
    except ApplicationError as error:
        return [checks.Error(error.message, id="crier.E002")]
    return []
