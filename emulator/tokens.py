"""The emulator's RS256 signing key and the JWTs it issues and checks.

One RSA-2048 key (kept in ``<state-dir>/signing-key.pem`` so restarts keep the same ``kid``) signs both
kinds of token: the Entra access tokens the bot presents to the Bot Connector, and the Bot Framework
tokens the emulator puts on activities it sends to the bot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .tls import state_lock, write_private

BOT_FRAMEWORK_AUDIENCE = "https://api.botframework.com"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
ACCESS_TOKEN_SECONDS = 3599
CHANNEL_TOKEN_SECONDS = 3600
CLOCK_SKEW_SECONDS = 300
TOKEN_CACHE_LIMIT = 10_000


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA key with its ``kid`` (the RFC 7638 thumbprint of its public JWK)."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        numbers = self.public_key.public_numbers()
        self._n, self._e = _int_b64url(numbers.n), _int_b64url(numbers.e)
        canonical = json.dumps({"e": self._e, "kty": "RSA", "n": self._n}, separators=(",", ":"))
        self.kid = _b64url(hashlib.sha256(canonical.encode()).digest())

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SigningKey:
        path = state_dir / "signing-key.pem"
        with state_lock(state_dir):
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
                    return cls(key)
            except (OSError, ValueError, TypeError):
                pass
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private(path, pem)
            return cls(key)

    def jwk(self, endorsements: list[str] | None = None) -> dict[str, Any]:
        key: dict[str, Any] = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self._n, "e": self._e}
        if endorsements is not None:
            key["endorsements"] = endorsements
        return key

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


def issue_access_token(
    key: SigningKey, *, client_id: str, tenant: str, tenant_id: str,
    audience: str = BOT_FRAMEWORK_AUDIENCE, roles: list[str] | None = None,
) -> str:
    """An Entra v1-style app token, like login.microsoftonline.com gives: for the Bot Framework API, or
    (``audience`` Microsoft Graph) carrying the application permissions granted (``roles``)."""
    now = int(time.time())
    extra = {"roles": roles} if roles is not None else {}
    return key.sign(
        {
            **extra,
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TOKEN_SECONDS,
            "appid": client_id,
            "azp": client_id,
            "appidacr": "1",
            "idtyp": "app",
            "tid": tenant_id,
            "sub": client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"crier-emulator/{tenant}/{client_id}")),
            "ver": "1.0",
            "uti": _b64url(uuid.uuid4().bytes),
        }
    )


def issue_channel_token(key: SigningKey, *, app_id: str, service_url: str) -> str:
    """The token the Bot Framework channel puts on an activity it POSTs to the bot."""
    now = int(time.time())
    return key.sign(
        {
            "iss": BOT_FRAMEWORK_ISSUER,
            "aud": app_id,
            "serviceurl": service_url,
            "nbf": now,
            "iat": now,
            "exp": now + CHANNEL_TOKEN_SECONDS,
        }
    )


class AccessTokenChecker:
    """Checks the bearer tokens on connector calls: signature, lifetime, audience and app id.

    A token that passed once is remembered with its expiry, so later calls cost one dict lookup."""

    def __init__(self, key: SigningKey, app_id: str) -> None:
        self._key = key
        self._app_id = app_id
        self._valid: dict[str, float] = {}  # token -> expiry (epoch seconds)

    def known(self, authorization: str | None) -> bool:
        """Whether this token passed a check before (a caller that just fetched one sends a new one)."""
        return bool(authorization) and authorization[7:].strip() in self._valid

    def check(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization[7:].strip()
        expiry = self._valid.get(token)
        if expiry is not None:
            if time.time() < expiry:
                return True
            del self._valid[token]
            return False
        try:
            claims = jwt.decode(
                token,
                self._key.public_key,
                algorithms=["RS256"],
                audience=BOT_FRAMEWORK_AUDIENCE,
                leeway=0,
                options={"require": ["exp", "aud"]},
            )
        except jwt.InvalidTokenError:
            return False
        if claims.get("appid", claims.get("azp")) != self._app_id:
            return False
        if len(self._valid) >= TOKEN_CACHE_LIMIT:
            self._valid.clear()
        self._valid[token] = float(claims["exp"])
        return True
