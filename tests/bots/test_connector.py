"""The Bot Connector client: against the emulator, and on its own against a recorded wire."""

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from django.conf import settings

from core import http
from bots.connector import SENT_AT_HEADER, BotConnectorClient, ConnectorError, error_from_response, parse_retry_after
from bots.schema import conversation_parameters
from bots.tokens import TokenError


def test_each_call_says_when_it_was_made_so_a_retry_after_is_judged_by_that_moment(teams, monkeypatch):
    sent: list[dict[str, str]] = []
    real = http.request

    def spy(method, url, **arguments):
        sent.append(dict(arguments["headers"]))
        return real(method, url, **arguments)

    monkeypatch.setattr("bots.connector.http.request", spy)
    before = time.time()

    BotConnectorClient().create_conversation(
        service_url=teams.service_url, tenant_id=settings.BOT_TENANT_ID, member_id=str(uuid.uuid4())
    )

    [headers] = sent
    assert before <= float(headers[SENT_AT_HEADER]) <= time.time()


# --- The client on its own: the exact requests it makes and how it reads each answer --------------
# ``http.request`` is replaced by a recorder that answers from a script, so every URL, method, body
# and header is pinned, and every answer shape is fed in as bytes.

SERVICE_URL = "https://smba.example.test/regionX/"  # a trailing slash, and a last letter that is not "/"
BASE = "https://smba.example.test/regionX"


class Tokens:
    def __init__(self, *tokens: str, error: TokenError | None = None) -> None:
        self.tokens, self.error, self.invalidated = list(tokens), error, 0

    def get(self) -> str:
        if self.error:
            raise self.error
        return self.tokens[0] if len(self.tokens) == 1 else self.tokens.pop(0)

    def invalidate(self) -> None:
        self.invalidated += 1


class Wire:
    """Stands in for ``core.http.request``: records each request and answers the next scripted answer."""

    def __init__(self, *answers) -> None:
        self.answers, self.requests = list(answers), []

    def __call__(self, method, url, *, body=None, headers=None, timeout=None):
        self.requests.append({"method": method, "url": url, "body": body, "headers": dict(headers or {})})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status: int, body: bytes | dict | list = b"", headers: dict[str, str] | None = None) -> http.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.HttpResponse(status=status, headers=headers or {}, body=raw)


@pytest.fixture
def wire(monkeypatch):
    def install(*answers) -> Wire:
        recorder = Wire(*answers)
        monkeypatch.setattr("bots.connector.http.request", recorder)
        return recorder

    return install


def lowered(headers: dict[str, str]) -> dict[str, str]:
    """Header names as HTTP compares them (case does not matter on the wire)."""
    return {name.lower(): value for name, value in headers.items() if name != SENT_AT_HEADER}


def test_it_creates_a_one_to_one_conversation_with_the_documented_body_and_returns_its_id(wire):
    recorder = wire(answer(201, {"id": "a:1conversation"}))

    conversation_id = BotConnectorClient(Tokens("token-1")).create_conversation(
        service_url=SERVICE_URL, tenant_id="tenant-a", member_id="29:member"
    )

    assert conversation_id == "a:1conversation"
    [request] = recorder.requests
    assert (request["method"], request["url"]) == ("POST", f"{BASE}/v3/conversations")
    assert json.loads(request["body"]) == conversation_parameters(
        bot_id=f"28:{settings.BOT_APP_ID}", bot_name=settings.BOT_NAME, member_id="29:member", tenant_id="tenant-a"
    )
    assert json.loads(request["body"])["bot"] == {"id": f"28:{settings.BOT_APP_ID}", "name": settings.BOT_NAME}
    assert lowered(request["headers"]) == {
        "authorization": "Bearer token-1", "content-type": "application/json; charset=utf-8",
    }


@pytest.mark.parametrize("body", [{}, {"id": ""}, [{"id": "a:1"}], b"<html>accepted</html>"],
                         ids=["no-id", "empty-id", "not-an-object", "not-json"])
def test_it_reports_a_conversation_created_without_its_id_as_a_bad_gateway(wire, body):
    wire(answer(201, body))

    with pytest.raises(ConnectorError) as raised:
        BotConnectorClient(Tokens("t")).create_conversation(service_url=SERVICE_URL, tenant_id="t", member_id="29:m")

    assert raised.value == ConnectorError(
        status=502, code="BadGateway", message="The conversation was created without its id.", retry_after=None
    )


def test_it_sends_to_the_quoted_conversation_and_returns_the_activity_id(wire):
    recorder = wire(answer(201, {"id": "1:activity"}))

    activity_id = BotConnectorClient(Tokens("t")).send(
        service_url=SERVICE_URL, conversation_id="a:1/b@thread", activity_json=b'{"type":"message"}'
    )

    assert activity_id == "1:activity"
    [request] = recorder.requests
    assert request["method"] == "POST"
    assert request["url"] == f"{BASE}/v3/conversations/a%3A1%2Fb%40thread/activities"
    assert request["body"] == b'{"type":"message"}'
    assert lowered(request["headers"])["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("body", [{}, b"", b"accepted"], ids=["no-id", "empty", "not-json"])
def test_it_returns_an_empty_activity_id_when_an_accepted_send_names_none(wire, body):
    wire(answer(201, body))

    assert BotConnectorClient(Tokens("t")).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}") == ""


