"""The buttons that move a campaign from one state to the next on its admin page (launch, approve,
schedule, pause, resume, cancel): each one's words, the states it is offered in, the permission it
needs and the service it calls. The change page and the watch page both read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ApplicationError
from delivery.services import campaign_cancel, campaign_launch, campaign_pause, campaign_resume, campaign_schedule

from ..approvals import campaign_approve
from ..audit import Actor
from ..models import Campaign

S = Campaign.Status


@dataclass(frozen=True)
class Transition:
    label: str  # the button
    question: str  # the confirmation page's question
    confirm: str  # the confirmation page's button
    done: str  # the success message, after the campaign's name
    shown_when: tuple[str, ...]  # statuses in which the change page offers it
    run: Callable[[Campaign, object, dict], Campaign]  # (campaign, user, the confirmation form's data)
    # Authors launch, schedule and resume; approvers and authors pause and cancel (campaigns.roles).
    permission: str = "campaigns.launch_campaign"


def _schedule(campaign: Campaign, user, data) -> Campaign:
    if campaign.send_at is None:
        raise ApplicationError("Set “Send at” and save the campaign before scheduling it.")
    return campaign_schedule(campaign_id=campaign.pk, send_at=campaign.send_at, actor=Actor(user=user))


TRANSITIONS = {
    "launch": Transition(
        "Launch now", "Send now? Messages start going out at once; this cannot be undone.", "Yes, send it now",
        "was launched: sending has started", (S.DRAFT, S.SCHEDULED),
        lambda campaign, user, data: campaign_launch(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "approve": Transition(
        "Approve", "Approve it for sending? Check the message and who it reaches.", "Yes, approve it",
        "is approved: it can be launched or scheduled", (S.DRAFT, S.SCHEDULED),
        lambda campaign, user, data: campaign_approve(
            campaign_id=campaign.pk, actor=Actor(user=user), seen=data.get("fingerprint", ""),
            people_seen=data.get("people", ""),
        ),
        permission="campaigns.approve_campaign",
    ),
    "schedule": Transition(
        "Schedule", "Schedule it for its “Send at” time?", "Yes, schedule it", "is scheduled", (S.DRAFT,), _schedule
    ),
    "pause": Transition(
        "Pause", "Pause sending? Nobody more receives it until it is resumed.", "Yes, pause it",
        "is paused: nobody more receives it until it is resumed", (S.RUNNING,),
        lambda campaign, user, data: campaign_pause(
            campaign_id=campaign.pk, reason=f"Paused by {user} in the admin.", actor=Actor(user=user)
        ),
        permission="campaigns.control_campaign",
    ),
    "resume": Transition(
        "Resume", "Resume sending?", "Yes, resume", "is running again", (S.PAUSED,),
        lambda campaign, user, data: campaign_resume(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "cancel": Transition(
        "Cancel", "Cancel for good? Whoever has not received it yet will not; this cannot be undone.",
        "Yes, cancel it", "is cancelled: whoever had not received it yet is skipped",
        (S.SCHEDULED, S.RUNNING, S.PAUSED),
        lambda campaign, user, data: campaign_cancel(campaign_id=campaign.pk, actor=Actor(user=user)),
        permission="campaigns.control_campaign",
    ),
}
