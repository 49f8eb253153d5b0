import datetime

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from delivery.models import Delivery
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def campaign_body(**fields):
    return {
        "name": "All hands",
        "template": factories.template().pk,
        "category": factories.category(slug="news").slug,
        **fields,
    }


def test_campaign_is_created_launched_and_retrieved_with_counts(api, django_capture_on_commit_callbacks):
    factories.recipient()
    factories.recipient()
    factories.recipient(aad_object_id=None)

    created = api.post("/api/v1/campaigns/", campaign_body(), format="json")
    campaign_id = created.json()["id"]
    with django_capture_on_commit_callbacks(execute=False) as queued:
        launched = api.post(f"/api/v1/campaigns/{campaign_id}/launch/")
    retrieved = api.get(f"/api/v1/campaigns/{campaign_id}/")

    assert created.status_code == 201, created.json()
    assert (created.json()["status"], created.json()["category"], created.json()["audience"]) == ("draft", "news", None)
    assert launched.status_code == 200
    assert launched.json()["status"] == "running" and launched.json()["launched_at"]
    assert len(queued) == 1  # the feeding, queued for after the commit (not run here)
    assert retrieved.json()["counts"] == {
        "total": 3, "sent": 0, "failed": 0, "skipped": 1, "remaining": 2, "ambiguous": 0, "installed": 0, "notified": 0,
        "notice_failed": 0, "read": 0, "acknowledged": 0, "answered": 0, "poll": [], "clicked": 0, "clicks": [],
        "reactions": {},
        "rate_per_second": 0.0, "eta_seconds": None,
    }


def test_campaigns_list_leaves_counts_out(api):
    factories.campaign()

    results = api.get("/api/v1/campaigns/").json()["results"]

    assert [c["counts"] for c in results] == [None]


def test_launching_twice_is_a_conflict(api):
    campaign = factories.campaign()
    api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")

    response = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")

    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_state"


def test_scheduling_in_the_past_is_refused_naming_send_at(api):
    campaign = factories.campaign()

    response = api.post(
        f"/api/v1/campaigns/{campaign.pk}/schedule/", {"send_at": "2020-01-01T09:00:00Z"}, format="json"
    )

    assert response.status_code == 400
    assert "send_at" in error_of(response)["fields"]
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_scheduling_without_a_date_is_refused_naming_send_at(api):
    campaign = factories.campaign()

    response = api.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", {}, format="json")

    assert response.status_code == 400
    assert "send_at" in error_of(response)["fields"]


def test_a_scheduled_campaign_can_be_cancelled(api):
    campaign = factories.campaign()
    send_at = timezone.now() + datetime.timedelta(days=1)

    scheduled = api.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", {"send_at": send_at.isoformat()}, format="json")
    cancelled = api.post(f"/api/v1/campaigns/{campaign.pk}/cancel/")
    again = api.post(f"/api/v1/campaigns/{campaign.pk}/cancel/")

    assert scheduled.status_code == 200
    assert scheduled.json()["status"] == "scheduled"
    assert datetime.datetime.fromisoformat(scheduled.json()["send_at"]) == send_at
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"]
    assert again.status_code == 409


def test_a_draft_campaign_can_be_edited(api):
    campaign = factories.campaign()
    audience = factories.audience()

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"name": "Renamed", "audience": audience.pk}, format="json"
    )

    assert response.status_code == 200, response.json()
    campaign.refresh_from_db()
    assert (campaign.name, campaign.audience_id) == ("Renamed", audience.pk)


def test_editing_a_running_campaign_is_a_conflict(api):
    campaign = factories.campaign()
    api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")

    response = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "Too late"}, format="json")

    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_state"
    campaign.refresh_from_db()
    assert campaign.name != "Too late"


def test_status_cannot_be_set_directly(api):
    campaign = factories.campaign()

    response = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"status": "cancelled"}, format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"status": ["This field is read-only."]}
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"