def test_it_edits_the_quoted_activity_with_put(wire):
    recorder = wire(answer(200, {"id": "1:a/b"}))

    BotConnectorClient(Tokens("t")).update(
        service_url=SERVICE_URL, conversation_id="a:1", activity_id="1:a/b", activity_json=b'{"text":"new"}'
    )

    [request] = recorder.requests
    assert (request["method"], request["body"]) == ("PUT", b'{"text":"new"}')
    assert request["url"] == f"{BASE}/v3/conversations/a%3A1/activities/1%3Aa%2Fb"
    assert lowered(request["headers"])["content-type"] == "application/json; charset=utf-8"


def test_it_recalls_the_quoted_activity_with_a_bodiless_delete(wire):
    recorder = wire(answer(200))

    BotConnectorClient(Tokens("t")).delete(service_url=SERVICE_URL, conversation_id="a:1", activity_id="1:a/b")

    [request] = recorder.requests
    assert (request["method"], request["body"]) == ("DELETE", None)
    assert request["url"] == f"{BASE}/v3/conversations/a%3A1/activities/1%3Aa%2Fb"
    assert lowered(request["headers"]) == {"authorization": "Bearer t"}  # no body, so no Content-Type


def test_it_refreshes_the_token_once_when_teams_answers_401(wire):
    recorder = wire(answer(401, {"error": {"code": "Unauthorized", "message": "expired"}}), answer(201, {"id": "1:a"}))
    tokens = Tokens("old", "new")

    assert BotConnectorClient(tokens).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}") == "1:a"

    assert tokens.invalidated == 1
    assert [lowered(r["headers"])["authorization"] for r in recorder.requests] == ["Bearer old", "Bearer new"]


def test_it_gives_up_after_a_second_401(wire):
    refused = answer(401, {"error": {"code": "Unauthorized", "message": "Authorization has been denied."}})
    recorder = wire(refused, refused)
    tokens = Tokens("old", "new")

    with pytest.raises(ConnectorError) as raised:
        BotConnectorClient(tokens).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}")

    assert (raised.value.status, raised.value.code) == (401, "Unauthorized")
    assert (len(recorder.requests), tokens.invalidated) == (2, 1)


@pytest.mark.parametrize("status", [300, 403, 503])
def test_it_asks_only_once_for_any_other_answer_than_2xx_or_401(wire, status):
    recorder = wire(answer(status, {"error": {"code": "Nope", "message": "no"}}), answer(201, {"id": "1:a"}))
    tokens = Tokens("t")

    with pytest.raises(ConnectorError) as raised:
        BotConnectorClient(tokens).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}")

    assert (raised.value.status, raised.value.code, raised.value.message) == (status, "Nope", "no")
    assert (len(recorder.requests), tokens.invalidated) == (1, 0)


@pytest.mark.parametrize("headers, operation", [({"X-Correlating-OperationId": "op-7"}, "op-7"), ({}, "-")])
def test_it_logs_each_refusal_with_teams_operation_id_for_microsoft_support(wire, caplog, headers, operation):
    wire(answer(403, {"error": {"code": "Nope", "message": "no"}}, headers))

    with caplog.at_level("INFO", logger="bots.connector"), pytest.raises(ConnectorError):
        BotConnectorClient(Tokens("t")).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}")

    assert [record.getMessage() for record in caplog.records] == [
        f"bot connector POST answered 403 Nope (operation {operation})"
    ]


@pytest.mark.parametrize("status", [200, 201, 299])
def test_it_reads_every_2xx_as_accepted(wire, status):
    wire(answer(status, {"id": "1:a"}))

    assert BotConnectorClient(Tokens("t")).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}") == "1:a"


def test_it_reports_no_answer_in_time_as_a_timeout_without_a_status(wire):
    wire(http.HttpTimeout("read timed out after 10 s"))

    with pytest.raises(ConnectorError) as raised:
        BotConnectorClient(Tokens("t")).send(service_url=SERVICE_URL, conversation_id="a:1", activity_json=b"{}")

    assert raised.value == ConnectorError(status=None, code="Timeout", message="read timed out after 10 s")


@pytest.mark.parametrize("transient, status", [(True, None), (False, 401)])
def test_it_reports_a_missing_token_as_teams_401_or_as_no_answer(wire, transient, status):
    recorder = wire()
    tokens = Tokens(error=TokenError("AADSTS7000215: Invalid client secret", code="invalid_client", transient=transient))

    with pytest.raises(ConnectorError) as raised:
        BotConnectorClient(tokens).prepare()

    assert raised.value == ConnectorError(status=status, code="invalid_client", message="AADSTS7000215: Invalid client secret")
    assert recorder.requests == []


