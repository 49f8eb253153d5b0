"""API keys with scopes and an expiry, the audit trail, and Idempotency-Key on POST."""

import datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from campaigns.api.idempotency import KEPT_FOR
from campaigns.models import ApiKey, ApiRequest, Campaign, IdempotencyRecord, Recipient
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def client_for(**key_options) -> APIClient:
    _, secret = api_key_create(name=f"key-{ApiKey.objects.count()}", **key_options)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def draft_campaign_body():
    return {"name": "Town hall", "template": factories.template().pk, "category": factories.category().slug}


def test_a_key_without_the_send_scope_prepares_a_campaign_but_cannot_launch_it():
    factories.recipient()
    client = client_for(scopes=["read", "campaigns:write"])

    created = client.post("/api/v1/campaigns/", draft_campaign_body(), format="json")
    launched = client.post(f"/api/v1/campaigns/{created.json()['id']}/launch/")

    assert created.status_code == 201
    assert launched.status_code == 403
    assert error_of(launched)["code"] == "missing_scope" and "campaigns:send" in error_of(launched)["message"]
    assert Campaign.objects.get().status == "draft"


def test_each_kind_of_write_needs_its_own_scope():
    reader = client_for(scopes=["read"])
    assert reader.get("/api/v1/recipients/").status_code == 200
    upload = reader.post("/api/v1/recipients/bulk/", {"recipients": [{"external_id": "E1"}]}, format="json")
    assert upload.status_code == 403 and "recipients:write" in error_of(upload)["message"]
    assert not Recipient.objects.exists()
    writer = client_for(scopes=["recipients:write"])
    assert writer.get("/api/v1/recipients/").status_code == 403
    assert writer.post("/api/v1/recipients/bulk/", {"recipients": [{"external_id": "E1"}]}, format="json").status_code == 200


def test_an_expired_key_is_refused():
    _, secret = api_key_create(name="short-lived", expires_at=timezone.now() + datetime.timedelta(seconds=30))
    ApiKey.objects.filter(name="short-lived").update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    response = client.get("/api/v1/campaigns/")

    assert response.status_code == 401 and "expired" in error_of(response)["message"]


