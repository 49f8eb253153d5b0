"""Validating the Bot Framework token on activities POSTed to the messaging endpoint.

Keys come from the OpenID metadata at ``BOT_OPENID_METADATA_URL`` (its ``jwks_uri``), are kept for a
day, and fetched again when a token names a key we do not know (at most every few minutes).

Teams puts the same token on every activity it sends until the token nears its expiry, so a token whose signature
and claims passed is kept (``checked_tokens``) with the key that verified it: the next activity carrying it costs a
lookup, not a signature check. Its lifetime, the key's endorsement of the channel and the service URL are still
checked on each activity, and a token verified by a key since replaced is verified again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
from django.conf import settings

from core import http
from core.json import json_loads_bounded

KEYS_MAX_AGE_SECONDS = 24 * 3600
UNKNOWN_KID_REFRESH_SECONDS = 300
CLOCK_SKEW_SECONDS = 300


class InboundAuthError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class SigningKeys:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0

    def _fetch(self) -> None:
        try:
            metadata = http.request("GET", settings.BOT_OPENID_METADATA_URL, timeout=10).json()
            keys = http.request("GET", metadata["jwks_uri"], timeout=10).json()["keys"]
        except (http.HttpTimeout, KeyError, TypeError, ValueError) as exc:
            raise InboundAuthError(f"Cannot load the Bot Framework signing keys: {exc}", status=503) from exc
        self._keys = {key["kid"]: key for key in keys if "kid" in key}
        self._fetched_at = time.monotonic()

    def get(self, kid: str) -> dict[str, Any]:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > KEYS_MAX_AGE_SECONDS or (kid not in self._keys and age > UNKNOWN_KID_REFRESH_SECONDS):
                self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise InboundAuthError("The token is signed with an unknown key.")
        return key

    def clear(self) -> None:
        with self._lock:
            self._keys, self._fetched_at = {}, 0.0


signing_keys = SigningKeys()


class CheckedTokens:
    """Tokens whose signature and claims passed, each with its claims and the key that verified it; at most
    ``LIMIT`` of them (all forgotten when full: a busy tenant's channel sends a few an hour)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any], int]] = {}

    @staticmethod
    def _name(token: str) -> tuple[str, str, str]:
        return token, settings.BOT_APP_ID, settings.BOT_TOKEN_ISSUER  # the audience and issuer it passed for

    def get(self, token: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The claims of ``token`` if it passed with ``key`` (the very key the keys hold now) and has not expired."""
        name = self._name(token)
        found = self._checked.get(name)
        if found is None or found[1] is not key:
            return None
        claims, _, expires = found
        if time.time() >= expires + CLOCK_SKEW_SECONDS:  # expired, as jwt.decode would judge it now
            with self._lock:
                self._checked.pop(name, None)
            return None
        return claims

    def put(self, token: str, key: dict[str, Any], claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._checked) >= self.LIMIT:
                self._checked.clear()
            self._checked[self._name(token)] = (claims, key, int(claims["exp"]))  # as jwt.decode reads it

    def clear(self) -> None:
        with self._lock:
            self._checked.clear()


checked_tokens = CheckedTokens()


def validate_inbound(authorization: str, activity: dict[str, Any]) -> dict[str, Any]:
    """Returns the token's claims, or raises InboundAuthError (401 bad token, 403 wrong channel)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer" or not token:
        raise InboundAuthError("Missing bearer token.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InboundAuthError(f"Malformed token: {exc}") from exc
    if header.get("alg") != "RS256":
        raise InboundAuthError("Tokens must be signed with RS256.")
    key = signing_keys.get(str(header.get("kid", "")))
    channel = activity.get("channelId")
    if channel not in (key.get("endorsements") or []):
        raise InboundAuthError(f"The signing key is not endorsed for channel {channel!r}.", status=403)
    claims = checked_tokens.get(token, key)
    if claims is None:
        try:
            claims = jwt.decode(
                token,
                key=jwt.PyJWK(key).key,
                algorithms=["RS256"],
                audience=settings.BOT_APP_ID,
                issuer=settings.BOT_TOKEN_ISSUER,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InboundAuthError(f"Invalid token: {exc}") from exc
        checked_tokens.put(token, key, claims)
    service_url = str(activity.get("serviceUrl") or "").rstrip("/")
    if not service_url or str(claims.get("serviceurl", "")).rstrip("/") != service_url:
        raise InboundAuthError("The token's serviceurl does not match the activity's serviceUrl.", status=403)
    return claims


def parse_body(body: bytes) -> dict[str, Any]:
    """The activity in a request body; ValueError for anything else (too deep a document included)."""
    data = json_loads_bounded(body)
    if not isinstance(data, dict):
        raise ValueError("an activity is a JSON object")
    return data
