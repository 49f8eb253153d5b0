"""Follow-ups: a reminder to those who have not read, acknowledged or answered a campaign, sent by the scheduler when
it is due, and a send again to those it failed for. Each is a campaign of its own with its own results; what people
acknowledge or answer on its card counts for the campaign it follows."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from bots import services as bot
from campaigns import card_actions
from campaigns.approvals import approval_fingerprint, campaign_approve
from campaigns.audit import Actor
from campaigns.models import ApiKey, Campaign, MessageTemplate, OptOut
from core.errors import ApplicationError
from delivery import follow_ups, progress, services, webhooks
from delivery.message_changes import message_change_start
from delivery.models import (
    Acknowledgement, Delivery, DeliveryChange, MessageChange, PollAnswer, WebhookEndpoint, WebhookEvent,
)
from delivery.sending import delivery_send
from tests import factories
from tests.delivery.test_acknowledgements import invoke
from tests.threads import in_thread, until_waiting_or_done

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}
HOUR = timedelta(hours=1)
Who = Campaign.FollowUp


def people(n: int) -> list:
    return [factories.recipient() for _ in range(n)]


def launched_and_sent(campaign: Campaign) -> Campaign:
    services.campaign_launch(campaign_id=campaign.pk)
    return sent_all(campaign)


def sent_all(campaign: Campaign) -> Campaign:
    for delivery in Delivery.objects.filter(campaign=campaign, status=Delivery.Status.PENDING):
        delivery_send(delivery_id=delivery.pk)
    assert campaign.pk in services.campaigns_complete_finished()
    campaign.refresh_from_db()
    return campaign


def asking(mode: str = "asked", **fields) -> Campaign:
    fields.setdefault("template", factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text=""))
    if mode == "policy":
        fields.setdefault("category", factories.category(mandatory=True))
    return factories.campaign(acknowledgement=mode, **fields)


def press(person, campaign: Campaign, verb: str = card_actions.VERB_ACKNOWLEDGE, reply_to: str | None = None,
          **data) -> tuple[int, dict]:
    """The person presses the button of ``campaign``'s card (its own public id in the data, as the card says): the
    invoke's status (the HTTP answer is 200 either way) and the card answered."""
    action = "acknowledge" if verb == card_actions.VERB_ACKNOWLEDGE else "answer"
    data = {"crier_action": action, "campaign": str(campaign.public_id),
            "version": data.pop("version", campaign.message_version), **data}
    with TestCase.captureOnCommitCallbacks(execute=True):
        status, body = bot.invoke_handle(data=invoke(person, verb, data, reply_to=reply_to))
    assert status == 200
    return body["statusCode"], body


def row(campaign: Campaign, person) -> Delivery:
    return Delivery.objects.get(campaign=campaign, recipient=person)


def received(person, campaign: Campaign) -> set:
    return set(Delivery.objects.filter(campaign=campaign).values_list("recipient_id", flat=True)) & {person.pk}


def lacking_the_app(teams, installed: list, lacking: list) -> None:
    """Teams knows these people; those ``lacking`` never installed the app, and Teams installs it for nobody."""
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": str(person), "installed": False}
                                 for person in lacking])
    teams.client.register_users([str(person.aad_object_id) for person in installed])
    teams.client.config(auto_install=False)


def reminded(campaign: Campaign) -> list[Campaign]:
    return list(campaign.follow_ups.filter(follow_up_number__isnull=False).order_by("follow_up_number"))


# --- reminders -----------------------------------------------------------------------------------------------

