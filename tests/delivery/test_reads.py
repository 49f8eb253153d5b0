"""Who read a message: Teams' read receipts, sent by the emulator as Teams sends them when a person opens the
chat, through the bot's messaging endpoint. Every message of that person up to the one read is read, compared as
integers, once; each campaign counts its reads."""

from __future__ import annotations

import pytest
from django.urls import reverse

from delivery import progress, reads, services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def sent(person, **fields) -> Delivery:
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    delivery.refresh_from_db()
    return delivery


def counted(delivery: Delivery) -> int:
    return int(progress.client().hget(progress.key(delivery.campaign_id), "read") or 0)


@pytest.fixture
def bot_endpoint(teams, live_server):
    teams.client.config(bot_endpoint=f"{live_server.url}{reverse('bot-messages')}")


def test_reading_the_chat_marks_every_message_up_to_the_last_one_read_once(teams, bot_endpoint, transactional_db):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    first, second, third = (sent(person, name=f"News {n}") for n in range(3))

    answer = teams.client.read(str(person.aad_object_id), activity_id=second.activity_id)

    assert answer["bot_status"] == 200
    read = {d.pk: d.read_at for d in Delivery.objects.filter(pk__in=[first.pk, second.pk, third.pk])}
    assert read[first.pk] and read[second.pk] and read[third.pk] is None
    assert (counted(first), counted(second), counted(third)) == (1, 1, 0)
    when = read[first.pk]
    teams.client.read(str(person.aad_object_id))  # the latest: the third; the others keep their first read
    assert Delivery.objects.get(pk=first.pk).read_at == when and Delivery.objects.get(pk=third.pk).read_at
    assert counted(first) == 1 and counted(third) == 1


def test_ids_are_compared_as_integers_not_as_text(teams, django_capture_on_commit_callbacks):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    shorter, longer = sent(person), sent(person)
    Delivery.objects.filter(pk=shorter.pk).update(activity_id="999")  # "999" > "1000" as text
    Delivery.objects.filter(pk=longer.pk).update(activity_id="1000")

    assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read="999") == 1

    assert Delivery.objects.get(pk=shorter.pk).read_at and Delivery.objects.get(pk=longer.pk).read_at is None


def test_a_receipt_counts_only_for_the_person_who_read(teams):
    reader, other = factories.recipient(), factories.recipient()
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "installed": True} for p in (reader, other)])
    theirs = sent(other)

    assert reads.reads_record(aad_object_id=str(reader.aad_object_id), last_read="9" * 20) == 0
    assert Delivery.objects.get(pk=theirs.pk).read_at is None


@pytest.mark.parametrize("last_read", ["", "abc", "12a", "1" * 31, "-5"])
def test_a_receipt_that_names_no_message_marks_nothing(teams, last_read):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)

    assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=last_read) == 0
    assert Delivery.objects.get(pk=delivery.pk).read_at is None


def test_reads_are_rebuilt_from_the_rows_when_the_counters_are_lost(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)
    reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=delivery.activity_id)
    progress.client().delete(progress.key(delivery.campaign_id))

    assert progress.read(delivery.campaign)["read"] == 1


def test_reactions_are_counted_by_kind_once_each_and_taken_back(teams, bot_endpoint, transactional_db):
    people = [factories.recipient() for _ in range(3)]
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "installed": True} for p in people])
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in Delivery.objects.filter(campaign=campaign):
        delivery_send(delivery_id=delivery.pk)
    first, second, third = (str(p.aad_object_id) for p in people)

    teams.client.react(first, "like")
    teams.client.react(first, "like")  # Teams said it twice
    teams.client.react(second, "like")
    teams.client.react(second, "heart")
    teams.client.react(third, "laugh")
    teams.client.react(third, "laugh", removed=True)

    assert progress.reactions_from_rows(campaign.pk) == {"like": 2, "heart": 1}
    campaign.refresh_from_db()
    assert progress.read(campaign)["reactions"] == {"like": 2, "heart": 1}  # the counters, kept as they came
    progress.client().delete(progress.key(campaign.pk))
    assert progress.read(campaign)["reactions"] == {"like": 2, "heart": 1}  # and rebuilt from the rows


