"""Approval: an announcement to more than ``APPROVAL_THRESHOLD`` people, and any urgent one (it pops up in
everyone's activity feed with a sound), needs a second person, with the approver role, before it can be launched
or scheduled.

What is approved is the campaign as it stands: changing its template, audience or category, whether
it installs the app for people who lack it, or whether it is urgent and what its pop-up says (in the admin or through the API), or editing the template it
uses, withdraws the approval, and a scheduled
campaign that loses its approval goes back to draft, visibly, rather than sending unapproved. An
approval also records a fingerprint of the template, audience and category as they were; an edit
of the audience or category itself (its rules, its lists, a category made mandatory) changes it, so
the approval no longer counts. An approval covers the number of people it showed: a launch or
schedule that would reach more voids it, with the reason on the campaign. The approver is nobody
who wrote or changed what the campaign says or whom it reaches (its template, audience or category,
whoever owns them: ``campaign_changers``), and approves what the approval page showed them. An
API key with the ``campaigns:approve`` scope approves the campaigns it launches itself, urgent ones
included (an integration the organisation trusts to approve what it sends); every approval is in the audit log.

Direct messages and tests are counted as reach (``direct_reach_require``): the people one API key
or staff member reaches within ``APPROVAL_WINDOW_HOURS``, with any template not approved for direct
messages, add up, and what would pass the threshold is refused, unless an approver approved the
template for direct messages (transactional notices); editing the template withdraws that too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError

from .audit import SYSTEM, Actor
from .models import ApiKey, Audience, AuditEntry, Campaign, Category, MessageTemplate
from .selectors import audience_count
from .states import MOVES, move_allowed, move_require


class ApprovalOutgrown(ApplicationError):
    """The campaign would reach more people than its approval showed: the approval is void."""


# Changing one of these after approval withdraws it.
APPROVED_FIELDS = ("template", "template_id", "audience", "audience_id", "category", "category_id", "install_app",
                   "urgent", "urgent_text", "acknowledgement", "poll_question", "poll_options", "poll_multiple",
                   "poll_closes_at", "track_clicks", "remind_who", "remind_after", "remind_times", "remind_template",
                   "remind_template_id")


@dataclass(frozen=True)
class ApprovalState:
    needed: bool  # the audience is above the threshold, or the campaign is urgent
    approved: bool  # approved, and what was approved is what it is now
    people: int
    threshold: int
    fingerprint: str  # what an approval given now covers

    @property
    def missing(self) -> bool:
        return self.needed and not self.approved


def approval_fingerprint(*, campaign: Campaign) -> str:
    """What an approval covers: the template, the audience and the category, as they are now, and whether Crier
    installs the app for the people who lack it, whether it is urgent, with its pop-up's words, and whether it asks
    for an acknowledgement (its card's button)."""
    return _fingerprint(campaign, audience=True)


def _fingerprint(campaign: Campaign, *, audience: bool) -> str:
    """The fingerprint of what an approval covers, with or without the audience."""
    template = MessageTemplate.objects.filter(pk=campaign.template_id).values_list("updated_at", flat=True).first()
    mandatory = Category.objects.filter(pk=campaign.category_id).values_list("mandatory", flat=True).first()
    whom = ([campaign.audience_id,
             Audience.objects.filter(pk=campaign.audience_id).values_list("updated_at", flat=True).first()]
            if audience else [])
    parts = [campaign.template_id, template, *whom, campaign.category_id, mandatory,
             *(["install_app"] if campaign.install_app else []),
             *(["urgent", campaign.urgent_text] if campaign.urgent else []),
             *([f"acknowledgement:{campaign.acknowledgement}"] if campaign.acknowledgement else []),
             *(["poll", campaign.poll_question, *campaign.poll_options, campaign.poll_multiple, campaign.poll_closes_at]
               if campaign.poll_question else []),
             *(["track_clicks"] if campaign.track_clicks else []),
             *_reminders(campaign)]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _reminders(campaign: Campaign) -> list[object]:
    """What an approval covers of the campaign's reminders: whom, when, how often, and their message as it is now."""
    if not campaign.remind_who:
        return []
    template = MessageTemplate.objects.filter(pk=campaign.remind_template_id).values_list("updated_at", flat=True).first()
    return ["remind", campaign.remind_who, campaign.remind_after, campaign.remind_times, campaign.remind_template_id,
            template]


def _approved_as_it_stands(campaign: Campaign, fingerprint: str) -> bool:
    return campaign.approved_at is not None and campaign.approved_fingerprint == fingerprint


def _outgrown(campaign: Campaign, people: int) -> bool:
    return campaign.approved_people is not None and people > campaign.approved_people


def approval_state(*, campaign: Campaign, fingerprint: str | None = None) -> ApprovalState:
    threshold = settings.APPROVAL_THRESHOLD
    fingerprint = fingerprint or approval_fingerprint(campaign=campaign)
    if campaign.follows_id is not None:
        return _follow_up_approval_state(campaign, fingerprint, threshold)
    # Only announcements need approval: a welcome greets one new starter at a time, and a direct
    # message is checked when it is sent (``direct_reach_require``).
    people = audience_count(audience=campaign.audience) if campaign.kind == Campaign.Kind.ANNOUNCEMENT else 0
    approved = _approved_as_it_stands(campaign, fingerprint) and not _outgrown(campaign, people)
    return ApprovalState(
        needed=people > threshold or (campaign.urgent and campaign.kind == Campaign.Kind.ANNOUNCEMENT),
        approved=approved, people=people, threshold=threshold, fingerprint=fingerprint
    )


def follow_ups_fingerprint(*, campaign: Campaign) -> str:
    """What a campaign's approval covers of what its follow-ups send (``delivery.follow_ups``): its template and
    category as they are now, what its card asks, its reminders. Not its audience: a follow-up's people are some of
    those it was sent to. Kept when it is launched approved (``follow_ups_fingerprint``)."""
    return _fingerprint(campaign, audience=False)


def _follow_up_approval_state(campaign: Campaign, fingerprint: str, threshold: int) -> ApprovalState:
    """A follow-up (``delivery.follow_ups``) reaches some of the people of the campaign it follows, with what that
    campaign's approval covered (its reminders' message included): it needs an approval when that campaign was
    approved, or is urgent, and has one while what that approval covered of it stands, or once it is approved
    itself. It reaches at most the people of that campaign's rows."""
    root = Campaign.objects.get(pk=campaign.follows_id)
    # What the approval saw: the campaign's own message or its reminders' words, not a copy of an edit made since.
    covered = (bool(root.follow_ups_fingerprint) and campaign.template_id in (root.template_id, root.remind_template_id)
               and root.follow_ups_fingerprint == follow_ups_fingerprint(campaign=root))
    return ApprovalState(
        needed=root.approved_at is not None or campaign.urgent,
        approved=covered or _approved_as_it_stands(campaign, fingerprint),
        people=root.total_deliveries, threshold=threshold, fingerprint=fingerprint,
    )


def key_approves(actor: Actor) -> bool:
    """Whether the caller is an API key trusted to approve what it sends itself."""
    return actor.api_key is not None and ApiKey.Scope.CAMPAIGNS_APPROVE in (actor.api_key.scopes or [])


def approval_require(*, campaign: Campaign, actor: Actor) -> None:
    """Raises unless the campaign may be sent as it is. A key with ``campaigns:approve`` approves
    it on the way (called inside the launching transaction, with the campaign row locked)."""
    fingerprint = approval_fingerprint(campaign=campaign)
    state = approval_state(campaign=campaign, fingerprint=fingerprint)
    if not state.missing:
        return
    if key_approves(actor):
        _approve(campaign, actor, state)
        return
    if _approved_as_it_stands(campaign, fingerprint):  # approved, but for fewer people than it reaches now
        raise ApprovalOutgrown(
            f"“{campaign}” was approved for {campaign.approved_people} people and now reaches {state.people}: "
            "the approval is void, and a person with the approver role must approve it again.",
            code="approval_required", status=409,
        )
    if campaign.follows_id is not None:
        raise ApplicationError(
            f"“{campaign}” follows up a campaign whose approval no longer covers it (what it sends changed since): a "
            "person with the approver role must approve it first.", code="approval_required", status=409,
        )
    again = " changed since it was approved (its template, audience or category), and" if campaign.approved_at else ""
    why = ("is urgent (it pops up in everyone's activity feed)" if state.people <= state.threshold
           else f"reaches {state.people} people, more than {state.threshold}")
    raise ApplicationError(
        f"“{campaign}”{again} {why}: a second person with the approver role must approve it first.",
        code="approval_required",
        status=409,
    )


def campaign_approve(
    *, campaign_id: int, actor: Actor, seen: str | None = None, people_seen: int | str | None = None
) -> Campaign:
    """``seen`` is the fingerprint of what the approval page showed, and ``people_seen`` the number of
    people it showed: if the campaign, its template, audience or category changed since, or the
    audience now holds another number of people, nothing is approved. The approval page gives both;
    ``None`` (a caller with no page) checks neither."""
    user = actor.user
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        move_require(campaign, "approve")
        state = approval_state(campaign=campaign)
        if state.approved:
            raise ApplicationError(f"“{campaign}” is already approved.", code="invalid_state", status=409)
        if user is None or not user.has_perm("campaigns.approve_campaign"):
            raise ApplicationError("Only a person with the approver role can approve a campaign.", code="forbidden", status=403)
        if user.pk in campaign_changers(campaign=campaign):
            raise ApplicationError(
                "You wrote or changed this campaign (or its template, audience or category): a second person must "
                "approve it.", code="approver_is_author", status=403,
            )
        if seen is not None and seen != state.fingerprint:
            raise ApplicationError(
                "The campaign, its template, audience or category changed while you were looking at it: "
                "look at it again before approving.", code="changed", status=409,
            )
        if people_seen is not None and str(people_seen) != str(state.people):
            shown = f"{people_seen} people, now {state.people}" if str(people_seen).isdigit() else "no number"
            raise ApplicationError(
                f"Whom “{campaign}” reaches changed while you were looking at it (the page showed {shown}): "
                "look at it again before approving.", code="changed", status=409,
            )
        _approve(campaign, actor, state, people_seen=state.people if people_seen is not None else None)
    return campaign


def _approve(campaign: Campaign, actor: Actor, state: ApprovalState, people_seen: int | None = None) -> None:
    campaign.approved_by = actor.user if actor.user is not None else None
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = state.fingerprint
    campaign.approved_people = state.people
    fields = ["approved_by", "approved_at", "approved_fingerprint", "approved_people", "updated_at"]
    if campaign.status == Campaign.Status.DRAFT and campaign.status_reason:
        campaign.status_reason = ""  # why it went back to draft (its approval was withdrawn): answered now
        fields.append("status_reason")
    campaign.save(update_fields=fields)
    actor.record(
        AuditEntry.Action.APPROVE, campaign=campaign,
        summary=f"Approved “{campaign}” for {state.people} people",
        detail={"people": state.people, "threshold": state.threshold,
                **({"people_shown": people_seen} if people_seen is not None else {})},
    )


def approval_withdraw(*, campaign: Campaign, actor: Actor, reason: str, outgrown: bool = False) -> bool:
    """Withdraws the approval of a campaign not sent yet (the caller holds its row). A scheduled
    campaign that now needs approval goes back to draft. ``outgrown``: the campaign reaches more
    people than the approval showed, and ``reason`` says so on the campaign. Returns whether
    anything changed."""
    if campaign.approved_at is None or not move_allowed(campaign, "approve"):
        return False
    campaign.approved_by = None
    campaign.approved_at = None
    campaign.approved_people = None
    fields = ["approved_by", "approved_at", "approved_people", "updated_at"]
    scheduled = campaign.status == Campaign.Status.SCHEDULED
    unscheduled = scheduled and (outgrown or approval_state(campaign=campaign).needed)
    if unscheduled or outgrown:
        if move_allowed(campaign, "unschedule"):
            campaign.status = MOVES["unschedule"].target
        campaign.status_reason = (
            reason if outgrown else f"Back to draft: {reason}; it needs approval again before it is scheduled."
        )[:500]
        fields += ["status", "status_reason"]
    campaign.save(update_fields=fields)
    actor.record(
        AuditEntry.Action.APPROVAL_WITHDRAWN, campaign=campaign, summary=f"Approval of “{campaign}” withdrawn: {reason}",
        detail={"unscheduled": unscheduled},
    )
    return True


def approval_void_outgrown(*, campaign_id: int, reason: str) -> None:
    """After a launch or schedule refused with ``ApprovalOutgrown`` (its transaction rolled back):
    the approval is void, and the campaign says why."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        approval_withdraw(campaign=campaign, actor=SYSTEM, reason=reason, outgrown=True)


def campaign_changers(*, campaign: Campaign) -> set[int]:
    """The staff members who wrote or changed what the campaign sends or whom it reaches: its author,
    whoever changed its template, audience or category on it, and whoever created or edited that
    template, audience or category, whoever owns them and whenever it was (a template written for
    someone else's campaign is still what its writer would approve)."""
    touched = Q(campaign=campaign)
    for template_id in {campaign.template_id, campaign.remind_template_id} - {None}:  # the reminders' message too
        touched |= Q(detail__template=template_id)
    if campaign.audience_id:
        touched |= Q(detail__audience=campaign.audience_id)
    if campaign.category_id:
        touched |= Q(detail__category=campaign.category_id)
    changed = AuditEntry.objects.filter(
        touched, action=AuditEntry.Action.CHANGE, user__isnull=False
    ).values_list("user_id", flat=True)
    return {user for user in (campaign.created_by_id, campaign.edited_by_id, *changed) if user is not None}


def change_record(*, user, obj, summary: str) -> None:
    """Records that a staff member changed a campaign, template, audience or category (what a
    campaign sends or whom it reaches), so they cannot approve what uses it."""
    key = {Campaign: "campaign", MessageTemplate: "template", Audience: "audience", Category: "category"}[type(obj)]
    Actor(user=user).record(
        AuditEntry.Action.CHANGE, summary=summary, campaign=obj if key == "campaign" else None,
        detail={} if key == "campaign" else {key: obj.pk},
    )


def approvals_withdraw_for_template(*, template_id: int, actor: Actor) -> int:
    """The template of approved campaigns changed: their approval no longer covers what they say,
    nor does its approval for direct messages."""
    withdrawn = 0
    with transaction.atomic():
        MessageTemplate.objects.filter(pk=template_id, direct_approved_at__isnull=False).update(
            direct_approved_at=None, direct_approved_by=None
        )
        # Every campaign not sent yet, approved or not: an approval being given meanwhile is waited for
        # (it saw the old words), then withdrawn like the others.
        for campaign in Campaign.objects.select_for_update().filter(
            Q(template_id=template_id) | Q(remind_template_id=template_id, remind_who__gt=""),  # its reminders' words
            status__in=(Campaign.Status.DRAFT, Campaign.Status.SCHEDULED),
        ):
            withdrawn += approval_withdraw(campaign=campaign, actor=actor, reason="its template was edited")
    return withdrawn


def template_edit_require(*, template_id: int | None) -> None:
    """Raises unless the template may be edited: an announcement or direct campaign that is running
    or paused still sends it to people not reached yet, who would get text nobody approved. A
    welcome campaign runs for ever, and its template stays editable, unless it asks for something. A
    campaign that asks people to acknowledge it or answer a poll, once launched, keeps its template as
    sent: Teams asks Crier for each person's card again when it shows it (``delivery.card_views``), drawn
    from that text, and what they acknowledged is that text (its edits are versions of their own). Not a
    test of one (a direct campaign), nor one that sent nobody anything.

    In a transaction, the template's row stays locked until it commits: a launch, which locks it
    too (``delivery.services.campaign_launch``), waits for the edit, then sees what it changed."""
    if template_id is None:
        return
    if connection.in_atomic_block:
        list(MessageTemplate.objects.select_for_update().filter(pk=template_id).values_list("pk", flat=True))
    sending = (
        Campaign.objects.filter(
            template_id=template_id, kind__in=Campaign.FED_KINDS,
            status__in=(Campaign.Status.RUNNING, Campaign.Status.PAUSED),
        ).order_by("pk").first()
    )
    if sending is not None:
        raise ApplicationError(
            f"“{sending}” is {sending.get_status_display().lower()} with this template: people it has not reached "
            "yet would get the new text. Wait until it completes or cancel it, or change what people already "
            "received with “Edit the sent message”.",
            code="template_in_use", status=409,
        )
    asking = next((campaign for campaign in Campaign.objects.filter(
        Q(acknowledgement__gt="") | Q(poll_question__gt="") | Q(track_clicks=True), template_id=template_id,
        launched_at__isnull=False,
    ).exclude(status=Campaign.Status.DRAFT).exclude(kind=Campaign.Kind.DIRECT).order_by("pk") if _sent_any(campaign)),
        None)
    if asking is not None:
        raise ApplicationError(
            f"“{asking}” was sent with this template and asks people to acknowledge it or answer its poll: Teams "
            "shows them their card again as Crier draws it from this text, so a new text would reach them "
            "unapproved. Change what they received with “Edit the sent message”, or copy the template.",
            code="template_in_use", status=409,
        )


def _sent_any(campaign: Campaign) -> bool:
    """Whether the campaign sent its message to anyone (one probe of its rows' range)."""
    lowest = campaign.pk << 32
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM delivery_delivery WHERE id >= %s AND id < %s AND status = 'sent')",
                       [lowest, lowest + (1 << 32)])
        return cursor.fetchone()[0]


