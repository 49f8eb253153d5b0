"""Approvals while someone else acts at the same moment: real threads, each with its own database
connection, real commits. The interleaving each test needs is made to happen, not hoped for."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.admin.campaigns import CampaignAdmin
from campaigns.api.views import content as views
from campaigns.api.auth import api_key_create
from delivery.approval_requests import approval_request
from campaigns.approvals import approval_fingerprint
from campaigns.audit import Actor
from campaigns.models import ApiKey, AuditEntry, Campaign, MessageTemplate
from campaigns.roles import AUTHORS, roles_ensure
from core.errors import ApplicationError
from delivery import services
from delivery.message_changes import message_change_start
from delivery.models import MessageChange
from delivery.sending import delivery_send
from tests import factories
from tests.threads import in_thread, until_waiting_or_done

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("sender", ["api_key", "staff"])
def test_a_direct_message_sent_while_another_from_the_same_sender_commits_counts_its_people(
    settings, monkeypatch, sender
):
    """The second send's reach check runs while the first, already past its own check, has not
    committed: it must wait for it and count its people, or both would pass the threshold."""
    settings.APPROVAL_THRESHOLD = 3
    settings.APPROVAL_WINDOW_HOURS = 24
    for n in range(4):
        factories.recipient(external_id=f"p{n}")
    template, category = factories.template(name="Payslip"), factories.category()
    if sender == "api_key":
        api_key, _ = api_key_create(name="hr-sync", scopes=["campaigns:send"])
        actor = lambda: Actor(api_key=ApiKey.objects.get(pk=api_key.pk))  # noqa: E731
    else:
        user = User.objects.create_user("casey", is_staff=True)
        actor = lambda: Actor(user=User.objects.get(pk=user.pk))  # noqa: E731

    checked = services.direct_reach_require
    first_passed, release_first, second_checked = threading.Event(), threading.Event(), threading.Event()
    second_pid: list[int] = []

    def held_check(**kwargs):
        if not first_passed.is_set():  # the first send: held after its check, its transaction open
            approved = checked(**kwargs)
            first_passed.set()
            assert release_first.wait(timeout=30)
            return approved
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            second_pid.append(cursor.fetchone()[0])
        try:
            return checked(**kwargs)
        finally:
            second_checked.set()

    monkeypatch.setattr(services, "direct_reach_require", held_check)

    def send(*external_ids):
        return lambda: services.campaign_send_direct(
            name="Notice", template_id=template.pk, category=category, external_ids=list(external_ids), actor=actor()
        )

    first, first_outcome = in_thread(send("p0", "p1"))
    try:
        assert first_passed.wait(timeout=30)
        second, second_outcome = in_thread(send("p2", "p3"))
        until_waiting_or_done(second_checked.is_set, second_pid, "the second send")
    finally:
        release_first.set()
        first.join(timeout=30)
    second.join(timeout=30)

    assert "error" not in first_outcome, first_outcome
    refused = second_outcome.get("error")
    assert isinstance(refused, ApplicationError), second_outcome
    who = "this API key" if sender == "api_key" else "you"
    assert (refused.message, refused.code, refused.status) == (
        f"Direct messages and tests sent by {who} already reached 2 people in the last 24 hours, whatever their "
        "template; 2 more would pass 3, the number that needs approval. Ask a person with the approver role to "
        "approve “Payslip” for direct messages (transactional notices), or make it a campaign.",
        "approval_required", 409,
    )
    assert list(Campaign.objects.filter(kind=Campaign.Kind.DIRECT).values_list("pk", flat=True)) == [
        first_outcome["result"].pk
    ]


def test_changing_the_template_in_the_admin_keeps_a_rename_made_meanwhile_through_the_api(
    client, settings, monkeypatch
):
    """The admin read the campaign, then an integration renamed it and committed, then the admin
    saved its new template: the approval is withdrawn, and the new name stays."""
    settings.APPROVAL_THRESHOLD = 2
    for _ in range(3):
        factories.recipient()
    campaign = factories.campaign(name="Town hall")
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.approved_people = 3
    campaign.save()
    other_template = factories.template()
    author = User.objects.create_user("casey", is_staff=True)
    author.groups.add(roles_ensure()[AUTHORS])
    _, secret = api_key_create(name="hr-sync")

    def rename():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "Town hall, Friday"}, format="json")

    read = CampaignAdmin.get_object
    renamed: dict = {}

    def read_then_renamed_meanwhile(self, request, object_id, from_field=None):
        obj = read(self, request, object_id, from_field)
        if request.method == "POST" and not renamed:
            thread, renamed["outcome"] = in_thread(rename)
            thread.join(timeout=30)
        return obj

    monkeypatch.setattr(CampaignAdmin, "get_object", read_then_renamed_meanwhile)
    client.force_login(author)

    saved = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": "Town hall", "kind": campaign.kind, "template": other_template.pk, "audience": "",
         "category": campaign.category_id, "send_at_0": "", "send_at_1": ""},
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert renamed["outcome"]["result"].status_code == 200, renamed["outcome"]
    campaign.refresh_from_db()
    assert (campaign.name, campaign.template_id, campaign.approved_at) == ("Town hall, Friday", other_template.pk, None)
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).count() == 1


def edit_template_while(template, other, monkeypatch) -> tuple[dict, dict]:
    """Edits the template through the API and, once the edit holds the template's row, runs
    ``other()`` in another thread; the edit goes on once ``other`` waits for that row (or is done)."""
    checked = views.template_edit_require
    holding, release = threading.Event(), threading.Event()

    def held_check(**kwargs):
        checked(**kwargs)
        if connection.in_atomic_block and not holding.is_set():  # the template's row is now locked
            holding.set()
            assert release.wait(timeout=30)

    monkeypatch.setattr(views, "template_edit_require", held_check)
    _, secret = api_key_create(name="hr-sync")

    def edit():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api.patch(f"/api/v1/templates/{template.pk}/", {"text": "Edited for the next one"}, format="json")

    other_pid: list[int] = []

    def other_with_pid():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            other_pid.append(cursor.fetchone()[0])
        return other()

    editing, edit_outcome = in_thread(edit)
    try:
        assert holding.wait(timeout=30)
        meanwhile, other_outcome = in_thread(other_with_pid)
        until_waiting_or_done(lambda: not meanwhile.is_alive(), other_pid, "the other work")
    finally:
        release.set()
        editing.join(timeout=30)
    meanwhile.join(timeout=30)
    assert not editing.is_alive() and not meanwhile.is_alive()
    return edit_outcome, other_outcome


def test_asking_again_for_an_approval_that_no_longer_counts_while_the_template_is_edited_both_go_through(
    settings, monkeypatch
):
    """The campaign was approved, then its category changed: its approval no longer counts, and its
    author asks again while someone edits its template. The edit withdraws the old approval."""
    settings.APPROVAL_THRESHOLD = 2
    for _ in range(3):
        factories.recipient()
    template = factories.template()
    campaign = factories.campaign(name="Town hall", template=template)
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.approved_people = 3
    campaign.save()
    campaign.category = factories.category()
    campaign.save()
    author = User.objects.create_user("casey", is_staff=True)
    author.groups.add(roles_ensure()[AUTHORS])

    edited, asked = edit_template_while(
        template, lambda: approval_request(campaign_id=campaign.pk, user=author), monkeypatch
    )

    assert "error" not in edited and edited["result"].status_code == 200, edited
    assert "error" not in asked, asked
    campaign.refresh_from_db()
    assert campaign.approval_requested_at is not None and campaign.approved_at is None
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).count() == 1


def test_the_sent_message_of_an_approved_campaign_is_edited_while_its_template_is_and_both_go_through(
    teams, monkeypatch
):
    """Editing the sent message holds the campaign's row, then the template's; editing the template
    for a next campaign must not wait for that campaign, sent long ago, whose approval it leaves alone."""
    for _ in range(2):
        factories.recipient()
    template = factories.template()
    campaign = factories.campaign(name="Town hall", template=template)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert services.campaigns_complete_finished() == [campaign.pk]
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now())
    editor = User.objects.create_user("edna", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(
        codename__in=["recall_campaign", "change_campaign"], content_type__app_label="campaigns"
    ))
    editor = User.objects.get(pk=editor.pk)  # permissions are cached per instance

    edited, corrected = edit_template_while(
        template,
        lambda: message_change_start(campaign_id=campaign.pk, action="edit", user=editor, text="The party is at 6pm"),
        monkeypatch,
    )

    assert "error" not in edited and edited["result"].status_code == 200, edited
    assert "error" not in corrected, corrected
    assert MessageChange.objects.get(pk=corrected["result"].pk).text == "The party is at 6pm"
    campaign.refresh_from_db()
    assert campaign.approved_at is not None
    assert MessageTemplate.objects.get(pk=template.pk).text == "Edited for the next one"


def test_a_recall_refused_for_an_approved_draft_while_its_template_is_edited_is_only_refused(teams, monkeypatch):
    """Starting an edit or recall holds the campaign's row; the template edit holds the template's, then
    its approved drafts'. The recall of a draft is refused, and the template edit goes through."""
    template = factories.template()
    campaign = factories.campaign(name="Not sent yet", template=template)
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now())
    recaller = User.objects.create_user("rory", is_staff=True)
    recaller.user_permissions.add(*Permission.objects.filter(codename="recall_campaign", content_type__app_label="campaigns"))
    recaller = User.objects.get(pk=recaller.pk)  # permissions are cached per instance

    edited, recalled = edit_template_while(
        template, lambda: message_change_start(campaign_id=campaign.pk, action="recall", user=recaller), monkeypatch
    )

    assert "error" not in edited and edited["result"].status_code == 200, edited
    assert isinstance(recalled.get("error"), ApplicationError) and recalled["error"].code == "invalid_state", recalled
    assert MessageTemplate.objects.get(pk=template.pk).text == "Edited for the next one"
    assert Campaign.objects.get(pk=campaign.pk).approved_at is None  # the edit withdrew it


