"""Messages to named people, now (transactional notices), and test sends of a campaign."""

import pytest

from campaigns.api.auth import api_key_create
from campaigns.models import Campaign, OptOut
from delivery.models import Delivery
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def test_a_direct_message_reaches_the_people_named_and_accounts_for_each(api):
    factories.recipient(external_id="ready")
    OptOut.objects.create(recipient=factories.recipient(external_id="stopped"), source=OptOut.Source.TYPED_STOP)
    factories.recipient(external_id="left", is_active=False)
    template = factories.template(text="Your laptop is ready, {{first_name}}.")
    category = factories.category(slug="it")

    response = api.post("/api/v1/messages/", {"template": template.pk, "category": "it",
                                              "recipients": ["ready", "stopped", "left", "ready"]}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["status"], body["counts"]["total"]) == ("direct", "running", 3)
    rows = dict(Delivery.objects.filter(campaign_id=body["id"]).values_list("recipient__external_id", "skip_reason"))
    assert rows == {"ready": "", "stopped": "opted_out", "left": "inactive"}
    assert Campaign.objects.get(pk=body["id"]).category == category


def test_a_direct_message_naming_someone_unknown_sends_nothing_and_names_them(api):
    factories.recipient(external_id="known")
    template, _ = factories.template(), factories.category(slug="it")

    response = api.post("/api/v1/messages/", {"template": template.pk, "category": "it",
                                              "recipients": ["known", "ghost"]}, format="json")

    assert response.status_code == 400 and error_of(response)["fields"]["recipients"] == ["ghost"]
    assert not Campaign.objects.exists()


def test_a_test_send_goes_to_the_testers_and_leaves_the_campaign_a_draft(api):
    factories.recipient(external_id="tester")
    factories.recipient(external_id="everyone-else")
    campaign = factories.campaign(name="Town hall")

    response = api.post(f"/api/v1/campaigns/{campaign.pk}/test-send/", {"recipients": ["tester"]}, format="json")

    assert response.status_code == 201
    assert response.json()["name"] == "Test of Town hall"
    assert list(Delivery.objects.filter(campaign_id=response.json()["id"]).values_list("recipient__external_id",
                                                                                        flat=True)) == ["tester"]
    campaign.refresh_from_db()
    assert campaign.status == "draft" and not campaign.deliveries.exists()


def test_sending_now_needs_the_send_scope(api):
    from rest_framework.test import APIClient

    factories.recipient(external_id="p")
    template, _ = factories.template(), factories.category(slug="it")
    campaign = factories.campaign()
    _, secret = api_key_create(name="preparer", scopes=["read", "campaigns:write"])
    preparer = APIClient()
    preparer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    direct = preparer.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": ["p"]},
                           format="json")
    test = preparer.post(f"/api/v1/campaigns/{campaign.pk}/test-send/", {"recipients": ["p"]}, format="json")

    assert direct.status_code == test.status_code == 403
    assert Campaign.objects.count() == 1


def test_a_direct_message_cannot_be_launched_again(api):
    factories.recipient(external_id="p")
    template, _ = factories.template(), factories.category(slug="it")
    sent = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": ["p"]},
                    format="json").json()
    assert api.post(f"/api/v1/campaigns/{sent['id']}/launch/").status_code == 409