def test_a_reminder_goes_when_due_to_those_who_have_not_acknowledged_and_what_they_do_on_it_counts_for_the_campaign(
        teams):
    WebhookEndpoint.objects.create(name="hr", url="https://hr.example/hook", secret="s",
                                   events=["delivery.acknowledged"])
    webhooks.forget_subscriptions()
    first, second, third = people(3)
    campaign = launched_and_sent(asking("policy", remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR, remind_times=2))
    assert press(first, campaign)[0] == 200

    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR - timedelta(seconds=1)) == []
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)

    reminder = Campaign.objects.get(pk=reminder_id)
    assert (reminder.follows_id, reminder.follow_up_who, reminder.follow_up_number) == (
        campaign.pk, Who.NOT_ACKNOWLEDGED, 1)
    assert reminder.name == f"Reminder 1: {campaign.name}" and reminder.status == Campaign.Status.RUNNING
    assert set(reminder.deliveries.values_list("recipient_id", flat=True)) == {second.pk, third.pk}
    sent_all(reminder)
    # Its card asks on behalf of the campaign, naming the reminder's own message and the campaign's version.
    [message] = teams.client.messages(user=str(second.aad_object_id))[-1:]
    card = message["activity"]["attachments"][0]["content"]
    part = next(e for e in card["body"] if e.get("id") == card_actions.ACKNOWLEDGE_PART)
    assert part["items"][0]["actions"][0]["data"] == {
        "crier_action": "acknowledge", "campaign": str(reminder.public_id), "version": campaign.message_version}

    status, body = press(second, reminder, version=campaign.message_version)

    assert status == 200 and "✅ You acknowledged this version on" in str(body)
    acknowledged = row(campaign, second).acknowledged_at
    assert acknowledged is not None and row(reminder, second).acknowledged_at == acknowledged
    assert list(Acknowledgement.objects.filter(delivery__campaign=campaign).values_list(
        "delivery__recipient_id", flat=True).order_by("delivery__recipient_id")) == [first.pk, second.pk]
    assert progress.read(campaign)["acknowledged"] == 2 and progress.read(reminder)["acknowledged"] == 1
    assert progress.rebuild(reminder.pk)["acknowledged"] == 1  # its own rows say so too
    assert [event.payload["delivery"] for event in WebhookEvent.objects.filter(type="delivery.acknowledged")] == [
        row(campaign, first).pk, row(campaign, second).pk]  # of the campaign's rows, not the reminder's

    # The next waits for the reminder before it to complete, then the time; then goes only to whom is left.
    reminder.refresh_from_db()
    assert follow_ups.reminders_send_due(now=reminder.completed_at + HOUR - timedelta(seconds=1)) == []
    [again_id] = follow_ups.reminders_send_due(now=reminder.completed_at + HOUR)
    again = Campaign.objects.get(pk=again_id)
    assert again.follow_up_number == 2
    assert set(again.deliveries.values_list("recipient_id", flat=True)) == {third.pk}
    sent_all(again)
    # No more than it asked for.
    assert follow_ups.reminders_send_due(now=again.completed_at + 10 * HOUR) == []
    assert follow_ups.next_reminder_at(campaign=campaign) is None
    # The campaign's own rows never changed state; each reminder has its own results.
    assert row(campaign, third).status == Delivery.Status.SENT and progress.read(again)["sent"] == 1


def test_a_reminder_does_not_wait_for_one_still_sending_and_is_sent_once(teams):
    people(2)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR, remind_times=3))
    later = campaign.completed_at + HOUR
    [first] = follow_ups.reminders_send_due(now=later)

    assert follow_ups.reminders_send_due(now=later + 5 * HOUR) == []  # the first still runs
    assert len(reminded(campaign)) == 1 and Campaign.objects.get(pk=first).status == Campaign.Status.RUNNING


def test_a_reminder_to_those_who_have_not_read_leaves_out_those_teams_reported_read(teams):
    reader, other = people(2)
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR))
    Delivery.objects.filter(pk=row(campaign, reader).pk).update(read_at=timezone.now())

    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)

    assert set(Delivery.objects.filter(campaign_id=reminder).values_list("recipient_id", flat=True)) == {other.pk}


def test_a_reminder_of_a_poll_goes_to_those_who_have_not_answered_and_an_answer_on_it_counts_for_the_campaign(teams):
    answered, other = people(2)
    campaign = launched_and_sent(factories.campaign(
        template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text=""),
        poll_question="Where?", poll_options=["Here", "There"], remind_who=Who.NOT_ANSWERED, remind_after=HOUR))
    assert press(answered, campaign, card_actions.VERB_ANSWER, **{card_actions.POLL_INPUT: "0"})[0] == 200

    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))
    assert set(reminder.deliveries.values_list("recipient_id", flat=True)) == {other.pk}

    status, _ = press(other, reminder, card_actions.VERB_ANSWER, **{card_actions.POLL_INPUT: "1"})

    assert status == 200
    assert PollAnswer.objects.get(delivery=row(campaign, other)).choices == [1]
    assert not PollAnswer.objects.filter(delivery__campaign=reminder).exists()
    assert progress.read(campaign)["answered"] == 2


def test_a_reminder_respects_opt_outs_made_since(teams):
    stays, leaves = people(2)
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR))
    OptOut.objects.create(recipient=leaves, category=campaign.category, source=OptOut.Source.API)

    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)

    rows = dict(Delivery.objects.filter(campaign_id=reminder).values_list("recipient_id", "status"))
    assert rows == {stays.pk: Delivery.Status.PENDING, leaves.pk: Delivery.Status.SKIPPED}