# --- Reading Teams' error answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code, message",
    [
        ({"error": {"code": "BadArgument", "message": "Unknown activity type"}}, "BadArgument", "Unknown activity type"),
        ({"error": {"message": "no code given"}}, "HTTP400", "no code given"),
        ({"error": {"code": "BadArgument"}}, "BadArgument", '{"error": {"code": "BadArgument"}}'),
        ({"errorCode": 209, "message": '{"subCode": "MessageWritesBlocked", "message": "Thread is blocked"}'},
         "MessageWritesBlocked", "Thread is blocked"),
        ({"errorCode": 209, "message": '{"message": "no sub-code"}'}, "209", "no sub-code"),
        ({"errorCode": 209, "message": '{"subCode": "MessageWritesBlocked"}'},
         "MessageWritesBlocked", '{"subCode": "MessageWritesBlocked"}'),
        ({"errorCode": 209, "message": "Thread is blocked"}, "209", "Thread is blocked"),
        ({"errorCode": 209, "message": "[1, 2]"}, "209", "[1, 2]"),
        ({"errorCode": 209}, "209", '{"errorCode": 209}'),
        ({"message": "An error has occurred."}, "HTTP400", "An error has occurred."),
        ({"Message": "other casing"}, "HTTP400", '{"Message": "other casing"}'),
        (["not", "an", "object"], "HTTP400", '["not", "an", "object"]'),
        (b"", "HTTP400", ""),
    ],
    ids=["error-object", "error-without-code", "error-without-message", "error-code-209", "209-without-sub-code",
         "209-without-inner-message", "209-plain-message", "209-json-not-an-object", "209-without-message",
         "bare-message", "other-keys", "json-list", "empty"],
)
def test_it_reads_the_code_and_message_of_each_error_shape(body, code, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    error = error_from_response(400, {}, raw)

    assert (error.status, error.code, error.message, error.retry_after) == (400, code, message, None)


def test_it_keeps_the_first_300_bytes_of_an_answer_that_is_not_json_readable():
    body = b"<html>x" + "é".encode() * 200  # the 300th byte is the first half of an "é"

    error = error_from_response(502, {"Retry-After": "7"}, body)

    assert (error.status, error.code, error.retry_after) == (502, "HTTP502", 7.0)
    assert error.message == "<html>x" + "é" * 146 + "\ufffd"


def test_it_replaces_bytes_that_are_not_utf8_in_an_unreadable_answer():
    error = error_from_response(503, {}, b"busy \xff\xfe now")

    assert error.message == "busy \ufffd\ufffd now"


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({}, None),
        ({"Content-Type": "text/plain"}, None),
        ({"X-Correlating-OperationId": "12", "Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"RETRY-AFTER": "2"}, 2.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ],
    ids=["none", "other-headers", "among-others", "lower-case", "upper-case", "negative", "unreadable", "past-date"],
)
def test_it_reads_retry_after_by_any_name_case_as_seconds_never_below_zero(headers, seconds):
    assert parse_retry_after(headers) == seconds


def test_it_reads_retry_after_as_an_http_date_as_the_seconds_until_then():
    then = datetime.now(timezone.utc) + timedelta(seconds=30)

    seconds = parse_retry_after({"Retry-After": format_datetime(then, usegmt=True)})

    assert 28.0 <= seconds <= 30.0


def test_it_says_no_answer_for_an_error_without_a_status_and_keeps_its_text_to_1000_characters():
    assert str(ConnectorError(status=None, code="Timeout", message="read timed out")) == "no answer Timeout: read timed out"
    assert str(ConnectorError(status=503, code="ServiceUnavailable", message="busy")) == "503 ServiceUnavailable: busy"
    long = str(ConnectorError(status=500, code="InternalServerError", message="x" * 2000))
    assert long == ("500 InternalServerError: " + "x" * 2000)[:1000]


def test_a_teams_members_are_asked_a_page_at_a_time_the_first_without_a_continuation(wire):
    recorder = wire(answer(200, {"members": [{"id": "29:a"}], "continuationToken": "next+page/2"}),
                    answer(200, {"members": []}))
    client = BotConnectorClient(Tokens("token-1"))

    first = client.paged_members(service_url=SERVICE_URL, conversation_id="19:team@thread.tacv2", continuation="",
                                 page_size=500)
    second = client.paged_members(service_url=SERVICE_URL, conversation_id="19:team@thread.tacv2",
                                  continuation="next+page/2", page_size=50)

    assert first == {"members": [{"id": "29:a"}], "continuationToken": "next+page/2"} and second == {"members": []}
    team = f"{BASE}/v3/conversations/19%3Ateam%40thread.tacv2/pagedmembers"
    assert [(r["method"], r["url"]) for r in recorder.requests] == [
        ("GET", f"{team}?pageSize=500"),
        ("GET", f"{team}?pageSize=50&continuationToken=next%2Bpage%2F2"),
    ]


def test_a_members_page_that_is_not_an_object_reads_as_an_empty_page(wire):
    wire(answer(200, [{"id": "29:a"}]))

    page = BotConnectorClient(Tokens("token-1")).paged_members(
        service_url=SERVICE_URL, conversation_id="19:team@thread.tacv2", continuation="", page_size=500
    )

    assert page == {}