def test_a_reaction_counts_only_for_a_message_sent_to_the_person_who_reacted(teams):
    reader, other = factories.recipient(), factories.recipient()
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "installed": True} for p in (reader, other)])
    theirs = sent(other)

    changed = reads.reactions_record(aad_object_id=str(reader.aad_object_id), activity_id=theirs.activity_id,
                                     added=["like"], removed=[])

    assert changed == 0 and progress.reactions_from_rows(theirs.campaign_id) == {}
    assert reads.reactions_record(aad_object_id=str(other.aad_object_id), activity_id=theirs.activity_id,
                                  added=["like", "<script>", "x" * 101], removed=[]) == 1  # odd names are not kept



def activity(person, kind: str, conversation_type: str = "personal", **more) -> dict:
    return {"type": kind, "id": "1", "channelId": "msteams", "serviceUrl": "https://smba.example/",
            "from": {"id": "29:x", "aadObjectId": str(person.aad_object_id)},
            "conversation": {"id": "a:1", "conversationType": conversation_type, "tenantId": factories.TENANT},
            "recipient": {"id": "28:bot"}, **more}


def test_a_receipt_that_tells_nothing_new_marks_nothing_and_costs_no_search(teams, django_capture_on_commit_callbacks):
    from bots.models import TeamsAddress

    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    earlier, later = sent(person), sent(person)
    Delivery.objects.filter(pk=earlier.pk).update(activity_id="5")
    Delivery.objects.filter(pk=later.pk).update(activity_id="10")
    with django_capture_on_commit_callbacks(execute=True):
        assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read="10") == 2
    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).last_read_id == 10
    Delivery.objects.filter(pk=earlier.pk).update(read_at=None)  # as if it had not been read

    assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read="7") == 0  # older news
    assert Delivery.objects.get(pk=earlier.pk).read_at is None
    assert counted(earlier) == 1 and counted(later) == 1


def test_reads_are_looked_for_in_recent_campaigns_and_a_running_welcome_campaign(teams):
    import datetime

    from django.utils import timezone

    from campaigns.models import Campaign

    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    old, welcome, recent = sent(person), sent(person), sent(person)
    long_ago = timezone.now() - datetime.timedelta(days=reads.READ_WINDOW_DAYS + 1)
    Campaign.objects.filter(pk=old.campaign_id).update(launched_at=long_ago, status="completed")
    Campaign.objects.filter(pk=welcome.campaign_id).update(launched_at=long_ago, status="running")

    assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=recent.activity_id) == 2

    assert Delivery.objects.get(pk=old.pk).read_at is None
    assert Delivery.objects.get(pk=welcome.pk).read_at and Delivery.objects.get(pk=recent.pk).read_at


def test_an_activity_id_that_is_not_a_number_is_never_read_and_breaks_nothing(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    odd, plain = sent(person), sent(person)
    Delivery.objects.filter(pk=odd.pk).update(activity_id="1:abc")

    assert reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=plain.activity_id) == 1
    assert Delivery.objects.get(pk=odd.pk).read_at is None


@pytest.mark.parametrize("aad", ["not-a-guid", "", "0" * 40])
def test_a_sender_that_is_no_entra_id_counts_for_nothing(aad):
    assert reads.reads_record(aad_object_id=aad, last_read="5") == 0
    assert reads.reactions_record(aad_object_id=aad, activity_id="5", added=["like"], removed=[]) == 0


def test_receipts_and_reactions_from_a_channel_or_a_group_chat_count_for_nothing(teams):
    from bots.services import activity_handle

    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)
    for kind in ("channel", "groupChat"):
        activity_handle(data=activity(person, "messageReaction", kind, replyToId=delivery.activity_id,
                                      reactionsAdded=[{"type": "like"}]))
        activity_handle(data=activity(person, "event", kind, name="application/vnd.microsoft.readReceipt",
                                      value={"lastReadMessageId": delivery.activity_id}))

    assert progress.reactions_from_rows(delivery.campaign_id) == {}
    assert Delivery.objects.get(pk=delivery.pk).read_at is None
    activity_handle(data=activity(person, "messageReaction", replyToId=delivery.activity_id,
                                  reactionsAdded=[{"type": "2705_whiteheavycheckmark_mediumskintone"}]))
    assert progress.reactions_from_rows(delivery.campaign_id) == {"2705_whiteheavycheckmark_mediumskintone": 1}


