"""Acknowledgements: a campaign that asks for one sends its card with a button (Universal Actions' Action.Execute, an
Action.Submit for older Teams); Teams sends Crier an invoke when the person presses it, and Crier answers with the card
they now see. It counts only for the person the message was sent to, once; a policy's edit asks everyone again."""

from __future__ import annotations

import csv
import datetime
import io
import time
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.test import TestCase
from django.utils import timezone

from bots import services as bot
from campaigns import card_actions
from campaigns.models import Campaign, MessageTemplate
from core.errors import ApplicationError
from delivery import progress, services
from delivery.exports import acknowledgements_csv
from delivery.message_changes import message_change_process, message_change_start
from delivery.models import Acknowledgement, Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.2", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}


@pytest.fixture
def editor(db) -> User:
    user = User.objects.create_user("edna", "edna@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["recall_campaign", "change_campaign"], content_type__app_label="campaigns"))
    return User.objects.get(pk=user.pk)


def sent(people: int = 1, mode: str = "asked", complete: bool = True, **fields) -> tuple[Campaign, list]:
    recipients = [factories.recipient() for _ in range(people)]
    fields.setdefault("template", factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text=""))
    if mode == "policy":
        fields.setdefault("category", factories.category(mandatory=True))
    campaign = factories.campaign(acknowledgement=mode, **fields)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        assert delivery_send(delivery_id=delivery.pk).status == "sent"
    if complete:
        assert services.campaigns_complete_finished() == [campaign.pk]
    campaign.refresh_from_db()
    return campaign, recipients


def received_card(teams, person) -> dict:
    [message] = teams.client.messages(user=str(person.aad_object_id))
    return message["activity"]["attachments"][0]["content"]


def sent_activity_id(person, data) -> str:
    """The activity id of the message the button's data names, sent to ``person``: the card Teams says was pressed."""
    try:
        campaign = Campaign.objects.get(public_id=uuid.UUID(str(data["campaign"])))
    except (KeyError, TypeError, ValueError, Campaign.DoesNotExist):
        return "1"
    delivery = Delivery.objects.filter(campaign=campaign, recipient=person).first()
    return delivery.activity_id if delivery and delivery.activity_id else "1"


def invoke(person, verb: str, data, conversation_type: str = "personal", reply_to: str | None = None) -> dict:
    return {"type": "invoke", "name": "adaptiveCard/action", "id": "f:1", "channelId": "msteams",
            "serviceUrl": "https://smba.example/", "replyToId": reply_to or sent_activity_id(person, data),
            "from": {"id": "29:x", "aadObjectId": str(person.aad_object_id)},
            "conversation": {"id": "a:1", "conversationType": conversation_type, "tenantId": factories.TENANT},
            "recipient": {"id": "28:bot"},
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}}


def pressed(person, campaign: Campaign, version: int | None = None) -> dict:
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id),
            "version": campaign.message_version if version is None else version}
    with TestCase.captureOnCommitCallbacks(execute=True):  # the counter follows once the press has committed
        status, body = bot.invoke_handle(data=invoke(person, card_actions.VERB_ACKNOWLEDGE, data))
    assert status == 200
    return body


def counted(campaign: Campaign) -> int:
    return int(progress.client().hget(progress.key(campaign.pk), "acknowledged") or 0)


def acknowledged_line(card: dict) -> str | None:
    part = next(e for e in card["body"] if e.get("id") == card_actions.ACKNOWLEDGE_PART)
    texts = [item.get("text", "") for item in part["items"] if item["type"] == "TextBlock"]
    return next((text for text in texts if text.startswith("✅")), None)


def button(card: dict) -> dict | None:
    part = next(e for e in card["body"] if e.get("id") == card_actions.ACKNOWLEDGE_PART)
    sets = [item for item in part["items"] if item["type"] == "ActionSet"]
    return sets[0]["actions"][0] if sets else None