def test_an_approval_given_while_its_template_is_edited_is_withdrawn_by_the_edit(settings, monkeypatch):
    """The approver saw the old text. The edit waits for the approval to commit and withdraws it, so no
    approval of words nobody approved is left on record, whichever commits first."""
    from campaigns import approvals
    from campaigns.roles import APPROVERS

    template = factories.template()
    campaign = factories.campaign(name="Town hall", template=template)
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    approver = User.objects.get(pk=approver.pk)  # permissions are cached per instance
    approved, release = threading.Event(), threading.Event()
    real_approve = approvals._approve

    def held_approve(*args, **kwargs):
        real_approve(*args, **kwargs)
        approved.set()  # written, not committed
        assert release.wait(timeout=30)

    monkeypatch.setattr(approvals, "_approve", held_approve)
    approving, approve_outcome = in_thread(lambda: approvals.campaign_approve(campaign_id=campaign.pk,
                                                                              actor=Actor(user=approver)))
    assert approved.wait(timeout=30)
    _, secret = api_key_create(name="hr-sync")
    edit_pid: list[int] = []

    def edit():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            edit_pid.append(cursor.fetchone()[0])
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api.patch(f"/api/v1/templates/{template.pk}/", {"text": "New words"}, format="json")

    editing, edit_outcome = in_thread(edit)
    try:
        until_waiting_or_done(lambda: not editing.is_alive(), edit_pid, "the edit")
    finally:
        release.set()
        approving.join(timeout=30)
        editing.join(timeout=30)

    assert "error" not in approve_outcome, approve_outcome
    assert "error" not in edit_outcome and edit_outcome["result"].status_code == 200, edit_outcome
    campaign.refresh_from_db()
    assert campaign.approved_at is None
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).count() == 1