def test_a_direct_message_to_more_people_than_the_approval_threshold_needs_a_key_that_may_approve(api, settings):
    settings.APPROVAL_THRESHOLD = 2
    for n in range(3):
        factories.recipient(external_id=f"many-{n}")
    template, _ = factories.template(), factories.category(slug="it")
    body = {"template": template.pk, "category": "it", "recipients": ["many-0", "many-1", "many-2"]}

    refused = api.post("/api/v1/messages/", body, format="json")

    assert refused.status_code == 409 and error_of(refused)["code"] == "approval_required"
    assert not Campaign.objects.exists()
    _, secret = api_key_create(name="trusted", scopes=["campaigns:send", "campaigns:approve"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    sent = api.post("/api/v1/messages/", body, format="json")
    assert sent.status_code == 201, sent.json()
    campaign = Campaign.objects.get(pk=sent.json()["id"])
    assert campaign.approved_at is not None
    assert campaign.audit_entries.get().api_key.name == "trusted"


def _people(count: int, prefix: str = "p") -> list[str]:
    return [factories.recipient(external_id=f"{prefix}-{n}").external_id for n in range(count)]


def test_direct_messages_with_one_template_add_up_and_the_call_that_passes_the_threshold_is_refused(api, settings):
    settings.APPROVAL_THRESHOLD = 4
    people = _people(6)
    template, _ = factories.template(), factories.category(slug="it")

    first = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[:3]},
                     format="json")
    second = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[3:]},
                      format="json")

    assert first.status_code == 201, first.json()
    assert second.status_code == 409 and error_of(second)["code"] == "approval_required"
    message = error_of(second)["message"]
    assert "already reached 3 people" in message and "3 more would pass 4" in message
    assert Campaign.objects.count() == 1
    # Another template shares the key's reach: a copy of the template reaches nobody more.
    other = api.post("/api/v1/messages/", {"template": factories.template().pk, "category": "it",
                                           "recipients": people[3:]}, format="json")
    assert other.status_code == 409 and error_of(other)["code"] == "approval_required"


def test_copies_of_a_template_share_one_reach_and_the_call_past_the_threshold_is_refused(api, settings):
    settings.APPROVAL_THRESHOLD = 3
    people = _people(9)
    factories.category(slug="it")
    copies = [factories.template(text="Reset your password") for _ in range(3)]

    answers = [
        api.post("/api/v1/messages/", {"template": copy.pk, "category": "it", "recipients": people[3 * n:3 * n + 3]},
                 format="json")
        for n, copy in enumerate(copies)
    ]

    assert [answer.status_code for answer in answers] == [201, 409, 409]
    assert Delivery.objects.count() == 3


def test_another_key_has_its_own_reach(api, settings):
    settings.APPROVAL_THRESHOLD = 3
    people = _people(6)
    template, _ = factories.template(), factories.category(slug="it")
    assert api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[:3]},
                    format="json").status_code == 201
    _, raw = api_key_create(name="another system")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    other = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[3:]},
                     format="json")

    assert other.status_code == 201, other.json()


def test_reach_counts_people_so_telling_the_same_people_again_stays_within_it(api, settings):
    settings.APPROVAL_THRESHOLD = 3
    people = _people(4)
    factories.category(slug="it")

    again = [
        api.post("/api/v1/messages/", {"template": factories.template().pk, "category": "it", "recipients": people[:3]},
                 format="json").status_code
        for _ in range(3)
    ]
    one_more = api.post("/api/v1/messages/", {"template": factories.template().pk, "category": "it",
                                              "recipients": people[2:]}, format="json")

    assert again == [201, 201, 201]
    assert one_more.status_code == 409
    assert "already reached 3 people" in error_of(one_more)["message"]
    assert "1 more would pass 3" in error_of(one_more)["message"]


def test_direct_messages_outside_the_window_no_longer_count(api, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.APPROVAL_THRESHOLD, settings.APPROVAL_WINDOW_HOURS = 4, 24
    people = _people(6)
    template, _ = factories.template(), factories.category(slug="it")
    first = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[:3]},
                     format="json").json()
    Campaign.objects.filter(pk=first["id"]).update(created_at=timezone.now() - timedelta(hours=25))

    again = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": people[3:]},
                     format="json")

    assert again.status_code == 201, again.json()


def test_repeated_test_sends_count_toward_the_reach(api, settings):
    settings.APPROVAL_THRESHOLD = 6
    people = _people(8)
    campaign = factories.campaign(name="Town hall")
    url = f"/api/v1/campaigns/{campaign.pk}/test-send/"

    assert api.post(url, {"recipients": people[:5]}, format="json").status_code == 201
    refused = api.post(url, {"recipients": people[5:8]}, format="json")

    assert refused.status_code == 409 and error_of(refused)["code"] == "approval_required"
    direct = api.post("/api/v1/messages/", {"template": campaign.template_id, "category": campaign.category.slug,
                                            "recipients": people[5:8]}, format="json")
    assert direct.status_code == 409  # tests and direct messages add up