def test_a_reminder_whose_approval_no_longer_stands_is_kept_as_a_draft_saying_why_and_the_reminders_end(teams,
                                                                                                      settings):
    settings.APPROVAL_THRESHOLD = 0
    people(2)
    reminder_text = factories.template(text="Please read it")
    campaign = asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR, remind_times=2,
                      remind_template=reminder_text)
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=2,
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))
    campaign = launched_and_sent(campaign)
    reminder_text.text = "Please read it, now"  # after the approval: nobody approved these words
    reminder_text.save()

    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []

    [draft] = reminded(campaign)
    assert draft.status == Campaign.Status.DRAFT and draft.status_reason.startswith("Not sent: ")
    assert "approv" in draft.status_reason and not draft.deliveries.exists()
    assert follow_ups.reminders_send_due(now=campaign.completed_at + 50 * HOUR) == []
    assert follow_ups.next_reminder_at(campaign=campaign) is None


def test_a_reminder_covered_by_the_approval_is_sent_with_its_own_message(teams, settings):
    settings.APPROVAL_THRESHOLD = 0
    [person] = people(1)
    campaign = asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR,
                      remind_template=factories.template(text="A reminder, {{first_name}}"))
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=1,
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))
    campaign = launched_and_sent(campaign)

    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    sent_all(Campaign.objects.get(pk=reminder))

    card = teams.client.messages(user=str(person.aad_object_id))[-1]["activity"]["attachments"][0]["content"]
    assert card["body"][0]["text"] == f"A reminder, {person.first_name}"


def test_two_schedulers_at_once_make_one_reminder(teams, transactional_db, monkeypatch):
    people(2)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR))
    made = follow_ups._follow_up_make
    first_in, release = threading.Event(), threading.Event()
    second_pid: list[int] = []

    def held(*args, **kwargs):
        if not first_in.is_set():
            first_in.set()
            assert release.wait(30)
        return made(*args, **kwargs)

    monkeypatch.setattr(follow_ups, "_follow_up_make", held)
    when = campaign.completed_at + HOUR
    first, first_outcome = in_thread(lambda: follow_ups.reminders_send_due(now=when))
    try:
        assert first_in.wait(30)

        def second_run():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
            return follow_ups.reminders_send_due(now=when)

        second, second_outcome = in_thread(second_run)
        until_waiting_or_done(lambda: not second.is_alive(), second_pid, "the second scheduler")
    finally:
        release.set()
    first.join(30)
    second.join(30)

    assert "error" not in first_outcome and "error" not in second_outcome
    assert len(first_outcome["result"]) + len(second_outcome["result"]) == 1
    assert len(reminded(campaign)) == 1


@pytest.mark.parametrize("fields, field", [
    ({"kind": Campaign.Kind.WELCOME, "remind_who": Who.NOT_READ, "remind_after": HOUR}, "remind_who"),
    ({"remind_who": Who.NOT_ACKNOWLEDGED, "remind_after": HOUR}, "remind_who"),  # it asks nothing
    ({"remind_who": Who.NOT_ANSWERED, "remind_after": HOUR}, "remind_who"),  # it has no poll
    ({"remind_who": Who.NOT_READ}, "remind_after"),
    ({"remind_who": Who.NOT_READ, "remind_after": timedelta(seconds=59)}, "remind_after"),
    ({"remind_who": Who.NOT_READ, "remind_after": timedelta(days=91)}, "remind_after"),
    ({"remind_who": Who.NOT_READ, "remind_after": HOUR, "remind_times": 6}, "remind_times"),
    ({"remind_who": Who.NOT_READ, "remind_after": HOUR, "remind_times": 0}, "remind_times"),
])
def test_reminders_that_cannot_be_sent_are_refused_by_field(fields, field):
    from campaigns.models.content import reminder_problems

    values = {"kind": "announcement", "remind_after": None, "remind_times": 1, "acknowledgement": "",
              "poll_question": "", **fields}
    assert list(reminder_problems(**values)) == [field]
    assert reminder_problems(**{**values, "remind_who": ""}) == {}


# --- sending again to those it failed for ---------------------------------------------------------------------

