"""Approval of large campaigns by a second person, the author/approver/viewer roles, the audit log,
the staff member's own time zone and “Send a test to me”."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from campaigns.approvals import approval_fingerprint, approval_state, campaign_approve
from campaigns.audit import Actor
from campaigns.models import AuditEntry, Campaign, MessageTemplate, OptOut, StaffProfile
from core.errors import ApplicationError
from delivery import services
from delivery.models import Delivery
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_audience(settings):
    """An announcement to everyone active counts as large once there are more than 2 people."""
    settings.APPROVAL_THRESHOLD = 2
    return [factories.recipient() for _ in range(3)]


def transition(client, campaign, name, **data):
    if name == "approve":  # what the approval page showed, as its form sends it
        data.setdefault("fingerprint", approval_fingerprint(campaign=campaign))
        data.setdefault("people", approval_state(campaign=campaign).people)
    return client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, name]), data, follow=True)


def approved(campaign, approver):
    campaign.approved_by, campaign.approved_at = approver, timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.save()
    return campaign


def test_an_author_cannot_launch_a_large_campaign_before_an_approver_approves_it(
    client, comms_user, approver_user, big_audience
):
    campaign = factories.campaign(created_by=comms_user)
    client.force_login(comms_user)

    refused = transition(client, campaign, "launch")

    assert any("must approve it first" in text for level, text in messages_of(refused) if level == "error")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT

    client.force_login(approver_user)
    approved = transition(client, campaign, "approve")
    assert ("success", f"“{campaign}” is approved: it can be launched or scheduled.") in messages_of(approved)

    client.force_login(comms_user)
    transition(client, campaign, "launch")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.approved_by == approver_user
    actions = list(AuditEntry.objects.filter(campaign=campaign).order_by("id").values_list("action", "user__username"))
    assert actions == [("approve", "avery"), ("launch", "casey")]


def test_the_approval_page_shows_the_message_and_how_many_people_it_reaches(client, approver_user, big_audience):
    campaign = factories.campaign(template=factories.template(text="Hello {{first_name}}, news"))
    client.force_login(approver_user)

    page = client.get(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).content.decode()

    assert "to 3 people of everyone active" in page
    assert f"Hello {big_audience[0].first_name}, news" in page  # the activity, rendered for its first person
    assert "adaptivecards.min.js" in page


def test_nobody_approves_their_own_campaign(client, approver_user, big_audience):
    campaign = factories.campaign(created_by=approver_user)
    client.force_login(approver_user)

    response = transition(client, campaign, "approve")

    assert ("error", f"“{campaign}”: You wrote or changed this campaign (or its template, audience or category): a second person must approve it.") in (
        messages_of(response)
    )
    campaign.refresh_from_db()
    assert campaign.approved_at is None


def test_an_author_cannot_approve(client, comms_user, big_audience):
    campaign = factories.campaign()
    client.force_login(comms_user)

    assert client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).status_code == 403
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "/do/approve/" not in page


def test_a_small_campaign_needs_no_approval(comms_client, settings):
    settings.APPROVAL_THRESHOLD = 10
    factories.recipient()
    campaign = factories.campaign()

    transition(comms_client, campaign, "launch")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_editing_a_template_withdraws_the_approval_and_unschedules_the_campaign(approver_user, big_audience):
    campaign = approved(factories.campaign(), approver_user)
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(hours=1))

    template = MessageTemplate.objects.get(pk=campaign.template_id)
    template.text = "Something else entirely"
    template.save()

    campaign.refresh_from_db()
    assert campaign.approved_at is None
    assert campaign.status == Campaign.Status.DRAFT
    assert "needs approval again" in campaign.status_reason
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()


def test_changing_the_audience_in_the_admin_withdraws_the_approval(client, comms_user, approver_user, big_audience):
    campaign = approved(factories.campaign(created_by=comms_user), approver_user)
    other = factories.audience()
    client.force_login(comms_user)

    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "kind": campaign.kind, "template": campaign.template_id, "audience": other.pk,
         "category": campaign.category_id, "send_at_0": "", "send_at_1": ""},
        follow=True,
    )

    assert any("needs approval again" in text for _, text in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.audience == other and campaign.approved_at is None


def test_the_scheduler_puts_back_to_draft_a_campaign_whose_audience_outgrew_the_threshold(settings):
    settings.APPROVAL_THRESHOLD = 2
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(hours=1))
    Campaign.objects.filter(pk=campaign.pk).update(send_at=timezone.now() - datetime.timedelta(seconds=1))
    factories.recipient(), factories.recipient()

    assert services.launch_due_campaigns() == []

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert "must approve it first" in campaign.status_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_the_api_refuses_to_launch_a_large_unapproved_campaign_unless_the_key_may_approve(big_audience):
    campaign = factories.campaign()
    _, plain = api_key_create(name="hr")
    _, approving = api_key_create(name="trusted", scopes=["read", "campaigns:send", "campaigns:approve"])
    api = APIClient()

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    refused = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "approval_required"

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {approving}")
    launched = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    assert launched.status_code == 200, launched.content
    assert launched.json()["approved_at"] is not None
    entries = AuditEntry.objects.filter(campaign=campaign).order_by("id")
    assert [(e.action, e.api_key.name, e.user) for e in entries] == [("approve", "trusted", None), ("launch", "trusted", None)]


def test_a_viewer_reads_campaigns_but_changes_nothing(client, viewer_user):
    campaign = factories.campaign()
    client.force_login(viewer_user)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert page.status_code == 200
    assert "/do/launch/" not in page.content.decode()
    assert client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "launch"])).status_code == 403
    assert client.get(reverse("admin:campaigns_auditentry_changelist")).status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_cancel_and_opt_out_changes_are_in_the_audit_log(client, comms_user):
    person = factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    client.force_login(comms_user)

    transition(client, campaign, "cancel")
    client.post(reverse("admin:campaigns_optout_add"), {"recipient": person.pk, "source": "admin", "note": "asked HR"})
    opt_out = OptOut.objects.get(recipient=person)
    client.post(reverse("admin:campaigns_optout_delete", args=[opt_out.pk]), {"post": "yes"})

    entries = list(AuditEntry.objects.order_by("id").values_list("action", "user__username"))
    assert entries == [("launch", None), ("cancel", "casey"), ("opt_out_added", "casey"), ("opt_out_removed", "casey")]
    log = client.get(reverse("admin:campaigns_auditentry_changelist")).content.decode()
    assert f"Cancelled “{campaign}”" in log


def test_send_at_is_typed_and_shown_in_the_staff_members_own_time_zone(client, comms_user):
    client.force_login(comms_user)
    saved = client.post(reverse("crier-profile"), {"time_zone": "Asia/Tokyo", "teams_email": ""}, follow=True)
    assert ("success", "Your profile is saved.") in messages_of(saved)
    campaign = factories.campaign()
    tomorrow = (timezone.now() + datetime.timedelta(days=1)).astimezone(zoneinfo.ZoneInfo("Asia/Tokyo")).date()

    client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "kind": campaign.kind, "template": campaign.template_id, "audience": "",
         "category": campaign.category_id, "send_at_0": tomorrow.isoformat(), "send_at_1": "09:00:00"},
    )

    campaign.refresh_from_db()
    assert campaign.send_at == datetime.datetime.combine(tomorrow, datetime.time(0, 0), tzinfo=datetime.timezone.utc)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'data-zone="Asia/Tokyo"' in page and 'value="09:00:00"' in page


def test_an_unknown_teams_identity_is_a_form_error_and_saves_nothing(client, comms_user):
    client.force_login(comms_user)

    response = client.post(reverse("crier-profile"), {"time_zone": "Europe/Paris", "teams_email": "casey@example.com"})

    assert response.status_code == 200
    assert "Nobody active in Crier has the e-mail" in response.content.decode()
    assert not StaffProfile.objects.filter(user=comms_user, time_zone="Europe/Paris").exists()


def test_staff_link_only_themselves_so_a_test_cannot_be_sent_to_someone_else(client, comms_user, viewer_user):
    factories.recipient(email="ceo@example.com")
    client.force_login(comms_user)

    response = client.post(reverse("crier-profile"), {"time_zone": "", "teams_email": "ceo@example.com"})

    assert "You can link only yourself: use casey@example.com" in response.content.decode()
    assert StaffProfile.objects.filter(user=comms_user, recipient__isnull=False).count() == 0
    client.force_login(viewer_user)  # and a viewer sends no test at all
    campaign = factories.campaign()
    assert client.post(reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])).status_code == 403


def test_an_approval_no_longer_counts_once_the_audience_or_category_itself_changes(approver_user, big_audience):
    audience = factories.audience(kind="static")
    audience.members.set(big_audience)
    campaign = approved(factories.campaign(audience=audience), approver_user)

    audience.kind = "everyone"  # now it reaches everyone active
    audience.save()

    with pytest.raises(ApplicationError, match="changed since it was approved"):
        services.campaign_launch(campaign_id=campaign.pk)
    campaign.category.mandatory = False
    audience.kind = "static"
    audience.save()
    campaign = approved(Campaign.objects.get(pk=campaign.pk), approver_user)
    campaign.category.mandatory = True  # now it reaches people who opted out
    campaign.category.save()
    with pytest.raises(ApplicationError, match="changed since it was approved"):
        services.campaign_launch(campaign_id=campaign.pk)
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_an_approver_who_changed_a_campaign_cannot_approve_it_alone(
    client, comms_user, comms_group, approver_user, big_audience
):
    approver_user.groups.add(comms_group)  # someone holding both roles
    campaign = factories.campaign(created_by=comms_user)
    client.force_login(approver_user)
    client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "kind": campaign.kind, "template": factories.template().pk, "audience": "",
         "category": campaign.category_id, "send_at_0": "", "send_at_1": ""},
    )

    response = transition(client, Campaign.objects.get(pk=campaign.pk), "approve")

    assert any("a second person must approve it" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


def test_the_approver_approves_only_what_the_approval_page_showed(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)
    page = client.get(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).content.decode()
    seen = approval_fingerprint(campaign=campaign)
    assert f'name="fingerprint" value="{seen}"' in page

    template = campaign.template
    template.text = "Changed while the approver was reading"
    template.save()
    response = transition(client, campaign, "approve", fingerprint=seen)

    assert any("changed while you were looking at it" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


def test_the_approver_approves_only_the_number_of_people_the_approval_page_showed(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)
    page = client.get(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).content.decode()
    seen = approval_fingerprint(campaign=campaign)
    assert 'name="people" value="3"' in page

    factories.recipient()  # one more person while the approver was reading: no timestamp moved
    response = transition(client, campaign, "approve", fingerprint=seen, people=3)

    assert any("changed while you were looking at it" in text and "3 people" in text and "now 4" in text
               for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


def test_an_approval_page_post_without_the_number_shown_approves_nothing(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)

    response = transition(client, campaign, "approve", people="")

    assert any("look at it again" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


def test_an_approval_records_the_number_of_people_it_showed(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)

    transition(client, campaign, "approve", people=3)

    campaign.refresh_from_db()
    assert campaign.approved_people == 3
    assert campaign.audit_entries.get(action=AuditEntry.Action.APPROVE).detail["people_shown"] == 3


def test_send_a_test_to_me_needs_a_linked_identity_then_sends_to_that_person(client, comms_user):
    me = factories.recipient(email="casey@example.com")
    campaign = factories.campaign()
    client.force_login(comms_user)
    url = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])

    refused = client.post(url, follow=True)
    assert any("Link your Teams identity first" in text for level, text in messages_of(refused) if level == "error")

    client.post(reverse("crier-profile"), {"time_zone": "", "teams_email": "CASEY@example.com"})
    sent = client.post(url, follow=True)

    assert any(text.startswith(f"Test of “{campaign}” sent to you") for _, text in messages_of(sent))
    test = Campaign.objects.get(kind=Campaign.Kind.DIRECT)
    assert list(test.deliveries.values_list("recipient_id", flat=True)) == [me.pk]
    assert test.created_by == comms_user
    assert AuditEntry.objects.filter(action=AuditEntry.Action.TEST_SEND, user=comms_user).count() == 1


def test_an_approval_that_stopped_counting_can_be_given_again_from_the_campaign_page(client, approver_user, big_audience):
    audience = factories.audience(kind="static")
    audience.members.set(big_audience)
    campaign = approved(factories.campaign(audience=audience), approver_user)
    audience.name = "Renamed after approval"
    audience.save()
    other_approver = approver_user.__class__.objects.create_user("ada", "ada@example.com", "pw", is_staff=True)
    other_approver.groups.set(approver_user.groups.all())
    client.force_login(other_approver)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert "it needs approval again" in page
    assert f"/{campaign.pk}/do/approve/" in page
    transition(client, Campaign.objects.get(pk=campaign.pk), "approve")
    services.campaign_launch(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING


# --- An approval covers the people it showed ---------------------------------------------------------

def _approved_for_three(approver_user, comms_user, big_audience):
    audience = factories.audience(kind="static")
    audience.members.set(big_audience)
    campaign = factories.campaign(audience=audience, created_by=comms_user)
    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver_user))
    return audience, Campaign.objects.get(pk=campaign.pk)


def test_a_launch_reaching_more_people_than_the_approval_showed_voids_it_and_says_why(
    client, comms_user, approver_user, big_audience
):
    audience, campaign = _approved_for_three(approver_user, comms_user, big_audience)
    assert campaign.approved_people == 3
    audience.members.add(factories.recipient(), factories.recipient())  # the lists grew; nothing else changed
    client.force_login(comms_user)

    refused = transition(client, campaign, "launch")

    assert any("was approved for 3 people and now reaches 5" in text for level, text in messages_of(refused)
               if level == "error")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.approved_at, campaign.approved_people) == (Campaign.Status.DRAFT, None, None)
    assert "approved for 3 people and now reaches 5" in campaign.status_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()


def test_the_scheduler_does_not_send_a_campaign_that_outgrew_its_approval(comms_user, approver_user, big_audience):
    audience, campaign = _approved_for_three(approver_user, comms_user, big_audience)
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(minutes=5),
                               actor=Actor(user=comms_user))
    audience.members.add(factories.recipient())
    Campaign.objects.filter(pk=campaign.pk).update(send_at=timezone.now() - datetime.timedelta(seconds=1))

    assert services.launch_due_campaigns() == []

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_at is None
    assert "approved for 3 people and now reaches 4" in campaign.status_reason


def test_a_launch_reaching_no_more_people_than_approved_goes_ahead(comms_user, approver_user, big_audience):
    audience, campaign = _approved_for_three(approver_user, comms_user, big_audience)
    audience.members.remove(big_audience[0])

    services.campaign_launch(campaign_id=campaign.pk, actor=Actor(user=comms_user))

    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING


# --- Separation of duties ------------------------------------------------------------------------------

@pytest.fixture
def both_roles(approver_user, comms_group):
    approver_user.groups.add(comms_group)
    return approver_user


def test_whoever_edited_a_campaigns_template_cannot_approve_it_even_if_another_author_owns_it(
    client, comms_user, both_roles, big_audience
):
    campaign = factories.campaign(created_by=comms_user, template=factories.template(text="Town hall at 3"))
    client.force_login(both_roles)
    edited = client.post(
        reverse("admin:campaigns_messagetemplate_change", args=[campaign.template_id]),
        {"name": campaign.template.name, "kind": "markdown", "editor": "json", "text": "Town hall cancelled",
         "card": "null"},
    )
    assert edited.status_code == 302, edited.context["adminform"].form.errors

    response = transition(client, Campaign.objects.get(pk=campaign.pk), "approve")

    assert any("a second person must approve it" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None
    entry = AuditEntry.objects.get(action=AuditEntry.Action.CHANGE, user=both_roles)
    assert entry.detail == {"template": campaign.template_id}


@pytest.mark.parametrize("what", ["audience", "category"])
def test_whoever_changed_whom_a_campaign_reaches_cannot_approve_it(client, comms_user, both_roles, big_audience, what):
    audience = factories.audience(kind="static")
    audience.members.set(big_audience)
    campaign = factories.campaign(created_by=comms_user, audience=audience)
    client.force_login(both_roles)
    if what == "audience":
        url = reverse("admin:campaigns_audience_change", args=[audience.pk])
        data = {"name": audience.name, "kind": "static", "rules": "[]", "members": [p.pk for p in big_audience],
                "excluded": [], "people_file_action": "include"}
    else:
        url = reverse("admin:campaigns_category_change", args=[campaign.category_id])
        data = {"name": campaign.category.name, "slug": campaign.category.slug, "description": "", "mandatory": "on"}
    saved = client.post(url, data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors

    response = transition(client, Campaign.objects.get(pk=campaign.pk), "approve")

    assert any("a second person must approve it" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


def test_whoever_wrote_the_template_before_the_campaign_existed_cannot_approve_it(client, comms_user, both_roles,
                                                                                 big_audience):
    client.force_login(both_roles)
    client.post(reverse("admin:campaigns_messagetemplate_add"),
                {"name": "Written for someone else", "kind": "markdown", "editor": "json", "text": "Click here",
                 "card": "null"})
    template = MessageTemplate.objects.get(name="Written for someone else")
    campaign = factories.campaign(created_by=comms_user, template=template)

    response = transition(client, campaign, "approve")

    assert any("a second person must approve it" in text for _, text in messages_of(response))
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None


# --- Roles: approvers read, approve, pause, cancel, recall ----------------------------------------------

def test_an_approver_cannot_edit_a_campaign_by_posting_its_change_form(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)

    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": "Hijacked", "kind": campaign.kind, "template": factories.template().pk, "audience": "",
         "category": campaign.category_id, "send_at_0": "", "send_at_1": ""},
    )

    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).name == campaign.name


@pytest.mark.parametrize("model", ["audience", "messagetemplate", "category"])
def test_an_approver_cannot_change_what_a_campaign_uses(client, approver_user, model):
    objects = {"audience": factories.audience(kind="static"), "messagetemplate": factories.template(),
               "category": factories.category()}
    target = objects[model]
    client.force_login(approver_user)

    response = client.post(reverse(f"admin:campaigns_{model}_change", args=[target.pk]), {"name": "Hijacked"})

    assert response.status_code == 403
    assert type(target).objects.get(pk=target.pk).name != "Hijacked"


@pytest.mark.parametrize("name", ["launch", "schedule", "resume"])
def test_an_approver_cannot_launch_schedule_or_resume_by_posting_the_button(client, approver_user, name):
    campaign = factories.campaign(send_at=timezone.now() + datetime.timedelta(hours=1))
    if name == "resume":
        services.campaign_launch(campaign_id=campaign.pk)
        services.campaign_pause(campaign_id=campaign.pk, reason="held")
    client.force_login(approver_user)
    before = Campaign.objects.get(pk=campaign.pk).status

    response = client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, name]))

    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == before


@pytest.mark.parametrize("action", ["launch_selected", "schedule_selected", "resume_selected"])
def test_an_approver_cannot_launch_schedule_or_resume_through_the_list_actions(client, approver_user, action):
    campaign = factories.campaign(send_at=timezone.now() + datetime.timedelta(hours=1))
    if action == "resume_selected":
        services.campaign_launch(campaign_id=campaign.pk)
        services.campaign_pause(campaign_id=campaign.pk, reason="held")
    before = Campaign.objects.get(pk=campaign.pk).status
    client.force_login(approver_user)

    client.post(reverse("admin:campaigns_campaign_changelist"),
                {"action": action, "_selected_action": [campaign.pk], "post": "yes"})

    assert Campaign.objects.get(pk=campaign.pk).status == before


def test_an_approver_pauses_and_cancels(client, approver_user):
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    client.force_login(approver_user)

    transition(client, campaign, "pause")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED
    transition(client, campaign, "cancel")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.CANCELLED


def test_an_approver_cannot_send_a_test_of_a_campaign(client, approver_user):
    campaign = factories.campaign()
    client.force_login(approver_user)

    response = client.post(reverse("admin:campaigns_campaign_test_send", args=[campaign.pk]))

    assert response.status_code == 403
    assert not Campaign.objects.filter(kind=Campaign.Kind.DIRECT).exists()


# --- Reach of direct messages and tests -----------------------------------------------------------------

def test_staff_tests_count_the_tester_once_and_add_up_with_their_other_sends(client, comms_user, settings):
    from delivery.services import campaign_send_direct

    settings.APPROVAL_THRESHOLD = 2
    me = factories.recipient(email="casey@example.com")
    StaffProfile.objects.update_or_create(user=comms_user, defaults={"recipient": me})
    campaign = factories.campaign()
    client.force_login(comms_user)
    url = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])

    for _ in range(3):  # the same person, however often: one person reached
        assert any(level == "success" for level, _ in messages_of(client.post(url, follow=True)))
    campaign_send_direct(name="x", template_id=factories.template().pk, category=campaign.category,
                         external_ids=[factories.recipient().external_id], actor=Actor(user=comms_user))
    other = factories.campaign()
    again = client.post(reverse("admin:campaigns_campaign_test_send", args=[other.pk]), follow=True)

    assert any(level == "success" for level, _ in messages_of(again))  # still the same person: 2 reached
    someone_else = factories.recipient()
    with pytest.raises(ApplicationError) as passed:
        campaign_send_direct(name="y", template_id=other.template_id, category=campaign.category,
                             external_ids=[someone_else.external_id], actor=Actor(user=comms_user))
    assert "sent by you already reached 2 people" in passed.value.message
    assert Campaign.objects.filter(kind=Campaign.Kind.DIRECT).count() == 5


def test_an_approver_approves_a_template_for_direct_messages_from_the_template_list(
    client, comms_user, approver_user, settings
):
    settings.APPROVAL_THRESHOLD = 1
    client.force_login(comms_user)
    client.post(reverse("admin:campaigns_messagetemplate_add"),
                {"name": "Payslip ready", "kind": "markdown", "editor": "json", "text": "Your payslip is ready",
                 "card": "null"}, follow=True)
    template = MessageTemplate.objects.get(name="Payslip ready")
    changelist = reverse("admin:campaigns_messagetemplate_changelist")
    action = {"action": "approve_for_direct_messages", "_selected_action": [template.pk]}

    own = client.post(changelist, action, follow=True)  # the author holds no approver role
    assert MessageTemplate.objects.get(pk=template.pk).direct_approved_at is None
    assert not any(level == "success" for level, _ in messages_of(own))

    client.force_login(approver_user)
    approved = client.post(changelist, action, follow=True)

    assert ("success", "“Payslip ready” is approved for direct messages until it is edited.") in messages_of(approved)
    template.refresh_from_db()
    assert template.direct_approved_by == approver_user
    assert AuditEntry.objects.filter(action=AuditEntry.Action.APPROVE_DIRECT, user=approver_user).exists()


def test_whoever_wrote_a_template_cannot_approve_it_for_direct_messages(client, comms_user, both_roles):
    client.force_login(both_roles)
    client.post(reverse("admin:campaigns_messagetemplate_add"),
                {"name": "Payslip ready", "kind": "markdown", "editor": "json", "text": "Your payslip is ready",
                 "card": "null"})
    template = MessageTemplate.objects.get(name="Payslip ready")

    refused = client.post(reverse("admin:campaigns_messagetemplate_changelist"),
                          {"action": "approve_for_direct_messages", "_selected_action": [template.pk]}, follow=True)

    assert any("a second person must approve it" in text for level, text in messages_of(refused) if level == "error")
    assert MessageTemplate.objects.get(pk=template.pk).direct_approved_at is None


# --- Saying it before: “Launch now” waits for approval; “Request approval” --------------------------------

def test_launch_is_not_offered_before_approval_and_the_page_says_why(client, comms_user, approver_user, big_audience):
    campaign = factories.campaign(created_by=comms_user, send_at=timezone.now() + datetime.timedelta(days=1))
    client.force_login(comms_user)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert f"/{campaign.pk}/do/launch/" not in page and f"/{campaign.pk}/do/schedule/" not in page
    assert 'aria-disabled="true"' in page and "Waits for approval: it reaches 3 people, more than 2" in page
    assert f"/{campaign.pk}/request-approval/" in page
    confirmation = client.get(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "launch"]))
    assert "not approved yet" in confirmation.content.decode()

    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver_user))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert f"/{campaign.pk}/do/launch/" in page and "Waits for approval" not in page


def test_request_approval_lists_the_campaign_for_approvers_and_messages_them_in_teams(
    client, comms_user, approver_user, big_audience, settings
):
    settings.PUBLIC_BASE_URL = "https://crier.example.com"
    approver_in_teams = factories.recipient(external_id="avery-in-teams")
    StaffProfile.objects.update_or_create(user=approver_user, defaults={"recipient": approver_in_teams})
    campaign = factories.campaign(created_by=comms_user, name="Office move")
    client.force_login(comms_user)

    asked = client.post(reverse("admin:campaigns_campaign_request_approval", args=[campaign.pk]), follow=True)

    assert ("success", "Approval of “Office move” requested: 1 approver(s) got a message in Teams.") in messages_of(asked)
    message = Campaign.objects.get(kind=Campaign.Kind.DIRECT)
    assert list(message.deliveries.values_list("recipient__external_id", flat=True)) == ["avery-in-teams"]
    link = f"https://crier.example.com/admin/campaigns/campaign/{campaign.pk}/do/approve/"
    assert f"[Open the approval page]({link})" in message.template.text
    assert AuditEntry.objects.filter(action=AuditEntry.Action.APPROVAL_REQUESTED, user=comms_user).exists()

    client.force_login(approver_user)
    waiting = client.get(reverse("admin:campaigns_campaign_changelist") + "?approval=waiting").content.decode()
    assert "Office move" in waiting and "Approval request: Office move" not in waiting


def test_request_approval_without_a_public_address_says_the_message_has_no_link(
    client, comms_user, approver_user, big_audience, settings
):
    settings.PUBLIC_BASE_URL = ""
    StaffProfile.objects.update_or_create(user=approver_user, defaults={"recipient": factories.recipient()})
    campaign = factories.campaign(created_by=comms_user)
    client.force_login(comms_user)

    asked = client.post(reverse("admin:campaigns_campaign_request_approval", args=[campaign.pk]), follow=True)

    assert any("PUBLIC_BASE_URL is not set" in text for level, text in messages_of(asked) if level == "warning")
    assert "PUBLIC_BASE_URL" in Campaign.objects.get(kind=Campaign.Kind.DIRECT).template.text


def test_request_approval_messages_no_approver_who_changed_the_campaign(
    client, comms_user, both_roles, big_audience
):
    StaffProfile.objects.update_or_create(user=both_roles, defaults={"recipient": factories.recipient()})
    campaign = factories.campaign(created_by=both_roles)
    client.force_login(both_roles)

    asked = client.post(reverse("admin:campaigns_campaign_request_approval", args=[campaign.pk]), follow=True)

    assert ("success", f"Approval of “{campaign}” requested: 0 approver(s) got a message in Teams.") in messages_of(asked)
    assert not Campaign.objects.filter(kind=Campaign.Kind.DIRECT).exists()


def test_an_approver_cannot_request_approval(client, approver_user, big_audience):
    campaign = factories.campaign()
    client.force_login(approver_user)

    assert client.post(reverse("admin:campaigns_campaign_request_approval", args=[campaign.pk])).status_code == 403


def test_the_campaign_page_says_when_it_reaches_more_people_than_approved_and_a_new_approval_clears_the_reason(
    client, comms_user, approver_user, big_audience
):
    audience, campaign = _approved_for_three(approver_user, comms_user, big_audience)
    audience.members.add(factories.recipient())
    client.force_login(comms_user)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "for 3 people, but it now reaches 4: it needs approval again" in page
    assert f"/{campaign.pk}/do/launch/" not in page

    transition(client, campaign, "launch")  # refused, the approval voided
    other = approver_user.__class__.objects.create_user("ada", "ada@example.com", "pw", is_staff=True)
    other.groups.set(approver_user.groups.all())
    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=other))
    campaign.refresh_from_db()
    assert (campaign.approved_people, campaign.status_reason) == (4, "")


def test_approvers_are_asked_once_not_once_per_click(client, comms_user, approver_user, big_audience):
    StaffProfile.objects.update_or_create(user=approver_user, defaults={"recipient": factories.recipient()})
    campaign = factories.campaign(created_by=comms_user)
    client.force_login(comms_user)
    url = reverse("admin:campaigns_campaign_request_approval", args=[campaign.pk])

    client.post(url)
    again = client.post(url, follow=True)

    assert any("was requested less than 15 minutes ago" in text for level, text in messages_of(again)
               if level == "error")
    assert Campaign.objects.filter(kind=Campaign.Kind.DIRECT).count() == 1
