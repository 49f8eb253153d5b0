"""Review probes of follow-ups (not part of the project)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from campaigns import card_actions
from campaigns.approvals import approval_fingerprint, campaign_approve
from campaigns.audit import Actor
from campaigns.models import Campaign, MessageTemplate
from core.errors import ApplicationError
from delivery import follow_ups, progress, services
from delivery.message_changes import message_change_start
from delivery.models import Acknowledgement, Delivery, MessageChange
from delivery.sending import delivery_send
from tests import factories
from tests.delivery.test_follow_ups import (
    CARD, HOUR, Who, asking, lacking_the_app, launched_and_sent, people, press, reminded, row, sent_all,
)

pytestmark = pytest.mark.django_db


def test_A_a_send_again_running_when_a_reminder_is_due_ends_the_reminders_for_good(teams):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR, remind_times=3))
    teams.client.install(str(lacking.aad_object_id))
    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)  # running (its rows not sent yet)
    assert again.status == Campaign.Status.RUNNING

    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []
    [draft] = reminded(campaign)
    print("REMINDER 1:", draft.status, draft.status_reason)
    sent_all(again)  # the send again ends
    # Reminders never come back, although 3 were asked for and the campaign is as approved.
    assert follow_ups.reminders_send_due(now=campaign.completed_at + 100 * HOUR) == []
    assert follow_ups.next_reminder_at(campaign=campaign) is None
    # And the draft reminder now blocks any send again.
    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)
    print("SEND AGAIN:", refused.value.code, refused.value.message)


def test_B_a_reminder_after_a_policy_edit_asks_for_version_2_on_the_text_of_version_1(teams, django_user_model):
    first, second = people(2)
    template = factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text="")
    campaign = launched_and_sent(asking("policy", template=template, remind_who=Who.NOT_ACKNOWLEDGED,
                                        remind_after=HOUR))
    editor = django_user_model.objects.create_superuser("ed")
    new = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "POLICY V2 {{first_name}}"}]}
    message_change_start(campaign_id=campaign.pk, action="edit", user=editor, card=new,
                         kind=MessageTemplate.Kind.ADAPTIVE_CARD)
    campaign.refresh_from_db()
    assert campaign.message_version == 2
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))
    card = teams.client.messages(user=str(second.aad_object_id))[-1]["activity"]["attachments"][0]["content"]
    texts = [e.get("text") for e in card["body"] if e.get("type") == "TextBlock"]
    print("REMINDER CARD TEXTS:", texts)
    part = next(e for e in card["body"] if e.get("id") == card_actions.ACKNOWLEDGE_PART)
    print("DATA:", part["items"][0]["actions"][0]["data"])
    status, body = press(second, reminder, version=2)
    print("PRESS:", status, [e.get("text") for e in body["value"]["body"] if e.get("type") == "TextBlock"]
          if isinstance(body.get("value"), dict) else body)
    assert Acknowledgement.objects.filter(delivery=row(campaign, second), version=2).exists()
    assert not any("V2" in (t or "") for t in texts)  # the person acknowledged v2 having been shown v1


def test_C_an_approved_draft_reminder_cannot_be_launched(teams, settings, django_user_model):
    settings.APPROVAL_THRESHOLD = 0
    people(2)
    reminder_text = factories.template(text="Please read it")
    campaign = asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR, remind_template=reminder_text)
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=2,
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))
    campaign = launched_and_sent(campaign)
    reminder_text.text = "Please read it, now"
    reminder_text.save()
    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []
    [draft] = reminded(campaign)
    approver = django_user_model.objects.create_superuser("approver")
    campaign_approve(campaign_id=draft.pk, actor=Actor(user=approver))
    draft.refresh_from_db()
    print("APPROVED FOR:", draft.approved_people)
    try:
        services.campaign_launch(campaign_id=draft.pk, actor=Actor(user=approver))
        outcome = "launched"
    except ApplicationError as refused:
        outcome = f"refused {refused.code}: {refused.message}"
    draft.refresh_from_db()
    print("LAUNCH:", outcome, "| status", draft.status, "| approved_at", draft.approved_at, "|", draft.status_reason)
    assert outcome == "launched"


def test_D_recalling_the_campaign_does_not_stop_its_running_reminder(teams, django_user_model):
    a, b = people(2)
    campaign = launched_and_sent(asking("policy", remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR))
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = Campaign.objects.get(pk=reminder_id)
    assert reminder.status == Campaign.Status.RUNNING
    user = django_user_model.objects.create_superuser("rc")
    message_change_start(campaign_id=campaign.pk, action="recall", user=user)
    before = len(teams.client.messages(user=str(a.aad_object_id)))
    for d in Delivery.objects.filter(campaign=reminder, status=Delivery.Status.PENDING):
        delivery_send(delivery_id=d.pk)
    after = len(teams.client.messages(user=str(a.aad_object_id)))
    print("RECALLED CAMPAIGN'S REMINDER SENT TO", a.pk, ":", after - before, "new message(s)")
    assert after == before


def test_E_a_send_again_card_acknowledges_a_recalled_campaign(teams, django_user_model):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(asking("policy"))
    teams.client.install(str(lacking.aad_object_id))
    again = sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))
    user = django_user_model.objects.create_superuser("rc")
    change = message_change_start(campaign_id=campaign.pk, action="recall", user=user)
    from delivery.models import DeliveryChange
    DeliveryChange.objects.filter(change=change).update(status=DeliveryChange.Status.DONE)
    status, _ = press(lacking, again)
    print("PRESS AFTER RECALL:", status, row(campaign, lacking).acknowledged_at)
    assert status == 403


def test_F_an_edit_of_the_campaign_s_audience_after_the_send_stops_its_reminders(teams, settings):
    settings.APPROVAL_THRESHOLD = 0
    people(2)
    audience = factories.audience()
    campaign = factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR)
    print("AUDIENCE KIND", audience.kind)
    campaign.audience = audience
    campaign.save()
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=2,
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))
    campaign = launched_and_sent(campaign)
    audience.name = "Renamed"  # any save of the audience, e.g. its name
    audience.save()
    launched = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    print("LAUNCHED:", launched, [(r.status, r.status_reason) for r in reminded(campaign)])
    assert launched
