"""Editing and recalling a sent message for everyone who received it, against the Teams emulator,
PostgreSQL and Redis. The start's on_commit work (the chains of tasks) does not run inside a test's
transaction: these tests drive the rows with the chunk function directly, as a worker would."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from bots.connector import ConnectorError, connector
from bots.pacing import pacer
from campaigns.models import AuditEntry, Campaign, MessageTemplate
from core.errors import ApplicationError
from delivery import message_changes, services
from delivery.message_changes import message_change_complete, message_change_process, message_change_start
from delivery.models import Delivery, DeliveryChange, MessageChange
from delivery.sending import delivery_send
from tests import factories
from tests.bots.test_pacing import pause_left

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}


@pytest.fixture
def editor(db) -> User:
    user = User.objects.create_user("edna", "edna@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["recall_campaign", "change_campaign"], content_type__app_label="campaigns"
    ))
    return User.objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


def sent_campaign(people=2, **fields) -> tuple[Campaign, list]:
    """A campaign sent to ``people`` people through the emulator, and completed."""
    recipients = [factories.recipient() for _ in range(people)]
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert services.campaigns_complete_finished() == [campaign.pk]
    campaign.refresh_from_db()
    return campaign, recipients


def inbox(teams, person) -> dict:
    [message] = teams.client.messages(user=str(person.aad_object_id))
    return message


def rows(change) -> list[tuple[str, str, int]]:
    return list(change.rows.order_by("id").values_list("status", "error_code", "attempts"))


def make_due(change) -> None:
    """As if the retry's wait had passed (before the test's transaction began: its now() stands still)."""
    change.rows.filter(status=DeliveryChange.Status.PENDING).update(next_attempt_at=timezone.now() - timedelta(hours=1))


class FailOnce:
    """The connector seam: the first call answers ``error``, later ones go to Teams (the emulator)."""

    def __init__(self, real, error: ConnectorError) -> None:
        self.real, self.error, self.calls = real, error, 0

    def __call__(self, **arguments):
        self.calls += 1
        if self.calls == 1:
            raise self.error
        return self.real(**arguments)


def test_an_edit_reaches_everyone_who_received_it_with_their_own_placeholders(teams, editor):
    campaign, people = sent_campaign(2)

    change = message_change_start(
        campaign_id=campaign.pk, action="edit", user=editor, text="Corrected, {{first_name}}: the party is at 6pm"
    )
    result = message_change_process(change_id=change.pk)

    assert result.processed == 2 and result.next_in is None
    for person in people:
        message = inbox(teams, person)
        assert message["updated"] == 1 and not message["deleted"]
        assert message["activity"]["type"] == "message"
        assert message["activity"]["text"] == f"Corrected, {person.first_name}: the party is at 6pm"
        assert message["activity"]["id"] == message["activity_id"]
    assert rows(change) == [("done", "", 1), ("done", "", 1)]
    change.refresh_from_db()
    assert (change.total, change.done, change.failed) == (2, 2, 0)
    assert message_change_complete(change_id=change.pk)
    change.refresh_from_db()
    assert change.status == MessageChange.Status.COMPLETED and change.completed_at is not None
    entry = AuditEntry.objects.get(action=AuditEntry.Action.EDIT_SENT)
    assert (entry.user, entry.campaign, entry.detail["people"]) == (editor, campaign, 2)


def test_an_edit_can_turn_text_into_a_card(teams, editor):
    campaign, [person] = sent_campaign(1)

    change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="adaptive_card", card=CARD)
    message_change_process(change_id=change.pk)

    attachment = inbox(teams, person)["activity"]["attachments"][0]
    assert attachment["content"]["body"][0]["text"] == f"Hi {person.first_name}"


def test_a_recall_deletes_the_message_for_everyone(teams, editor):
    campaign, people = sent_campaign(3)

    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=change.pk)

    assert [inbox(teams, person)["deleted"] for person in people] == [True, True, True]
    change.refresh_from_db()
    assert (change.total, change.done, change.failed) == (3, 3, 0)
    assert AuditEntry.objects.get(action=AuditEntry.Action.RECALL).summary.endswith("from 3 people")


def test_a_running_campaign_is_refused_with_what_to_do_first(teams, editor):
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="recall", user=editor)

    assert refused.value.status == 409
    assert "still running: cancel it (or let it complete) first" in refused.value.message
    assert not MessageChange.objects.exists() and not AuditEntry.objects.filter(action="recall").exists()


def test_a_paused_campaign_is_refused_too(teams, editor):
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    services.campaign_pause(campaign_id=campaign.pk)

    with pytest.raises(ApplicationError, match=r"is paused: cancel it \(or resume it and let it complete\) first"):
        message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Fixed")


def test_a_cancelled_campaign_can_be_recalled_from_those_who_got_it(teams, editor):
    sent_to, not_yet = factories.recipient(), factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    delivery_send(delivery_id=campaign.deliveries.get(recipient=sent_to).pk)
    services.campaign_cancel(campaign_id=campaign.pk)

    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=change.pk)

    assert change.rows.get().delivery.recipient == sent_to
    assert inbox(teams, sent_to)["deleted"]
    assert teams.client.messages(user=str(not_yet.aad_object_id)) == []


def test_a_transient_503_is_tried_again_and_ends_done(teams, editor):
    campaign, [person] = sent_campaign(1)
    change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Fixed")
    teams.client.config(faults={"status_503": 1.0})  # Teams answers every call with 503

    first = message_change_process(change_id=change.pk)

    row = change.rows.get()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
    assert row.next_attempt_at > timezone.now() and first.next_in > 0
    assert inbox(teams, person)["updated"] == 0
    teams.client.config(faults={})
    make_due(change)

    message_change_process(change_id=change.pk)

    assert rows(change) == [("done", "", 2)]
    assert inbox(teams, person)["updated"] == 1


def test_a_429_waits_its_retry_after_and_holds_back_every_worker(teams, editor):
    campaign, [person] = sent_campaign(1)
    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    teams.client.config(faults={"status_429": 1.0, "retry_after_seconds": 1})

    message_change_process(change_id=change.pk)
    teams.client.config(faults={})

    row = change.rows.get()
    assert row.status == "pending" and row.last_status_code == 429
    assert row.next_attempt_at >= timezone.now() + timedelta(seconds=0.5)
    assert pause_left(pacer, person.tenant_id) > 0  # every worker's next slot is past the Retry-After
    make_due(change)

    message_change_process(change_id=change.pk)

    assert rows(change) == [("done", "", 2)]
    assert inbox(teams, person)["deleted"]


def test_running_again_never_calls_teams_for_a_done_row(teams, editor, monkeypatch):
    campaign, people = sent_campaign(2)
    counting = FailOnce(connector.update, ConnectorError(status=None, code="unused", message=""))
    counting.calls = 1  # let every call through, only count them
    monkeypatch.setattr(connector, "update", counting)
    change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Once")
    message_change_process(change_id=change.pk)

    again = message_change_process(change_id=change.pk)

    assert again.processed == 0 and counting.calls == 3
    assert [inbox(teams, person)["updated"] for person in people] == [1, 1]


def test_a_row_whose_worker_died_is_taken_back_and_finished_by_the_periodic_pass(teams, editor, settings, redis_client):
    campaign, [person] = sent_campaign(1)
    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    long_ago = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    change.rows.update(status=DeliveryChange.Status.WORKING, attempts=1, claimed_at=long_ago)

    result = message_changes.message_changes_reconcile()

    assert result == {"taken_back": 1, "completed": 0, "restarted": 1}
    assert redis_client.llen("control") == 1  # a new chain, the previous one being lost
    assert change.rows.get().status == "pending"
    message_change_process(change_id=change.pk)
    assert message_changes.message_changes_reconcile()["completed"] == 1
    assert inbox(teams, person)["deleted"]


def test_a_row_that_stopped_its_worker_at_every_attempt_ends_failed(teams, editor, settings):
    campaign, _ = sent_campaign(1)
    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    long_ago = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    change.rows.update(status="working", attempts=settings.DELIVERY_MAX_ATTEMPTS, claimed_at=long_ago)

    message_changes.message_changes_reconcile()

    assert rows(change) == [("failed", "WorkerLost", settings.DELIVERY_MAX_ATTEMPTS)]
    change.refresh_from_db()
    assert (change.failed, change.status) == (1, "completed")


def test_a_404_is_done_for_a_recall_but_a_failure_for_an_edit(teams, editor):
    campaign, [person] = sent_campaign(1)
    teams.client.delete_chat(str(person.aad_object_id))

    edit = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Too late")
    message_change_process(change_id=edit.pk)
    assert message_change_complete(change_id=edit.pk)
    recall = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=recall.pk)

    assert rows(edit) == [("failed", "MessageGone", 1)]
    edit.refresh_from_db()
    assert (edit.failed, edit.error_summary) == (1, "1 × MessageGone")
    assert rows(recall) == [("done", "", 1)]


def test_a_recalled_message_cannot_be_edited_afterwards(teams, editor, monkeypatch):
    campaign, [kept, recalled] = sent_campaign(2)
    kept_conversation = campaign.deliveries.get(recipient=kept).conversation_id

    def refuse_for_kept(**arguments):
        if arguments["conversation_id"] == kept_conversation:
            raise ConnectorError(status=403, code="ConversationBlockedByUser", message="blocked")
        return real_delete(**arguments)

    real_delete = connector.delete
    monkeypatch.setattr(connector, "delete", refuse_for_kept)
    recall = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=recall.pk)
    message_change_complete(change_id=recall.pk)

    edit = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Still here?")

    assert edit.total == 1 and edit.rows.get().delivery.recipient == kept
    assert message_changes.message_reach(campaign_id=campaign.pk) == 1


def test_nothing_left_to_change_is_refused(teams, editor):
    campaign, _ = sent_campaign(1)
    recall = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=recall.pk)
    message_change_complete(change_id=recall.pk)

    with pytest.raises(ApplicationError, match="Nobody has the message"):
        message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="Hello again")


def test_only_one_change_runs_at_a_time(teams, editor):
    campaign, _ = sent_campaign(1)
    message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="First fix")

    with pytest.raises(ApplicationError, match=r"^An edit of .* in progress \(0 of 1 done\); wait until it completes"):
        message_change_start(campaign_id=campaign.pk, action="recall", user=editor)


def test_an_edit_with_an_invalid_card_is_refused_naming_the_field(teams, editor):
    card_template = factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text="")
    campaign, _ = sent_campaign(1, template=card_template)

    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="edit", user=editor, card={"type": "Nope"})

    assert "card" in refused.value.fields and "Adaptive Card" in refused.value.message
    assert not MessageChange.objects.exists()


def test_a_viewer_is_not_allowed_to_edit_or_recall(teams):
    campaign, [person] = sent_campaign(1)
    viewer = User.objects.create_user("vic", "vic@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))

    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="recall", user=viewer)

    assert refused.value.status == 403
    assert not MessageChange.objects.exists()
    assert not inbox(teams, person)["deleted"]


def test_progress_reads_counts_and_what_remains_from_the_change_row(teams, editor):
    campaign, _ = sent_campaign(3)
    change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)

    first = message_change_process(change_id=change.pk, budget_seconds=0.0)  # one row, the rest handed back

    assert first.processed == 1 and first.next_in == 0
    assert sorted(rows(change)) == [("done", "", 1), ("pending", "", 0), ("pending", "", 0)]
    progress = message_changes.message_change_progress(change_id=change.pk)
    assert (progress["done"], progress["remaining"], progress["status"]) == (1, 2, "running")
    message_change_process(change_id=change.pk)

    progress = message_changes.message_change_progress(change_id=change.pk)
    assert (progress["done"], progress["failed"], progress["remaining"], progress["eta_seconds"]) == (3, 0, 0, 0)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_recalls_from_everyone_within_teams_limits(teams, live_server, redis_client, tmp_path):
    """The chains of tasks on a real Celery worker, against an emulator enforcing Microsoft's limits."""
    from tests.e2e.processes import running_engine

    people = [factories.recipient() for _ in range(120)]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        delivery_send(delivery_id=delivery.pk)
    services.campaigns_complete_finished()
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw")
    before = teams.client.stats()
    with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path, beat=False) as worker:
        change = message_change_start(campaign_id=campaign.pk, action="recall", user=boss)

        worker.wait_until(
            lambda: MessageChange.objects.get(pk=change.pk).status == "completed", timeout=60, what="the recall"
        )

    change.refresh_from_db()
    assert (change.total, change.done, change.failed) == (120, 120, 0)
    deleted = [m["deleted"] for m in teams.client.messages()]
    assert len(deleted) == 120 and all(deleted)
    after = teams.client.stats()
    # Paced like sends, below Microsoft's published 50 requests per second: Teams (almost) never says no
    # (a rare 429 at a second's edge is answered by the retry policy).
    throttled = sum(after["throttled"].values()) - sum(before["throttled"].values())
    assert after["requests"] - before["requests"] >= 120 and throttled <= 2, (before, after)
    assert len(people) == 120