def test_a_campaign_deleted_takes_its_reactions_with_it(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)
    reads.reactions_record(aad_object_id=str(person.aad_object_id), activity_id=delivery.activity_id,
                           added=["like"], removed=[])

    services.deliveries_delete(campaign_id=delivery.campaign_id)

    assert progress.reactions_from_rows(delivery.campaign_id) == {}


def test_an_endpoint_that_subscribes_hears_of_each_message_read_and_each_reaction_added(teams):
    from delivery import webhooks
    from delivery.models import WebhookEndpoint, WebhookEvent

    WebhookEndpoint.objects.create(name="hr", url="https://hr.example/hook", secret="s",
                                   events=["delivery.read", "reaction.added"])
    webhooks.forget_subscriptions()
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    first, second = sent(person), sent(person)

    reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=second.activity_id)
    reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=second.activity_id)  # nothing new
    reads.reactions_record(aad_object_id=str(person.aad_object_id), activity_id=first.activity_id,
                           added=["like", "heart"], removed=[])
    reads.reactions_record(aad_object_id=str(person.aad_object_id), activity_id=first.activity_id,
                           added=["like"], removed=["heart"])  # like again: no second event

    read = sorted((e.payload["delivery"], e.payload["recipient"]) for e in WebhookEvent.objects.filter(
        type="delivery.read"))
    assert read == sorted([(first.pk, person.external_id), (second.pk, person.external_id)])
    reacted = sorted(e.payload["kind"] for e in WebhookEvent.objects.filter(type="reaction.added"))
    assert reacted == ["heart", "like"]
    assert {e.payload["campaign"] for e in WebhookEvent.objects.filter(type="reaction.added")} == {first.campaign_id}


def test_nothing_is_written_for_webhooks_nobody_subscribes_to(teams):
    from delivery import webhooks
    from delivery.models import WebhookEvent

    webhooks.forget_subscriptions()
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    first = sent(person)
    reads.reads_record(aad_object_id=str(person.aad_object_id), last_read=first.activity_id)
    reads.reactions_record(aad_object_id=str(person.aad_object_id), activity_id=first.activity_id, added=["like"],
                           removed=[])
    assert Delivery.objects.get(pk=first.pk).read_at is not None
    assert not WebhookEvent.objects.exists()


def _activity(person, delivery: Delivery, kind: str, **fields) -> dict:
    return {"type": kind, "channelId": "msteams", "serviceUrl": "https://smba.example/",
            "from": {"id": "29:x", "aadObjectId": str(person.aad_object_id)},
            "conversation": {"id": "a:1", "conversationType": "personal"}, "recipient": {"id": "28:bot"}, **fields}


def test_a_receipt_and_a_reaction_each_cost_one_statement_and_no_transaction_around_it(
        teams, django_assert_num_queries, django_capture_on_commit_callbacks):
    from bots import services as bot
    from delivery import webhooks

    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)
    webhooks.forget_subscriptions()  # another test's, kept for a few seconds
    webhooks.wanted_types()  # looked up every few seconds, not per activity
    receipt = _activity(person, delivery, "event", name=bot.READ_RECEIPT,
                        value={"lastReadMessageId": delivery.activity_id})
    reaction = _activity(person, delivery, "messageReaction", replyToId=delivery.activity_id,
                         reactionsAdded=[{"type": "like"}])

    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_num_queries(1):
            bot.activity_handle(data=receipt)
        with django_assert_num_queries(1):
            bot.activity_handle(data=reaction)

    delivery.refresh_from_db()
    assert delivery.read_at is not None and counted(delivery) == 1
    assert progress.reactions_from_rows(delivery.campaign_id) == {"like": 1}


def test_a_kind_added_and_taken_back_in_one_activity_ends_taken_back(teams):
    from delivery.models import Reaction

    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    delivery = sent(person)
    aad = str(person.aad_object_id)
    assert reads.reactions_record(aad_object_id=aad, activity_id=delivery.activity_id, added=["like"], removed=[]) == 1

    assert reads.reactions_record(aad_object_id=aad, activity_id=delivery.activity_id, added=["like", "heart"],
                                  removed=["like"]) == 2  # heart added, like taken back
    assert set(Reaction.objects.values_list("kind", flat=True)) == {"heart"}
    assert reads.reactions_record(aad_object_id=aad, activity_id=delivery.activity_id, added=["laugh"],
                                  removed=["laugh"]) == 0
    assert set(Reaction.objects.values_list("kind", flat=True)) == {"heart"}
