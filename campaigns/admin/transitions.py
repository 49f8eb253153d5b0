"""The buttons that move a campaign from one state to the next on its admin page (launch, approve,
schedule, pause, resume, cancel): each one's words and the service it calls. The states it is offered in
and the permission it needs are the move's own (``campaigns.states``). The change page and the watch
page both read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import ApplicationError
from delivery.follow_ups import follow_up_send_again
from delivery.services import (
    campaign_cancel, campaign_installs_stop, campaign_launch, campaign_pause, campaign_resume, campaign_schedule,
)

from ..approvals import campaign_approve
from ..audit import Actor
from ..models import Campaign
from ..states import MOVES, move_allowed

S = Campaign.Status


@dataclass(frozen=True)
class Transition:
    move: str  # its move in campaigns.states
    label: str  # the button
    question: str  # the confirmation page's question
    confirm: str  # the confirmation page's button
    done: str  # the success message, after the campaign's name
    run: Callable[[Campaign, object, dict], Campaign]  # (campaign, user, the confirmation form's data)
    hidden_in: frozenset[str] = field(default_factory=frozenset)  # states the move allows but the page does not offer

    def offered(self, campaign: Campaign, user) -> bool:
        """Whether the page offers it for the campaign as it is, to this person."""
        return (move_allowed(campaign, self.move) and campaign.status not in self.hidden_in
                and user.has_perm(self.permission))

    @property
    def permission(self) -> str:
        return MOVES[self.move].permission


def _schedule(campaign: Campaign, user, data) -> Campaign:
    if campaign.send_at is None:
        raise ApplicationError("Set “Send at” and save the campaign before scheduling it.")
    return campaign_schedule(campaign_id=campaign.pk, send_at=campaign.send_at, actor=Actor(user=user))


TRANSITIONS = {
    "launch": Transition(
        "launch", "Launch now", "Send now? Messages start going out at once; this cannot be undone.", "Yes, send it now",
        "was launched: sending has started",
        lambda campaign, user, data: campaign_launch(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "approve": Transition(
        "approve", "Approve", "Approve it for sending? Check the message and who it reaches.", "Yes, approve it",
        "is approved: it can be launched or scheduled",
        lambda campaign, user, data: campaign_approve(
            campaign_id=campaign.pk, actor=Actor(user=user), seen=data.get("fingerprint", ""),
            people_seen=data.get("people", ""),
        ),
    ),
    "schedule": Transition(
        "schedule", "Schedule", "Schedule it for its “Send at” time?", "Yes, schedule it", "is scheduled", _schedule,
        hidden_in=frozenset({S.SCHEDULED}),  # a scheduled one moves with its “Send at”, saved
    ),
    "pause": Transition(
        "pause", "Pause", "Pause sending? Nobody more receives it until it is resumed.", "Yes, pause it",
        "is paused: nobody more receives it until it is resumed",
        lambda campaign, user, data: campaign_pause(
            campaign_id=campaign.pk, reason=f"Paused by {user} in the admin.", actor=Actor(user=user)
        ),
    ),
    "resume": Transition(
        "resume", "Resume", "Resume sending?", "Yes, resume", "is running again",
        lambda campaign, user, data: campaign_resume(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "stop_installing": Transition(
        "stop_installing", "Stop installing the app",
        "Stop installing the app for the people it reaches who lack it? Those waiting for it are sent to as they are, "
        "and Teams refuses those who lack the app.", "Yes, stop installing", "no longer installs the app",
        lambda campaign, user, data: campaign_installs_stop(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "send_again": Transition(
        "send_again", "Send again to those it failed for",
        "Send it again now to the people it failed for who have not had it since? Fix the cause first (the app "
        "installed, a policy changed). It goes as a campaign of its own, with its own results; opt-outs are respected.",
        "Yes, send it again", "is sent again to those it failed for, as a campaign of its own (kept as a draft when "
        "it needs approval first)",
        lambda campaign, user, data: follow_up_send_again(campaign_id=campaign.pk, actor=Actor(user=user)),
    ),
    "cancel": Transition(
        "cancel", "Cancel", "Cancel for good? Whoever has not received it yet will not; this cannot be undone.",
        "Yes, cancel it", "is cancelled: whoever had not received it yet is skipped",
        lambda campaign, user, data: campaign_cancel(campaign_id=campaign.pk, actor=Actor(user=user)),
        hidden_in=frozenset({S.DRAFT}),  # a draft nobody will send is deleted
    ),
}