def test_sending_again_goes_to_those_it_failed_for_once_the_cause_is_fixed(teams):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(factories.campaign())
    assert row(campaign, lacking).status == Delivery.Status.FAILED
    teams.client.install(str(lacking.aad_object_id))  # the cause, fixed

    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert (again.follows_id, again.follow_up_who, again.follow_up_number, again.status) == (
        campaign.pk, Who.FAILED, None, Campaign.Status.RUNNING)
    assert list(again.deliveries.values_list("recipient_id", flat=True)) == [lacking.pk]
    sent_all(again)
    assert row(again, lacking).status == Delivery.Status.SENT
    assert row(campaign, lacking).status == Delivery.Status.FAILED  # the campaign's own result stands
    assert len(teams.client.messages(user=str(lacking.aad_object_id))) == 1
    # Nobody is left it failed for: a second send again is refused, and makes nothing.
    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)
    assert refused.value.code == "nobody_to_follow_up" and campaign.follow_ups.count() == 1


def test_a_press_on_a_card_sent_again_acknowledges_the_campaign(teams):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(asking("policy"))
    teams.client.install(str(lacking.aad_object_id))
    again = sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))

    assert press(lacking, again)[0] == 200

    assert row(campaign, lacking).acknowledged_at is not None
    assert Acknowledgement.objects.filter(delivery=row(campaign, lacking), version=1).exists()


def test_a_card_of_a_follow_up_counts_only_for_its_own_person_and_message(teams):
    done, left = people(2)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR))
    assert press(done, campaign)[0] == 200
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))

    # Someone the reminder was not sent to cannot press its card, whatever they say it is.
    assert press(done, reminder, reply_to=row(reminder, left).activity_id)[0] == 403
    # Nor can its person name another message than the reminder's.
    assert press(left, reminder, reply_to=row(campaign, left).activity_id)[0] == 403
    assert row(campaign, left).acknowledged_at is None
    # Recalled, the campaign's message is acknowledged no more, through its reminder neither.
    change = MessageChange.objects.create(campaign=campaign, action=MessageChange.Action.RECALL, total=1)
    DeliveryChange.objects.create(change=change, delivery=row(campaign, left), status=DeliveryChange.Status.DONE)
    assert press(left, reminder)[0] == 403


def test_a_follow_up_is_not_followed_up_nor_edited(teams, django_user_model):
    people(1)
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR))
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=reminder.pk)
    assert refused.value.code == "invalid_state"
    editor = django_user_model.objects.create_superuser("ed")
    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=reminder.pk, action="edit", user=editor, text="New words")
    assert "follows up another campaign" in refused.value.message


def test_sending_again_waits_for_a_follow_up_not_ended_and_refuses_what_has_not_completed(teams):
    lacking_the_app(teams, [], people(2))  # everyone fails
    running = factories.campaign()
    services.campaign_launch(campaign_id=running.pk)
    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=running.pk)
    assert refused.value.code == "invalid_state"
    campaign = sent_all(running)
    follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert refused.value.code == "follow_up_open" and campaign.follow_ups.count() == 1


def test_sending_again_leaves_out_who_blocked_the_app_and_with_nobody_else_makes_nothing(teams):
    blocker = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(blocker.aad_object_id), "name": "Blocker"}])
    teams.client.block(str(blocker.aad_object_id))
    campaign = launched_and_sent(factories.campaign())
    assert row(campaign, blocker).status == Delivery.Status.FAILED

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert refused.value.code == "nobody_to_follow_up" and not campaign.follow_ups.exists()


def test_once_its_poll_has_closed_a_campaign_reminds_nobody_to_answer_it_but_still_to_acknowledge_it(teams):
    people(2)
    closes = timezone.now() + timedelta(minutes=5)
    fields = dict(poll_question="Where?", poll_options=["Here", "There"], poll_closes_at=closes, remind_after=HOUR)
    answer = launched_and_sent(asking(remind_who=Who.NOT_ANSWERED, **fields))
    acknowledge = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, **fields))
    Campaign.objects.filter(pk__in=[answer.pk, acknowledge.pk]).update(poll_closes_at=timezone.now())

    launched = follow_ups.reminders_send_due(now=timezone.now() + 2 * HOUR)

    [not_sent] = reminded(answer)
    assert not_sent.status == Campaign.Status.DRAFT and "has closed" in not_sent.status_reason
    [reminder] = reminded(acknowledge)
    assert launched == [reminder.pk] and reminder.deliveries.count() == 2


# --- the campaign edited or recalled, approvals, and what is sent again ----------------------------------------

EDITED = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Version 2, {{first_name}}"}]}


def texts(card: dict) -> list[str]:
    return [element.get("text", "") for element in card["body"] if element.get("type") == "TextBlock"]


def last_card(teams, person) -> dict:
    return teams.client.messages(user=str(person.aad_object_id))[-1]["activity"]["attachments"][0]["content"]


