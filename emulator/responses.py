"""JSON answers in the shapes Teams and Entra use, each with an ``X-Correlating-OperationId``."""

from __future__ import annotations

import json
import math
import os
import time
from email.utils import formatdate
from itertools import count
from typing import Any

from aiohttp import web

from .config import ConfigError

JSON_TYPE = "application/json; charset=utf-8"

# Operation ids: a random per-process prefix and a counter, cheaper than a uuid4 per call.
_PREFIX = os.urandom(8).hex()
_COUNTER = count(1)


def operation_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": JSON_TYPE, "X-Correlating-OperationId": operation_id()}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=json.dumps(data).encode("utf-8"), headers=all_headers)


def empty_response(status: int = 200) -> web.Response:
    return web.Response(status=status, headers={"X-Correlating-OperationId": operation_id()})


def teams_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": {"code", "message"}}``, the Bot Connector's usual error body."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def unauthorized() -> web.Response:
    return json_response(401, {"message": "Authorization has been denied for this request."})


def bad_argument(message: str) -> web.Response:
    return teams_error(400, "BadArgument", message)


def not_installed() -> web.Response:
    return teams_error(403, "ForbiddenOperationException", "Bot is not installed in user's personal scope")


def bot_disabled_by_admin() -> web.Response:
    return teams_error(403, "BotDisabledByAdmin", "The tenant admin disabled this bot")


def blocked_by_user() -> web.Response:
    return teams_error(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")


def message_writes_blocked() -> web.Response:
    """The uninstalled-bot 403: a JSON document inside the ``message`` string, as Teams really sends it."""
    inner = json.dumps(
        {"subCode": "MessageWritesBlocked", "message": "Thread is blocked from message writes."},
        separators=(",", ":"),
    )
    return json_response(403, {"errorCode": 209, "message": inner})


def conversation_not_found() -> web.Response:
    return teams_error(404, "ConversationNotFound", "Conversation not found.")


def throttled(retry_after: int, message: str) -> web.Response:
    return teams_error(429, "Throttled", message, {"Retry-After": str(retry_after)})


def retry_after_date(seconds: float) -> str:
    """``Retry-After`` in its other form, an HTTP-date (whole seconds, rounded up so the wait is not shortened)."""
    return formatdate(math.ceil(time.time() + seconds), usegmt=True)


async def json_body(request: web.Request) -> Any:
    """The request's JSON (an empty body reads as ``{}``); raises ConfigError when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"the body is not JSON: {exc}") from None


def control_error(status: int, message: str) -> web.Response:
    """Errors of the control API (not a Teams shape)."""
    return json_response(status, {"error": message})
