"""Access tokens for outbound calls, from Entra ID through msal (client credentials): the Bot Framework's
(``token_provider``) and Microsoft Graph's (``graph_token_provider``; ``notice_token_provider`` for the activity
feed, which wants a token far from its expiry), each from its own authority."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings

# Hosts whose authority is Microsoft's own; any other authority skips msal's instance discovery.
MICROSOFT_AUTHORITY_HOSTS = {
    "login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn",
}


class TokenError(Exception):
    """No token: the authority refused (wrong credentials, unknown tenant: ``transient`` is False)
    or could not be reached (``transient`` is True)."""

    def __init__(self, message: str, *, code: str, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


# msal renews a token this long before it expires; until then the token is reused without asking msal.
RENEW_BEFORE_EXPIRY_SECONDS = 300


class TokenProvider:
    """Caches the token in memory: msal's own cache, and in front of it the token with the moment
    msal would renew it, so the two calls of every delivery cost a clock read rather than a search
    of msal's cache."""

    def __init__(self, *, authority: str = "BOT_AUTHORITY", scope: str = "BOT_TOKEN_SCOPE", fresh_for: float = 0.0) -> None:
        """``fresh_for``: how long, in seconds, a token handed out must still be valid (some Graph calls refuse
        one that expires sooner); past that, a new token is asked for, never msal's cached one."""
        self._authority_setting, self._scope_setting = authority, scope  # the names of the settings to read
        self._fresh_for = fresh_for
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._ready: tuple[str, float] = ("", 0.0)  # the token, and until when (monotonic) to reuse it
        self._generation = 0  # raised by every invalidate: a token asked for before one is not kept after it

    def _build_app(self) -> msal.ConfidentialClientApplication:
        authority = getattr(settings, self._authority_setting)
        return msal.ConfidentialClientApplication(
            settings.BOT_APP_ID,
            client_credential=settings.BOT_APP_PASSWORD,
            authority=authority,
            # Instance discovery asks Microsoft's own cloud about the authority; a sovereign or local
            # authority answers for itself.
            instance_discovery=urlsplit(authority).hostname in MICROSOFT_AUTHORITY_HOSTS,
            timeout=settings.BOT_HTTP_TIMEOUT_SECONDS,  # msal waits forever otherwise
        )

    def get(self) -> str:
        token, until = self._ready
        if token and time.monotonic() < until:
            return token
        try:
            with self._lock:
                generation = self._generation
                if self._app is None or self._fresh_for:  # a new app: msal would hand out its cached token
                    self._app = self._build_app()
                result = self._app.acquire_token_for_client(scopes=[getattr(settings, self._scope_setting)])
        except (requests.RequestException, ValueError) as exc:
            # The authority is unreachable or answered nonsense (msal raises ValueError for a bad
            # discovery document): worth trying again later.
            with self._lock:
                self._app = None
            raise TokenError(f"token authority unavailable: {type(exc).__name__}", code="TokenUnavailable", transient=True) from exc
        if "access_token" not in result:
            code = str(result.get("error") or "token_error")
            raise TokenError(f"{code}: {result.get('error_description', '')}"[:500], code=code, transient=False)
        token = result["access_token"]
        reuse = _reuse_seconds(result, fresh_for=self._fresh_for)
        with self._lock:
            if generation == self._generation:  # not invalidated meanwhile (a 401 another thread heard)
                self._ready = (token, time.monotonic() + reuse)
        return token

    def invalidate(self) -> None:
        """Forget the cached token: the next ``get`` asks the authority again (after a 401)."""
        with self._lock:
            self._app = None
            self._ready = ("", 0.0)
            self._generation += 1


def _reuse_seconds(result: dict, *, fresh_for: float = 0.0) -> float:
    """How long the token just given may be reused before msal should be asked again: until msal
    would renew it (its ``refresh_in``, else five minutes before it expires) or it has less than
    ``fresh_for`` seconds left; 0 if msal did not say."""
    try:
        expires_in = float(result["expires_in"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    reuse = expires_in - max(RENEW_BEFORE_EXPIRY_SECONDS, fresh_for)
    if isinstance(result.get("refresh_in"), (int, float)):
        reuse = min(reuse, float(result["refresh_in"]))
    return max(0.0, reuse)


token_provider = TokenProvider()
graph_token_provider = TokenProvider(authority="GRAPH_AUTHORITY", scope="GRAPH_TOKEN_SCOPE")
# Graph's activity feed refuses a token with less than 45 minutes left (412): a minute more, for the call's way.
NOTICE_TOKEN_FRESH_SECONDS = 46 * 60
notice_token_provider = TokenProvider(authority="GRAPH_AUTHORITY", scope="GRAPH_TOKEN_SCOPE",
                                      fresh_for=NOTICE_TOKEN_FRESH_SECONDS)