def edited(campaign: Campaign, user) -> Campaign:
    message_change_start(campaign_id=campaign.pk, action="edit", user=user, card=EDITED,
                         kind=MessageTemplate.Kind.ADAPTIVE_CARD)
    campaign.refresh_from_db()
    return campaign


def test_a_reminder_made_after_the_campaign_s_message_was_edited_sends_it_as_edited(teams, django_user_model):
    [person] = people(1)
    campaign = launched_and_sent(asking("policy", remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR))
    campaign = edited(campaign, django_user_model.objects.create_superuser("ed"))

    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))

    assert texts(last_card(teams, person))[0] == f"Version 2, {person.first_name}"
    status, body = press(person, reminder, version=2)
    assert status == 200 and texts(body["value"])[0] == f"Version 2, {person.first_name}"
    assert Acknowledgement.objects.filter(delivery=row(campaign, person), version=2).exists()


def test_an_edit_of_the_campaign_edits_the_messages_its_follow_ups_sent_again_and_not_a_reminder_s_own(
        teams, django_user_model):
    first, second = people(2)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR, remind_times=2))
    [again_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    again = sent_all(Campaign.objects.get(pk=again_id))  # it sends the message again
    Campaign.objects.filter(pk=campaign.pk).update(remind_template=factories.template(text="Please read it"))
    [own_id] = follow_ups.reminders_send_due(now=again.completed_at + HOUR)
    own = sent_all(Campaign.objects.get(pk=own_id))  # its own words

    campaign = edited(campaign, django_user_model.objects.create_superuser("ed"))

    changes = {change.campaign_id: change for change in MessageChange.objects.filter(action="edit")}
    assert set(changes) == {campaign.pk, again.pk}  # not the reminder with its own words
    assert changes[again.pk].card == EDITED
    # What Teams shows when it refreshes the card sent again: the message as it is now.
    status, body = press(first, again, version=2)
    assert status == 200 and texts(body["value"])[0] == f"Version 2, {first.first_name}"
    assert own.deliveries.exists()


def test_the_campaign_is_neither_edited_nor_recalled_while_a_follow_up_of_it_sends(teams, django_user_model):
    people(2)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR))
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    user = django_user_model.objects.create_superuser("rc")

    for action in ("recall", "edit"):
        with pytest.raises(ApplicationError) as refused:
            message_change_start(campaign_id=campaign.pk, action=action, user=user, card=EDITED,
                                 kind=MessageTemplate.Kind.ADAPTIVE_CARD)
        assert refused.value.code == "invalid_state" and "Reminder 1" in refused.value.message
    assert not MessageChange.objects.exists()


def test_a_recall_of_the_campaign_recalls_its_follow_ups_and_their_cards_acknowledge_nothing(teams, django_user_model):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(asking("policy"))
    teams.client.install(str(lacking.aad_object_id))
    again = sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))

    message_change_start(campaign_id=campaign.pk, action="recall",
                         user=django_user_model.objects.create_superuser("rc"))

    assert set(MessageChange.objects.filter(action="recall").values_list("campaign_id", flat=True)) == {
        campaign.pk, again.pk}
    status, _ = press(lacking, again)  # before the recall reached their chat: the campaign was recalled
    assert status == 403 and row(campaign, lacking).acknowledged_at is None
    assert follow_ups.next_reminder_at(campaign=campaign) is None


def test_a_reminder_due_while_a_send_again_runs_waits_for_it(teams):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR))
    teams.client.install(str(lacking.aad_object_id))
    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []
    assert reminded(campaign) == []  # nothing made: it waits
    sent_all(again)
    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    assert set(Delivery.objects.filter(campaign_id=reminder).values_list("recipient_id", flat=True)) == {
        installed.pk, lacking.pk}


def approved(campaign: Campaign, people_count: int) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=people_count,
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))
    campaign.refresh_from_db()
    return campaign


def test_a_reminder_not_covered_by_the_approval_is_approved_then_launched(teams, settings, django_user_model):
    settings.APPROVAL_THRESHOLD = 0
    people(2)
    words = factories.template(text="Please read it")
    campaign = launched_and_sent(approved(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR,
                                                 remind_template=words), 2))
    words.text = "Please read it, now"
    words.save()
    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []
    [draft] = reminded(campaign)

    campaign_approve(campaign_id=draft.pk, actor=Actor(user=django_user_model.objects.create_superuser("avery")))
    services.campaign_launch(campaign_id=draft.pk)

    draft.refresh_from_db()
    assert draft.status == Campaign.Status.RUNNING and draft.deliveries.count() == 2


