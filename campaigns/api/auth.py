"""API keys: ``Authorization: Bearer <key>``. Only the key's SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from campaigns.errors import ApplicationError
from campaigns.models import ApiKey

KEY_PREFIX = "crier_"


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
        api_key = ApiKey.objects.filter(key_hash=hash_key(key.strip()), revoked_at__isnull=True).first()
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        now = timezone.now()
        if api_key.expires_at is not None and api_key.expires_at <= now:
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
