"""The Teams transport on its own: which address and which pacing thread each call uses, how a stale
conversation is replaced, what an error carries, and what Teams' 429 tells the pacer. The connector
and the pacer are stand-ins that record what they were asked, so every argument is pinned."""

from __future__ import annotations

import pytest
import redis

from bots.connector import ConnectorError
from bots.transport import TeamsTransport, classify
from core.channels import Address, Content, SendResult, TransportError

SERVICE_URL = "https://smba.example.test/emea/"
ADDRESS = Address(member_id="29:member", tenant_id="tenant-a", service_url=SERVICE_URL)
STORED = Address(member_id="29:member", tenant_id="tenant-a", service_url=SERVICE_URL, conversation_id="a:stored")


class Connector:
    """Answers from a script: each call takes the next answer for its kind (an exception is raised)."""

    def __init__(self, *, create=(), send=(), update=(), delete=(), members=()) -> None:
        self.answers = {"create": list(create), "send": list(send), "update": list(update), "delete": list(delete),
                        "members": list(members)}
        self.calls: list[tuple] = []

    def prepare(self) -> None:
        self.calls.append(("prepare",))

    def _answer(self, kind: str, arguments: dict):
        self.calls.append((kind, arguments))
        answer = self.answers[kind].pop(0) if self.answers[kind] else None
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create_conversation(self, **arguments):
        return self._answer("create", arguments)

    def send(self, **arguments):
        return self._answer("send", arguments)

    def paged_members(self, **arguments):
        return self._answer("members", arguments)

    def update(self, **arguments):
        return self._answer("update", arguments)

    def delete(self, **arguments):
        return self._answer("delete", arguments)


class Pacing:
    def __init__(self, *, acquire_error: Exception | None = None, throttled_error: Exception | None = None) -> None:
        self.acquired: list[dict] = []
        self.throttles: list[dict] = []
        self.acquire_error, self.throttled_error = acquire_error, throttled_error

    def acquire(self, **arguments) -> float:
        self.acquired.append(arguments)
        if self.acquire_error:
            raise self.acquire_error
        return 0.0

    def throttled(self, **arguments) -> float:
        self.throttles.append(arguments)
        if self.throttled_error:
            raise self.throttled_error
        return 0.0


def transport(connector: Connector, pacing: Pacing | None = None) -> TeamsTransport:
    return TeamsTransport(client=connector, pacing=pacing or Pacing())


# --- Reaching a person ---------------------------------------------------------------------------


def test_it_creates_the_conversation_then_sends_in_it_each_paced_on_its_own_thread():
    connector, pacing = Connector(create=["a:new"], send=["1:activity"]), Pacing()

    result = transport(connector, pacing).send(address=ADDRESS, activity_json=b'{"text":"hi"}', campaign_id=7)

    assert result == SendResult(activity_id="1:activity", conversation_id="a:new")
    assert connector.calls == [
        ("prepare",),
        ("create", {"service_url": SERVICE_URL, "tenant_id": "tenant-a", "member_id": "29:member"}),
        ("prepare",),
        ("send", {"service_url": SERVICE_URL, "conversation_id": "a:new", "activity_json": b'{"text":"hi"}'}),
    ]
    assert pacing.acquired == [
        {"tenant_id": "tenant-a", "thread": "user:29:member", "campaign_id": 7},
        {"tenant_id": "tenant-a", "thread": "conversation:a:new", "campaign_id": 7},
    ]