def test_campaign_with_an_unknown_category_is_refused_naming_it(api):
    response = api.post("/api/v1/campaigns/", campaign_body() | {"category": "nope"}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["category"]
    assert not Campaign.objects.exists()


def test_deliveries_are_listed_per_recipient_and_filtered_by_status(api, django_assert_max_num_queries):
    reachable = [factories.recipient(), factories.recipient()]
    unreachable = factories.recipient(aad_object_id=None)
    campaign = factories.campaign()
    api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    Delivery.objects.filter(recipient=reachable[0]).update(
        status="failed", error_code="ConversationBlockedByUser", last_status_code=403, attempts=1
    )
    url = f"/api/v1/campaigns/{campaign.pk}/deliveries/"

    with django_assert_max_num_queries(5):
        everyone = api.get(url).json()["results"]
    skipped = api.get(url, {"status": "skipped"}).json()["results"]
    blocked = api.get(url, {"error_code": "ConversationBlockedByUser"}).json()["results"]

    assert len(everyone) == 3
    assert [(d["recipient"], d["skip_reason"]) for d in skipped] == [(unreachable.external_id, "no_teams_identity")]
    assert [(d["recipient"], d["status"], d["last_status_code"]) for d in blocked] == [
        (reachable[0].external_id, "failed", 403)
    ]


def test_deliveries_of_an_unknown_campaign_are_not_found(api):
    response = api.get("/api/v1/campaigns/999999/deliveries/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_running_campaign_is_paused_with_a_reason_and_resumed(api):
    factories.recipient()
    campaign_id = api.post("/api/v1/campaigns/", campaign_body(), format="json").json()["id"]
    api.post(f"/api/v1/campaigns/{campaign_id}/launch/")

    paused = api.post(f"/api/v1/campaigns/{campaign_id}/pause/", {"reason": "Wrong date in the text"}, format="json")
    paused_again = api.post(f"/api/v1/campaigns/{campaign_id}/pause/", {}, format="json")
    resumed = api.post(f"/api/v1/campaigns/{campaign_id}/resume/")

    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["status_reason"]) == ("paused", "Wrong date in the text")
    assert paused_again.status_code == 409 and error_of(paused_again)["code"] == "invalid_state"
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"


def test_a_draft_cannot_be_paused_or_resumed(api):
    campaign_id = api.post("/api/v1/campaigns/", campaign_body(), format="json").json()["id"]
    assert api.post(f"/api/v1/campaigns/{campaign_id}/pause/", {}, format="json").status_code == 409
    assert api.post(f"/api/v1/campaigns/{campaign_id}/resume/").status_code == 409


def test_a_launch_through_the_api_reaching_more_people_than_approved_is_refused_and_voids_the_approval(api, settings):
    from django.contrib.auth.models import User

    from campaigns.approvals import campaign_approve
    from campaigns.audit import Actor
    from campaigns.roles import APPROVERS, roles_ensure

    settings.APPROVAL_THRESHOLD = 2
    audience = factories.audience(kind="rules", rules=[{"field": "department", "op": "eq", "value": "Lab"}])
    for n in range(3):
        factories.recipient(external_id=f"lab-{n}", department="Lab")
    campaign = factories.campaign(audience=audience)
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver))
    moved = api.post("/api/v1/recipients/bulk/", {"recipients": [{"external_id": f"moved-{n}", "department": "Lab"}
                                                                 for n in range(2)]}, format="json")
    assert moved.status_code == 200, moved.json()

    refused = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")

    assert refused.status_code == 409 and error_of(refused)["code"] == "approval_required"
    assert "approved for 3 people and now reaches 5" in error_of(refused)["message"]
    campaign.refresh_from_db()
    assert campaign.status == "draft" and campaign.approved_at is None
    assert "approved for 3 people and now reaches 5" in campaign.status_reason


def test_a_key_that_may_approve_but_not_write_or_send_cannot_change_or_launch_a_campaign():
    from rest_framework.test import APIClient

    from campaigns.api.auth import api_key_create

    _, secret = api_key_create(name="approver-like", scopes=["read", "campaigns:approve"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    campaign = factories.campaign(name="Before")

    changed = client.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "After"}, format="json")
    launched = client.post(f"/api/v1/campaigns/{campaign.pk}/launch/")

    assert (changed.status_code, error_of(changed)["code"]) == (403, "missing_scope")
    assert (launched.status_code, error_of(launched)["code"]) == (403, "missing_scope")
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Before", "draft")


