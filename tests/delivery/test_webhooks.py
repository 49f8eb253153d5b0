"""Webhooks: delivery and opt-out events, signed, in order, retried with backoff, logged."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import OptOut
from campaigns.services import opt_out_record
from delivery import services, webhooks
from delivery.models import WebhookAttempt, WebhookEndpoint, WebhookEvent
from delivery.sending import delivery_send
from tests import factories

# Real commits: the dispatcher sends only events of transactions that have ended.
pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "whsec_test"


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that answers with the statuses it is given, in turn."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events(self) -> list[dict]:
        return [event for _, body in self.calls for event in json.loads(body)["events"]]


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.server.shutdown()


def subscribe(receiver, *events) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(name="hr", url=receiver.url, secret=SECRET, events=list(events))
    webhooks.forget_subscriptions()
    return endpoint


def test_a_sent_message_reaches_the_endpoint_signed_and_in_order(teams, receiver):
    endpoint = subscribe(receiver, "delivery.sent", "delivery.failed")
    person = factories.recipient(external_id="E42")
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    delivery_send(delivery_id=campaign.deliveries.get().pk)
    delivered = webhooks.dispatch()

    assert delivered == 1
    [(headers, body)] = receiver.calls
    [event] = json.loads(body)["events"]
    assert event["type"] == "delivery.sent"
    assert (event["data"]["recipient"], event["data"]["campaign"]) == ("E42", campaign.pk)
    assert event["data"]["activity_id"]
    timestamp, signature = (part.split("=", 1)[1] for part in headers["crier-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    endpoint.refresh_from_db()
    assert endpoint.cursor == event["id"] and endpoint.failures == 0
    assert WebhookAttempt.objects.get().ok
    assert person.external_id == "E42"


def test_a_failing_endpoint_is_retried_later_from_the_same_event(receiver):
    endpoint = subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    receiver.statuses = [500]

    assert webhooks.dispatch() == 0
    assert webhooks.dispatch() == 0  # not due yet: no second call

    endpoint.refresh_from_db()
    assert (endpoint.failures, endpoint.cursor, len(receiver.calls)) == (1, 0, 1)
    assert endpoint.next_attempt_at > timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhooks.dispatch() == 1
    assert [e["data"]["recipient"] for e in receiver.events()] == ["E1", "E1"]  # the same event, again
    assert list(WebhookAttempt.objects.order_by("id").values_list("ok", "status_code")) == [(False, 500), (True, 200)]


def test_opting_out_and_back_in_are_both_events(receiver):
    subscribe(receiver, "opt_out.created", "opt_out.deleted")
    opt_out, _ = opt_out_record(recipient=factories.recipient(external_id="E9"), source=OptOut.Source.TYPED_STOP)
    opt_out.delete()

    webhooks.dispatch()

    assert [(e["type"], e["data"]["source"]) for e in receiver.events()] == [
        ("opt_out.created", "typed_stop"), ("opt_out.deleted", "typed_stop")
    ]


def test_cancelling_tells_the_endpoint_who_was_skipped(receiver):
    subscribe(receiver, "delivery.skipped")
    factories.recipient(external_id="E5")
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    services.campaign_cancel(campaign_id=campaign.pk)
    webhooks.dispatch()

    [event] = receiver.events()
    assert (event["data"]["recipient"], event["data"]["skip_reason"]) == ("E5", "campaign_cancelled")


def test_without_a_subscriber_no_events_are_kept(teams):
    webhooks.forget_subscriptions()
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    delivery_send(delivery_id=campaign.deliveries.get().pk)
    assert not WebhookEvent.objects.exists()


def test_webhooks_go_over_https_except_to_this_machine():
    endpoint = WebhookEndpoint(name="x", url="http://hr.example/hook", secret="s", events=["delivery.sent"])
    with pytest.raises(ValidationError):
        endpoint.full_clean()
    endpoint.url = "https://hr.example/hook"
    endpoint.full_clean()


def test_an_event_whose_transaction_is_still_running_waits_and_is_not_skipped(receiver):
    import threading as _threading

    from django.db import connection, transaction

    subscribe(receiver, "opt_out.created")
    early, late = factories.recipient(external_id="early"), factories.recipient(external_id="late")
    in_transaction, release = _threading.Event(), _threading.Event()

    def slow_writer():
        with transaction.atomic():
            opt_out_record(recipient=early, source=OptOut.Source.API)  # takes the lower event id
            in_transaction.set()
            release.wait(10)
        connection.close()

    writer = _threading.Thread(target=slow_writer)
    writer.start()
    in_transaction.wait(10)
    opt_out_record(recipient=late, source=OptOut.Source.API)  # commits first, with a higher id

    webhooks.dispatch()
    assert receiver.events() == []  # "late" waits: an older transaction is still running
    release.set()
    writer.join(10)
    webhooks.dispatch()

    assert [e["data"]["recipient"] for e in receiver.events()] == ["early", "late"]