def test_the_card_sent_carries_the_button_its_fallback_and_a_refresh(teams):
    campaign, [person] = sent()

    card = received_card(teams, person)

    assert card["version"] == "1.5"  # Action.Execute needs 1.4 at least: the template's 1.2 is raised
    assert card["body"][0]["text"] == f"Hi {person.first_name}"
    execute = button(card)
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}
    assert (execute["type"], execute["verb"], execute["data"]) == ("Action.Execute", "crier.acknowledge", data)
    assert (execute["fallback"]["type"], execute["fallback"]["data"]) == ("Action.Submit", data)
    assert card["refresh"]["action"]["verb"] == "crier.refresh"
    assert card["refresh"]["action"]["data"]["campaign"] == str(campaign.public_id)


def test_a_markdown_message_is_sent_as_a_card_to_carry_the_button(teams):
    template = factories.template(text="**Read** the new policy, {{first_name}}")
    campaign, [person] = sent(template=template)

    [message] = teams.client.messages(user=str(person.aad_object_id))

    assert not message["activity"].get("text")
    card = message["activity"]["attachments"][0]["content"]
    assert card["body"][0] == {"type": "TextBlock", "text": f"**Read** the new policy, {person.first_name}",
                               "wrap": True}
    assert button(card)["verb"] == "crier.acknowledge"


def test_a_campaign_that_asks_nothing_sends_its_card_as_it_is(teams):
    campaign, [person] = sent(mode="")
    card = received_card(teams, person)
    assert "refresh" not in card and card["version"] == "1.2"
    assert all(element.get("id") != card_actions.ACKNOWLEDGE_PART for element in card["body"])


def test_pressing_records_the_acknowledgement_once_and_answers_the_card_as_the_person_now_sees_it(teams):
    campaign, [person] = sent()

    answer = pressed(person, campaign)

    assert answer["statusCode"] == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    card = answer["value"]
    assert card["body"][0]["text"] == f"Hi {person.first_name}"  # their own card, placeholders filled
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    stamp = delivery.acknowledged_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert acknowledged_line(card) == f"✅ Acknowledged on {{{{DATE({stamp}, LONG)}}}} at {{{{TIME({stamp})}}}}"
    assert button(card) is None
    assert list(Acknowledgement.objects.values_list("delivery_id", "version", "via")) == [(delivery.pk, 1, "button")]
    assert counted(campaign) == 1

    again = pressed(person, campaign)  # a second press, or Teams sending the invoke twice

    assert again == answer
    assert Acknowledgement.objects.count() == 1 and counted(campaign) == 1


def test_a_refresh_answers_the_persons_view_and_records_nothing(teams):
    campaign, [person, other] = sent(2)
    pressed(person, campaign)
    data = {"crier_action": "refresh", "campaign": str(campaign.public_id), "version": 1}

    _, theirs = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, data))
    _, others = bot.invoke_handle(data=invoke(other, card_actions.VERB_REFRESH, data))

    assert acknowledged_line(theirs["value"]) and button(theirs["value"]) is None
    assert acknowledged_line(others["value"]) is None and button(others["value"])["verb"] == "crier.acknowledge"
    assert Delivery.objects.get(campaign=campaign, recipient=other).acknowledged_at is None
    assert counted(campaign) == 1


def test_nobody_acknowledges_for_someone_else_or_a_message_they_were_not_sent(teams):
    campaign, [person] = sent()
    stranger = factories.recipient()  # in the directory, not in the campaign

    answer = pressed(stranger, campaign)

    assert answer["statusCode"] == 403 and answer["type"] == "application/vnd.microsoft.error"
    assert answer["value"]["code"] == "Forbidden"
    assert not Acknowledgement.objects.exists() and counted(campaign) == 0
    assert Delivery.objects.get(campaign=campaign, recipient=person).acknowledged_at is None


@pytest.mark.parametrize("data, status", [
    ({"crier_action": "acknowledge"}, 400),
    ({"campaign": "not-a-uuid", "version": 1}, 400),
    ({"campaign": "{id}", "version": 0}, 400),
    ({"campaign": "{id}", "version": "1; DROP TABLE"}, 400),
    ({"campaign": str(uuid.UUID(int=7)), "version": 1}, 404),
])
def test_a_button_that_names_no_message_of_crier_is_refused(teams, data, status):
    campaign, [person] = sent()
    data = {k: (str(campaign.public_id) if v == "{id}" else v) for k, v in data.items()}

    _, answer = bot.invoke_handle(data=invoke(person, card_actions.VERB_ACKNOWLEDGE, data))

    assert answer["statusCode"] == status and answer["type"] == "application/vnd.microsoft.error"
    assert not Acknowledgement.objects.exists()