def test_the_api_lists_a_campaigns_open_moves(api):
    draft = factories.campaign(status=Campaign.Status.DRAFT)
    paused = factories.campaign(status=Campaign.Status.PAUSED)
    welcome = factories.campaign(kind=Campaign.Kind.WELCOME, status=Campaign.Status.RUNNING)

    actions = {campaign.pk: api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["actions"]
               for campaign in (draft, paused, welcome)}

    assert actions == {draft.pk: ["edit", "schedule", "launch", "cancel"], paused.pk: ["resume", "cancel"],
                       welcome.pk: ["pause", "cancel"]}



def test_a_campaign_installs_the_app_for_people_who_lack_it_when_asked_and_otherwise_as_the_organisation_does(
        api, settings):
    body = campaign_body()
    settings.INSTALL_APP_DEFAULT = False
    plain = api.post("/api/v1/campaigns/", body, format="json").json()
    asked = api.post("/api/v1/campaigns/", {**body, "install_app": True}, format="json").json()
    settings.INSTALL_APP_DEFAULT = True
    by_default = api.post("/api/v1/campaigns/", body, format="json").json()

    assert (plain["install_app"], asked["install_app"], by_default["install_app"]) == (False, True, True)
    changed = api.patch(f"/api/v1/campaigns/{plain['id']}/", {"install_app": True}, format="json")
    assert changed.status_code == 200 and Campaign.objects.get(pk=plain["id"]).install_app is True
    refused = api.patch(f"/api/v1/campaigns/{plain['id']}/", {"install_app": "sometimes"}, format="json")
    assert refused.status_code == 400 and "install_app" in error_of(refused)["fields"]


