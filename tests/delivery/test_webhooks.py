"""Webhooks: delivery and opt-out events, signed, in order, retried with backoff, logged."""

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
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

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        self.answer_headers: dict[str, str] = {}
        self.answer_body = b""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(delay)  # as a real service takes a while
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                for name, value in receiver.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.answer_body)))
                self.end_headers()
                self.wfile.write(receiver.answer_body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events(self) -> list[dict]:
        return [event for _, body in self.calls for event in json.loads(body)["events"]]

    def batches(self) -> list[list[int]]:
        """The event ids of each call, in the order the calls arrived."""
        return [[event["id"] for event in json.loads(body)["events"]] for _, body in self.calls]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True  # the receiver listens on 127.0.0.1
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
    sent = campaign.deliveries.get(recipient=person)
    assert (event["data"]["delivery"], event["data"]["status"], event["data"]["activity_id"]) == (
        sent.pk, "sent", sent.activity_id
    )


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


def test_a_transaction_in_another_database_of_the_server_does_not_hold_events_back(receiver):
    import psycopg
    from django.db import connection

    subscribe(receiver, "opt_out.created")
    params = connection.get_connection_params()
    params["dbname"] = "postgres"  # another database of the same PostgreSQL server
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # a transaction that holds an id, left open
        opt_out_record(recipient=factories.recipient(external_id="now"), source=OptOut.Source.API)

        webhooks.dispatch()

        assert [e["data"]["recipient"] for e in receiver.events()] == ["now"]
        elsewhere.rollback()


# --- Targets: nothing internal is reachable ------------------------------------------------------

LOOPBACK = ["https://127.0.0.1/", "http://127.0.0.1:6391/", "https://localhost/", "https://[::1]/",
            "https://127.1/", "https://2130706433/", "https://0x7f000001/", "https://api.localhost/"]
METADATA = ["https://169.254.169.254/latest/meta-data/", "https://[fd00:ec2::254]/",
            "https://metadata.google.internal/computeMetadata/v1/", "https://metadata.goog/",
            "https://100.100.100.200/", "https://[::ffff:169.254.169.254]/", "https://[::ffff:a9fe:a9fe]/",
            "https://168.63.129.16/machine?comp=goalstate"]
PRIVATE = ["https://10.0.0.5/", "https://172.16.3.4/", "https://192.168.1.10/", "https://100.64.0.1/",
           "https://[fd12:3456::1]/", "https://[::ffff:10.0.0.5]/"]
OTHER_INTERNAL = ["https://0.0.0.0/", "https://[::]/", "https://169.254.1.1/", "https://[fe80::1]/",
                  "https://224.0.0.1/", "https://[ff02::1]/", "https://240.0.0.1/", "https://255.255.255.255/",
                  "https://[::ffff:127.0.0.1]/", "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/",
                  "https://[fec0::1]/"]


def endpoint_for(url: str) -> WebhookEndpoint:
    return WebhookEndpoint(name="x", url=url, secret="s", events=["delivery.sent"])


@pytest.fixture
def strict(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = False
    return settings


@pytest.mark.parametrize("url", LOOPBACK + METADATA + PRIVATE + OTHER_INTERNAL)
def test_it_refuses_an_internal_webhook_target_when_saved(strict, url):
    with pytest.raises(ValidationError) as refused:
        endpoint_for(url).full_clean()
    assert "url" in refused.value.message_dict


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_are_allowed_when_the_setting_says_so(strict, url):
    strict.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    endpoint_for(url).full_clean()


@pytest.mark.parametrize("url", LOOPBACK + METADATA + OTHER_INTERNAL)
def test_loopback_metadata_and_other_internal_targets_stay_refused_when_private_ones_are_allowed(strict, url):
    strict.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with pytest.raises(ValidationError):
        endpoint_for(url).full_clean()


def test_a_public_address_is_accepted(strict):
    endpoint_for("https://93.184.215.14/hooks").full_clean()
    endpoint_for("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hooks").full_clean()


def test_a_name_that_resolves_to_an_internal_address_is_refused_when_saved(strict, monkeypatch):
    resolve_to(monkeypatch, "hooks.example", "93.184.215.14", "10.1.2.3")
    with pytest.raises(ValidationError) as refused:
        endpoint_for("https://hooks.example/in").full_clean()
    assert "10.1.2.3" in refused.value.message_dict["url"][0]


def test_the_admin_form_names_the_url_field_for_a_metadata_target(admin_client, strict):
    response = admin_client.post(reverse("admin:delivery_webhookendpoint_add"), {
        "name": "steal", "url": "https://169.254.169.254/latest/meta-data/", "secret": "s",
        "events": ["delivery.sent"], "active": "on",
    })

    assert response.status_code == 200
    assert "url" in response.context["adminform"].form.errors
    assert not WebhookEndpoint.objects.exists()


def resolve_to(monkeypatch, name: str, *addresses: str) -> None:
    """Makes ``name`` resolve to ``addresses`` (other names resolve as usual)."""
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def rebinding_endpoint(receiver, name: str = "hooks.example") -> WebhookEndpoint:
    """An endpoint whose name was public when it was saved (saved as is: the name now resolves elsewhere)."""
    port = receiver.server.server_address[1]
    endpoint = WebhookEndpoint.objects.create(
        name="hr", url=f"http://{name}:{port}/hooks", secret=SECRET, events=["opt_out.created"]
    )
    webhooks.forget_subscriptions()
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    return endpoint


def test_a_name_rebound_to_loopback_is_refused_at_connect_time(receiver, strict, monkeypatch):
    rebinding_endpoint(receiver)
    resolve_to(monkeypatch, "hooks.example", "127.0.0.1")

    assert webhooks.dispatch() == 0

    assert receiver.calls == []
    attempt = WebhookAttempt.objects.get()
    assert (attempt.ok, attempt.status_code) == (False, None)
    assert "127.0.0.1" in attempt.error and "loopback" in attempt.error


def test_one_internal_address_among_public_ones_refuses_the_call(receiver, strict, monkeypatch):
    rebinding_endpoint(receiver)
    resolve_to(monkeypatch, "hooks.example", "127.0.0.1", "93.184.215.14")

    assert webhooks.dispatch() == 0
    assert receiver.calls == [] and "127.0.0.1" in WebhookAttempt.objects.get().error


def test_the_call_goes_to_the_address_checked_with_the_host_header_of_the_name(receiver, monkeypatch):
    rebinding_endpoint(receiver)
    resolve_to(monkeypatch, "hooks.example", "127.0.0.1")  # allowed here: the receiver's override

    assert webhooks.dispatch() == 1

    [(headers, _)] = receiver.calls
    assert headers["host"] == f"hooks.example:{receiver.server.server_address[1]}"


def test_https_is_verified_against_the_name_not_the_address(teams, settings, monkeypatch):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True  # the emulator: HTTPS on this machine, for "localhost"
    resolve_to(monkeypatch, "hooks.example", "127.0.0.1")
    good = WebhookEndpoint.objects.create(name="good", url=f"https://localhost:{teams.port}/hooks", secret=SECRET,
                                          events=["opt_out.created"])
    bad = WebhookEndpoint.objects.create(name="bad", url=f"https://hooks.example:{teams.port}/hooks", secret=SECRET,
                                         events=["opt_out.created"])
    webhooks.forget_subscriptions()
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

    webhooks.dispatch()

    assert WebhookAttempt.objects.get(endpoint=good).status_code is not None  # TLS held: the emulator answered
    refused = WebhookAttempt.objects.get(endpoint=bad)
    assert refused.status_code is None and "SSL" in refused.error  # its certificate does not name hooks.example


def test_redirects_are_not_followed(receiver):
    elsewhere = Receiver()
    try:
        subscribe(receiver, "opt_out.created")
        receiver.statuses, receiver.answer_headers = [302], {"Location": elsewhere.url}
        opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

        assert webhooks.dispatch() == 0

        assert elsewhere.calls == []
        assert list(WebhookAttempt.objects.values_list("ok", "status_code")) == [(False, 302)]
    finally:
        elsewhere.server.shutdown()


def test_only_the_status_and_a_short_excerpt_of_the_answer_are_kept(receiver):
    subscribe(receiver, "opt_out.created")
    receiver.statuses, receiver.answer_body = [500], b"<h1>secret</h1>" + b"x" * 5000
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

    webhooks.dispatch()

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 500
    assert attempt.error.startswith("<h1>secret</h1>") and len(attempt.error) <= 200


def test_the_name_is_resolved_once_and_the_call_goes_to_the_address_checked(receiver, strict, monkeypatch):
    strict.WEBHOOK_TIMEOUT_SECONDS = 0.5
    rebinding_endpoint(receiver)
    answers = [["93.184.215.14"], ["127.0.0.1"]]  # public when checked, this machine a moment later
    lookups = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.example":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[min(len(lookups), 2) - 1]]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)

    webhooks.dispatch()

    assert lookups == ["hooks.example"]
    assert receiver.calls == []  # the second answer, this machine, was never asked for nor called


def test_a_failed_call_is_logged_without_the_urls_path_which_may_hold_a_secret(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there once closed
    WebhookEndpoint.objects.create(name="hr", url=f"http://127.0.0.1:{port}/hooks/s3cr3t-token", secret=SECRET,
                                   events=["opt_out.created"])
    webhooks.forget_subscriptions()
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

    assert webhooks.dispatch() == 0

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and f"127.0.0.1:{port}" in attempt.error
    assert "s3cr3t" not in attempt.error


# --- A URL that cannot be parsed stops nothing ----------------------------------------------------

UNPARSABLE = ["https://hr\u200b.example.com/hook", "https://hr .example.com/hook", "https://hr%00.example.com/hook"]


@pytest.mark.parametrize("url", UNPARSABLE)
def test_it_refuses_a_url_whose_host_cannot_be_parsed_when_saved(strict, url):
    with pytest.raises(ValidationError) as refused:
        endpoint_for(url).full_clean()
    assert "url" in refused.value.message_dict


def test_an_unparsable_stored_url_is_a_failed_attempt_with_backoff(settings):
    WebhookEndpoint.objects.create(name="typo", url=UNPARSABLE[0], secret=SECRET, events=["opt_out.created"])
    webhooks.forget_subscriptions()
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

    assert webhooks.dispatch() == 0

    attempt = WebhookAttempt.objects.get()
    assert (attempt.ok, attempt.status_code) == (False, None) and attempt.error.startswith("Refused:")
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failures == 1 and endpoint.next_attempt_at > timezone.now()


def test_an_unparsable_url_does_not_keep_a_healthy_endpoint_from_its_events(receiver):
    WebhookEndpoint.objects.create(name="a-typo", url=UNPARSABLE[0], secret=SECRET, events=["opt_out.created"])
    healthy = subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)

    assert webhooks.dispatch() == 1

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E1"]
    healthy.refresh_from_db()
    assert healthy.failures == 0


def test_an_endpoint_whose_call_raises_does_not_keep_the_others_from_their_events(receiver, monkeypatch):
    broken = WebhookEndpoint.objects.create(name="a-broken", url="https://hooks.example/in", secret=SECRET,
                                            events=["opt_out.created"])
    subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    real_request = webhooks.targets.request

    def request(method, url, **kwargs):
        if url == broken.url:
            raise RuntimeError("a bug")
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(webhooks.targets, "request", request)

    assert webhooks.dispatch() == 1

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E1"]
    broken.refresh_from_db()
    assert broken.failures == 1 and broken.next_attempt_at is not None
    attempt = WebhookAttempt.objects.get(endpoint=broken)
    assert (attempt.ok, attempt.error) == (False, "Crier error: RuntimeError")


def test_an_endpoint_that_cannot_be_dispatched_does_not_keep_the_others_from_their_events(receiver, monkeypatch):
    broken = WebhookEndpoint.objects.create(name="a-broken", url="https://hooks.example/in", secret="whsec_bad",
                                            events=["opt_out.created"])
    subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    real_signature = webhooks.signature

    def signature(*, secret, **kwargs):
        if secret == broken.secret:
            raise ValueError("bad data")
        return real_signature(secret=secret, **kwargs)

    monkeypatch.setattr(webhooks, "signature", signature)

    assert webhooks.dispatch() == 1

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E1"]
    broken.refresh_from_db()
    assert broken.failures == 1 and broken.next_attempt_at > timezone.now()


# --- A slow endpoint holds the dispatcher no longer than WEBHOOK_TIMEOUT_SECONDS ------------------

class Trickler:
    """An endpoint that answers one byte every ``pause`` seconds (30 of them, 9 s): headers or body."""

    def __init__(self, *, in_body: bool, pause: float = 0.3) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"
        self.stop = threading.Event()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" if in_body else b"HTTP/1.1 200 OK\r\nX-Slow: "
        slow = b"x" * 30 if in_body else b"y" * 26 + b"\r\n\r\n"

        def serve():
            connection, _ = self.listener.accept()
            with connection:
                connection.recv(65536)
                try:
                    connection.sendall(head)
                    for byte in slow:
                        if self.stop.wait(pause):
                            return
                        connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize("in_body", [False, True], ids=["trickled-headers", "trickled-body"])
def test_a_slow_endpoint_is_cut_off_at_the_webhook_timeout(settings, in_body):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    slow = Trickler(in_body=in_body)
    try:
        WebhookEndpoint.objects.create(name="slow", url=slow.url, secret=SECRET, events=["opt_out.created"])
        webhooks.forget_subscriptions()
        opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
        started = time.monotonic()

        assert webhooks.dispatch() == 0

        assert time.monotonic() - started < 3.0  # the trickle goes on for 9 s
        attempt = WebhookAttempt.objects.get()
        assert (attempt.ok, attempt.status_code) == (False, None) and "1.0 s" in attempt.error
    finally:
        slow.close()


# --- Batches and the per-endpoint lock ------------------------------------------------------------


def test_it_sends_waiting_events_in_batches_up_to_the_ticks_limit_and_the_rest_next_tick(receiver, settings):
    settings.WEBHOOK_BATCH, settings.WEBHOOK_MAX_BATCHES_PER_TICK = 2, 2
    endpoint = subscribe(receiver, "opt_out.created")
    for n in range(5):
        opt_out_record(recipient=factories.recipient(external_id=f"E{n}"), source=OptOut.Source.API)

    assert webhooks.dispatch() == 4
    assert [len(json.loads(body)["events"]) for _, body in receiver.calls] == [2, 2]
    assert webhooks.dispatch() == 1
    assert webhooks.dispatch() == 0

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E0", "E1", "E2", "E3", "E4"]
    ids = [e["id"] for e in receiver.events()]
    assert [(a.events, a.first_event_id, a.last_event_id) for a in WebhookAttempt.objects.order_by("id")] == [
        (2, ids[0], ids[1]), (2, ids[2], ids[3]), (1, ids[4], ids[4])
    ]
    endpoint.refresh_from_db()
    assert endpoint.cursor == receiver.events()[-1]["id"]


def test_an_endpoint_another_tick_holds_is_skipped_and_the_others_still_served(receiver, settings, redis_client):
    from core.connections import lock_acquire, lock_release

    held = WebhookEndpoint.objects.create(name="a-held", url=receiver.url + "?held", secret=SECRET,
                                          events=["opt_out.created"])
    free = subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    token = lock_acquire(redis_client, f"crier:webhook:{held.pk}", ttl_seconds=30)

    assert webhooks.dispatch() == 1

    assert WebhookAttempt.objects.get().endpoint_id == free.pk
    lock_release(redis_client, f"crier:webhook:{held.pk}", token)
    assert webhooks.dispatch() == 1
    assert not redis_client.exists(f"crier:webhook:{held.pk}", f"crier:webhook:{free.pk}")  # released after each tick


def test_the_lock_outlasts_the_longest_tick(receiver, settings, redis_client, monkeypatch):
    settings.WEBHOOK_MAX_BATCHES_PER_TICK, settings.WEBHOOK_TIMEOUT_SECONDS = 3, 7.0
    endpoint = subscribe(receiver, "opt_out.created")
    opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
    seen = []
    real_post = webhooks._post

    def post(endpoint, events):
        seen.append(redis_client.pttl(f"crier:webhook:{endpoint.pk}"))
        return real_post(endpoint, events)

    monkeypatch.setattr(webhooks, "_post", post)

    assert webhooks.dispatch() == 1

    [ttl_ms] = seen
    assert 90_000 < ttl_ms <= 96_000  # 3 batches of (7 s + 5 s) and a minute
    assert endpoint.pk


def test_events_go_in_the_order_their_transactions_began_not_the_order_they_were_written(receiver):
    from django.db import connection, transaction

    subscribe(receiver, "opt_out.created")
    first, second = factories.recipient(external_id="first"), factories.recipient(external_id="second")
    began, written = threading.Event(), threading.Event()

    def older_transaction():
        with transaction.atomic():
            connection.cursor().execute("SELECT pg_current_xact_id()")  # this transaction's id is taken now
            began.set()
            written.wait(10)
            opt_out_record(recipient=first, source=OptOut.Source.API)  # written last: the higher event id
        connection.close()

    writer = threading.Thread(target=older_transaction)
    writer.start()
    began.wait(10)
    opt_out_record(recipient=second, source=OptOut.Source.API)  # a younger transaction, written first
    written.set()
    writer.join(10)

    assert webhooks.dispatch() == 2

    assert [e["data"]["recipient"] for e in receiver.events()] == ["first", "second"]


def test_the_events_of_one_transaction_split_over_batches_all_go_out_in_order(receiver, settings):
    from django.db import transaction

    settings.WEBHOOK_BATCH, settings.WEBHOOK_MAX_BATCHES_PER_TICK = 2, 5
    subscribe(receiver, "opt_out.created")
    people = [factories.recipient(external_id=f"E{n}") for n in range(5)]
    with transaction.atomic():  # five events of one transaction: one transaction id
        for person in people:
            opt_out_record(recipient=person, source=OptOut.Source.API)

    assert webhooks.dispatch() == 5

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E0", "E1", "E2", "E3", "E4"]
    assert [len(batch) for batch in receiver.batches()] == [2, 2, 1]


def test_the_events_of_one_transaction_go_in_the_order_they_were_written_wherever_their_rows_lie(receiver):
    from django.db import transaction

    subscribe(receiver, "opt_out.created")
    people = [factories.recipient(external_id=f"E{n}") for n in range(3)]
    with transaction.atomic():
        for person in people:
            opt_out_record(recipient=person, source=OptOut.Source.API)
    first = WebhookEvent.objects.order_by("id").first()
    WebhookEvent.objects.filter(pk=first.pk).update(payload={**first.payload})  # its row now lies after the others

    assert webhooks.dispatch() == 3

    assert [e["data"]["recipient"] for e in receiver.events()] == ["E0", "E1", "E2"]


def test_each_endpoint_receives_only_the_events_it_subscribed_to(receiver):
    other = Receiver()
    try:
        subscribe(receiver, "opt_out.created")
        WebhookEndpoint.objects.create(name="audit", url=other.url, secret=SECRET, events=["opt_out.deleted"])
        webhooks.forget_subscriptions()
        opt_out, _ = opt_out_record(recipient=factories.recipient(external_id="E1"), source=OptOut.Source.API)
        opt_out.delete()

        assert webhooks.dispatch() == 2

        assert [e["type"] for e in receiver.events()] == ["opt_out.created"]
        assert [e["type"] for e in other.events()] == ["opt_out.deleted"]
    finally:
        other.server.shutdown()