def sent_again_as_a_draft(teams, settings) -> tuple[Campaign, object, Campaign]:
    """An approved campaign (threshold 0) whose template changed since it was sent: sent again to the one it failed
    for, once the cause was fixed, as a draft for an approver."""
    settings.APPROVAL_THRESHOLD = 0
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    template = factories.template(text="Hello")
    campaign = launched_and_sent(approved(factories.campaign(template=template), 2))
    teams.client.install(str(lacking.aad_object_id))
    template.text = "Hello again"
    template.save()
    return campaign, lacking, follow_ups.follow_up_send_again(campaign_id=campaign.pk)


def test_sending_again_when_the_approval_no_longer_covers_it_makes_a_draft_to_approve(teams, settings):
    # Not a campaign that asks: its template may change once sent.
    campaign, lacking, draft = sent_again_as_a_draft(teams, settings)

    assert draft.status == Campaign.Status.DRAFT and "approv" in draft.status_reason
    key = ApiKey.objects.create(name="k", prefix="kk", key_hash="h" * 64,
                                scopes=[ApiKey.Scope.CAMPAIGNS_SEND, ApiKey.Scope.CAMPAIGNS_APPROVE])
    services.campaign_launch(campaign_id=draft.pk, actor=Actor(api_key=key))  # a key trusted to approve
    assert list(draft.deliveries.values_list("recipient_id", flat=True)) == [lacking.pk]


def test_an_edit_of_the_campaign_s_audience_after_it_was_sent_does_not_stop_its_reminders(teams, settings):
    settings.APPROVAL_THRESHOLD = 0
    people(2)
    audience = factories.audience()
    campaign = launched_and_sent(approved(factories.campaign(audience=audience, remind_who=Who.NOT_READ,
                                                             remind_after=HOUR), 2))
    audience.name = "Renamed"
    audience.save()

    assert len(follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)) == 1


def test_sending_again_leaves_out_those_teams_may_have_had_it_for(teams):
    crashed, failed = people(2)
    lacking_the_app(teams, [crashed], [failed])
    campaign = launched_and_sent(factories.campaign())
    Delivery.objects.filter(pk=row(campaign, crashed).pk).update(status=Delivery.Status.FAILED, ambiguous=True,
                                                                 error_code="crier_error")
    teams.client.install(str(failed.aad_object_id))

    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert list(again.deliveries.values_list("recipient_id", flat=True)) == [failed.pk]


def test_a_reminder_to_those_who_have_not_read_leaves_out_who_acknowledged_or_answered(teams):
    acknowledged, answered, other = people(3)
    campaign = launched_and_sent(asking(remind_who=Who.NOT_READ, remind_after=HOUR, poll_question="Where?",
                                        poll_options=["Here", "There"]))
    assert press(acknowledged, campaign)[0] == 200
    assert press(answered, campaign, card_actions.VERB_ANSWER, **{card_actions.POLL_INPUT: "0"})[0] == 200

    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)

    assert list(Delivery.objects.filter(campaign_id=reminder).values_list("recipient_id", flat=True)) == [other.pk]


def test_a_press_on_the_campaign_s_card_is_taken_while_a_follow_up_of_it_is_made(teams, transactional_db,
                                                                                 monkeypatch):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(asking("policy"))
    teams.client.install(str(lacking.aad_object_id))
    inside, release = threading.Event(), threading.Event()
    launch = follow_ups.campaign_launch

    def slow_launch(**kwargs):  # as writing the first rows of a large audience takes a while
        inside.set()
        assert release.wait(30)
        return launch(**kwargs)

    monkeypatch.setattr(follow_ups, "campaign_launch", slow_launch)
    thread, outcome = in_thread(lambda: follow_ups.follow_up_send_again(campaign_id=campaign.pk))
    try:
        assert inside.wait(30)
        status, _ = press(installed, campaign)
    finally:
        release.set()
        thread.join(30)
    assert status == 200 and "error" not in outcome


# --- what no approver saw, what was sent twice, what was taken back ---------------------------------------------