def test_each_delivery_says_what_installing_the_app_came_to(api):
    people = [factories.recipient(), factories.recipient()]
    campaign = factories.campaign(install_app=True)
    api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    Delivery.objects.filter(recipient=people[0]).update(status="sent", install="installed")
    Delivery.objects.filter(recipient=people[1]).update(
        status="failed", error_code="AppBlockedByPolicy", error_message="A Teams app permission policy keeps the app")

    rows = {d["recipient"]: d for d in api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/").json()["results"]}

    assert (rows[people[0].external_id]["status"], rows[people[0].external_id]["install"]) == ("sent", "installed")
    assert (rows[people[1].external_id]["error_code"], rows[people[1].external_id]["install"]) == (
        "AppBlockedByPolicy", "")


def test_a_running_campaign_that_installs_the_app_can_stop_through_the_api(api):
    factories.recipient()
    campaign = factories.campaign(install_app=True)
    api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    assert "stop_installing" in api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["actions"]

    stopped = api.post(f"/api/v1/campaigns/{campaign.pk}/stop-installing/")
    again = api.post(f"/api/v1/campaigns/{campaign.pk}/stop-installing/")

    assert stopped.status_code == 200 and stopped.json()["install_app"] is False
    assert "stop_installing" not in stopped.json()["actions"]
    assert again.status_code == 409 and error_of(again)["code"] == "invalid_state"


def test_an_urgent_campaign_takes_the_words_of_its_pop_up_and_refuses_what_cannot_be_one(api):
    body = campaign_body()
    urgent = api.post("/api/v1/campaigns/", {**body, "urgent": True, "urgent_text": "Office closed today"}, format="json")
    wordless = api.post("/api/v1/campaigns/", {**body, "urgent": True}, format="json")
    personal = api.post("/api/v1/campaigns/", {**body, "urgent": True, "urgent_text": "Hi {{first_name}}"}, format="json")
    too_long = api.post("/api/v1/campaigns/", {**body, "urgent": True, "urgent_text": "x" * 151}, format="json")
    welcome = api.post("/api/v1/campaigns/", {**body, "kind": "welcome", "urgent": True, "urgent_text": "Hi"},
                       format="json")

    assert urgent.status_code == 201, urgent.json()
    assert (urgent.json()["urgent"], urgent.json()["urgent_text"]) == (True, "Office closed today")
    assert wordless.status_code == 400 and "urgent_text" in error_of(wordless)["fields"]
    assert personal.status_code == 400 and "placeholders" in error_of(personal)["fields"]["urgent_text"][0]
    assert too_long.status_code == 400 and "urgent_text" in error_of(too_long)["fields"]
    assert welcome.status_code == 400 and "urgent" in error_of(welcome)["fields"]
    assert Campaign.objects.count() == 1
    # turning it off needs no words; turning it on again without them is refused on the same field
    campaign_id = urgent.json()["id"]
    assert api.patch(f"/api/v1/campaigns/{campaign_id}/", {"urgent": False, "urgent_text": ""}, format="json").status_code == 200
    again = api.patch(f"/api/v1/campaigns/{campaign_id}/", {"urgent": True}, format="json")
    assert again.status_code == 400 and "urgent_text" in error_of(again)["fields"]


def test_an_urgent_campaign_cannot_launch_unapproved_and_says_why(api):
    factories.recipient()
    created = api.post("/api/v1/campaigns/", campaign_body(urgent=True, urgent_text="Office closed"), format="json")

    launched = api.post(f"/api/v1/campaigns/{created.json()['id']}/launch/")

    assert launched.status_code == 409 and error_of(launched)["code"] == "approval_required"
    assert "urgent" in error_of(launched)["message"]


def test_each_delivery_and_the_counts_say_what_came_of_the_urgent_notices(api):
    people = [factories.recipient(), factories.recipient()]
    campaign = factories.campaign(urgent=True, urgent_text="Office closed")
    Campaign.objects.filter(pk=campaign.pk).update(status="running", launched_at=timezone.now())
    Delivery.objects.create(campaign=campaign, recipient=people[0], status="sent", notice="notified")
    Delivery.objects.create(campaign=campaign, recipient=people[1], status="sent", notice="failed")

    rows = {d["recipient"]: d for d in api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/").json()["results"]}
    counts = api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["counts"]

    assert (rows[people[0].external_id]["notice"], rows[people[1].external_id]["notice"]) == ("notified", "failed")
    assert (counts["notified"], counts["notice_failed"]) == (1, 1)


def test_an_integration_trusted_to_approve_launches_its_urgent_campaign_and_the_approval_is_recorded():
    from rest_framework.test import APIClient

    from campaigns.api.auth import api_key_create
    from campaigns.models import AuditEntry

    factories.recipient()
    _, secret = api_key_create(name="alerting", scopes=["read", "campaigns:write", "campaigns:send",
                                                        "campaigns:approve"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    created = client.post("/api/v1/campaigns/", campaign_body(urgent=True, urgent_text="Evacuate building B"),
                          format="json")

    launched = client.post(f"/api/v1/campaigns/{created.json()['id']}/launch/")

    assert launched.status_code == 200, launched.json()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.APPROVE, campaign_id=created.json()["id"])
    assert entry.api_key is not None and entry.api_key.name == "alerting"


def test_a_policy_needs_a_mandatory_category_and_cannot_be_a_welcome(api):
    news, rules = factories.category(slug="news").slug, factories.category(mandatory=True).slug
    template = factories.template().pk

    def made(**fields):
        return api.post("/api/v1/campaigns/", {"name": "Policy", "template": template, "category": news, **fields},
                        format="json")

    optional = made(acknowledgement="policy")
    welcome = made(acknowledgement="policy", kind="welcome", category=rules)
    unknown = made(acknowledgement="maybe")
    policy = made(acknowledgement="policy", category=rules)

    assert optional.status_code == 400 and "mandatory category" in error_of(optional)["fields"]["category"][0]
    assert welcome.status_code == 400 and "welcome" in error_of(welcome)["fields"]["acknowledgement"][0]
    assert unknown.status_code == 400 and error_of(unknown)["fields"]["acknowledgement"]
    assert policy.status_code == 201 and (policy.json()["acknowledgement"], policy.json()["message_version"]) == (
        "policy", 1)
    # The category cannot be made optional later either.
    changed = api.patch(f"/api/v1/campaigns/{policy.json()['id']}/", {"category": news}, format="json")
    assert changed.status_code == 400 and "mandatory category" in error_of(changed)["fields"]["category"][0]


def test_the_acknowledgements_export_lists_who_acknowledged_which_version_and_is_audited(api):
    from campaigns.models import AuditEntry
    from delivery.models import Acknowledgement

    person = factories.recipient(external_id="=HYPERLINK(1)")
    campaign = factories.campaign(acknowledgement="asked")
    Delivery.objects.create(id=(campaign.pk << 32) + person.pk, campaign=campaign, recipient=person, status="sent")
    Acknowledgement.objects.create(delivery_id=(campaign.pk << 32) + person.pk, version=1, via="button")

    answer = api.get(f"/api/v1/campaigns/{campaign.pk}/acknowledgements/")

    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    lines = b"".join(answer.streaming_content).decode().splitlines()
    assert lines[0] == '"external_id","email","display_name","version","acknowledged_at","via","current"'
    assert lines[1].startswith(f'"\'=HYPERLINK(1)","{person.email}","","1","') and lines[1].endswith('"button","True"')
    assert AuditEntry.objects.filter(action=AuditEntry.Action.EXPORT, campaign=campaign).exists()


@pytest.mark.parametrize("fields, field, says", [
    ({"poll_question": "Where?", "poll_options": ["Leeds"]}, "poll_options", "from 2 to 10 options"),
    ({"poll_question": "Where?", "poll_options": ["Leeds", "leeds "]}, "poll_options", "Two options are the same"),
    ({"poll_question": "Where?", "poll_options": ["Leeds", ""]}, "poll_options", "cannot be empty"),
    ({"poll_question": "Where?", "poll_options": ["Leeds", {"a": 1}]}, "poll_options", "Not a valid string"),
    ({"poll_question": "Where?", "poll_options": "Leeds, London"}, "poll_options", "Expected a list"),
    ({"poll_question": "Where?", "poll_options": ["Leeds", "x" * 101]}, "poll_options", "at most 100"),
    ({"poll_question": "Where, {{first_name}}?", "poll_options": ["A", "B"]}, "poll_question", "placeholders"),
    ({"poll_options": ["A", "B"]}, "poll_question", "needs its question"),
    ({"poll_question": "Where?", "poll_options": ["A", "B"], "poll_closes_at": "2020-01-01T00:00:00Z"},
     "poll_closes_at", "closed already"),
    ({"poll_closes_at": "2999-01-01T00:00:00Z"}, "poll_closes_at", "Only a poll closes"),
])
def test_a_poll_that_cannot_be_answered_as_written_is_refused_naming_the_field(api, fields, field, says):
    answer = api.post("/api/v1/campaigns/", campaign_body(**fields), format="json")

    assert answer.status_code == 400
    assert says in str(error_of(answer)["fields"][field])


def test_a_polls_results_are_in_the_campaigns_counts_by_option(api):
    from delivery import progress

    made = api.post("/api/v1/campaigns/", campaign_body(
        poll_question=" Where? ", poll_options=[" Leeds", "London "], poll_multiple=True), format="json")
    campaign = Campaign.objects.get(pk=made.json()["id"])
    campaign.launched_at = timezone.now()
    campaign.save(update_fields=["launched_at"])
    progress.record(campaign.pk, start=True, answered=3, **{"poll:1": 2, "poll:0": 1})

    counts = api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["counts"]

    assert made.status_code == 201 and (campaign.poll_question, campaign.poll_options) == ("Where?", ["Leeds", "London"])
    assert counts["answered"] == 3
    assert counts["poll"] == [{"option": "Leeds", "count": 1}, {"option": "London", "count": 2}]


def test_the_funnel_groups_the_people_reached_and_names_a_bad_field(api):
    campaign = factories.campaign()
    for department in ["Sales"] * 5 + ["Legal"]:
        person = factories.recipient(department=department)
        Delivery.objects.create(id=(campaign.pk << 32) + person.pk, campaign=campaign, recipient=person, status="sent")

    funnel = api.get(f"/api/v1/campaigns/{campaign.pk}/funnel/")
    refused = api.get(f"/api/v1/campaigns/{campaign.pk}/funnel/", {"by": "upn"})

    assert funnel.status_code == 200 and funnel.json()["by"] == "department"
    # Legal's one person is in no line: fewer than five, and an "(all others)" of one would show them.
    assert funnel.json()["groups"] == [
        {"value": "Sales", "sent": 5, "read": 0, "acknowledged": 0, "answered": 0, "clicked": 0}]
    assert refused.status_code == 400 and error_of(refused)["fields"]["by"]
