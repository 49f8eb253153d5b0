"""``Idempotency-Key`` under real concurrency: requests in their own threads, each with its own
database connection, real commits; and a key reused on another path or with another method."""

import threading

import pytest
from rest_framework.test import APIClient

from campaigns.api import idempotency
from campaigns.api.auth import api_key_create
from campaigns.api.views.campaigns import CampaignViewSet
from campaigns.models import Campaign, IdempotencyRecord
from core.errors import ApplicationError
from tests import factories
from tests.threads import in_thread
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def secret() -> str:
    _, secret = api_key_create(name="hr-sync")
    return secret


def client_with(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def draft_campaign_body(name: str) -> dict:
    return {"name": name, "template": factories.template().pk, "category": factories.category().slug}


def test_two_identical_posts_with_the_same_key_at_the_same_moment_create_one_campaign(secret):
    for attempt in range(5):
        body, key = draft_campaign_body(f"Town hall {attempt}"), f"create-{attempt}"
        start = threading.Barrier(2)

        def post(body=body, key=key, start=start):
            client = client_with(secret)
            start.wait(timeout=10)
            return client.post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)

        running = [in_thread(post) for _ in range(2)]
        for thread, _ in running:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread, _ in running)
        answers = [outcome.get("result", outcome.get("error")) for _, outcome in running]

        assert Campaign.objects.filter(name=body["name"]).count() == 1
        first = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
        assert len(first) == 1, [(a.status_code, a.content) for a in answers]
        [other] = [a for a in answers if a is not first[0]]
        if other.status_code == 409:
            assert error_of(other)["code"] == "idempotency_key_in_progress"
        else:
            assert (other.status_code, other.headers["Idempotent-Replayed"]) == (201, "true")
            assert other.json() == first[0].json()


def test_a_replay_while_the_first_is_still_running_is_a_409_and_afterwards_the_first_answer(secret, monkeypatch):
    inside, release = threading.Event(), threading.Event()
    create = CampaignViewSet.perform_create

    def held_create(self, serializer):  # the first request, held inside its view
        inside.set()
        assert release.wait(timeout=20)
        return create(self, serializer)

    monkeypatch.setattr(CampaignViewSet, "perform_create", held_create)
    body = draft_campaign_body("Town hall")
    post = lambda: client_with(secret).post("/api/v1/campaigns/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")  # noqa: E731
    thread, outcome = in_thread(post)
    try:
        assert inside.wait(timeout=20)

        meanwhile = post()
    finally:
        release.set()
        thread.join(timeout=30)
    afterwards = post()

    assert (meanwhile.status_code, error_of(meanwhile)["code"]) == (409, "idempotency_key_in_progress")
    first = outcome["result"]
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert (afterwards.status_code, afterwards.headers["Idempotent-Replayed"]) == (201, "true")
    assert afterwards.json() == first.json()
    assert Campaign.objects.filter(name="Town hall").count() == 1


def test_the_same_key_on_another_path_is_a_422_and_not_the_other_paths_answer(secret):
    factories.recipient()
    client = client_with(secret)
    one, other = (client.post("/api/v1/campaigns/", draft_campaign_body(name), format="json").json()["id"]
                  for name in ("One", "Other"))

    launched = client.post(f"/api/v1/campaigns/{one}/launch/", HTTP_IDEMPOTENCY_KEY="go")
    reused = client.post(f"/api/v1/campaigns/{other}/launch/", HTTP_IDEMPOTENCY_KEY="go")

    assert launched.status_code == 200
    assert (reused.status_code, error_of(reused)["code"]) == (422, "idempotency_key_reused")
    assert "Idempotent-Replayed" not in reused.headers
    assert Campaign.objects.get(pk=other).status == Campaign.Status.DRAFT


def test_the_same_key_and_body_on_another_endpoint_is_a_422(secret):
    client = client_with(secret)
    body = {"name": "Payroll", "slug": "payroll"}

    created = client.post("/api/v1/categories/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    reused = client.post("/api/v1/audiences/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert created.status_code == 201
    assert (reused.status_code, error_of(reused)["code"]) == (422, "idempotency_key_reused")


def test_a_key_kept_for_a_post_is_refused_for_the_same_path_and_body_sent_with_another_method(secret):
    # Only POSTs carry keys through the API (a PATCH ignores the header), so this is the service's own
    # promise: the first request's method is part of what a replay must match.
    api_key, _ = api_key_create(name="other")
    path, data = "/api/v1/categories/", {"name": "Payroll"}
    record = idempotency.idempotency_begin(
        api_key=api_key, key="k", fingerprint=idempotency.request_fingerprint(method="POST", path=path, data=data)
    )
    idempotency.idempotency_finish(record=record, status=201, body={"id": 1})

    with pytest.raises(ApplicationError) as raised:
        idempotency.idempotency_begin(
            api_key=api_key, key="k", fingerprint=idempotency.request_fingerprint(method="PUT", path=path, data=data)
        )

    assert (raised.value.code, raised.value.status) == ("idempotency_key_reused", 422)
    with pytest.raises(idempotency.Replay):  # while the same request is a replay
        idempotency.idempotency_begin(
            api_key=api_key, key="k", fingerprint=idempotency.request_fingerprint(method="POST", path=path, data=data)
        )
    assert IdempotencyRecord.objects.filter(api_key=api_key).count() == 1


def test_a_patch_carrying_a_posts_key_is_not_a_replay_it_changes_what_it_names(secret):
    client = client_with(secret)
    created = client.post("/api/v1/categories/", {"name": "Payroll", "slug": "payroll"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="k")

    changed = client.patch(f"/api/v1/categories/{created.json()['slug']}/", {"name": "Pay"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="k")

    assert changed.status_code == 200 and "Idempotent-Replayed" not in changed.headers
    assert changed.json()["name"] == "Pay"
