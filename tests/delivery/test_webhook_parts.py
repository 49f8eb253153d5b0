"""Webhooks, piece by piece, inside one test transaction: the secret, the signature, the subscriptions
cache, the event rows, one call and what it records, the backoff numbers and the outbox sweep.
(The dispatcher itself, which sends only committed events, is tested in test_webhooks.py.)"""

import json
import re
import threading
import time
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from delivery import webhooks
from delivery.models import WebhookAttempt, WebhookEndpoint, WebhookEvent

pytestmark = pytest.mark.django_db
SECRET = "whsec_test"


def test_it_makes_a_fresh_url_safe_secret_with_the_whsec_prefix_each_time():
    secrets = {webhooks.new_secret() for _ in range(20)}

    assert len(secrets) == 20
    for secret in secrets:
        assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)  # 32 random bytes


def test_it_signs_the_timestamp_and_the_body_with_hmac_sha256():
    signed = webhooks.signature(secret="whsec_abc", timestamp=1700000000, body=b'{"events":[]}')

    # HMAC-SHA256 of b'1700000000.{"events":[]}' keyed with b"whsec_abc"
    assert signed == "t=1700000000,v1=0d15ce1ab0b2c13906227bd6dd39bd574ed7356bef7906ee5eba6bbe9e4b035a"


def test_it_looks_the_subscriptions_up_again_only_after_five_seconds():
    WebhookEndpoint.objects.create(name="a", url="https://a.example/", secret=SECRET, events=["delivery.sent"])
    WebhookEndpoint.objects.create(name="b", url="https://b.example/", secret=SECRET,
                                   events=["delivery.failed", "opt_out.created"])
    WebhookEndpoint.objects.create(name="off", url="https://c.example/", secret=SECRET, events=["delivery.skipped"],
                                   active=False)
    webhooks.forget_subscriptions()

    assert webhooks.wanted_types() == {"delivery.sent", "delivery.failed", "opt_out.created"}

    WebhookEndpoint.objects.filter(name="a").update(active=False)
    webhooks._wanted = (time.monotonic() - 4.5, webhooks._wanted[1])
    assert webhooks.wanted_types() == {"delivery.sent", "delivery.failed", "opt_out.created"}  # still cached
    webhooks._wanted = (time.monotonic() - 5.5, webhooks._wanted[1])
    assert webhooks.wanted_types() == {"delivery.failed", "opt_out.created"}
    assert webhooks.wanted_types() == {"delivery.failed", "opt_out.created"}
    webhooks.forget_subscriptions()


def test_it_records_only_subscribed_events_with_their_payload_as_json():
    WebhookEndpoint.objects.create(name="a", url="https://a.example/", secret=SECRET, events=["opt_out.created"])
    webhooks.forget_subscriptions()
    at = datetime(2026, 3, 1, 9, 30, tzinfo=dt_timezone.utc)

    webhooks.event_record(type="opt_out.created", payload={"at": at, "day": date(2026, 3, 1), "n": Decimal("1.5")})
    webhooks.event_record(type="opt_out.deleted", payload={"at": at})

    assert list(WebhookEvent.objects.values_list("type", "payload")) == [
        ("opt_out.created", {"at": "2026-03-01T09:30:00Z", "day": "2026-03-01", "n": "1.5"})
    ]
    webhooks.forget_subscriptions()


def test_an_excerpt_is_the_first_200_characters_on_one_line():
    assert webhooks.excerpt("  Bad\n\tgateway   here \r\n") == "Bad gateway here"
    assert webhooks.excerpt("x" * 500) == "x" * 200


@pytest.mark.parametrize(
    "failures_before, bound, delay",
    [(0, "low", 1.6), (0, "high", 2.4), (3, "low", 12.8), (3, "high", 19.2), (10, "low", 1638.4),
     (11, "high", 4320.0), (30, "low", 2880.0)],
)
def test_it_backs_off_exponentially_with_jitter_up_to_an_hour(monkeypatch, failures_before, bound, delay):
    endpoint = WebhookEndpoint.objects.create(name="a", url="https://a.example/", secret=SECRET,
                                              events=["opt_out.created"], failures=failures_before)
    monkeypatch.setattr(webhooks.random, "uniform", lambda low, high: low if bound == "low" else high)
    before = timezone.now()

    webhooks._back_off(endpoint)

    after = timezone.now()
    row = WebhookEndpoint.objects.get()
    assert row.failures == failures_before + 1
    assert before + timedelta(seconds=delay) <= row.next_attempt_at <= after + timedelta(seconds=delay)


class Receiver:
    def __init__(self, status: int, answer: bytes = b"", pause: float = 0.0) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(pause)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture
