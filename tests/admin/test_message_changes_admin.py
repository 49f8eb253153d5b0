"""Editing and recalling a sent message from the admin: the pre-filled form, its errors (nothing typed
is lost), the recall confirmation, the permission, and the read-only list of changes.

Starting a change runs inside the test's transaction, so its on_commit work (the tasks) never runs:
these tests see the change and its rows, and nothing called in Teams."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaigns.models import AuditEntry, Campaign, MessageTemplate
from delivery.models import Delivery, DeliveryChange, MessageChange
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}


def sent(people=2, **fields) -> Campaign:
    """A completed campaign whose message reached ``people`` people (as the engine records it)."""
    recipients = [factories.recipient() for _ in range(people)]
    campaign = factories.campaign(status=Campaign.Status.COMPLETED, total_deliveries=people, **fields)
    for n, person in enumerate(recipients):
        Delivery.objects.create(
            campaign=campaign, recipient=person, status=Delivery.Status.SENT, activity_id=f"act-{n}",
            conversation_id=f"a:conv-{n}",
        )
    return campaign


def edit_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_edit_sent", args=[campaign.pk])


def recall_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_recall", args=[campaign.pk])


def test_the_edit_form_starts_from_the_campaigns_message(admin_client):
    campaign = sent(template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text="News"))

    response = admin_client.get(edit_url(campaign))

    assert response.status_code == 200
    form = response.context["form"]
    assert (form["kind"].value(), form["text"].value()) == ("adaptive_card", "News")
    assert json.loads(form["card"].value()) == CARD
    assert "who have it now" in response.content.decode() and response.context["reach"] == 2


def test_invalid_card_json_is_a_form_error_and_keeps_what_was_typed(admin_client):
    campaign = sent()
    typed = '{"type": "AdaptiveCard", "body": [ oops'

    response = admin_client.post(edit_url(campaign), {"kind": "adaptive_card", "text": "My summary", "card": typed})

    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["card"] == ["Enter a valid JSON."]
    page = response.content.decode()
    assert "oops" in page and "My summary" in page
    assert not MessageChange.objects.exists()


def test_a_card_teams_would_refuse_is_shown_on_its_field(admin_client):
    campaign = sent()

    response = admin_client.post(edit_url(campaign), {"kind": "adaptive_card", "text": "", "card": '{"type": "Card"}'})

    assert response.status_code == 200
    assert response.context["form"].errors["card"] == ['An Adaptive Card needs "type": "AdaptiveCard".']
    assert '&quot;type&quot;: &quot;Card&quot;' in response.content.decode()
    assert not MessageChange.objects.exists()


def test_a_superuser_starts_an_edit_and_lands_on_its_progress(admin_client):
    campaign = sent(3)

    response = admin_client.post(
        edit_url(campaign), {"kind": "markdown", "text": "Corrected: 6pm, {{first_name}}", "card": ""}, follow=True
    )

    change = MessageChange.objects.get()
    assert (change.action, change.text) == ("edit", "Corrected: 6pm, {{first_name}}")
    assert (change.total, change.status) == (3, "running")
    assert response.redirect_chain[-1][0] == reverse("admin:delivery_messagechange_change", args=[change.pk])
    assert ("success", f"The message of “{campaign}” is being edited for 3 people.") in messages_of(response)
    assert "0 / 0 / 3" in response.content.decode()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.EDIT_SENT, campaign=campaign).exists()


def test_the_recall_confirmation_says_how_many_people_lose_the_message(admin_client):
    campaign = sent(4)
    Delivery.objects.create(campaign=campaign, recipient=factories.recipient(), status=Delivery.Status.FAILED)

    response = admin_client.get(recall_url(campaign))

    assert response.status_code == 200
    assert "4 people will lose it" in response.content.decode()
    assert not MessageChange.objects.exists()


def test_a_superuser_recalls_after_confirming(admin_client):
    campaign = sent(2)

    response = admin_client.post(recall_url(campaign), follow=True)

    change = MessageChange.objects.get()
    assert (change.action, change.total) == ("recall", 2)
    assert DeliveryChange.objects.filter(change=change, status="pending").count() == 2
    assert ("success", f"The message of “{campaign}” is being recalled from 2 people.") in messages_of(response)


def test_a_running_campaign_cannot_be_recalled_and_the_page_says_why(admin_client):
    campaign = sent(1)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)

    page = admin_client.get(recall_url(campaign)).content.decode()
    refused = admin_client.post(recall_url(campaign))

    assert "still running: cancel it" in page and "Yes, recall it" not in page
    assert refused.status_code == 409 and "still running: cancel it" in refused.content.decode()
    assert not MessageChange.objects.exists()


def test_an_edit_refused_for_the_campaigns_state_keeps_the_text(admin_client):
    campaign = sent(1)
    admin_client.post(recall_url(campaign))  # a recall is now in progress

    response = admin_client.post(edit_url(campaign), {"kind": "markdown", "text": "Keep me", "card": ""})

    assert response.status_code == 200
    assert "A recall of “" in " ".join(response.context["form"].non_field_errors())
    assert "Keep me" in response.content.decode()
    assert MessageChange.objects.count() == 1


def test_without_the_recall_permission_both_pages_are_forbidden(client, viewer_user):
    campaign = sent(1)
    client.force_login(viewer_user)

    assert client.get(edit_url(campaign)).status_code == 403
    assert client.post(recall_url(campaign)).status_code == 403
    assert not MessageChange.objects.exists()


def test_an_approver_may_recall_but_not_edit_a_sent_message(client, approver_user, rf):
    from campaigns.admin.changes import change_links

    campaign = sent(1)
    client.force_login(approver_user)
    request = rf.get("/")
    request.user = approver_user

    assert client.get(edit_url(campaign)).status_code == 403
    assert client.post(edit_url(campaign), {"kind": "markdown", "text": "New words", "card": ""}).status_code == 403
    assert [label for label, _ in change_links(request, campaign)] == ["Recall the sent message"]
    assert client.get(recall_url(campaign)).status_code == 200
    assert not MessageChange.objects.exists()


def test_an_author_with_the_permission_may_recall(client, django_user_model):
    campaign = sent(1)
    author = django_user_model.objects.create_user("rae", "rae@example.com", "pw", is_staff=True)
    author.user_permissions.add(
        Permission.objects.get(codename="recall_campaign"), Permission.objects.get(codename="view_campaign")
    )
    client.force_login(author)

    response = client.post(recall_url(campaign), follow=True)

    assert response.status_code == 200
    assert MessageChange.objects.get().requested_by == author


def test_changes_are_listed_read_only_with_their_progress(admin_client):
    campaign = sent(2)
    admin_client.post(recall_url(campaign))
    change = MessageChange.objects.get()
    MessageChange.objects.filter(pk=change.pk).update(done=1, failed=1)
    DeliveryChange.objects.filter(change=change).update(status="failed", error_code="BotDisabledByAdmin")

    listing = admin_client.get(reverse("admin:delivery_messagechange_changelist")).content.decode()
    detail = admin_client.get(reverse("admin:delivery_messagechange_change", args=[change.pk])).content.decode()

    assert "1 / 1 / 2" in listing
    assert "BotDisabledByAdmin" in detail and 'name="_save"' not in detail
    assert admin.site._registry[MessageChange].has_add_permission(None) is False


def test_the_campaign_page_buttons_are_offered_only_when_a_change_is_possible(rf, admin_user, viewer_user):
    from campaigns.admin.changes import change_links

    campaign = sent(1)
    running = factories.campaign(status=Campaign.Status.RUNNING)
    request = rf.get("/")
    request.user = admin_user
    viewer_request = rf.get("/")
    viewer_request.user = viewer_user

    assert [label for label, _ in change_links(request, campaign)] == ["Edit the sent message", "Recall the sent message"]
    assert change_links(request, campaign)[1][1] == recall_url(campaign)
    assert change_links(request, running) == [] and change_links(viewer_request, campaign) == []