def test_a_campaign_that_asks_nothing_cannot_be_acknowledged(teams):
    campaign, [person] = sent(mode="")
    assert pressed(person, campaign)["statusCode"] == 404
    assert not Acknowledgement.objects.exists()


def test_an_unknown_verb_an_invoke_in_a_channel_and_other_invokes_are_refused(teams):
    campaign, [person] = sent()
    data = {"campaign": str(campaign.public_id), "version": 1}

    assert bot.invoke_handle(data=invoke(person, "delete.everything", data))[1]["statusCode"] == 400
    channel = invoke(person, card_actions.VERB_ACKNOWLEDGE, data, conversation_type="channel")
    assert bot.invoke_handle(data=channel)[1]["statusCode"] == 403
    assert bot.invoke_handle(data={**invoke(person, card_actions.VERB_ACKNOWLEDGE, data), "name": "task/fetch"}) == (
        501, None)
    assert not Acknowledgement.objects.exists()


def test_the_fallback_button_of_an_older_teams_records_the_same_and_answers_in_words(teams):
    campaign, [person] = sent()
    value = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}
    message = {**invoke(person, "", value), "type": "message", "name": None, "value": value}

    with TestCase.captureOnCommitCallbacks(execute=True):
        replies = bot.activity_handle(data=message)

    assert len(replies) == 1 and replies[0].startswith("Thank you: your acknowledgement is recorded")
    assert list(Acknowledgement.objects.values_list("version", "via")) == [(1, "fallback")]
    assert counted(campaign) == 1
    assert acknowledged_line(pressed(person, campaign)["value"])  # the card's view agrees


def test_a_policys_edit_asks_everyone_again_and_keeps_who_acknowledged_which_version(teams, editor):
    campaign, [first, second] = sent(2, mode="policy")
    pressed(first, campaign)
    assert counted(campaign) == 1

    with TestCase.captureOnCommitCallbacks(execute=True):  # queues chains no worker takes: driven below
        change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="adaptive_card",
                                      card={**CARD, "body": [{"type": "TextBlock", "text": "Version two"}]})
    message_change_process(change_id=change.pk)
    campaign.refresh_from_db()

    assert campaign.message_version == 2
    assert Delivery.objects.filter(campaign=campaign, acknowledged_at__isnull=False).count() == 0
    assert counted(campaign) == 0
    edited = received_card(teams, first)
    assert edited["body"][0]["text"] == "Version two" and button(edited)["data"]["version"] == 2
    # A press on the card as it was (version 1) records nothing: the answer is the new text, to acknowledge again.
    stale = pressed(first, campaign, version=1)["value"]
    assert stale["body"][0]["text"] == "Version two" and acknowledged_line(stale) is None
    assert card_actions.AGAIN in [item.get("text") for item in stale["body"][-1]["items"]]
    assert counted(campaign) == 0

    pressed(first, campaign, version=2)
    pressed(second, campaign, version=2)

    assert counted(campaign) == 2
    assert sorted(Acknowledgement.objects.values_list("version", flat=True)) == [1, 2, 2]
    lines = list(csv.DictReader(io.StringIO("".join(acknowledgements_csv(campaign_id=campaign.pk, current_version=2, policy=True)))))
    assert [(line["external_id"], line["version"], line["current"]) for line in lines] == [
        (first.external_id, "1", "False"), (first.external_id, "2", "True"), (second.external_id, "2", "True")]


def test_an_edit_of_a_campaign_that_only_asks_keeps_its_acknowledgements(teams, editor):
    campaign, [person] = sent(1, mode="asked")
    pressed(person, campaign)

    change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="markdown", text="Corrected")
    message_change_process(change_id=change.pk)

    assert Delivery.objects.get(campaign=campaign, recipient=person).acknowledged_at is not None
    assert counted(campaign) == 1
    assert acknowledged_line(received_card(teams, person)) is None  # what Teams holds until it refreshes
    refreshed = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, {
        "campaign": str(campaign.public_id), "version": 2}))[1]["value"]
    assert refreshed["body"][0]["text"] == "Corrected" and acknowledged_line(refreshed)