def answering(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True
    started = []

    def start(status, answer=b"", pause=0.0):
        started.append(Receiver(status, answer, pause))
        return started[-1]

    yield start
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


def three_events():
    for n in range(3):
        WebhookEvent.objects.create(type="opt_out.created", payload={"n": n})
    for offset, event in enumerate(WebhookEvent.objects.order_by("id")):
        WebhookEvent.objects.filter(pk=event.pk).update(transaction_id=1000 + offset)
    return list(WebhookEvent.objects.order_by("id"))


@pytest.mark.parametrize("status", [200, 299])
def test_a_call_posts_the_events_signed_moves_the_cursor_and_records_the_attempt(answering, status):
    receiver = answering(status, answer=b"thanks", pause=0.3)  # a success's answer is not kept
    endpoint = WebhookEndpoint.objects.create(name="hr", url=receiver.url, secret=SECRET, events=["opt_out.created"],
                                              failures=3, next_attempt_at=timezone.now())
    events = three_events()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(name="renamed meanwhile")
    before = int(time.time())

    assert webhooks._post(endpoint, events) is True

    [(headers, body)] = receiver.calls
    assert json.loads(body) == {"events": [
        {"id": e.id, "type": "opt_out.created", "created_at": e.created_at.isoformat(), "data": {"n": n}}
        for n, e in enumerate(events)
    ]}
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "Crier-Webhooks/1"
    timestamp = int(headers["crier-signature"].split(",")[0].removeprefix("t="))
    assert before <= timestamp <= int(time.time())
    assert headers["crier-signature"] == webhooks.signature(secret=SECRET, timestamp=timestamp, body=body)
    row = WebhookEndpoint.objects.get()
    assert (row.cursor, row.cursor_transaction, row.failures, row.next_attempt_at, row.name) == (
        events[2].id, 1002, 0, None, "renamed meanwhile"
    )
    attempt = WebhookAttempt.objects.get()
    assert (attempt.endpoint_id, attempt.first_event_id, attempt.last_event_id, attempt.events) == (
        endpoint.pk, events[0].id, events[2].id, 3
    )
    assert (attempt.status_code, attempt.ok, attempt.error) == (status, True, "")
    assert 300 <= attempt.duration_ms < 5000


@pytest.mark.parametrize("status", [300, 404, 503])
def test_a_call_answered_outside_2xx_keeps_the_cursor_backs_off_and_keeps_the_answer_as_text(answering, status):
    receiver = answering(status, answer=b"\xff  not\n\nutf-8 ")
    endpoint = WebhookEndpoint.objects.create(name="hr", url=receiver.url, secret=SECRET, events=["opt_out.created"],
                                              cursor=7, cursor_transaction=70)
    events = three_events()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(name="renamed meanwhile")

    assert webhooks._post(endpoint, events) is False

    row = WebhookEndpoint.objects.get()
    assert (row.cursor, row.cursor_transaction, row.failures, row.name) == (7, 70, 1, "renamed meanwhile")
    assert row.next_attempt_at > timezone.now()
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.ok, attempt.error, attempt.events) == (status, False, "\ufffd not utf-8", 3)


def make_old(event: WebhookEvent, *, days: float) -> None:
    WebhookEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days))


def test_it_drops_events_a_day_old_that_every_active_endpoint_has_had():
    old_had, old_pending, recent = three_events()  # transactions 1000, 1001, 1002
    make_old(old_had, days=1.1)
    make_old(old_pending, days=1.1)
    make_old(recent, days=0.9)
    WebhookEndpoint.objects.create(name="ahead", url="https://a.example/", secret=SECRET, events=["opt_out.created"],
                                   cursor=recent.id, cursor_transaction=1002)
    WebhookEndpoint.objects.create(name="behind", url="https://b.example/", secret=SECRET, events=["opt_out.created"],
                                   cursor=old_had.id, cursor_transaction=1001)
    WebhookEndpoint.objects.create(name="off", url="https://c.example/", secret=SECRET, events=["opt_out.created"],
                                   cursor=0, cursor_transaction=0, active=False)

    webhooks._forget_delivered()

    assert list(WebhookEvent.objects.order_by("id").values_list("id", flat=True)) == [old_pending.id, recent.id]


def test_without_an_active_endpoint_every_event_a_day_old_is_dropped():
    old, older, recent = three_events()
    make_old(old, days=1.1)
    make_old(older, days=3)
    make_old(recent, days=0.9)

    webhooks._forget_delivered()

    assert list(WebhookEvent.objects.values_list("id", flat=True)) == [recent.id]


def test_an_attempt_records_how_long_the_call_took_in_whole_milliseconds(answering, monkeypatch):
    receiver = answering(200)
    endpoint = WebhookEndpoint.objects.create(name="hr", url=receiver.url, secret=SECRET, events=["opt_out.created"])
    readings = iter([50.0, 52.5])  # the clock as the call starts, then as it ends

    class Clock:
        time = staticmethod(time.time)
        monotonic = staticmethod(lambda: next(readings))

    monkeypatch.setattr(webhooks, "time", Clock)

    assert webhooks._post(endpoint, three_events()) is True

    assert WebhookAttempt.objects.get().duration_ms == 2500