def test_a_recall_waits_for_sends_still_on_their_way_after_a_cancel(teams, editor):
    campaign, people = sent_campaign(2)
    Delivery.objects.filter(campaign=campaign, recipient=people[0]).update(status=Delivery.Status.SENDING)

    with pytest.raises(ApplicationError, match="still has messages on their way to Teams"):
        message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    assert not MessageChange.objects.filter(campaign=campaign).exists()


def test_new_words_to_more_people_than_the_approval_threshold_need_the_approver_role(teams, editor, settings):
    campaign, people = sent_campaign(2)
    settings.APPROVAL_THRESHOLD = 1

    with pytest.raises(ApplicationError, match="a person with the approver role makes it"):
        message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="New words")
    assert not MessageChange.objects.filter(campaign=campaign).exists()

    editor.user_permissions.add(Permission.objects.get(codename="approve_campaign"))
    approver = User.objects.get(pk=editor.pk)  # a fresh instance: permissions are cached per instance
    assert message_change_start(campaign_id=campaign.pk, action="edit", user=approver, text="New words").total == 2


def test_an_approver_alone_recalls_but_cannot_send_new_words(teams, settings):
    from campaigns.roles import APPROVERS, roles_ensure

    campaign, people = sent_campaign(2)
    settings.APPROVAL_THRESHOLD = 1
    approver = User.objects.create_user("avery", "avery@example.com", "pw", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    approver = User.objects.get(pk=approver.pk)

    with pytest.raises(ApplicationError) as refused:
        message_change_start(campaign_id=campaign.pk, action="edit", user=approver, text="New words")

    assert refused.value.code == "permission_denied"
    assert not MessageChange.objects.filter(campaign=campaign).exists()
    assert message_change_start(campaign_id=campaign.pk, action="recall", user=approver).total == 2


def test_a_recall_stays_with_the_author_whatever_its_reach(teams, editor, settings):
    campaign, people = sent_campaign(2)
    settings.APPROVAL_THRESHOLD = 1

    assert message_change_start(campaign_id=campaign.pk, action="recall", user=editor).total == 2