def test_a_launched_campaign_that_asks_keeps_its_template_as_sent(teams):
    """Teams asks Crier for each person's card again whenever it shows it: drawn from an edited template, it would
    show people words nobody approved, under an acknowledgement of others."""
    from campaigns.approvals import template_edit_require

    for mode in ("policy", "asked"):
        campaign, _ = sent(mode=mode)
        with pytest.raises(ApplicationError, match="Edit the sent message"):
            template_edit_require(template_id=campaign.template_id)
    template_edit_require(template_id=sent(mode="")[0].template_id)  # one that asks nothing: editable


def test_acknowledgements_are_rebuilt_from_the_rows_when_the_counters_are_lost(teams):
    campaign, [first, second] = sent(2)
    pressed(first, campaign)
    progress.client().delete(progress.key(campaign.pk))

    assert progress.read(campaign)["acknowledged"] == 1


def test_a_card_of_another_message_cannot_press_for_this_one(teams):
    """Teams says which message the pressed card belongs to (replyToId): a button whose data names another message,
    even one sent to the same person, records nothing. When Teams does not say, the press is the person's own (as
    the fallback's is)."""
    campaign, [person] = sent()
    other, _ = sent(mode="")
    elsewhere = Delivery.objects.get(campaign=other, recipient=person).activity_id
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}

    _, answer = bot.invoke_handle(data=invoke(person, card_actions.VERB_ACKNOWLEDGE, data, reply_to=elsewhere))

    assert answer["statusCode"] == 403
    assert not Acknowledgement.objects.exists()
    assert Delivery.objects.get(campaign=campaign, recipient=person).acknowledged_at is None
    _, unsaid = bot.invoke_handle(data={**invoke(person, card_actions.VERB_ACKNOWLEDGE, data), "replyToId": None})
    assert unsaid["statusCode"] == 200 and Acknowledgement.objects.count() == 1


def test_an_endpoint_that_subscribes_hears_of_each_acknowledgement_with_the_person_and_version(teams):
    from delivery import webhooks
    from delivery.models import WebhookEndpoint, WebhookEvent

    WebhookEndpoint.objects.create(name="hr", url="https://hr.example/hook", secret="s",
                                   events=["delivery.acknowledged"])
    webhooks.forget_subscriptions()
    campaign, [person] = sent()

    pressed(person, campaign)
    pressed(person, campaign)  # once only

    [event] = WebhookEvent.objects.filter(type="delivery.acknowledged")
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    sent_at = datetime.datetime.fromisoformat(event.payload.pop("acknowledged_at").replace("Z", "+00:00"))
    assert event.payload == {
        "delivery": delivery.pk, "campaign": campaign.pk, "recipient": person.external_id, "version": 1,
        "via": "button"}
    assert abs(sent_at - delivery.acknowledged_at) < datetime.timedelta(milliseconds=1)  # to the millisecond


def test_a_press_that_loses_the_race_to_another_records_nothing_and_answers_the_first_s_time(teams, monkeypatch):
    """Two presses at once: both find the person's row not acknowledged; the first records it; the second's
    update finds it done, records nothing more, and answers with when the first did."""
    from delivery import acknowledgements

    campaign, [person] = sent()
    found = acknowledgements.target_find

    def raced(**kwargs):
        target = found(**kwargs)
        if not isinstance(target, acknowledgements.Answer):  # the other press commits in between
            Delivery.objects.filter(pk=target.delivery_id).update(acknowledged_at=timezone.now())
        return target

    monkeypatch.setattr(acknowledgements, "target_find", raced)
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}

    answer = acknowledgements.acknowledgement_answer(aad_object_id=str(person.aad_object_id), data=data,
                                                     reply_to=None)

    first = Delivery.objects.get(campaign=campaign, recipient=person).acknowledged_at
    assert (answer.status, answer.recorded, answer.acknowledged_at) == (200, False, first)
    assert not Acknowledgement.objects.exists() and counted(campaign) == 0


@pytest.fixture
def bot_endpoint(teams, live_server):
    from django.urls import reverse

    teams.client.config(bot_endpoint=f"{live_server.url}{reverse('bot-messages')}")