def an_author():
    """May edit and recall a sent message, and is no approver."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("edna", "edna@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["recall_campaign", "change_campaign"], content_type__app_label="campaigns"))
    return User.objects.get(pk=user.pk)


def mostly_failed(teams, settings, *, approved_for: int = 4):
    """An approved campaign (threshold 1) that reached one person of four: three lacked the app, installed since."""
    settings.APPROVAL_THRESHOLD = 1
    installed, *lacking = people(4)
    lacking_the_app(teams, [installed], lacking)
    campaign = launched_and_sent(approved(factories.campaign(), approved_for))
    for person in lacking:
        teams.client.install(str(person.aad_object_id))
    return campaign, lacking


def test_words_an_author_edited_in_are_not_sent_again_under_the_campaign_s_approval(teams, settings):
    campaign, lacking = mostly_failed(teams, settings)
    message_change_start(campaign_id=campaign.pk, action="edit", user=an_author(), text="Edited words")  # to 1

    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert again.status == Campaign.Status.DRAFT and "approv" in again.status_reason
    assert not again.deliveries.exists()


def test_an_edit_that_reaches_a_follow_up_s_people_too_needs_an_approver_past_the_threshold(teams, settings):
    campaign, lacking = mostly_failed(teams, settings)
    sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))  # 3 more have it now

    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="edit", user=an_author(), text="Edited words")

    assert refused.value.code == "approval_required" and "4 people" in refused.value.message
    assert not MessageChange.objects.exists()


def test_a_follow_up_whose_message_teams_may_have_counts_as_had(teams):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(factories.campaign())
    teams.client.install(str(lacking.aad_object_id))
    first = sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))
    Delivery.objects.filter(pk=row(first, lacking).pk).update(status=Delivery.Status.FAILED, ambiguous=True,
                                                              error_code="crier_error")

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)

    assert refused.value.code == "nobody_to_follow_up"


def test_a_cancelled_follow_up_with_a_message_on_its_way_holds_the_next_and_the_campaign_s_recall(
        teams, django_user_model):
    installed, lacking = people(2)
    lacking_the_app(teams, [installed], [lacking])
    campaign = launched_and_sent(factories.campaign())
    teams.client.install(str(lacking.aad_object_id))
    first = follow_ups.follow_up_send_again(campaign_id=campaign.pk)
    Delivery.objects.filter(pk=row(first, lacking).pk).update(status=Delivery.Status.SENDING, claimed_at=timezone.now())
    user = django_user_model.objects.create_superuser("x")
    services.campaign_cancel(campaign_id=first.pk, actor=Actor(user=user))

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)
    assert refused.value.code == "nobody_to_follow_up"  # they may have it: not twice
    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="recall", user=user)
    assert "on their way" in refused.value.message


def test_a_draft_follow_up_blocks_another_and_is_launched_only_as_its_campaign_stands(teams, settings,
                                                                                     django_user_model):
    campaign, lacking, draft = sent_again_as_a_draft(teams, settings)
    assert draft.status == Campaign.Status.DRAFT

    with pytest.raises(ApplicationError) as refused:
        follow_ups.follow_up_send_again(campaign_id=campaign.pk)  # one draft, not two
    assert refused.value.code == "follow_up_open"
    with pytest.raises(ApplicationError) as refused:  # an edit would leave the draft with the old words
        message_change_start(campaign_id=campaign.pk, action="edit", user=django_user_model.objects.create_superuser(
            "ed"), text="New words")
    assert draft.name in refused.value.message
    # A recall cancels the draft: nothing of the campaign goes out after it.
    message_change_start(campaign_id=campaign.pk, action="recall",
                         user=django_user_model.objects.create_superuser("rc"))
    draft.refresh_from_db()
    assert draft.status == Campaign.Status.CANCELLED
    with pytest.raises(ApplicationError):
        services.campaign_launch(campaign_id=draft.pk)
    assert len(teams.client.messages(user=str(lacking.aad_object_id))) == 0


def test_a_draft_follow_up_of_a_recalled_campaign_is_not_launched(teams, settings, django_user_model):
    campaign, lacking, draft = sent_again_as_a_draft(teams, settings)
    MessageChange.objects.create(campaign=campaign, action=MessageChange.Action.RECALL, total=1,
                                 status=MessageChange.Status.COMPLETED)  # recalled, the draft left behind

    campaign_approve(campaign_id=draft.pk, actor=Actor(user=django_user_model.objects.create_superuser("avery")))
    with pytest.raises(ApplicationError) as refused:
        services.campaign_launch(campaign_id=draft.pk)

    assert "recalled" in refused.value.message and not Campaign.objects.get(pk=draft.pk).deliveries.exists()


def test_a_reminder_made_from_an_edit_is_its_own_to_approve_and_its_copy_s_edit_withdraws_that(
        teams, settings, django_user_model):
    settings.APPROVAL_THRESHOLD = 0
    person, other = people(2)
    campaign = launched_and_sent(approved(asking(remind_who=Who.NOT_ACKNOWLEDGED, remind_after=HOUR), 2))
    message_change_start(campaign_id=campaign.pk, action="edit", user=django_user_model.objects.create_superuser("ed"),
                         card=EDITED, kind=MessageTemplate.Kind.ADAPTIVE_CARD)
    MessageChange.objects.filter(campaign=campaign).update(status=MessageChange.Status.COMPLETED)
    campaign.refresh_from_db()

    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []

    [draft] = reminded(campaign)
    assert draft.status == Campaign.Status.DRAFT and draft.template_id != campaign.template_id
    campaign_approve(campaign_id=draft.pk, actor=Actor(user=django_user_model.objects.create_superuser("avery")))
    copy = draft.template
    copy.text, copy.card = "", {**EDITED, "body": [{"type": "TextBlock", "text": "Words nobody approved"}]}
    copy.save()  # edited after the approval
    with pytest.raises(ApplicationError) as refused:
        services.campaign_launch(campaign_id=draft.pk)
    assert refused.value.code == "approval_required"


def test_a_second_edit_of_a_long_named_campaign_makes_its_own_copy_and_the_reminder_comes(teams, django_user_model):
    people(2)
    template = factories.template(name="T" * 120, text="Hello")
    campaign = launched_and_sent(factories.campaign(name="C" * 100, template=template, remind_who=Who.NOT_READ,
                                                    remind_after=HOUR, remind_times=3))
    user = django_user_model.objects.create_superuser("ed")
    message_change_start(campaign_id=campaign.pk, action="edit", user=user, text="Edit one")
    MessageChange.objects.filter(campaign=campaign).update(status=MessageChange.Status.COMPLETED)
    campaign.refresh_from_db()
    [first] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    first = sent_all(Campaign.objects.get(pk=first))
    message_change_start(campaign_id=campaign.pk, action="edit", user=user, text="Edit two")
    MessageChange.objects.update(status=MessageChange.Status.COMPLETED)

    [second] = follow_ups.reminders_send_due(now=first.completed_at + 2 * HOUR)

    assert Campaign.objects.get(pk=second).template.text == "Edit two"


def reached_only_when_sent_again(teams) -> tuple[Campaign, Campaign]:
    """A campaign, reminding whoever has not read it, that failed for its two people (they lacked the app), then
    reached both when it was sent again."""
    lacking = people(2)
    lacking_the_app(teams, [], lacking)
    campaign = launched_and_sent(factories.campaign(remind_who=Who.NOT_READ, remind_after=HOUR))
    for person in lacking:
        teams.client.install(str(person.aad_object_id))
    return campaign, sent_all(follow_ups.follow_up_send_again(campaign_id=campaign.pk))


def test_a_campaign_that_reached_nobody_recalls_what_its_follow_ups_sent(teams, django_user_model):
    campaign, again = reached_only_when_sent_again(teams)

    message_change_start(campaign_id=campaign.pk, action="recall", user=django_user_model.objects.create_superuser("rc"))

    assert MessageChange.objects.get(campaign=again, action="recall").total == 2
    assert follow_ups.reminders_send_due(now=campaign.completed_at + HOUR) == []


def test_who_had_a_follow_up_s_message_taken_back_is_not_reminded_with_it(teams, django_user_model):
    campaign, again = reached_only_when_sent_again(teams)
    change = message_change_start(campaign_id=again.pk, action="recall",
                                  user=django_user_model.objects.create_superuser("rc"))
    DeliveryChange.objects.filter(change=change).update(status=DeliveryChange.Status.DONE)
    MessageChange.objects.filter(pk=change.pk).update(status=MessageChange.Status.COMPLETED)

    [reminder] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)

    assert not Delivery.objects.filter(campaign_id=reminder).exists()


def test_a_policy_s_edit_asks_again_on_its_follow_ups_cards_too(teams, django_user_model):
    [person] = people(1)
    campaign = launched_and_sent(asking("policy", remind_who=Who.NOT_READ, remind_after=HOUR))
    [reminder_id] = follow_ups.reminders_send_due(now=campaign.completed_at + HOUR)
    reminder = sent_all(Campaign.objects.get(pk=reminder_id))
    assert press(person, reminder)[0] == 200
    assert progress.read(reminder)["acknowledged"] == 1

    with TestCase.captureOnCommitCallbacks(execute=True):
        edited(campaign, django_user_model.objects.create_superuser("ed"))

    assert row(reminder, person).acknowledged_at is None and progress.read(reminder)["acknowledged"] == 0
    assert press(person, reminder, version=2)[0] == 200
    assert progress.read(reminder)["acknowledged"] == 1
