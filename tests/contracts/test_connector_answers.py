"""Crier's side of the contract: each documented Teams answer, served over real HTTP from a loopback
server, goes through the real connector (``core.http``, ``bots.connector``), classification
(``bots.transport``), retry policy (``delivery.retry``) and recording (``delivery.sending``), and
must come out as its fixture says."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bots.connector import BotConnectorClient
from bots.models import TeamsAddress
from bots.pacing import Pacer
from bots.transport import TeamsTransport
from campaigns.models import OptOut
from core import http
from core.channels import Address, TransportError
from delivery import services
from delivery.models import Delivery
from delivery.retry import retry_in
from delivery.sending import delivery_send
from tests import factories

from .teams_answers import ANSWERS, TeamsAnswer

CLIENT_TIMEOUT = 0.3  # seconds the connector waits for an answer here
STORED_CONVERSATION = "a:stored"
FRESH_CONVERSATION = "a:fresh"


class FakeTeams(ThreadingHTTPServer):
    """Answers every send with ``answer`` (a new conversation is always created); records the calls."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer: TeamsAnswer | None = None
        self.calls: list[tuple[str, str]] = []
        self.release = threading.Event()  # ends the waits of calls left unanswered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/teams/"


class _Handler(BaseHTTPRequestHandler):
    server: FakeTeams

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls.append(("POST", self.path))
        if self.path.endswith("/v3/conversations"):
            created = json.dumps({"id": FRESH_CONVERSATION}).encode()
            return self._reply(201, {"Content-Type": "application/json"}, created)
        answer = self.server.answer
        assert answer is not None
        if answer.status is None:
            self.server.release.wait(10)  # never answers while the client waits
            return None
        headers = {"Content-Type": "application/json; charset=utf-8", **answer.headers_at(time.time())}
        return self._reply(answer.status, headers, answer.body_bytes())

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StaticTokens:
    def get(self) -> str:
        return "token"

    def invalidate(self) -> None:
        pass


@pytest.fixture
def fake_teams(settings, redis_client):
    settings.TEAMS_PACING = False
    settings.BOT_HTTP_TIMEOUT_SECONDS = CLIENT_TIMEOUT
    http.reset_pool()
    server = FakeTeams()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    http.reset_pool()


def serving(server: FakeTeams, answer: TeamsAnswer) -> str:
    """The service URL at which ``answer`` is given: for a refused connection, a port nothing listens on."""
    server.answer = answer
    if answer.name == "connection refused":
        with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
            port = closed.server_address[1]
        return f"http://127.0.0.1:{port}/teams/"
    return server.url


def transport() -> TeamsTransport:
    return TeamsTransport(client=BotConnectorClient(tokens=StaticTokens()), pacing=Pacer())


def assert_wait_as_the_contract_says(answer: TeamsAnswer, delay: float | None, settings) -> None:
    if answer.permanent:
        assert delay is None, f"{answer} must not be retried"
    elif answer.retry_after is not None:
        # Teams' wait honoured: never shorter (an HTTP-date has whole seconds), jitter adds at most 1 s.
        assert delay is not None and answer.retry_after - 1.0 <= delay <= answer.retry_after + 1.0, delay
    else:
        # No wait named: the first backoff step, with jitter.
        assert delay is not None and 0 < delay <= settings.DELIVERY_BACKOFF_BASE_SECONDS, delay


@pytest.mark.parametrize("answer", ANSWERS, ids=str)
def test_it_classifies_each_documented_answer_and_waits_as_the_contract_says(fake_teams, settings, answer):
    address = Address(member_id="29:someone", tenant_id="tenant-a", service_url=serving(fake_teams, answer),
                      conversation_id=STORED_CONVERSATION)

    with pytest.raises(TransportError) as raised:
        transport().send(address=address, activity_json=b'{"type": "message", "text": "Hi"}')

    error = raised.value
    assert (error.status, error.code) == (answer.status, answer.code)
    assert (error.permanent, error.opt_out) == (answer.permanent, answer.opt_out)
    if answer.retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None and answer.retry_after - 1.0 <= error.retry_after <= answer.retry_after
    assert_wait_as_the_contract_says(answer, retry_in(attempt=1, error=error), settings)
    if answer.name != "connection refused":
        sends = [path for _, path in fake_teams.calls if path.endswith("/activities")]
        creates = [path for _, path in fake_teams.calls if path.endswith("/v3/conversations")]
        # A stale conversation is replaced once, then the answer stands; any other answer is final for this call.
        assert (len(creates), len(sends)) == ((1, 2) if answer.recreate else (0, 1))


@pytest.mark.django_db
@pytest.mark.parametrize("answer", ANSWERS, ids=str)
def test_it_records_each_documented_answer_as_the_contract_says(fake_teams, settings, answer):
    person = factories.recipient()
    TeamsAddress.objects.create(
        aad_object_id=person.aad_object_id, tenant_id=settings.BOT_TENANT_ID or "tenant-a", user_id="29:someone",
        conversation_id=STORED_CONVERSATION, service_url=serving(fake_teams, answer),
        state=TeamsAddress.State.INSTALLED,
    )
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)

    outcome = delivery_send(delivery_id=delivery.pk, transport=transport())

    delivery.refresh_from_db()
    assert delivery.status == outcome.status == ("failed" if answer.permanent else "retrying")
    assert (delivery.error_code, delivery.last_status_code) == (answer.code, answer.status)
    assert_wait_as_the_contract_says(answer, outcome.retry_in, settings)
    blocked = OptOut.objects.filter(recipient=person, source=OptOut.Source.BLOCKED).exists()
    assert blocked is answer.opt_out
    state = TeamsAddress.objects.get(aad_object_id=person.aad_object_id).state
    assert (state == TeamsAddress.State.BLOCKED) is answer.opt_out
