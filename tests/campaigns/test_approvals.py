"""The approval rules themselves (campaigns.approvals), called as the services and the admin call
them: who may approve what, what an approval records and covers, what withdraws it, and the reach
of direct messages that needs one. Every refusal is pinned with its message, code and status, as a
caller (the API, the admin) shows it."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns.api.auth import api_key_create
from campaigns.approvals import (
    ApprovalOutgrown,
    approval_fingerprint,
    approval_require,
    approval_state,
    approval_void_outgrown,
    approval_withdraw,
    approvals_withdraw_for_template,
    campaign_approve,
    campaign_changers,
    change_record,
    direct_reach_require,
    key_approves,
    template_approve_direct,
    template_edit_require,
)
from campaigns.audit import SYSTEM, Actor
from campaigns.models import ApiKey, AuditEntry, Campaign, MessageTemplate
from campaigns.roles import APPROVERS, AUTHORS, roles_ensure
from core.errors import ApplicationError
from delivery.services import campaign_send_direct
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(settings) -> None:
    """Everyone active is three people; more than two need approval."""
    settings.APPROVAL_THRESHOLD = 2
    for _ in range(3):
        factories.recipient()


def staff(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, is_staff=True)
    if role is not None:
        user.groups.add(roles_ensure()[role])
    return User.objects.get(pk=user.pk)  # permissions are cached per instance


def approver(username: str = "avery") -> User:
    return staff(username, APPROVERS)


def key(*scopes: str) -> ApiKey:
    api_key, _ = api_key_create(name=f"key-{len(scopes)}-{ApiKey.objects.count()}", scopes=list(scopes))
    return api_key


def refusal(call) -> tuple[str, str, int]:
    with pytest.raises(ApplicationError) as error:
        call()
    return error.value.message, error.value.code, error.value.status


def approved(campaign: Campaign, *, people: int = 3, by: User | None = None) -> Campaign:
    campaign.approved_by = by
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.approved_people = people
    campaign.save()
    return campaign


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


# --- What an approval covers ----------------------------------------------------------------


def test_it_fingerprints_the_template_audience_and_category_as_they_are():
    template, audience, category = factories.template(), factories.audience(), factories.category(mandatory=True)
    campaign = factories.campaign(template=template, audience=audience, category=category)

    expected = f"{template.pk}|{template.updated_at}|{audience.pk}|{audience.updated_at}|{category.pk}|True"
    assert approval_fingerprint(campaign=campaign) == hashlib.sha256(expected.encode()).hexdigest()


def test_it_fingerprints_whether_crier_installs_the_app_for_people_who_lack_it():
    campaign = factories.campaign()
    before = approval_fingerprint(campaign=campaign)
    campaign.install_app = True
    template = campaign.template

    expected = f"{template.pk}|{template.updated_at}|None|None|{campaign.category_id}|False|install_app"
    assert approval_fingerprint(campaign=campaign) == hashlib.sha256(expected.encode()).hexdigest() != before


def test_it_fingerprints_whether_the_campaign_is_urgent_and_the_words_of_its_pop_up():
    campaign = factories.campaign()
    before = approval_fingerprint(campaign=campaign)
    campaign.urgent, campaign.urgent_text = True, "Office closed"
    urgent = approval_fingerprint(campaign=campaign)
    campaign.urgent_text = "Office open"

    template = campaign.template
    expected = f"{template.pk}|{template.updated_at}|None|None|{campaign.category_id}|False|urgent|Office closed"
    assert urgent == hashlib.sha256(expected.encode()).hexdigest() != before
    assert approval_fingerprint(campaign=campaign) not in (urgent, before)


def test_an_urgent_announcement_needs_approval_however_few_it_reaches(settings):
    settings.APPROVAL_THRESHOLD = 100
    factories.recipient()
    campaign = factories.campaign(urgent=True, urgent_text="Office closed")

    state = approval_state(campaign=campaign)
    with pytest.raises(ApplicationError) as refused:
        approval_require(campaign=campaign, actor=SYSTEM)

    assert (state.people, state.needed, state.missing) == (1, True, True)
    assert (refused.value.code, refused.value.status) == ("approval_required", 409)
    assert "is urgent" in refused.value.message and "approver role" in refused.value.message
    campaign.urgent = False
    assert approval_state(campaign=campaign).needed is False


def test_it_fingerprints_a_campaign_to_everyone_with_no_audience():
    campaign = factories.campaign()
    template = campaign.template

    expected = f"{template.pk}|{template.updated_at}|None|None|{campaign.category_id}|False"
    assert approval_fingerprint(campaign=campaign) == hashlib.sha256(expected.encode()).hexdigest()


def test_it_counts_only_announcements_and_needs_approval_only_above_the_threshold(settings, three):
    announcement = factories.campaign()
    welcome = factories.campaign(kind=Campaign.Kind.WELCOME)
    direct = factories.campaign(kind=Campaign.Kind.DIRECT)

    state = approval_state(campaign=announcement)
    assert (state.needed, state.approved, state.people, state.threshold) == (True, False, 3, 2)
    assert state.fingerprint == approval_fingerprint(campaign=announcement) and state.missing
    assert approval_state(campaign=announcement, fingerprint="given").fingerprint == "given"
    for other in (welcome, direct):
        assert (approval_state(campaign=other).people, approval_state(campaign=other).needed) == (0, False)

    settings.APPROVAL_THRESHOLD = 3  # exactly the threshold needs nothing
    state = approval_state(campaign=announcement)
    assert (state.needed, state.missing, state.threshold) == (False, False, 3)


def test_it_counts_the_people_of_the_campaigns_own_audience(three):
    audience = factories.audience(kind="static")
    audience.members.add(factories.recipient(), factories.recipient())

    state = approval_state(campaign=factories.campaign(audience=audience))

    assert (state.people, state.needed) == (2, False)


def test_it_counts_an_approval_only_for_what_it_fingerprinted_and_up_to_the_people_it_showed(three):
    campaign = approved(factories.campaign(), people=3)
    assert approval_state(campaign=campaign).approved and not approval_state(campaign=campaign).missing

    campaign.approved_people = 2  # it showed fewer people than it reaches now
    assert not approval_state(campaign=campaign).approved and approval_state(campaign=campaign).missing
    campaign.approved_people = None  # an approval from before people were counted
    assert approval_state(campaign=campaign).approved

    campaign.approved_fingerprint = "something else"
    assert not approval_state(campaign=campaign).approved
    campaign.approved_fingerprint, campaign.approved_at = approval_fingerprint(campaign=campaign), None
    assert not approval_state(campaign=campaign).approved


def test_it_trusts_only_a_key_with_the_approve_scope():
    assert key_approves(Actor(api_key=key("read", "campaigns:send", "campaigns:approve")))
    assert not key_approves(Actor(api_key=key("read", "campaigns:send")))
    assert not key_approves(Actor(api_key=key()))
    scopeless = key()
    scopeless.scopes = None
    assert not key_approves(Actor(api_key=scopeless))
    assert not key_approves(Actor(user=approver()))
    assert not key_approves(SYSTEM)


# --- Approval required at launch or schedule -------------------------------------------------


def test_it_lets_a_campaign_go_that_needs_no_approval_or_has_it(settings, three):
    small, _ = factories.campaign(), None
    settings.APPROVAL_THRESHOLD = 3
    approval_require(campaign=small, actor=Actor(api_key=key("campaigns:approve")))
    settings.APPROVAL_THRESHOLD = 2
    large = approved(factories.campaign())
    approval_require(campaign=large, actor=SYSTEM)

    small.refresh_from_db()
    assert small.approved_at is None
    assert not AuditEntry.objects.exists()


def test_it_refuses_an_unapproved_large_campaign_and_says_what_it_reaches(three):
    campaign = factories.campaign(name="Town hall")

    assert refusal(lambda: approval_require(campaign=campaign, actor=Actor(api_key=key("campaigns:send")))) == (
        "“Town hall” reaches 3 people, more than 2: a second person with the approver role must approve it first.",
        "approval_required", 409,
    )
    assert not AuditEntry.objects.exists()


def test_it_refuses_a_campaign_changed_since_its_approval_and_says_so(three):
    campaign = approved(factories.campaign(name="Town hall"))
    campaign.approved_fingerprint = "what it was"

    assert refusal(lambda: approval_require(campaign=campaign, actor=SYSTEM)) == (
        "“Town hall” changed since it was approved (its template, audience or category), and reaches 3 people, "
        "more than 2: a second person with the approver role must approve it first.",
        "approval_required", 409,
    )


def test_it_refuses_a_campaign_that_outgrew_its_approval_as_void(three):
    campaign = approved(factories.campaign(name="Town hall"), people=2)

    with pytest.raises(ApprovalOutgrown) as error:
        approval_require(campaign=campaign, actor=Actor(user=approver()))

    assert (error.value.message, error.value.code, error.value.status) == (
        "“Town hall” was approved for 2 people and now reaches 3: the approval is void, and a person with the "
        "approver role must approve it again.",
        "approval_required", 409,
    )


def test_a_key_with_the_approve_scope_approves_what_it_launches_and_the_audit_log_says_so(three):
    api_key = key("campaigns:send", "campaigns:approve")
    campaign = factories.campaign(name="Town hall", status_reason="Back to draft: it was changed")

    approval_require(campaign=campaign, actor=Actor(api_key=api_key))

    campaign.refresh_from_db()
    assert (campaign.approved_by, campaign.approved_people, campaign.status_reason) == (None, 3, "")
    assert campaign.approved_at is not None
    assert campaign.approved_fingerprint == approval_fingerprint(campaign=campaign)
    [entry] = entries(AuditEntry.Action.APPROVE)
    assert (entry.campaign, entry.api_key, entry.user, entry.summary, entry.detail) == (
        campaign, api_key, None, "Approved “Town hall” for 3 people", {"people": 3, "threshold": 2}
    )


# --- An approver approves a campaign ---------------------------------------------------------


def test_an_approver_approves_what_the_page_showed_and_the_audit_log_records_it(three):
    campaign = factories.campaign(name="Town hall", status_reason="Back to draft: it was changed")
    person = approver()
    seen = approval_fingerprint(campaign=campaign)

    returned = campaign_approve(campaign_id=campaign.pk, actor=Actor(user=person), seen=seen, people_seen="3")

    assert returned.pk == campaign.pk
    campaign.refresh_from_db()
    assert (campaign.approved_by, campaign.approved_fingerprint, campaign.approved_people) == (person, seen, 3)
    assert campaign.approved_at is not None and campaign.status_reason == ""
    [entry] = entries(AuditEntry.Action.APPROVE)
    assert (entry.campaign, entry.user, entry.api_key, entry.summary, entry.detail) == (
        campaign, person, None, "Approved “Town hall” for 3 people", {"people": 3, "threshold": 2, "people_shown": 3}
    )


def test_an_approval_without_a_page_records_no_number_shown(three):
    campaign = factories.campaign()

    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver()), people_seen=3)

    [entry] = entries(AuditEntry.Action.APPROVE)
    assert entry.detail == {"people": 3, "threshold": 2, "people_shown": 3}
    other = factories.campaign()
    campaign_approve(campaign_id=other.pk, actor=Actor(user=approver("blake")))
    assert AuditEntry.objects.get(campaign=other).detail == {"people": 3, "threshold": 2}


def test_approving_a_scheduled_campaign_keeps_its_reason(settings, three):
    campaign = factories.campaign(status=Campaign.Status.SCHEDULED, status_reason="Scheduled by the HR sync")

    campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver()))

    campaign.refresh_from_db()
    assert campaign.approved_at is not None and campaign.status_reason == "Scheduled by the HR sync"


@pytest.mark.parametrize("status", [Campaign.Status.RUNNING, Campaign.Status.COMPLETED])
def test_it_approves_only_a_draft_or_scheduled_campaign(three, status):
    campaign = factories.campaign(name="Town hall", status=status)

    message, code, http = refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver())))

    label = {"running": "running", "completed": "completed"}[status]
    assert (message, code, http) == (
        f"“Town hall” is {label}; only a draft or scheduled campaign is approved.", "invalid_state", 409
    )
    assert not AuditEntry.objects.exists()


def test_it_refuses_to_approve_twice(three):
    campaign = approved(factories.campaign(name="Town hall"))

    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver()))) == (
        "“Town hall” is already approved.", "invalid_state", 409
    )


def test_only_a_person_with_the_approver_role_approves_a_campaign(three):
    campaign = factories.campaign()
    forbidden = ("Only a person with the approver role can approve a campaign.", "forbidden", 403)

    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=staff("casey", AUTHORS)))) == forbidden
    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=SYSTEM)) == forbidden
    assert refusal(lambda: campaign_approve(
        campaign_id=campaign.pk, actor=Actor(api_key=key("campaigns:approve")))) == forbidden
    campaign.refresh_from_db()
    assert campaign.approved_at is None


def test_an_approver_who_changed_the_campaign_cannot_approve_it(three):
    person = approver()
    campaign = factories.campaign(edited_by=person)

    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=person))) == (
        "You wrote or changed this campaign (or its template, audience or category): a second person must "
        "approve it.", "approver_is_author", 403,
    )


def test_it_approves_nothing_when_the_campaign_changed_since_the_page(three):
    campaign = factories.campaign()
    seen = approval_fingerprint(campaign=campaign)
    campaign.template.text = "Changed"
    campaign.template.save()

    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=approver()), seen=seen)) == (
        "The campaign, its template, audience or category changed while you were looking at it: look at it again "
        "before approving.", "changed", 409,
    )
    campaign.refresh_from_db()
    assert campaign.approved_at is None


def test_it_approves_nothing_when_the_number_of_people_changed_since_the_page(three):
    campaign = factories.campaign(name="Town hall")
    person = approver()

    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=person), people_seen=2)) == (
        "Whom “Town hall” reaches changed while you were looking at it (the page showed 2 people, now 3): look at it "
        "again before approving.", "changed", 409,
    )
    assert refusal(lambda: campaign_approve(campaign_id=campaign.pk, actor=Actor(user=person), people_seen="")) == (
        "Whom “Town hall” reaches changed while you were looking at it (the page showed no number): look at it "
        "again before approving.", "changed", 409,
    )
    assert not AuditEntry.objects.exists()


# --- Withdrawing an approval -----------------------------------------------------------------


def test_withdrawing_the_approval_of_a_draft_clears_it_and_records_why(three):
    person = approver()
    campaign = approved(factories.campaign(name="Town hall"), by=person)
    fingerprint = campaign.approved_fingerprint

    assert approval_withdraw(campaign=campaign, actor=Actor(user=person), reason="it was changed") is True

    campaign.refresh_from_db()
    assert (campaign.approved_by, campaign.approved_at, campaign.approved_people) == (None, None, None)
    assert (campaign.status, campaign.status_reason, campaign.approved_fingerprint) == ("draft", "", fingerprint)
    [entry] = entries(AuditEntry.Action.APPROVAL_WITHDRAWN)
    assert (entry.campaign, entry.user, entry.summary, entry.detail) == (
        campaign, person, "Approval of “Town hall” withdrawn: it was changed", {"unscheduled": False}
    )


def test_withdrawing_the_approval_of_a_large_scheduled_campaign_puts_it_back_to_draft(three):
    campaign = approved(factories.campaign(status=Campaign.Status.SCHEDULED))

    assert approval_withdraw(campaign=campaign, actor=SYSTEM, reason="its template was edited")

    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason, campaign.approved_at) == (
        "draft", "Back to draft: its template was edited; it needs approval again before it is scheduled.", None
    )
    assert AuditEntry.objects.get(action=AuditEntry.Action.APPROVAL_WITHDRAWN).detail == {"unscheduled": True}


def test_withdrawing_the_approval_of_a_small_scheduled_campaign_keeps_it_scheduled(settings, three):
    settings.APPROVAL_THRESHOLD = 3
    campaign = approved(factories.campaign(status=Campaign.Status.SCHEDULED))

    assert approval_withdraw(campaign=campaign, actor=SYSTEM, reason="it was changed")

    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason, campaign.approved_at) == ("scheduled", "", None)
    assert AuditEntry.objects.get(action=AuditEntry.Action.APPROVAL_WITHDRAWN).detail == {"unscheduled": False}


def test_an_outgrown_approval_puts_the_campaign_back_to_draft_with_the_reason_as_given(settings, three):
    settings.APPROVAL_THRESHOLD = 3  # even where no approval would be needed now
    scheduled = approved(factories.campaign(status=Campaign.Status.SCHEDULED))
    draft = approved(factories.campaign())

    assert approval_withdraw(campaign=scheduled, actor=SYSTEM, reason="It reaches 4 people.", outgrown=True)
    assert approval_withdraw(campaign=draft, actor=SYSTEM, reason="x" * 600, outgrown=True)

    scheduled.refresh_from_db()
    draft.refresh_from_db()
    assert (scheduled.status, scheduled.status_reason, scheduled.approved_at) == ("draft", "It reaches 4 people.", None)
    assert (draft.status, draft.status_reason) == ("draft", "x" * 500)
    assert [entry.detail for entry in entries(AuditEntry.Action.APPROVAL_WITHDRAWN)] == [
        {"unscheduled": True}, {"unscheduled": False}
    ]


def test_withdrawing_a_reason_longer_than_a_campaign_holds_keeps_its_first_500_characters(three):
    campaign = approved(factories.campaign(status=Campaign.Status.SCHEDULED))

    approval_withdraw(campaign=campaign, actor=SYSTEM, reason="y" * 600)

    campaign.refresh_from_db()
    assert campaign.status_reason == ("Back to draft: " + "y" * 600)[:500]


def test_withdrawing_changes_nothing_of_an_unapproved_or_sent_campaign(three):
    unapproved = factories.campaign(status=Campaign.Status.SCHEDULED)
    running = approved(factories.campaign(status=Campaign.Status.RUNNING))

    assert approval_withdraw(campaign=unapproved, actor=SYSTEM, reason="it was changed") is False
    assert approval_withdraw(campaign=running, actor=SYSTEM, reason="it was changed", outgrown=True) is False

    running.refresh_from_db()
    unapproved.refresh_from_db()
    assert running.approved_at is not None and running.status == "running"
    assert unapproved.status == "scheduled"
    assert not AuditEntry.objects.exists()


def test_voiding_an_outgrown_approval_commits_the_reason_as_crier(three):
    campaign = approved(factories.campaign(status=Campaign.Status.SCHEDULED), people=2)

    approval_void_outgrown(campaign_id=campaign.pk, reason="It now reaches 3 people.")

    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason, campaign.approved_at) == ("draft", "It now reaches 3 people.", None)
    [entry] = entries(AuditEntry.Action.APPROVAL_WITHDRAWN)
    assert (entry.user, entry.api_key, entry.summary) == (
        None, None, f"Approval of “{campaign.name}” withdrawn: It now reaches 3 people."
    )


# --- Who changed what a campaign uses --------------------------------------------------------


def test_the_changers_are_the_author_the_editor_and_whoever_changed_what_it_uses():
    author, editor, writer, lister, categoriser, changer = (staff(name, AUTHORS) for name in
                                                            ("a", "e", "w", "l", "c", "ch"))
    bystander, other_writer = staff("b", AUTHORS), staff("o", AUTHORS)
    audience, template, category = factories.audience(), factories.template(), factories.category()
    campaign = factories.campaign(template=template, audience=audience, category=category,
                                  created_by=author, edited_by=editor)
    change_record(user=writer, obj=template, summary="wrote it")
    change_record(user=lister, obj=audience, summary="listed them")
    change_record(user=categoriser, obj=category, summary="made it mandatory")
    change_record(user=changer, obj=campaign, summary="changed it")
    change_record(user=other_writer, obj=factories.template(), summary="another template")
    change_record(user=other_writer, obj=factories.audience(), summary="another audience")
    change_record(user=other_writer, obj=factories.category(), summary="another category")
    Actor(user=bystander).record(AuditEntry.Action.APPROVE_DIRECT, summary="not a change", campaign=campaign,
                                 detail={"template": template.pk})
    Actor().record(AuditEntry.Action.CHANGE, summary="by Crier", campaign=campaign)

    assert campaign_changers(campaign=campaign) == {
        author.pk, editor.pk, writer.pk, lister.pk, categoriser.pk, changer.pk
    }


def test_the_changers_of_a_campaign_to_everyone_leave_out_every_audience_s_editors():
    lister = staff("l", AUTHORS)
    change_record(user=lister, obj=factories.audience(), summary="listed them")
    campaign = factories.campaign()

    assert campaign_changers(campaign=campaign) == set()


def test_a_change_is_recorded_against_what_was_changed():
    person = staff("casey", AUTHORS)
    campaign, template, audience, category = (
        factories.campaign(), factories.template(), factories.audience(), factories.category()
    )

    for obj in (campaign, template, audience, category):
        change_record(user=person, obj=obj, summary=f"Changed {obj}")

    assert [(entry.action, entry.user, entry.campaign, entry.summary, entry.detail)
            for entry in AuditEntry.objects.order_by("pk")] == [
        ("change", person, campaign, f"Changed {campaign}", {}),
        ("change", person, None, f"Changed {template}", {"template": template.pk}),
        ("change", person, None, f"Changed {audience}", {"audience": audience.pk}),
        ("change", person, None, f"Changed {category}", {"category": category.pk}),
    ]


# --- Editing a template ----------------------------------------------------------------------


def test_editing_the_words_of_a_campaign_s_reminders_withdraws_its_approval_at_once(three):
    words = factories.template(text="Please read it")
    scheduled = approved(factories.campaign(status=Campaign.Status.SCHEDULED, remind_who="not_read",
                                            remind_after=datetime.timedelta(days=1), remind_template=words))

    assert approvals_withdraw_for_template(template_id=words.pk, actor=SYSTEM) == 1

    scheduled.refresh_from_db()
    assert scheduled.approved_at is None and scheduled.status == Campaign.Status.DRAFT


def test_editing_a_template_withdraws_the_approvals_it_carries_and_only_those(three):
    template = factories.template()
    MessageTemplate.objects.filter(pk=template.pk).update(direct_approved_at=timezone.now(),
                                                          direct_approved_by=approver())
    draft = approved(factories.campaign(template=template))
    scheduled = approved(factories.campaign(template=template, status=Campaign.Status.SCHEDULED))
    running = approved(factories.campaign(template=template, status=Campaign.Status.RUNNING))
    unapproved = factories.campaign(template=template)
    elsewhere = approved(factories.campaign())
    other_template = factories.template()
    MessageTemplate.objects.filter(pk=other_template.pk).update(direct_approved_at=timezone.now())

    assert approvals_withdraw_for_template(template_id=template.pk, actor=SYSTEM) == 2

    template.refresh_from_db()
    assert (template.direct_approved_at, template.direct_approved_by) == (None, None)
    assert MessageTemplate.objects.get(pk=other_template.pk).direct_approved_at is not None
    for campaign in (draft, scheduled, running, unapproved, elsewhere):
        campaign.refresh_from_db()
    assert (draft.approved_at, scheduled.approved_at, unapproved.approved_at) == (None, None, None)
    assert running.approved_at is not None and elsewhere.approved_at is not None
    assert scheduled.status_reason == (
        "Back to draft: its template was edited; it needs approval again before it is scheduled."
    )
    assert sorted(entry.campaign_id for entry in entries(AuditEntry.Action.APPROVAL_WITHDRAWN)) == sorted(
        [draft.pk, scheduled.pk]
    )


@pytest.mark.parametrize("kind", [Campaign.Kind.ANNOUNCEMENT, Campaign.Kind.DIRECT])
@pytest.mark.parametrize("status", [Campaign.Status.RUNNING, Campaign.Status.PAUSED])
def test_a_template_being_sent_cannot_be_edited(kind, status):
    template = factories.template()
    first = factories.campaign(name="Town hall", template=template, kind=kind, status=status)
    factories.campaign(name="Later", template=template, kind=kind, status=status)

    assert refusal(lambda: template_edit_require(template_id=template.pk)) == (
        f"“Town hall” is {first.get_status_display().lower()} with this template: people it has not reached yet "
        "would get the new text. Wait until it completes or cancel it, or change what people already received "
        "with “Edit the sent message”.",
        "template_in_use", 409,
    )


def test_a_template_sent_by_nothing_running_can_be_edited():
    template = factories.template()
    for status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED, Campaign.Status.COMPLETED,
                   Campaign.Status.CANCELLED):
        factories.campaign(template=template, status=status)
    factories.campaign(template=template, kind=Campaign.Kind.WELCOME, status=Campaign.Status.RUNNING)
    factories.campaign(status=Campaign.Status.RUNNING)  # another template

    template_edit_require(template_id=template.pk)
    template_edit_require(template_id=None)


# --- Direct messages: reach within a window --------------------------------------------------


@pytest.fixture
def people(settings) -> list[int]:
    settings.APPROVAL_THRESHOLD = 3
    settings.APPROVAL_WINDOW_HOURS = 24
    return [factories.recipient(external_id=f"p{n}").pk for n in range(6)]


def send(actor: Actor, *external_ids: str, template: MessageTemplate | None = None) -> Campaign:
    return campaign_send_direct(name="Notice", template_id=(template or factories.template()).pk,
                                category=factories.category(), external_ids=list(external_ids), actor=actor)


def test_direct_reach_up_to_the_threshold_needs_no_approval_and_counts(people):
    sender = Actor(api_key=key("campaigns:send"))
    template = factories.template()

    assert direct_reach_require(template_id=template.pk, recipient_ids=people[:3], actor=sender) == ""
    assert direct_reach_require(template_id=template.pk, recipient_ids=people[:3] + people[:3], actor=sender) == ""


def test_direct_reach_adds_up_the_people_each_sender_reached_in_the_window_once_each(people):
    sender = Actor(api_key=key("campaigns:send"))
    send(sender, "p0", "p1")
    send(sender, "p1")
    template = factories.template(name="Payslip")

    assert direct_reach_require(template_id=template.pk, recipient_ids=[people[0], people[2]], actor=sender) == ""
    assert refusal(lambda: direct_reach_require(
        template_id=template.pk, recipient_ids=[people[3], people[4], people[3]], actor=sender)) == (
        "Direct messages and tests sent by this API key already reached 2 people in the last 24 hours, whatever "
        "their template; 2 more would pass 3, the number that needs approval. Ask a person with the approver role "
        "to approve “Payslip” for direct messages (transactional notices), or make it a campaign.",
        "approval_required", 409,
    )


def test_direct_reach_of_a_staff_member_is_theirs_alone(people):
    tester = Actor(user=staff("casey", AUTHORS))
    send(tester, "p0", "p1", "p2")
    send(Actor(user=staff("dana", AUTHORS)), "p3", "p4", "p5")
    send(Actor(api_key=key("campaigns:send")), "p3", "p4", "p5")
    template = factories.template(name="Payslip")

    assert direct_reach_require(template_id=template.pk, recipient_ids=people[:3], actor=tester) == ""
    assert refusal(lambda: direct_reach_require(template_id=template.pk, recipient_ids=[people[5]], actor=tester)) == (
        "Direct messages and tests sent by you already reached 3 people in the last 24 hours, whatever their "
        "template; 1 more would pass 3, the number that needs approval. Ask a person with the approver role to "
        "approve “Payslip” for direct messages (transactional notices), or make it a campaign.",
        "approval_required", 409,
    )


def test_direct_reach_forgets_what_left_the_window_and_what_was_approved(people, settings):
    sender = Actor(api_key=key("campaigns:send"))
    approved_send = send(sender, "p3", "p4", "p5")
    Campaign.objects.filter(pk=approved_send.pk).update(approved_at=timezone.now())
    old = send(sender, "p0", "p1", "p2")
    Campaign.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(hours=24, minutes=1))
    template = factories.template()

    assert direct_reach_require(template_id=template.pk, recipient_ids=people[3:], actor=sender) == ""
    Campaign.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(hours=23, minutes=59))
    with pytest.raises(ApplicationError):
        direct_reach_require(template_id=template.pk, recipient_ids=people[3:], actor=sender)


def test_direct_reach_counts_only_direct_messages(people):
    sender = Actor(api_key=key("campaigns:send"))
    sent = send(sender, "p0", "p1", "p2")
    Campaign.objects.filter(pk=sent.pk).update(kind=Campaign.Kind.ANNOUNCEMENT)

    assert direct_reach_require(template_id=factories.template().pk, recipient_ids=people[3:], actor=sender) == ""


def test_a_template_approved_for_direct_messages_or_a_trusted_key_passes_the_threshold(people):
    template = factories.template()
    sender = Actor(api_key=key("campaigns:send"))
    trusted = Actor(api_key=key("campaigns:send", "campaigns:approve"))

    assert direct_reach_require(template_id=template.pk, recipient_ids=people, actor=trusted) == "key"
    assert direct_reach_require(template_id=template.pk, recipient_ids=people[:3], actor=trusted) == ""
    assert direct_reach_require(template_id=template.pk, recipient_ids=people, actor=SYSTEM) == ""
    MessageTemplate.objects.filter(pk=template.pk).update(direct_approved_at=timezone.now())
    assert direct_reach_require(template_id=template.pk, recipient_ids=people, actor=sender) == "template"


# --- Approving a template for direct messages ------------------------------------------------


def test_an_approver_approves_a_template_for_direct_messages_and_the_audit_log_says_so():
    template = factories.template(name="Payslip")
    before = template.updated_at
    person = approver()

    returned = template_approve_direct(template_id=template.pk, actor=Actor(user=person))

    template.refresh_from_db()
    assert returned.pk == template.pk
    assert (template.direct_approved_by, template.updated_at) == (person, before)
    assert template.direct_approved_at is not None
    [entry] = entries(AuditEntry.Action.APPROVE_DIRECT)
    assert (entry.user, entry.api_key, entry.campaign, entry.summary, entry.detail) == (
        person, None, None, "Approved “Payslip” for direct messages", {"template": template.pk}
    )


def test_a_trusted_key_approves_a_template_for_direct_messages_as_nobody():
    template = factories.template()
    api_key = key("campaigns:approve")

    template_approve_direct(template_id=template.pk, actor=Actor(user=approver(), api_key=api_key))

    template.refresh_from_db()
    assert template.direct_approved_at is not None and template.direct_approved_by is None
    assert AuditEntry.objects.get(action=AuditEntry.Action.APPROVE_DIRECT).api_key == api_key


def test_only_an_approver_or_a_trusted_key_approves_a_template_for_direct_messages():
    template = factories.template()
    forbidden = ("Only a person with the approver role can approve a template.", "forbidden", 403)

    for actor in (Actor(user=staff("casey", AUTHORS)), SYSTEM, Actor(api_key=key("campaigns:send"))):
        assert refusal(lambda: template_approve_direct(template_id=template.pk, actor=actor)) == forbidden
    template.refresh_from_db()
    assert template.direct_approved_at is None
    assert not AuditEntry.objects.exists()


def test_a_template_is_approved_for_direct_messages_once():
    template = factories.template(name="Payslip")
    template_approve_direct(template_id=template.pk, actor=Actor(user=approver()))

    assert refusal(lambda: template_approve_direct(template_id=template.pk, actor=Actor(user=approver("blake")))) == (
        "“Payslip” is already approved for direct messages.", "invalid_state", 409
    )


def test_whoever_changed_a_template_cannot_approve_it_for_direct_messages_but_may_approve_others():
    person = approver()
    written, other = factories.template(), factories.template()
    change_record(user=person, obj=written, summary="wrote it")

    assert refusal(lambda: template_approve_direct(template_id=written.pk, actor=Actor(user=person))) == (
        "You wrote or changed this template: a second person must approve it.", "approver_is_author", 403
    )
    template_approve_direct(template_id=other.pk, actor=Actor(user=person))
    assert MessageTemplate.objects.get(pk=other.pk).direct_approved_by == person


def test_an_approver_approves_again_a_template_edited_since_they_approved_it():
    person = approver()
    template = factories.template()
    template_approve_direct(template_id=template.pk, actor=Actor(user=person))
    template.text = "Edited by someone else"
    template.save()  # withdraws the approval for direct messages

    template_approve_direct(template_id=template.pk, actor=Actor(user=person))

    assert MessageTemplate.objects.get(pk=template.pk).direct_approved_by == person