@pytest.mark.parametrize("edited", ["audience", "category"])
def test_an_edit_of_what_the_approval_covers_waits_for_a_launch_that_checked_it(settings, monkeypatch, edited):
    """The launch has checked the approval and not yet written its rows when an edit of its audience's
    list (to as many other people) or of its category would commit. The edit must wait for the launch,
    whose rows then go to the people that were approved: the approval covers what is sent."""
    from campaigns import approvals
    from campaigns.models import Audience, Category, Recipient
    from campaigns.roles import APPROVERS

    settings.APPROVAL_THRESHOLD = 2
    sales = [factories.recipient(department="Sales") for _ in range(3)]
    finance = [factories.recipient(department="Finance") for _ in range(3)]
    audience = factories.audience(kind=Audience.Kind.STATIC)
    audience.members.set(sales)
    campaign = factories.campaign(name="Town hall", audience=audience)
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    approvals.campaign_approve(campaign_id=campaign.pk, actor=Actor(user=User.objects.get(pk=approver.pk)))

    checked, release = threading.Event(), threading.Event()
    real_require = services.approval_require

    def held_require(**kwargs):
        real_require(**kwargs)
        checked.set()  # approved as it stands; no row written yet
        assert release.wait(timeout=30)

    monkeypatch.setattr(services, "approval_require", held_require)
    launching, launch_outcome = in_thread(lambda: services.campaign_launch(campaign_id=campaign.pk))
    assert checked.wait(timeout=30)
    edit_pid: list[int] = []

    def edit():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            edit_pid.append(cursor.fetchone()[0])
        with transaction.atomic():  # as the admin saves: the row, then an audience's lists
            if edited == "audience":
                changed = Audience.objects.get(pk=audience.pk)
                changed.save()
                changed.members.set(finance)
            else:
                changed = Category.objects.get(pk=campaign.category_id)
                changed.mandatory = not changed.mandatory
                changed.save()

    editing, edit_outcome = in_thread(edit)
    try:
        until_waiting_or_done(lambda: not editing.is_alive(), edit_pid, "the edit")
        waited = editing.is_alive()
    finally:
        release.set()
        launching.join(timeout=30)
        editing.join(timeout=30)

    assert "error" not in launch_outcome, launch_outcome
    assert "error" not in edit_outcome, edit_outcome
    assert waited, "the edit committed while the launch it changes was under way"
    sent_to = set(Recipient.objects.filter(deliveries__campaign=campaign).values_list("department", flat=True))
    assert sent_to == {"Sales"}
    assert not editing.is_alive()