# --- Direct messages and tests: reach within a window ------------------------------------------

def direct_reach_require(*, template_id: int, recipient_ids: list[int], actor: Actor) -> str:
    """Raises unless ``actor`` may send the template to these people now. The people one API key or
    staff member reached with direct messages and tests within ``APPROVAL_WINDOW_HOURS``, whatever
    the template (a copy of a template reaches nobody more), add up: passing ``APPROVAL_THRESHOLD``
    needs the template approved for direct messages, or a key with ``campaigns:approve``. People are
    counted once however often they were told. Returns what approves the send, so it counts toward
    no reach: "template" (approved for direct messages), "key" (a key with ``campaigns:approve``
    passing the threshold), or "" (not approved: it counts).

    Called inside the sending transaction: the sender's row (the key, or the staff member) stays
    locked until it commits, so two calls at once are counted one after the other and cannot both
    pass."""
    template = MessageTemplate.objects.only("id", "name", "direct_approved_at").get(pk=template_id)
    if template.direct_approved_at is not None:
        return "template"
    if actor.api_key is None and actor.user is None:
        return ""  # Crier itself (the approval requests it sends): nobody's reach
    if actor.api_key is not None:
        sender = {"api_key": actor.api_key}
        list(ApiKey.objects.select_for_update().filter(pk=actor.api_key.pk).values_list("pk", flat=True))
    else:
        sender = {"created_by": actor.user}
        list(get_user_model().objects.select_for_update().filter(pk=actor.user.pk).values_list("pk", flat=True))
    threshold = settings.APPROVAL_THRESHOLD
    since = timezone.now() - timedelta(hours=settings.APPROVAL_WINDOW_HOURS)
    sent = Campaign.objects.filter(kind=Campaign.Kind.DIRECT, created_at__gte=since, approved_at__isnull=True, **sender)
    already, more = _people_reached(list(sent.values_list("id", flat=True)), list(dict.fromkeys(recipient_ids)))
    if already + more <= threshold:
        return ""
    if key_approves(actor):
        return "key"
    who = "this API key" if actor.api_key is not None else "you"
    raise ApplicationError(
        f"Direct messages and tests sent by {who} already reached {already} people in the last "
        f"{settings.APPROVAL_WINDOW_HOURS} hours, whatever their template; {more} more would pass {threshold}, the "
        f"number that needs approval. Ask a person with the approver role to approve “{template}” for direct "
        "messages (transactional notices), or make it a campaign.",
        code="approval_required", status=409,
    )


