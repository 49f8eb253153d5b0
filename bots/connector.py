"""The Bot Connector REST client: create a one-to-one conversation, send, update and delete messages.

It speaks HTTP through ``core.http`` and turns every non-success answer into ``ConnectorError``
carrying Teams' error code; what to do about each code is decided by ``bots.transport``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings

from core import http

from .schema import conversation_parameters
from .tokens import TokenError, TokenProvider, token_provider

logger = logging.getLogger(__name__)


@dataclass
class ConnectorError(Exception):
    status: int | None  # None: no answer (timeout, connection broken)
    code: str
    message: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.status or 'no answer'} {self.code}: {self.message}"[:1000]


def error_from_response(status: int, headers: dict[str, str], body: bytes) -> ConnectorError:
    """Teams answers ``{"error": {"code", "message"}}``, or for a blocked bot
    ``{"errorCode": 209, "message": "{\\"subCode\\": \\"MessageWritesBlocked\\", ...}"}``."""
    code, message = f"HTTP{status}", ""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or "")
        elif "errorCode" in data:
            message = str(data.get("message") or "")
            code = str(data["errorCode"])
            try:
                inner = json.loads(message)
                code = str(inner.get("subCode") or code)
                message = str(inner.get("message") or message)
            except (ValueError, AttributeError):
                pass
        elif "message" in data:
            message = str(data["message"])
    if not message:
        message = body[:300].decode("utf-8", "replace")
    return ConnectorError(status=status, code=code, message=message, retry_after=parse_retry_after(headers))


def parse_retry_after(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _conversation_url(service_url: str, conversation_id: str) -> str:
    return f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"


# When a call was made (epoch seconds), sent with each call. Teams ignores it; the emulator judges a
# call against a Retry-After by it rather than by its arrival on a busy machine.
SENT_AT_HEADER = "X-Crier-Sent-At"


class BotConnectorClient:
    def __init__(self, tokens: TokenProvider = token_provider) -> None:
        self.tokens = tokens

    def _token(self) -> str:
        try:
            return self.tokens.get()
        except TokenError as exc:
            # Refused credentials read like Teams' own 401; an unreachable authority like a timeout.
            raise ConnectorError(status=None if exc.transient else 401, code=exc.code, message=str(exc)) from exc

    def prepare(self) -> None:
        """Has a token ready (almost always from the cache). A paced caller asks before it takes its
        slot, so a call is never held back past its slot while the authority answers."""
        self._token()

    def _call(self, method: str, url: str, payload: bytes | None) -> Any:
        """One call, with one token refresh on 401 (an expired or revoked token)."""
        for attempt in (1, 2):
            token = self._token()
            headers = {"Authorization": f"Bearer {token}"}
            if payload is not None:
                headers["Content-Type"] = "application/json; charset=utf-8"
            headers[SENT_AT_HEADER] = f"{time.time():.6f}"
            try:
                response = http.request(method, url, body=payload, headers=headers)
            except http.HttpTimeout as exc:
                raise ConnectorError(status=None, code="Timeout", message=str(exc)) from exc
            if 200 <= response.status < 300:
                try:
                    return response.json()
                except ValueError:  # accepted, with a body something on the way replaced: no ids to read
                    logger.warning("bot connector %s answered %s with a body that is not JSON", method, response.status)
                    return {}
            error = error_from_response(response.status, response.headers, response.body)
            logger.info(
                "bot connector %s answered %s %s (operation %s)",
                method,
                response.status,
                error.code,
                response.headers.get("X-Correlating-OperationId", "-"),
            )
            if response.status == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            raise error
        raise AssertionError("unreachable")

    def create_conversation(self, *, service_url: str, tenant_id: str, member_id: str) -> str:
        body = conversation_parameters(
            bot_id=f"28:{settings.BOT_APP_ID}", bot_name=settings.BOT_NAME, member_id=member_id, tenant_id=tenant_id
        )
        data = self._call("POST", f"{service_url.rstrip('/')}/v3/conversations", json.dumps(body).encode())
        if not isinstance(data, dict) or not data.get("id"):  # nothing was sent yet: asking again is harmless
            raise ConnectorError(status=502, code="BadGateway", message="The conversation was created without its id.")
        return str(data["id"])

    def paged_members(self, *, service_url: str, conversation_id: str, continuation: str, page_size: int) -> dict:
        """One page of a team's members: ``{"members": [...], "continuationToken": ...}`` (none on the last)."""
        query = {"pageSize": str(page_size), **({"continuationToken": continuation} if continuation else {})}
        data = self._call("GET", f"{_conversation_url(service_url, conversation_id)}/pagedmembers?{urlencode(query)}", None)
        return data if isinstance(data, dict) else {}

    def send(self, *, service_url: str, conversation_id: str, activity_json: bytes) -> str:
        data = self._call("POST", f"{_conversation_url(service_url, conversation_id)}/activities", activity_json)
        return str((data or {}).get("id", ""))

    def update(self, *, service_url: str, conversation_id: str, activity_id: str, activity_json: bytes) -> None:
        url = f"{_conversation_url(service_url, conversation_id)}/activities/{quote(activity_id, safe='')}"
        self._call("PUT", url, activity_json)

    def delete(self, *, service_url: str, conversation_id: str, activity_id: str) -> None:
        url = f"{_conversation_url(service_url, conversation_id)}/activities/{quote(activity_id, safe='')}"
        self._call("DELETE", url, None)


connector = BotConnectorClient()
