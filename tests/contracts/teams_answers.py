"""Teams' answers to a bot's send, as Microsoft documents them, and what each must mean to Crier.

One set of fixtures for both sides: ``test_connector_answers`` serves each answer to the real connector,
classification and retry policy; ``test_emulator_answers`` makes the emulator give each answer and
checks it against the same fixture. Neither side can drift alone.

Sources: Microsoft Learn, "Status codes from
bot conversational APIs" (codes, and which are worth retrying: 412, 429, 502, 503, 504; "do not retry
status codes that are not listed as retryable"), "Send proactive messages" (the blocked or uninstalled
bot's 403 with ``subCode: MessageWritesBlocked``), "Optimize your bot with rate limiting" (429 with
``Retry-After``; also retry 412, 502, 504). The usual error body is ``{"error": {"code", "message"}}``;
the blocked/uninstalled 403 can instead be ``{"errorCode": 209, "message": "<JSON text with subCode>"}``.
``Retry-After`` is either delay-seconds or an HTTP-date (RFC 9110, section 10.2.3).

Pure Python (no Django), so the emulator's own tests can import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any


@dataclass(frozen=True)
class HttpDate:
    """A header value that is an HTTP-date ``seconds`` from the moment the answer is given."""

    seconds: int

    def at(self, now: float) -> str:
        return formatdate(now + self.seconds, usegmt=True)


@dataclass(frozen=True)
class TeamsAnswer:
    name: str
    # What Teams sends. status None: no answer at all (a timeout, a broken or refused connection).
    status: int | None
    headers: dict[str, str | HttpDate] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    # Whether the documented code is part of the contract. Microsoft names none for 503 and 504
    # (gateways answer them), so there only the body's shape is.
    code_pinned: bool = True
    # What Crier makes of it.
    code: str = ""  # the error code Crier records
    permanent: bool = True  # never retried
    opt_out: bool = False  # the person is recorded opted out (source "blocked")
    retry_after: float | None = None  # the least wait before the next attempt, when Teams names one
    recreate: bool = False  # the stored conversation is stale: a new one is created, once

    def headers_at(self, now: float) -> dict[str, str]:
        return {name: value.at(now) if isinstance(value, HttpDate) else value for name, value in self.headers.items()}

    def body_bytes(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()

    def __str__(self) -> str:  # the test id
        return self.name


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


BLOCKED_INNER = {"subCode": "MessageWritesBlocked", "message": "Thread is blocked from message writes."}

ANSWERS: tuple[TeamsAnswer, ...] = (
    TeamsAnswer(
        "403 blocked by the user",
        403,
        body=_error("ConversationBlockedByUser", "User blocked the conversation with the bot."),
        code="ConversationBlockedByUser",
        opt_out=True,
    ),
    TeamsAnswer(
        "403 errorCode 209 MessageWritesBlocked",
        403,
        body={"errorCode": 209, "message": json.dumps(BLOCKED_INNER, separators=(",", ":"))},
        code="MessageWritesBlocked",
        opt_out=True,
    ),
    TeamsAnswer(
        "403 bot disabled by the tenant admin",
        403,
        body=_error("BotDisabledByAdmin", "The tenant admin disabled this bot"),
        code="BotDisabledByAdmin",
    ),
    TeamsAnswer(
        "403 app not installed for the user",
        403,
        body=_error("ForbiddenOperationException", "Bot is not installed in user's personal scope"),
        code="ForbiddenOperationException",
    ),
    TeamsAnswer(
        "404 conversation not found",
        404,
        body=_error("ConversationNotFound", "Conversation not found."),
        code="ConversationNotFound",
        recreate=True,
    ),
    TeamsAnswer(
        "412 precondition failed",
        412,
        body=_error("PreconditionFailed", "Conflicting operations on the conversation."),
        code="PreconditionFailed",
        permanent=False,
    ),
    TeamsAnswer(
        "429 Retry-After in seconds",
        429,
        headers={"Retry-After": "7"},
        body=_error("Throttled", "Too many requests."),
        code="Throttled",
        permanent=False,
        retry_after=7.0,
    ),
    TeamsAnswer(
        "429 Retry-After as an HTTP-date",
        429,
        headers={"Retry-After": HttpDate(30)},
        body=_error("Throttled", "Too many requests."),
        code="Throttled",
        permanent=False,
        retry_after=30.0,
    ),
    TeamsAnswer(
        "502 service error",
        502,
        body=_error("ServiceError", "Service dependency issues."),
        code_pinned=False,
        code="ServiceError",
        permanent=False,
    ),
    TeamsAnswer(
        "503 service unavailable",
        503,
        body=_error("ServiceUnavailable", "Service is unavailable."),
        code_pinned=False,
        code="ServiceUnavailable",
        permanent=False,
    ),
    TeamsAnswer(
        "504 gateway timeout",
        504,
        body=_error("GatewayTimeout", "Gateway Timeout."),
        code_pinned=False,
        code="GatewayTimeout",
        permanent=False,
    ),
    # The call may have gone through: retried (never permanent), the delivery's outcome unknown for now.
    TeamsAnswer("no answer in time", None, code="Timeout", permanent=False),
    TeamsAnswer("connection refused", None, code="Timeout", permanent=False),
)

BY_NAME = {answer.name: answer for answer in ANSWERS}


def conformance_problems(
    answer: TeamsAnswer, status: int, headers: dict[str, str], body: bytes, now: float
) -> list[str]:
    """How an answer someone gave differs from the fixture: status, the headers it names (a
    Retry-After in the same form, seconds or HTTP-date, naming the same wait), and the body's
    shape, fields and code. Empty when it conforms."""
    problems: list[str] = []
    if status != answer.status:
        problems.append(f"status {status}, not {answer.status}")
    lowered = {name.lower(): value for name, value in headers.items()}
    for name, expected in answer.headers.items():
        given = lowered.get(name.lower())
        if given is None:
            problems.append(f"no {name} header")
        elif isinstance(expected, HttpDate):
            try:
                seconds = parsedate_to_datetime(given).timestamp() - now
            except (TypeError, ValueError):
                problems.append(f"{name} {given!r} is not an HTTP-date")
                continue
            if not expected.seconds - 2 <= seconds <= expected.seconds + 1:
                problems.append(f"{name} {given!r} is {seconds:.1f} s away, not {expected.seconds}")
        elif given != expected:
            problems.append(f"{name} {given!r}, not {expected!r}")
    if answer.body is None:
        return problems
    if not lowered.get("content-type", "").startswith("application/json"):
        problems.append(f"content type {lowered.get('content-type')!r}, not JSON")
    try:
        data = json.loads(body)
    except ValueError:
        return [*problems, f"body {body[:100]!r} is not JSON"]
    if not isinstance(data, dict) or set(data) != set(answer.body):
        return [*problems, f"body {data!r} is not shaped like {answer.body!r}"]
    if "error" in answer.body:
        error = data["error"]
        if not isinstance(error, dict) or set(error) != {"code", "message"}:
            problems.append(f"error {error!r} is not {{code, message}}")
        elif not all(isinstance(error[key], str) and error[key] for key in ("code", "message")):
            problems.append(f"error {error!r} has an empty or non-text field")
        elif answer.code_pinned and error["code"] != answer.body["error"]["code"]:
            problems.append(f"code {error['code']!r}, not {answer.body['error']['code']!r}")
    else:
        if data["errorCode"] != answer.body["errorCode"] or type(data["errorCode"]) is not int:
            problems.append(f"errorCode {data['errorCode']!r}, not {answer.body['errorCode']!r}")
        try:
            inner = json.loads(data["message"])
        except (TypeError, ValueError):
            return [*problems, f"message {data['message']!r} is not JSON text"]
        expected_inner = json.loads(answer.body["message"])
        shaped = isinstance(inner, dict) and set(inner) == set(expected_inner)
        if not shaped or inner["subCode"] != expected_inner["subCode"]:
            problems.append(f"message {inner!r} is not shaped like {expected_inner!r}")
    return problems
