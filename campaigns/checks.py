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


@checks.register()
def staff_sign_in_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With staff signing in through Entra ID, the app, the authority and the role mapping must be usable; and in
    production, local passwords left on are worth a word."""
    from .sign_in import role_map

    found: list[checks.CheckMessage] = []
    if not settings.STAFF_SIGN_IN:
        return found
    if not settings.BOT_APP_ID or not settings.BOT_TENANT_ID or not settings.STAFF_SIGN_IN_AUTHORITY:
        found.append(checks.Error(
            "STAFF_SIGN_IN is on but BOT_APP_ID, BOT_TENANT_ID or STAFF_SIGN_IN_AUTHORITY is empty: staff sign in "
            "only from the organisation's own tenant.", id="crier.E003"))
    try:
        if not role_map():
            found.append(checks.Error("STAFF_SIGN_IN_ROLES maps nothing: nobody could sign in.", id="crier.E004"))
    except ValueError as error:
        found.append(checks.Error(str(error), id="crier.E004"))
    return found


@checks.register(checks.Tags.security, deploy=True)
def local_passwords_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.STAFF_SIGN_IN and settings.LOCAL_PASSWORDS:
        return [checks.Warning(
            "Staff sign in with Entra ID, and local passwords are still on.",
            hint="Once an administrator signs in with Entra ID, set LOCAL_PASSWORDS=false.", id="crier.W002")]
    return []