def test_pressed_in_teams_the_person_sees_their_acknowledgement_and_crier_counts_it(teams, bot_endpoint,
                                                                                      transactional_db):
    """Through the bot's messaging endpoint, with Teams' token, as the emulator presses the button."""
    campaign, [person, other] = sent(2)
    aad = str(person.aad_object_id)

    answer = teams.client.execute(aad, action="Acknowledge")

    assert answer["bot_status"] == 200 and answer["outcome"] == "card"
    assert acknowledged_line(answer["card"]).startswith("✅ Acknowledged on {{DATE(")
    [message] = teams.client.messages(user=aad)
    assert acknowledged_line(message["card"]) and message["answered"] == 1  # what Teams shows them now
    assert counted(campaign) == 1
    refreshed = teams.client.refresh(str(other.aad_object_id))  # the other person's view: still to acknowledge
    assert refreshed["outcome"] == "card" and button(refreshed["card"])["verb"] == "crier.acknowledge"
    assert Delivery.objects.filter(campaign=campaign, acknowledged_at__isnull=False).count() == 1


@pytest.mark.parametrize("card, where", [
    ({**CARD, "refresh": {"action": {"type": "Action.Execute", "verb": "crier.acknowledge", "data": {}}}}, "refresh"),
    ({**CARD, "actions": [{"type": "Action.Execute", "title": "Close", "verb": "Crier.Acknowledge"}]}, "verb"),
    ({**CARD, "actions": [{"type": "Action.Submit", "title": "OK", "data": {"crier_action": "acknowledge"}}]}, "data"),
    ({**CARD, "body": [*CARD["body"], {"type": "Container", "id": "crier-poll", "items": [
        {"type": "TextBlock", "text": "x"}]}]}, "id"),
    ({**CARD, "actions": [{"type": "Action.Submit", "title": "OK", "data": {"msteams": {
        "type": "messageBack", "value": {"crier_action": "acknowledge"}}}}]}, "crier_action"),
])
def test_a_template_cannot_hold_crier_s_own_buttons_or_refresh(card, where):
    """Else a card of one message could acknowledge another, even by being shown (a refresh is sent unpressed)."""
    from django.core.exceptions import ValidationError

    from campaigns.template_checks import validate_template

    with pytest.raises(ValidationError) as refused:
        validate_template(kind="adaptive_card", text="", card=card)
    assert any(where in problem and "Crier" in problem for problem in refused.value.message_dict["card"])
    opt_out = {**CARD, "actions": [{"type": "Action.Submit", "title": "Stop", "data": {"crier_action": "opt_out"}}]}
    validate_template(kind="adaptive_card", text="", card=opt_out)  # the opt-out button is the author's to add


def test_a_press_sent_as_a_refresh_records_nothing(teams):
    campaign, [person] = sent()
    activity = invoke(person, card_actions.VERB_ACKNOWLEDGE, {"campaign": str(campaign.public_id), "version": 1})
    activity["value"]["trigger"] = "automatic"

    _, answer = bot.invoke_handle(data=activity)

    assert answer["statusCode"] == 400 and not Acknowledgement.objects.exists()


def test_a_recalled_message_can_no_longer_be_acknowledged_or_shown(teams, editor):
    campaign, [person] = sent(mode="policy")
    with TestCase.captureOnCommitCallbacks(execute=True):
        change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=change.pk)

    pressed_answer = pressed(person, campaign)
    refreshed = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, {
        "campaign": str(campaign.public_id), "version": 1}))[1]

    assert pressed_answer["statusCode"] == 403 and refreshed["statusCode"] == 403
    assert not Acknowledgement.objects.exists() and counted(campaign) == 0


@pytest.mark.parametrize("version", [1e400, "1e400", 1.5, True, [1], None, 2**31])
def test_a_version_that_is_no_version_is_a_bad_request(teams, version):
    campaign, [person] = sent()
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": version}
    assert bot.invoke_handle(data=invoke(person, card_actions.VERB_ACKNOWLEDGE, data))[1]["statusCode"] == 400


