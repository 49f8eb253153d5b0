"""Microsoft Graph, read with the bot's own app registration (client credentials on the organisation's
tenant, ``bots.tokens.graph_token_provider``) through the one outbound HTTP seam, ``core.http``.

What it takes care of for every caller: a token (renewed once after a 401), Graph's ``429`` and ``503``
with their ``Retry-After`` honoured (up to ``GRAPH_MAX_RETRY_AFTER_SECONDS`` a wait), a timeout tried
again a few times, and links Graph hands back (``@odata.nextLink``) followed only to Graph's own host, so
that the token never goes anywhere else. Every refusal becomes ``GraphError``, which says in plain words
what to do about it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings

from core import http

from .connector import SENT_AT_HEADER, parse_retry_after
from .tokens import TokenError, TokenProvider, graph_token_provider

logger = logging.getLogger(__name__)
RETRIED_STATUSES = {429, 502, 503, 504}
REFUSED_STATUSES = {429, 503}  # Graph did not carry the call out: safe to make again
ATTEMPTS = 6  # a call and five more after a wait


class GraphError(Exception):
    def __init__(self, *, status: int | None, code: str, message: str, needs: str = "") -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status, self.code, self.message, self.needs = status, code, message, needs

    def plain(self) -> str:
        """What went wrong and what to do, for the admin and the command line."""
        if self.status == 403:
            return (f"Microsoft Graph refused ({self.code}): give the app registration the application permission "
                    f"{self.needs or 'this call needs'} and have an administrator grant consent (docs/going-live.md).")
        if self.status == 401:
            return (f"Entra ID or Microsoft Graph refused Crier's credentials ({self.code}): check BOT_APP_ID, "
                    f"BOT_APP_PASSWORD and GRAPH_AUTHORITY. {self.message}")
        if self.status is None:
            return f"Microsoft Graph could not be reached ({self.code}): {self.message}"
        if self.status == 429:
            return ("Microsoft Graph kept answering 429 (too many requests) for longer than this run waits; "
                    "the next run continues.")
        return f"Microsoft Graph answered {self.status} {self.code}: {self.message}"


def _error(status: int, body: Any, needs: str) -> GraphError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code") or status), str(error.get("message") or "")[:500]
        return GraphError(status=status, code=code, message=message, needs=needs)
    return GraphError(status=status, code=str(status), message="", needs=needs)


class GraphClient:
    def __init__(
        self, tokens: TokenProvider = graph_token_provider, sleep: Callable[[float], None] = time.sleep,
        *, attempts: int = ATTEMPTS, max_wait: float | None = None, repeat_unanswered: bool = True,
    ) -> None:
        """``attempts`` and ``max_wait`` (seconds a wait may last; ``GRAPH_MAX_RETRY_AFTER_SECONDS`` by default)
        are smaller for a person waiting on a page than for a task. ``repeat_unanswered`` False: a call Graph may
        have carried out (a timeout, a 502 or 504) is not made again, only one Graph refused (429, 503); for a
        call that must not be made twice."""
        self.tokens = tokens
        self.sleep = sleep
        self.attempts = attempts
        self.max_wait = max_wait
        self.repeat_unanswered = repeat_unanswered

    @property
    def _max_wait(self) -> float:
        return settings.GRAPH_MAX_RETRY_AFTER_SECONDS if self.max_wait is None else self.max_wait

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        query = f"?{urlencode(params, safe='$,')}" if params else ""
        return f"{settings.GRAPH_BASE_URL}{path}{query}"

    @staticmethod
    def _check_host(url: str) -> None:
        """A link from an answer must lead back to Graph: the token is never sent to another host."""
        ours, theirs = urlsplit(settings.GRAPH_BASE_URL), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise GraphError(status=None, code="ForeignLink",
                             message=f"Graph answered with a link to {theirs.scheme}://{theirs.netloc}, not to itself.")

    def get(self, url: str, *, needs: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON of one GET of ``url`` (from ``url()``, or a link Graph gave), with ``headers`` added."""
        return self._call("GET", url, needs=needs, headers=headers)

    def post(self, url: str, body: dict[str, Any], *, needs: str = "") -> dict[str, Any]:
        """The JSON answer (``{}`` for an empty one) of a POST of ``body``; only for calls Graph may be asked
        twice (a retried install answers 409)."""
        return self._call("POST", url, needs=needs, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})

    def _call(self, method: str, url: str, *, needs: str, headers: dict[str, str] | None,
              body: bytes | None = None) -> dict[str, Any]:
        self._check_host(url)
        renewed = False
        attempts = self.attempts
        for attempt in range(attempts):
            try:
                token = self.tokens.get()
            except TokenError as error:
                status = None if error.transient else 401
                raise GraphError(status=status, code=error.code, message=str(error)) from error
            try:
                sent = {**(headers or {}), "Authorization": f"Bearer {token}", "Accept": "application/json",
                        SENT_AT_HEADER: f"{time.time():.6f}"}  # when it was made, as for the Bot Connector
                response = http.request(
                    method, url, body=body, headers=sent, timeout=settings.GRAPH_HTTP_TIMEOUT_SECONDS)
            except http.HttpTimeout as error:
                if attempt == attempts - 1 or not self.repeat_unanswered:
                    raise GraphError(status=None, code="Timeout", message=str(error)[:300]) from error
                self.sleep(min(2.0 ** attempt, self._max_wait))
                continue
            if 200 <= response.status < 300:
                if not response.body.strip():
                    return {}  # Graph answers some calls (an install) with no body
                try:
                    data = response.json()
                except ValueError as error:
                    raise GraphError(status=response.status, code="NotJson", message="Not JSON.") from error
                return data if isinstance(data, dict) else {}
            try:
                answer = response.json()
            except ValueError:
                answer = None
            error = _error(response.status, answer, needs)
            if response.status == 401 and not renewed:
                renewed = True
                self.tokens.invalidate()
                continue
            retried = RETRIED_STATUSES if self.repeat_unanswered else REFUSED_STATUSES
            if response.status in retried and attempt < attempts - 1:
                wait = parse_retry_after(response.headers)
                wait = float(2 ** attempt) if wait is None else wait  # no Retry-After: an exponential wait
                if wait <= self._max_wait:
                    logger.info("graph answered %s; trying again in %.1f s", response.status, wait)
                    self.sleep(wait)
                    continue
            raise error
        raise GraphError(status=429, code="TooManyRequests", message="Graph kept refusing.")


graph = GraphClient()
# For a person waiting on a page (searching groups, a first look at a group's members): a short wait at most.
graph_interactive = GraphClient(attempts=2, max_wait=2.0)
