"""API keys: ``Authorization: Bearer <key>``. Only the key's SHA-256 is stored."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from campaigns.client_address import client_address, throttle_group
from campaigns.models import ApiKey
from core.connections import redis_for
from core.errors import ApplicationError

KEY_PREFIX = "crier_"

logger = logging.getLogger(__name__)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(
    *, name: str, scopes: list[str] | None = None, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Creates a key (with the default scopes unless told otherwise) and returns it with its secret,
    which is never stored nor shown again."""
    scopes = list(ApiKey.DEFAULT_SCOPES) if scopes is None else scopes
    unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
    if unknown:
        raise ApplicationError(
            f"Unknown scope {', '.join(unknown)}; use {', '.join(ApiKey.Scope.values)}.",
            fields={"scopes": [f"Unknown: {', '.join(unknown)}"]},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("expires_at must be in the future.", fields={"expires_at": ["Must be in the future."]})
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        prefix=secret[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(secret),
        scopes=[scope for scope in ApiKey.Scope.values if scope in scopes],
        expires_at=expires_at,
    )
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def _failures_name(address: str) -> str:
    return f"crier:api-key-failures:{throttle_group(address)}"


def invalid_key_wait(*, address: str) -> int | None:
    """Seconds until an address that sent more than ``API_KEY_FAILURE_LIMIT`` invalid keys within the
    window may try again; None when it may now."""
    client = redis_for(settings.REDIS_URL)
    name = _failures_name(address)
    failures, ttl = client.pipeline().get(name).ttl(name).execute()
    if failures is None or int(failures) < settings.API_KEY_FAILURE_LIMIT:
        return None
    return max(1, ttl)


def invalid_key_record(*, address: str) -> None:
    """Counts an invalid key from an address, in a window that starts with its first."""
    client = redis_for(settings.REDIS_URL)
    name = _failures_name(address)
    _, failures = client.pipeline().set(name, 0, ex=settings.API_KEY_FAILURE_WINDOW_SECONDS, nx=True).incr(name).execute()
    if failures == settings.API_KEY_FAILURE_LIMIT:
        logger.warning(
            "%s invalid API keys from %s within %s s: its calls are refused until the window ends",
            failures, address, settings.API_KEY_FAILURE_WINDOW_SECONDS,
        )


class ApiKeyUser:
    """What ``request.user`` is for a call made with an API key."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.pk = None

    def __str__(self) -> str:
        return f"api key {self.api_key.name}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme != self.keyword or not key.strip():
            raise exceptions.AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
        # Only invalid keys are throttled: a valid key is never refused, so that callers sharing an address
        # (behind a proxy, a NAT) cannot lock each other out. Keys hold 256 random bits: telling a right
        # guess from a wrong one gives nothing away, since no guess is ever right.
        api_key = ApiKey.objects.filter(key_hash=hash_key(key.strip()), revoked_at__isnull=True).first()
        now = timezone.now()
        expired = api_key is not None and api_key.expires_at is not None and api_key.expires_at <= now
        if api_key is None or expired:
            address = client_address(request._request)
            wait = invalid_key_wait(address=address)
            if wait is not None:
                raise exceptions.Throttled(wait=wait, detail="Too many invalid API keys from this address.")
            invalid_key_record(address=address)
            if api_key is None:
                raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
            raise exceptions.AuthenticationFailed(f"This API key expired at {api_key.expires_at.isoformat()}.")
        request._request.crier_api_key = api_key  # for the audit trail (campaigns.api.audit)
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key from `manage.py create_api_key NAME`."}
