"""Bot Framework access tokens for outbound calls, from Entra ID through msal (client credentials)."""

from __future__ import annotations

import threading

import msal
import requests
from django.conf import settings


class TokenError(Exception):
    """No token: the authority refused (wrong credentials, unknown tenant: ``transient`` is False)
    or could not be reached (``transient`` is True)."""

    def __init__(self, message: str, *, code: str, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


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
            timeout=settings.BOT_HTTP_TIMEOUT_SECONDS,  # msal waits forever otherwise
        )

    def get(self) -> str:
        try:
            with self._lock:
                if self._app is None:
                    self._app = self._build_app()
                result = self._app.acquire_token_for_client(scopes=[settings.BOT_TOKEN_SCOPE])
        except (requests.RequestException, ValueError) as exc:
            # The authority is unreachable or answered nonsense (msal raises ValueError for a bad
            # discovery document): worth trying again later.
            with self._lock:
                self._app = None
            raise TokenError(f"token authority unavailable: {type(exc).__name__}", code="TokenUnavailable", transient=True) from exc
        if "access_token" not in result:
            code = str(result.get("error") or "token_error")
            raise TokenError(f"{code}: {result.get('error_description', '')}"[:500], code=code, transient=False)
        return result["access_token"]

    def invalidate(self) -> None:
        """Forget the cached token: the next ``get`` asks the authority again (after a 401)."""
        with self._lock:
            self._app = None


token_provider = TokenProvider()