def test_every_call_is_recorded_against_its_key():
    client = client_for()
    client.get("/api/v1/campaigns/")
    client.post("/api/v1/campaigns/", {"name": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    rows = list(ApiRequest.objects.order_by("id").values_list("method", "path", "status_code", "idempotency_key"))
    assert rows == [("GET", "/api/v1/campaigns/", 200, ""), ("POST", "/api/v1/campaigns/", 400, "k-1")]
    assert {r.api_key.name for r in ApiRequest.objects.all()} == {ApiKey.objects.get().name}


def test_a_replayed_post_returns_the_first_answer_and_does_nothing_again():
    client = client_for()
    body = draft_campaign_body()

    first = client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="create-town-hall")
    again = client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="create-town-hall")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Campaign.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_422():
    client = client_for()
    body = draft_campaign_body()
    client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    other = client.post("/api/v1/campaigns/", {**body, "name": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
    assert Campaign.objects.count() == 1


def test_a_replay_while_the_first_is_still_running_is_a_409():
    client = client_for()
    body = draft_campaign_body()
    client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyRecord.objects.update(completed=False)  # as if the first request were still being processed

    again = client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert again.status_code == 409 and error_of(again)["code"] == "idempotency_key_in_progress"


def test_keys_are_kept_for_a_day_and_belong_to_their_api_key():
    first, second = client_for(), client_for()
    body = draft_campaign_body()
    first.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert second.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    IdempotencyRecord.objects.update(created_at=timezone.now() - KEPT_FOR - datetime.timedelta(minutes=1))

    assert first.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert Campaign.objects.count() == 3


def test_the_command_makes_a_scoped_expiring_key_and_refuses_unknown_scopes(capsys):
    call_command("create_api_key", "nightly", "--scopes", "read,recipients:write", "--expires-in-days", "30")
    key = ApiKey.objects.get(name="nightly")
    assert key.scopes == ["read", "recipients:write"]
    assert 29 <= (key.expires_at - timezone.now()).days <= 30
    with pytest.raises(CommandError, match="Unknown scope campaigns:delete"):
        call_command("create_api_key", "bad", "--scopes", "campaigns:delete")


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(monkeypatch):
    from campaigns.api.throttling import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    busy, other = client_for(), client_for()

    answers = [busy.get("/api/v1/campaigns/") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert error_of(answers[-1])["code"] == "throttled" and int(answers[-1]["Retry-After"]) >= 1
    assert other.get("/api/v1/campaigns/").status_code == 200  # limits are per key


def test_a_server_error_releases_the_idempotency_key_so_a_retry_runs(monkeypatch):
    from campaigns.api.views import campaigns as views

    factories.recipient()
    client = client_for()
    client.raise_request_exception = False
    campaign_id = client.post("/api/v1/campaigns/", draft_campaign_body(), format="json").json()["id"]
    real_launch = views.campaign_launch
    monkeypatch.setattr(views, "campaign_launch", lambda **kwargs: 1 / 0)

    failed = client.post(f"/api/v1/campaigns/{campaign_id}/launch/", HTTP_IDEMPOTENCY_KEY="go")
    monkeypatch.setattr(views, "campaign_launch", real_launch)
    retried = client.post(f"/api/v1/campaigns/{campaign_id}/launch/", HTTP_IDEMPOTENCY_KEY="go")

    assert failed.status_code == 500
    assert retried.status_code == 200 and retried.json()["status"] == "running"


def test_a_concurrent_update_answer_is_not_replayed_so_the_retry_it_asks_for_runs(monkeypatch):
    from campaigns.api.views import recipients as views
    from core.errors import ApplicationError

    client = client_for()
    real_upsert = views.recipients_bulk_upsert

    def collide(**kwargs):
        raise ApplicationError("Another upload changed some of these people.", code="concurrent_update", status=409)

    monkeypatch.setattr(views, "recipients_bulk_upsert", collide)
    body = {"recipients": [{"external_id": "E-1", "first_name": "Ada"}]}
    first = client.post("/api/v1/recipients/bulk/", body, format="json", HTTP_IDEMPOTENCY_KEY="upload-1")
    monkeypatch.setattr(views, "recipients_bulk_upsert", real_upsert)
    retried = client.post("/api/v1/recipients/bulk/", body, format="json", HTTP_IDEMPOTENCY_KEY="upload-1")

    assert first.status_code == 409 and error_of(first)["code"] == "concurrent_update"
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried
    assert retried.json()["created"] == 1
    assert Recipient.objects.filter(external_id="E-1").exists()


@pytest.mark.parametrize(
    "status, code, kept",
    [
        (409, "concurrent_update", False),
        (409, "idempotency_key_in_progress", False),
        (429, "throttled", False),
        (409, "invalid_state", True),
        (400, "invalid", True),
    ],
)
def test_only_answers_that_will_not_change_on_retry_are_kept_for_replay(status, code, kept):
    from campaigns.api.idempotency import idempotency_begin, idempotency_finish

    api_key, _ = api_key_create(name="hr")
    record = idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    idempotency_finish(record=record, status=status, body={"error": {"code": code, "message": "", "fields": {}}})

    assert IdempotencyRecord.objects.filter(api_key=api_key, key="k").exists() is kept


# --- The idempotency service itself: the fingerprint, the key's bounds, the records it keeps ---------

from campaigns.api.idempotency import (  # noqa: E402
    Replay,
    idempotency_begin,
    idempotency_finish,
    idempotency_forget_expired,
    request_fingerprint,
)
from core.errors import ApplicationError  # noqa: E402


def test_it_fingerprints_the_method_the_path_and_the_body_as_canonical_json():
    import hashlib

    body = {"name": "Town hall", "audience": {"tags": ["a", "b"], "all": None}}

    fingerprint = request_fingerprint(method="POST", path="/api/v1/campaigns/", data=body)

    canonical = '{"audience":{"all":null,"tags":["a","b"]},"name":"Town hall"}'
    assert fingerprint == hashlib.sha256(f"POST /api/v1/campaigns/\n{canonical}".encode()).hexdigest()
    reordered = {"audience": {"all": None, "tags": ["a", "b"]}, "name": "Town hall"}
    assert request_fingerprint(method="POST", path="/api/v1/campaigns/", data=reordered) == fingerprint
    assert request_fingerprint(method="POST", path="/api/v1/campaigns/", data={**body, "name": "Other"}) != fingerprint


@pytest.mark.parametrize("key", ["", "   ", "k" * 256], ids=["empty", "blank", "256-characters"])
def test_it_refuses_an_idempotency_key_that_is_blank_or_longer_than_255_characters(key):
    api_key, _ = api_key_create(name="hr")

    with pytest.raises(ApplicationError) as refused:
        idempotency_begin(api_key=api_key, key=key, fingerprint="f")

    error = refused.value
    assert (error.status, error.code, error.message) == (400, "invalid", "Idempotency-Key must be 1 to 255 characters.")
    assert error.fields == {"Idempotency-Key": ["1 to 255 characters."]}
    assert not IdempotencyRecord.objects.exists()


def test_it_claims_a_key_of_255_characters_for_its_api_key_and_request():
    api_key, _ = api_key_create(name="hr")

    record = idempotency_begin(api_key=api_key, key="k" * 255, fingerprint="f1")

    row = IdempotencyRecord.objects.get()
    assert row.pk == record.pk
    assert (row.api_key_id, row.key, row.request_hash, row.completed, row.status_code, row.body) == (
        api_key.pk, "k" * 255, "f1", False, None, None
    )


def test_it_keeps_the_first_answer_and_replays_its_status_and_body():
    api_key, _ = api_key_create(name="hr")
    record = idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    idempotency_finish(record=record, status=201, body={"id": 7, "name": "Town hall"})

    row = IdempotencyRecord.objects.get()
    assert (row.completed, row.status_code, row.body) == (True, 201, {"id": 7, "name": "Town hall"})
    with pytest.raises(Replay) as replay:
        idempotency_begin(api_key=api_key, key="k", fingerprint="f")
    assert (replay.value.status, replay.value.body) == (201, {"id": 7, "name": "Town hall"})


def test_it_refuses_the_same_key_for_another_request_with_422_and_while_running_with_409():
    api_key, _ = api_key_create(name="hr")
    idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    with pytest.raises(ApplicationError) as reused:
        idempotency_begin(api_key=api_key, key="k", fingerprint="other")
    with pytest.raises(ApplicationError) as running:
        idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    assert (reused.value.status, reused.value.code, reused.value.message) == (
        422, "idempotency_key_reused",
        "This Idempotency-Key was used for a different request; use a new key for a new request.",
    )
    assert (running.value.status, running.value.code, running.value.message) == (
        409, "idempotency_key_in_progress",
        "The first request with this Idempotency-Key is still being processed; try again shortly.",
    )
    assert IdempotencyRecord.objects.get().request_hash == "f"


def test_it_replays_a_key_a_little_under_a_day_old():
    api_key, _ = api_key_create(name="hr")
    idempotency_finish(record=idempotency_begin(api_key=api_key, key="k", fingerprint="f"), status=200, body={"ok": 1})
    IdempotencyRecord.objects.update(created_at=timezone.now() - KEPT_FOR + datetime.timedelta(minutes=30))

    with pytest.raises(Replay) as replay:
        idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    assert replay.value.body == {"ok": 1}


@pytest.mark.parametrize("fingerprint", ["f", "other"], ids=["same-request", "another-request"])
def test_it_claims_a_key_over_a_day_old_afresh_for_whatever_request_comes(fingerprint):
    api_key, _ = api_key_create(name="hr")
    idempotency_finish(record=idempotency_begin(api_key=api_key, key="k", fingerprint="f"), status=200, body={"ok": 1})
    IdempotencyRecord.objects.update(created_at=timezone.now() - KEPT_FOR - datetime.timedelta(minutes=1))

    record = idempotency_begin(api_key=api_key, key="k", fingerprint=fingerprint)

    row = IdempotencyRecord.objects.get()
    assert row.pk == record.pk
    assert (row.api_key_id, row.key, row.request_hash, row.completed, row.status_code, row.body) == (
        api_key.pk, "k", fingerprint, False, None, None
    )
    assert row.created_at > timezone.now() - datetime.timedelta(minutes=1)


@pytest.mark.parametrize(
    "status, body, kept",
    [
        (500, {"error": {"code": "server_error"}}, False),
        (503, None, False),
        (499, {"error": {"code": "client_closed"}}, True),
        (430, {"error": {"code": "invalid"}}, True),
        (400, {"error": {"code": "concurrent_update"}}, True),  # only a 409 says "try again"
        (409, [{"error": {"code": "concurrent_update"}}], True),
        (409, {"error": "concurrent_update"}, True),
        (409, {"detail": {"code": "concurrent_update"}}, True),
        (201, {"id": 1}, True),
    ],
)
def test_it_keeps_every_answer_but_server_errors_429s_and_transient_409s(status, body, kept):
    api_key, _ = api_key_create(name="hr")
    record = idempotency_begin(api_key=api_key, key="k", fingerprint="f")

    idempotency_finish(record=record, status=status, body=body)

    assert list(IdempotencyRecord.objects.values_list("completed", "status_code", "body")) == (
        [(True, status, body)] if kept else []
    )


def test_it_forgets_only_the_keys_over_a_day_old_and_says_how_many():
    api_key, _ = api_key_create(name="hr")
    for key in ("old-1", "old-2", "recent"):
        idempotency_begin(api_key=api_key, key=key, fingerprint="f")
    IdempotencyRecord.objects.filter(key__startswith="old").update(
        created_at=timezone.now() - KEPT_FOR - datetime.timedelta(minutes=1)
    )
    IdempotencyRecord.objects.filter(key="recent").update(
        created_at=timezone.now() - KEPT_FOR + datetime.timedelta(minutes=30)
    )

    assert idempotency_forget_expired() == 2

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