def test_a_1_4_card_is_raised_to_1_5_and_a_markdown_message_keeps_its_start_as_the_preview(teams):
    _, [person] = sent(template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD,
                                                   card={**CARD, "version": "1.4"}, text=""))
    assert received_card(teams, person)["version"] == "1.5"  # below 1.5 Teams draws no Action.Execute
    text = "Hello {{first_name}}, read the new policy.\n\nIt is long: " + "words " * 200
    _, [reader] = sent(template=factories.template(text=text))
    [message] = teams.client.messages(user=str(reader.aad_object_id))
    assert message["activity"]["summary"] == f"Hello {reader.first_name}, read the new policy."


def test_the_summary_never_ends_inside_a_placeholder():
    text = "x" * (card_actions.SUMMARY_MOST - 5) + "{{first_name}} and more"
    kind, summary, _ = card_actions.content_asking(kind="markdown", text=text, card=None,
                                                   ask=card_actions.Ask(campaign="c", version=1, mode="asked"))
    assert summary == "x" * (card_actions.SUMMARY_MOST - 5)


def test_a_policy_whose_category_was_made_optional_is_not_launched_and_a_scheduled_one_goes_back_to_draft(teams):
    import datetime

    from django.utils import timezone

    category = factories.category(mandatory=True)
    factories.recipient()
    now, later = (factories.campaign(acknowledgement="policy", category=category) for _ in range(2))
    services.campaign_schedule(campaign_id=later.pk, send_at=timezone.now() + datetime.timedelta(minutes=5))
    category.mandatory = False
    category.save()

    with pytest.raises(ApplicationError, match="mandatory category"):
        services.campaign_launch(campaign_id=now.pk)
    Campaign.objects.filter(pk=later.pk).update(send_at=timezone.now() - datetime.timedelta(seconds=1))
    assert services.launch_due_campaigns() == []

    later.refresh_from_db()
    assert later.status == Campaign.Status.DRAFT and "mandatory category" in later.status_reason
    assert not Delivery.objects.exists()


def test_a_test_of_a_campaign_that_asks_is_the_message_its_people_get(teams):
    from delivery.services import campaign_send_direct

    campaign = factories.campaign(acknowledgement="asked", poll_question="Where?", poll_options=["A", "B"],
                                  template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD,
                                                              text=""))
    me = factories.recipient()
    test = campaign_send_direct(name="Test", template_id=campaign.template_id, category=campaign.category,
                                external_ids=[me.external_id], asking_like=campaign)
    assert delivery_send(delivery_id=test.deliveries.get().pk).status == "sent"

    card = received_card(teams, me)
    ids = [element.get("id") for element in card["body"]]
    assert card_actions.POLL_PART in ids and card_actions.ACKNOWLEDGE_PART in ids
    assert (test.acknowledgement, test.poll_options) == ("asked", ["A", "B"])
    assert pressed(me, test)["statusCode"] == 200  # the tester can try the button: it counts for the test only
    assert counted(test) == 1
    assert list(Acknowledgement.objects.values_list("delivery_id", flat=True)) == [test.deliveries.get().pk]


def test_a_refresh_is_answered_while_an_edit_holds_the_campaign_and_a_press_asks_to_press_again(
        teams, transactional_db):
    from tests.threads import row_locked

    campaign, [person] = sent()
    with row_locked(Campaign, campaign.pk):  # as an edit holds it
        refreshed = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, {
            "campaign": str(campaign.public_id), "version": 1}))[1]
        busy = pressed(person, campaign)

    assert refreshed["statusCode"] == 200  # a view waits for nothing
    assert busy["statusCode"] == 503 and "press again" in busy["value"]["message"]
    assert pressed(person, campaign)["statusCode"] == 200  # once the edit is done
    assert counted(campaign) == 1


def test_a_fallback_press_while_an_edit_holds_the_campaign_asks_to_press_again_and_leaves_the_rest_of_its_work(
        teams, transactional_db):
    from django.db import transaction

    from bots.models import TeamsAddress
    from tests.threads import row_locked

    campaign, [person] = sent()
    value = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}
    message = {**invoke(person, "", value), "type": "message", "name": None, "value": value}
    with row_locked(Campaign, campaign.pk):  # as an edit holds it
        with transaction.atomic():  # as the messaging endpoint handles a message: one transaction
            TeamsAddress.objects.filter(aad_object_id=person.aad_object_id).update(user_id="29:before-the-press")
            replies = bot.activity_handle(data=message)

    assert replies == ["This message is being changed: press again in a moment."]
    assert not Acknowledgement.objects.exists() and counted(campaign) == 0
    # Only the press was undone: what the same transaction did before it stands.
    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).user_id == "29:before-the-press"


