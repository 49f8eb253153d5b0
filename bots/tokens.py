"""Bot Framework access tokens for outbound calls, from Entra ID through msal (client credentials)."""

from __future__ import annotations

import threading

import msal
from django.conf import settings


class TokenError(Exception):
    """The authority refused to issue a token (wrong credentials, unknown tenant...)."""


class TokenProvider:
    """Caches the token in memory (msal renews it five minutes before it expires)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._token: str | None = None

    def _build_app(self) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            settings.BOT_APP_ID,
            client_credential=settings.BOT_APP_PASSWORD,
            authority=settings.BOT_AUTHORITY,
            # Instance discovery asks Microsoft's own cloud about the authority; a sovereign or local
            # authority answers for itself.
            instance_discovery=settings.BOT_AUTHORITY_IS_MICROSOFT,
        )

    def get(self) -> str:
        with self._lock:
            if self._app is None:
                self._app = self._build_app()
            result = self._app.acquire_token_for_client(scopes=[settings.BOT_TOKEN_SCOPE])
        if "access_token" not in result:
            raise TokenError(f"{result.get('error', 'unknown_error')}: {result.get('error_description', '')}")
        return result["access_token"]

    def invalidate(self) -> None:
        """Forget the cached token: the next ``get`` asks the authority again (after a 401)."""
        with self._lock:
            self._app = None


token_provider = TokenProvider()