def test_it_sends_in_a_stored_conversation_without_creating_one():
    connector, pacing = Connector(send=["1:activity"]), Pacing()

    result = transport(connector, pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert result == SendResult(activity_id="1:activity", conversation_id="a:stored")
    assert [call[0] for call in connector.calls] == ["prepare", "send"]
    assert pacing.acquired == [{"tenant_id": "tenant-a", "thread": "conversation:a:stored", "campaign_id": 7}]


def test_it_replaces_a_stored_conversation_the_person_deleted_once():
    gone = ConnectorError(status=404, code="ConversationNotFound", message="Conversation not found.")
    connector = Connector(create=["a:new"], send=[gone, "1:activity"])

    result = transport(connector).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert result == SendResult(activity_id="1:activity", conversation_id="a:new")
    assert [(call[0], call[1].get("conversation_id")) for call in connector.calls if call[0] != "prepare"] == [
        ("send", "a:stored"), ("create", None), ("send", "a:new"),
    ]


def test_it_gives_up_when_the_new_conversation_is_not_found_either():
    gone = ConnectorError(status=404, code="ConversationNotFound", message="Conversation not found.")
    connector = Connector(create=["a:new"], send=[gone, gone])

    with pytest.raises(TransportError) as raised:
        transport(connector).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert (raised.value.status, raised.value.code, raised.value.permanent) == (404, "ConversationNotFound", True)
    assert raised.value.conversation_id == "a:new"
    assert [call[0] for call in connector.calls if call[0] != "prepare"] == ["send", "create", "send"]


@pytest.mark.parametrize(
    "answer",
    [
        ConnectorError(status=404, code="NotFound", message="Some other thing is missing."),
        ConnectorError(status=410, code="ConversationNotFound", message="Gone."),
    ],
    ids=["another-404-code", "another-status"],
)
def test_it_keeps_a_stored_conversation_for_any_answer_but_conversation_not_found(answer):
    connector = Connector(send=[answer])

    with pytest.raises(TransportError) as raised:
        transport(connector).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert (raised.value.status, raised.value.code) == (answer.status, answer.code)
    assert raised.value.conversation_id == "a:stored"
    assert [call[0] for call in connector.calls if call[0] != "prepare"] == ["send"]


def test_it_does_not_create_twice_when_a_conversation_it_just_created_is_not_found():
    gone = ConnectorError(status=404, code="ConversationNotFound", message="Conversation not found.")
    connector = Connector(create=["a:new", "a:newer"], send=[gone, "1:activity"])

    with pytest.raises(TransportError) as raised:
        transport(connector).send(address=ADDRESS, activity_json=b"{}", campaign_id=7)

    assert raised.value.conversation_id == "a:new"  # kept for the next attempt
    assert [call[0] for call in connector.calls if call[0] != "prepare"] == ["create", "send"]


def test_it_reports_a_refused_conversation_creation_with_no_conversation():
    refused = ConnectorError(status=403, code="ConversationBlockedByUser", message="User blocked the bot.")
    connector = Connector(create=[refused])

    with pytest.raises(TransportError) as raised:
        transport(connector).send(address=ADDRESS, activity_json=b"{}", campaign_id=7)

    error = raised.value
    assert (error.status, error.code, error.message) == (403, "ConversationBlockedByUser", "User blocked the bot.")
    assert (error.permanent, error.opt_out, error.conversation_id) == (True, True, "")
    assert [call[0] for call in connector.calls if call[0] != "prepare"] == ["create"]


def test_it_keeps_the_conversation_it_created_when_the_send_in_it_fails():
    busy = ConnectorError(status=503, code="ServiceUnavailable", message="Try later.", retry_after=4.0)
    connector = Connector(create=["a:new"], send=[busy])

    with pytest.raises(TransportError) as raised:
        transport(connector).send(address=ADDRESS, activity_json=b"{}", campaign_id=7)

    error = raised.value
    assert (error.status, error.code, error.message, error.retry_after) == (503, "ServiceUnavailable", "Try later.", 4.0)
    assert (error.permanent, error.opt_out, error.conversation_id) == (False, False, "a:new")


# --- Pacing ------------------------------------------------------------------------------------


def test_it_readies_the_token_before_it_takes_the_slot():
    order: list[str] = []
    connector, pacing = Connector(send=["1:activity"]), Pacing()
    connector.prepare = lambda: order.append("token")
    real_acquire = pacing.acquire
    pacing.acquire = lambda **arguments: (order.append("slot"), real_acquire(**arguments))[1]

    transport(connector, pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert order == ["token", "slot"]


def test_it_reports_an_unreachable_pacer_as_a_transient_failure_without_calling_teams():
    connector = Connector(send=["1:activity"])
    pacing = Pacing(acquire_error=redis.ConnectionError("Error 111 connecting to redis. " + "x" * 300))

    with pytest.raises(TransportError) as raised:
        transport(connector, pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    error = raised.value
    assert (error.status, error.code, error.permanent, error.opt_out) == (None, "PacerUnavailable", False, False)
    assert error.message == ("Error 111 connecting to redis. " + "x" * 300)[:200]
    assert [call[0] for call in connector.calls] == ["prepare"]


def test_it_tells_the_pacer_of_a_429_with_its_tenant_and_retry_after():
    throttled = ConnectorError(status=429, code="TooManyRequests", message="Slow down.", retry_after=2.5)
    pacing = Pacing()

    with pytest.raises(TransportError) as raised:
        transport(Connector(send=[throttled]), pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert pacing.throttles == [{"tenant_id": "tenant-a", "retry_after": 2.5}]
    assert (raised.value.status, raised.value.retry_after, raised.value.permanent) == (429, 2.5, False)


def test_it_tells_the_pacer_nothing_of_other_failures():
    pacing = Pacing()

    with pytest.raises(TransportError):
        transport(Connector(send=[ConnectorError(status=503, code="ServiceUnavailable", message="", retry_after=3.0)]),
                  pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert pacing.throttles == []


def test_it_still_reports_the_429_when_the_pacer_cannot_be_told():
    throttled = ConnectorError(status=429, code="TooManyRequests", message="Slow down.", retry_after=1.0)
    pacing = Pacing(throttled_error=redis.ConnectionError("down"))

    with pytest.raises(TransportError) as raised:
        transport(Connector(send=[throttled]), pacing).send(address=STORED, activity_json=b"{}", campaign_id=7)

    assert (raised.value.status, raised.value.code) == (429, "TooManyRequests")


# --- Edits, recalls and replies -----------------------------------------------------------------


def test_it_edits_in_the_message_s_conversation_paced_but_never_stopped_by_a_campaign():
    connector, pacing = Connector(), Pacing()

    transport(connector, pacing).update(address=STORED, activity_id="1:activity", activity_json=b'{"text":"new"}')

    assert connector.calls == [
        ("prepare",),
        ("update", {"service_url": SERVICE_URL, "conversation_id": "a:stored", "activity_id": "1:activity",
                    "activity_json": b'{"text":"new"}'}),
    ]
    assert pacing.acquired == [{"tenant_id": "tenant-a", "thread": "conversation:a:stored", "campaign_id": None}]


def test_it_recalls_in_the_message_s_conversation_paced_but_never_stopped_by_a_campaign():
    connector, pacing = Connector(), Pacing()

    transport(connector, pacing).delete(address=STORED, activity_id="1:activity")

    assert connector.calls == [
        ("prepare",),
        ("delete", {"service_url": SERVICE_URL, "conversation_id": "a:stored", "activity_id": "1:activity"}),
    ]
    assert pacing.acquired == [{"tenant_id": "tenant-a", "thread": "conversation:a:stored", "campaign_id": None}]


def test_it_replies_in_the_conversation_the_person_wrote_in_and_returns_the_activity_id():
    connector, pacing = Connector(send=["1:reply"]), Pacing()

    assert transport(connector, pacing).reply(address=STORED, activity_json=b'{"text":"thanks"}') == "1:reply"

    assert connector.calls == [
        ("prepare",),
        ("send", {"service_url": SERVICE_URL, "conversation_id": "a:stored", "activity_json": b'{"text":"thanks"}'}),
    ]
    assert pacing.acquired == [{"tenant_id": "tenant-a", "thread": "conversation:a:stored", "campaign_id": None}]


def test_it_reports_a_failed_edit_with_its_conversation():
    missing = ConnectorError(status=404, code="ActivityNotFound", message="No such activity.")
    with pytest.raises(TransportError) as raised:
        transport(Connector(update=[missing])).update(address=STORED, activity_id="1:activity", activity_json=b"{}")

    error = raised.value
    assert (error.status, error.code, error.message, error.permanent) == (404, "ActivityNotFound", "No such activity.", True)
    assert error.conversation_id == "a:stored"


# --- What an error carries ----------------------------------------------------------------------


def test_it_builds_an_error_that_is_no_opt_out_and_names_no_conversation_unless_told():
    error = TransportError(status=None, code="CrierError", message="boom", permanent=True)

    assert (error.opt_out, error.personal, error.conversation_id, error.retry_after) == (False, False, "", None)
    assert (error.status, error.code, error.message, error.permanent) == (None, "CrierError", "boom", True)
    assert str(error) == "None CrierError: boom"


def test_it_classifies_without_a_conversation_unless_given_one():
    error = ConnectorError(status=502, code="BadGateway", message="Bad gateway.", retry_after=1.5)

    assert classify(error).conversation_id == ""
    classified = classify(error, conversation_id="a:1")
    assert (classified.status, classified.code, classified.message) == (502, "BadGateway", "Bad gateway.")
    assert (classified.retry_after, classified.permanent, classified.conversation_id) == (1.5, False, "a:1")


@pytest.mark.parametrize(
    "status, code, opt_out",
    [
        (403, "ConversationBlockedByUser", True),
        (403, "MessageWritesBlocked", True),
        (403, "209", True),
        (403, "BotNotInConversationRoster", False),
        (404, "ConversationBlockedByUser", False),
        (None, "ConversationBlockedByUser", False),
    ],
)
def test_it_reads_an_opt_out_only_from_a_403_blocked_answer(status, code, opt_out):
    assert classify(ConnectorError(status=status, code=code, message="")).opt_out is opt_out


@pytest.mark.parametrize(
    "status, code, personal",
    [
        (403, "ConversationBlockedByUser", True),
        (403, "MessageWritesBlocked", True),
        (403, "209", True),
        (403, "ForbiddenOperationException", True),
        (403, "BotNotInConversationRoster", True),
        (404, "BotNotInConversationRoster", True),  # about the person whatever the status
        (403, "Forbidden", False),
        (401, "Unauthorized", False),
        (503, "ServiceUnavailable", False),
        (None, "Timeout", False),
    ],
)
def test_it_says_which_refusals_are_about_one_person_only(status, code, personal):
    assert classify(ConnectorError(status=status, code=code, message="")).personal is personal


def test_it_wraps_content_into_a_message_activity():
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi"}]}

    text = TeamsTransport.wrap(Content(text="**Hi**"))
    carded = TeamsTransport.wrap(Content(card=card, summary="Hi"))

    assert (text["type"], text["text"], text["textFormat"]) == ("message", "**Hi**", "markdown")
    assert "attachments" not in text
    assert (carded["type"], carded["summary"], "text" in carded) == ("message", "Hi", False)
    assert carded["attachments"] == [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]


def test_a_teams_members_are_read_paced_on_the_teams_own_thread():
    connector, pacing = Connector(members=[{"members": []}]), Pacing()
    team = Address(member_id="", tenant_id="tenant-a", service_url=SERVICE_URL, conversation_id="19:team@thread.tacv2")

    page = transport(connector, pacing).members_page(address=team, continuation="token", page_size=50)

    assert page == {"members": []}
    assert connector.calls == [("prepare",), ("members", {
        "service_url": SERVICE_URL, "conversation_id": "19:team@thread.tacv2", "continuation": "token", "page_size": 50,
    })]
    assert pacing.acquired == [{"tenant_id": "tenant-a", "thread": "conversation:19:team@thread.tacv2", "campaign_id": None}]