def test_a_press_costs_three_statements_the_lock_the_lookup_and_the_record(teams):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from delivery import webhooks

    campaign, [first, second] = sent(people=2)
    webhooks.forget_subscriptions()  # another test's, kept for a few seconds
    webhooks.wanted_types()  # looked up every few seconds, not per press
    pressed(first, campaign)  # the card's compiled form is kept from the first press on

    activity = invoke(second, card_actions.VERB_ACKNOWLEDGE, {
        "crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1})

    with TestCase.captureOnCommitCallbacks(execute=True), CaptureQueriesContext(connection) as queries:
        status, answer = bot.invoke_handle(data=activity)

    assert status == 200 and answer["statusCode"] == 200 and acknowledged_line(answer["value"])
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]  # the test's own
    assert len(statements) == 3, statements
    assert "FOR KEY SHARE" in statements[0] and "FOR KEY SHARE" not in statements[1]
    assert counted(campaign) == 2


def test_a_card_drawn_with_the_person_s_attributes_is_answered_with_them_on_a_press_and_a_refresh(teams):
    card = {"type": "AdaptiveCard", "version": "1.2", "body": [{"type": "TextBlock", "text": "Team {{attributes.team}}"}]}
    template = factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=card, text="")
    campaign, [person] = sent(template=template)
    person.attributes = {"team": "Blue"}
    person.save()
    data = {"campaign": str(campaign.public_id), "version": 1}

    refreshed = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, data))[1]
    answer = pressed(person, campaign)

    assert refreshed["statusCode"] == 200 and refreshed["value"]["body"][0]["text"] == "Team Blue"
    assert answer["statusCode"] == 200 and answer["value"]["body"][0]["text"] == "Team Blue"
    assert acknowledged_line(answer["value"]) and counted(campaign) == 1


def test_a_press_while_a_policy_s_edit_commits_never_answers_the_new_version_as_acknowledged(
        teams, editor, transactional_db, monkeypatch):
    """The edit commits while the press looks its message up (slowed here, as a busy machine may): the press either
    finishes first, under the share lock, or sees the edit whole; never the edit's version with the acknowledgement
    the edit cleared."""
    from delivery import acknowledgements, card_views
    from tests.threads import in_thread

    campaign, [person] = sent(mode="policy")
    pressed(person, campaign)  # version 1 acknowledged
    monkeypatch.setattr(card_views, "_TARGET", card_views._TARGET.replace(
        "WHERE c.public_id", "WHERE pg_sleep(1) IS NOT NULL AND c.public_id"))
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}
    thread, outcome = in_thread(lambda: acknowledgements.acknowledgement_answer(
        aad_object_id=str(person.aad_object_id), data=data, reply_to=None))
    time.sleep(0.3)  # the press is looking its message up

    change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="adaptive_card",
                                  card={**CARD, "body": [{"type": "TextBlock", "text": "Version two"}]})
    message_change_process(change_id=change.pk)
    thread.join(10)

    answer = outcome["result"]
    answered_version = answer.card["refresh"]["action"]["data"]["version"]
    assert (answered_version, answer.acknowledged_at is not None) in {(1, True), (2, False)}
    assert Campaign.objects.get(pk=campaign.pk).message_version == 2


def test_the_answer_says_whether_the_press_recorded_the_acknowledgement(teams):
    from delivery import acknowledgements

    campaign, [person] = sent()
    data = {"crier_action": "acknowledge", "campaign": str(campaign.public_id), "version": 1}

    def press():
        return acknowledgements.acknowledgement_answer(aad_object_id=str(person.aad_object_id), data=data,
                                                       reply_to=None)

    first, again = press(), press()

    assert first.recorded is True and first.acknowledged_at is not None
    assert again.recorded is False and again.acknowledged_at == first.acknowledged_at