def test_a_test_send_reaches_at_most_five_people_a_call(api):
    people = _people(6)
    campaign = factories.campaign()

    refused = api.post(f"/api/v1/campaigns/{campaign.pk}/test-send/", {"recipients": people}, format="json")

    assert refused.status_code == 400
    assert error_of(refused)["fields"]["recipients"] == ["A test goes to at most 5 people a call."]
    assert not Campaign.objects.filter(kind=Campaign.Kind.DIRECT).exists()


def test_a_template_an_approver_approved_for_direct_messages_sends_to_any_number_until_it_is_edited(api, settings):
    from django.contrib.auth.models import User

    from campaigns.approvals import template_approve_direct
    from campaigns.audit import Actor
    from campaigns.roles import APPROVERS, roles_ensure

    settings.APPROVAL_THRESHOLD = 2
    people = _people(6)
    template, _ = factories.template(text="Your payslip is ready"), factories.category(slug="payroll")
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    template_approve_direct(template_id=template.pk, actor=Actor(user=approver))

    for batch in (people[:3], people[3:]):
        sent = api.post("/api/v1/messages/", {"template": template.pk, "category": "payroll", "recipients": batch},
                        format="json")
        assert sent.status_code == 201, sent.json()

    template.refresh_from_db()
    template.text = "Your payslip is ready, {{first_name}}"
    template.save()
    refused = api.post("/api/v1/messages/", {"template": template.pk, "category": "payroll", "recipients": people[:3]},
                       format="json")
    assert refused.status_code == 409 and error_of(refused)["code"] == "approval_required"


@pytest.mark.django_db(transaction=True)
def test_two_parallel_direct_messages_cannot_both_pass_the_threshold(settings):
    import threading

    from django.db import connection

    from campaigns.audit import Actor
    from campaigns.models import ApiKey
    from delivery.services import campaign_send_direct

    settings.APPROVAL_THRESHOLD = 4
    people = _people(6)
    template, category = factories.template(), factories.category(slug="it")
    key, _ = api_key_create(name="hr")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def send(batch):
        try:
            barrier.wait()
            campaign_send_direct(name="x", template_id=template.pk, category=category, external_ids=batch,
                                 actor=Actor(api_key=ApiKey.objects.get(pk=key.pk)))
            results.append("sent")
        except Exception as exc:  # noqa: BLE001 - the refusal is what is counted
            results.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in (people[:3], people[3:])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == ["approval_required", "sent"]
    assert Campaign.objects.filter(kind=Campaign.Kind.DIRECT).count() == 1


def test_a_key_that_may_approve_approves_a_template_for_direct_messages_and_one_that_may_not_is_refused(
    api, settings
):
    from rest_framework.test import APIClient

    settings.APPROVAL_THRESHOLD = 2
    people = _people(3)
    template, _ = factories.template(), factories.category(slug="payroll")

    refused = api.post(f"/api/v1/templates/{template.pk}/approve-direct/")
    assert (refused.status_code, error_of(refused)["code"]) == (403, "missing_scope")

    _, secret = api_key_create(name="payroll-approver", scopes=["read", "campaigns:approve"])
    approver = APIClient()
    approver.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    approved = approver.post(f"/api/v1/templates/{template.pk}/approve-direct/")
    assert approved.status_code == 200 and approved.json()["direct_approved_at"]
    assert approver.post(f"/api/v1/templates/{template.pk}/approve-direct/").status_code == 409

    sent = api.post("/api/v1/messages/", {"template": template.pk, "category": "payroll", "recipients": people},
                    format="json")
    assert sent.status_code == 201, sent.json()


def test_a_staff_members_sends_with_several_templates_share_one_reach(settings):
    from django.contrib.auth.models import User

    from campaigns.audit import Actor
    from core.errors import ApplicationError
    from delivery.services import campaign_send_direct

    settings.APPROVAL_THRESHOLD = 3
    people = _people(6)
    category, staff = factories.category(), User.objects.create_user("casey", is_staff=True)
    campaign_send_direct(name="a", template_id=factories.template().pk, category=category, external_ids=people[:3],
                         actor=Actor(user=staff))

    with pytest.raises(ApplicationError) as refused:
        campaign_send_direct(name="b", template_id=factories.template().pk, category=category,
                             external_ids=people[3:], actor=Actor(user=staff))

    assert refused.value.code == "approval_required"
    assert "sent by you already reached 3 people" in refused.value.message
