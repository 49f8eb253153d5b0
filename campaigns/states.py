"""A campaign's life as one state machine: its states, the moves between them, the states each move
leaves from and who may take it. The services enforce it (``move_require``, under the campaign row's
lock); the admin's buttons and the API's ``actions`` read it (``moves_open``).

A draft is scheduled (and back, when its approval lapses before its time) or launched; a scheduled one
is launched at its time; a running one is paused and resumed, and completes when everyone's message has
an end; anything not over can be cancelled. A launched campaign whose group or team turns out, once
listed, to hold more people than it may reach goes back to draft before anything is written. Editing and approving keep the state. A direct message is
running from the moment it is made; a welcome campaign is launched and runs until it is cancelled.
docs/architecture.md draws it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ApplicationError

from .models import Campaign

S = Campaign.Status


@dataclass(frozen=True)
class Move:
    sources: frozenset[str]  # the states it leaves from
    target: str | None  # the state it reaches; None: the state stays
    permission: str | None  # what a person needs to take it (campaigns.roles); None: only Crier itself
    # Why it is refused in another state, with {pk}, {name}, {status} (its value) and {label} (its words).
    refusal: str
    kinds: frozenset[str] = frozenset(Campaign.Kind.values)  # the kinds of campaign it is for
    wrong_kind: str = ""  # why it is refused for another kind
    applies: Callable[[Campaign], bool] | None = None  # what else the campaign must be for it
    not_applying: str = ""  # why it is refused when that is not so, with the same names as refusal


K = Campaign.Kind
EDITABLE = frozenset({S.DRAFT, S.SCHEDULED})
NOT_DIRECT = frozenset({K.ANNOUNCEMENT, K.WELCOME})
SCHEDULED_KINDS = frozenset({K.ANNOUNCEMENT})
NOT_SCHEDULED = "Only announcements are scheduled: a welcome campaign is launched, a direct message sent when it is made."

MOVES: dict[str, Move] = {
    "edit": Move(EDITABLE, None, "campaigns.change_campaign",
                 "“{name}” is {label}; only a draft or scheduled campaign can be edited.",
                 applies=lambda campaign: campaign.follows_id is None,
                 not_applying="“{name}” follows up another campaign and sends what that campaign's approval covers: "
                              "it is not edited. Change that campaign's reminders, or cancel this one."),
    "approve": Move(EDITABLE, None, "campaigns.approve_campaign",
                    "“{name}” is {label}; only a draft or scheduled campaign is approved."),
    "schedule": Move(EDITABLE, S.SCHEDULED, "campaigns.launch_campaign",
                     "Campaign {pk} is {status}; only a draft can be scheduled.", SCHEDULED_KINDS, NOT_SCHEDULED),
    "unschedule": Move(frozenset({S.SCHEDULED}), S.DRAFT, None, "Campaign {pk} is {status}; it is not scheduled.",
                       SCHEDULED_KINDS, NOT_SCHEDULED),
    "launch": Move(EDITABLE, S.RUNNING, "campaigns.launch_campaign",
                   "Campaign {pk} is {status}; only a draft or scheduled campaign can be launched.",
                   NOT_DIRECT, "A direct message is sent when it is made."),
    "launch_at_its_time": Move(frozenset({S.SCHEDULED}), S.RUNNING, None,
                               "Campaign {pk} is {status}; only a scheduled campaign is launched at its time.",
                               SCHEDULED_KINDS, NOT_SCHEDULED),
    "pause": Move(frozenset({S.RUNNING}), S.PAUSED, "campaigns.control_campaign",
                  "Campaign {pk} is {status}; only a running campaign can be paused."),
    "resume": Move(frozenset({S.PAUSED}), S.RUNNING, "campaigns.launch_campaign",
                   "Campaign {pk} is {status}; only a paused campaign can be resumed."),
    "cancel": Move(frozenset({S.DRAFT, S.SCHEDULED, S.RUNNING, S.PAUSED}), S.CANCELLED, "campaigns.control_campaign",
                   "Campaign {pk} is already {status}."),
    "unlaunch": Move(frozenset({S.RUNNING, S.PAUSED}), S.DRAFT, None,
                     "Campaign {pk} is {status}; only a launched campaign goes back to draft before its rows are written.",
                     SCHEDULED_KINDS, NOT_SCHEDULED),
    "complete": Move(frozenset({S.RUNNING}), S.COMPLETED, None, "Campaign {pk} is {status}; only a running one completes."),
    # A campaign of its own to the people a completed announcement failed for (delivery.follow_ups).
    "send_again": Move(frozenset({S.COMPLETED}), None, "campaigns.launch_campaign",
                       "“{name}” is {label}; it is sent again to those it failed for once it has completed.",
                       frozenset({K.ANNOUNCEMENT}), "Only an announcement is sent again to those it failed for.",
                       applies=lambda campaign: campaign.follows_id is None,
                       not_applying="“{name}” follows up another campaign: send that one again."),
    # The way out of installing the app, for a campaign whose installs Graph refuses (delivery.installing).
    "stop_installing": Move(frozenset({S.RUNNING, S.PAUSED}), None, "campaigns.control_campaign",
                            "Campaign {pk} is {status}; only a running or paused campaign stops installing the app.",
                            NOT_DIRECT, "A direct message never installs the app.",
                            applies=lambda campaign: campaign.install_app,
                            not_applying="“{name}” does not install the app."),
}


def move_allowed(campaign: Campaign, move: str) -> bool:
    rule = MOVES[move]
    return (campaign.kind in rule.kinds and campaign.status in rule.sources
            and (rule.applies is None or rule.applies(campaign)))


def move_require(campaign: Campaign, move: str) -> None:
    """Raises a 409 ``invalid_state`` unless ``move`` is for the campaign's kind and leaves from its
    state (call it with the campaign's row locked, so the state cannot change before the move is written)."""
    rule = MOVES[move]
    if campaign.kind not in rule.kinds:
        raise ApplicationError(rule.wrong_kind, code="invalid_state", status=409)
    if campaign.status not in rule.sources:
        raise ApplicationError(
            rule.refusal.format(
                pk=campaign.pk, name=campaign, status=campaign.status, label=campaign.get_status_display().lower()
            ),
            code="invalid_state",
            status=409,
        )
    if rule.applies is not None and not rule.applies(campaign):
        raise ApplicationError(rule.not_applying.format(pk=campaign.pk, name=campaign), code="invalid_state", status=409)


def moves_open(campaign: Campaign, *, user=None) -> list[str]:
    """The moves a person may take with the campaign as it is (every move of a person, without
    ``user``); the moves only Crier takes itself are never listed."""
    return [
        name for name, move in MOVES.items()
        if move.permission is not None and move_allowed(campaign, name)
        and (user is None or user.has_perm(move.permission))
    ]