# The people the campaigns' rows reach, each campaign's rows found through the primary key's range
# (delivery ids are campaign * 2**32 + person), and how many of the people named are not among them.
PEOPLE_REACHED = """
WITH reached AS (
    SELECT DISTINCT d.recipient_id
      FROM unnest(%(campaigns)s::bigint[]) AS c(id)
      JOIN delivery_delivery AS d ON d.id >= c.id * 4294967296 AND d.id < (c.id + 1) * 4294967296
)
SELECT (SELECT count(*) FROM reached),
       (SELECT count(*) FROM unnest(%(people)s::bigint[]) AS p(id) WHERE p.id NOT IN (SELECT recipient_id FROM reached))
"""


def _people_reached(campaign_ids: list[int], recipient_ids: list[int]) -> tuple[int, int]:
    if not campaign_ids:
        return 0, len(recipient_ids)
    with connection.cursor() as cursor:
        cursor.execute(PEOPLE_REACHED, {"campaigns": campaign_ids, "people": recipient_ids})
        already, more = cursor.fetchone()
    return already, more


def template_approve_direct(*, template_id: int, actor: Actor) -> MessageTemplate:
    """An approver (or a key with ``campaigns:approve``) approves a template for direct messages to
    any number of people (a transactional notice such as "your payslip is ready"), until it is
    edited."""
    user = actor.user
    if not key_approves(actor) and (user is None or not user.has_perm("campaigns.approve_campaign")):
        raise ApplicationError(
            "Only a person with the approver role can approve a template.", code="forbidden", status=403
        )
    with transaction.atomic():
        template = MessageTemplate.objects.select_for_update().get(pk=template_id)
        if template.direct_approved_at is not None:
            raise ApplicationError(
                f"“{template}” is already approved for direct messages.", code="invalid_state", status=409
            )
        changed = AuditEntry.objects.filter(action=AuditEntry.Action.CHANGE, user=user, detail__template=template.pk)
        if user is not None and changed.exists():
            raise ApplicationError(
                "You wrote or changed this template: a second person must approve it.", code="approver_is_author",
                status=403,
            )
        template.direct_approved_by = user if actor.api_key is None else None
        template.direct_approved_at = timezone.now()
        # Not save(): its updated_at is what campaign approvals fingerprint.
        MessageTemplate.objects.filter(pk=template.pk).update(
            direct_approved_by=template.direct_approved_by, direct_approved_at=template.direct_approved_at
        )
        actor.record(
            AuditEntry.Action.APPROVE_DIRECT, summary=f"Approved “{template}” for direct messages",
            detail={"template": template.pk},
        )
    return template
