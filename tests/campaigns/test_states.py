"""A campaign's state machine (campaigns.states): the services take each move only from its states and for
its kinds, and the admin and the API offer what it allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns.admin.transitions import TRANSITIONS
from campaigns.models import Campaign
from campaigns.roles import APPROVERS, AUTHORS, roles_ensure
from campaigns.states import MOVES, move_allowed, move_require, moves_open
from core.errors import ApplicationError
from delivery import services
from tests import factories

pytestmark = pytest.mark.django_db

S, K = Campaign.Status, Campaign.Kind
# Each service, called as a person or Crier would call it, and the move it takes.
SERVICES = {
    "launch": lambda campaign: services.campaign_launch(campaign_id=campaign.pk),
    "schedule": lambda campaign: services.campaign_schedule(
        campaign_id=campaign.pk, send_at=timezone.now() + timedelta(days=1)
    ),
    "pause": lambda campaign: services.campaign_pause(campaign_id=campaign.pk),
    "resume": lambda campaign: services.campaign_resume(campaign_id=campaign.pk),
    "cancel": lambda campaign: services.campaign_cancel(campaign_id=campaign.pk),
}


# From which states each service takes an announcement, and where to: written out, not read from MOVES.
EXPECTED = {
    "launch": ({"draft", "scheduled"}, "running"),
    "schedule": ({"draft", "scheduled"}, "scheduled"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "cancel": ({"draft", "scheduled", "running", "paused"}, "cancelled"),
}


@pytest.mark.parametrize("move", sorted(SERVICES))
@pytest.mark.parametrize("status", S.values)
def test_each_service_moves_a_campaign_only_from_the_states_its_move_leaves_from(move, status, settings):
    settings.CANCEL_DRAIN_SECONDS = 0
    campaign = factories.campaign(status=status, send_at=timezone.now() + timedelta(hours=1))
    sources, target = EXPECTED[move]
    assert (MOVES[move].sources, MOVES[move].target) == (sources, target)

    if status in sources:
        SERVICES[move](campaign)
        campaign.refresh_from_db()
        assert campaign.status == target
        return
    with pytest.raises(ApplicationError) as refused:
        SERVICES[move](campaign)
    assert (refused.value.code, refused.value.status) == ("invalid_state", 409)
    assert status in refused.value.message
    campaign.refresh_from_db()
    assert campaign.status == status


@pytest.mark.parametrize("kind, move, words", [
    (K.DIRECT, "launch", "A direct message is sent when it is made."),
    (K.WELCOME, "schedule", "Only announcements are scheduled"),
    (K.DIRECT, "schedule", "Only announcements are scheduled"),
])
def test_a_move_not_made_for_the_campaigns_kind_is_refused_whatever_its_state(kind, move, words):
    campaign = factories.campaign(kind=kind, status=S.DRAFT)

    with pytest.raises(ApplicationError) as refused:
        SERVICES[move](campaign)

    assert (refused.value.code, refused.value.status) == ("invalid_state", 409)
    assert refused.value.message.startswith(words)
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT


def test_a_refusal_says_which_campaign_and_in_which_state_it_is():
    campaign = factories.campaign(name="Town hall", status=S.COMPLETED)

    with pytest.raises(ApplicationError) as edit:
        move_require(campaign, "edit")
    with pytest.raises(ApplicationError) as pause:
        move_require(campaign, "pause")

    assert edit.value.message == "“Town hall” is completed; only a draft or scheduled campaign can be edited."
    assert pause.value.message == f"Campaign {campaign.pk} is completed; only a running campaign can be paused."


def test_the_moves_open_follow_the_state_the_kind_and_the_persons_role():
    roles = roles_ensure()
    author = User.objects.create_user("ada", is_staff=True)
    author.groups.add(roles[AUTHORS])
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles[APPROVERS])
    author, approver = User.objects.get(pk=author.pk), User.objects.get(pk=approver.pk)  # fresh permission caches
    draft = factories.campaign(status=S.DRAFT)
    welcome = factories.campaign(kind=K.WELCOME, status=S.DRAFT)

    assert moves_open(draft) == ["edit", "approve", "schedule", "launch", "cancel"]
    assert moves_open(welcome) == ["edit", "approve", "launch", "cancel"]
    assert moves_open(factories.campaign(status=S.RUNNING)) == ["pause", "cancel"]
    assert moves_open(factories.campaign(status=S.COMPLETED)) == ["send_again"]
    assert moves_open(factories.campaign(status=S.COMPLETED, kind=K.WELCOME)) == []
    assert "approve" not in moves_open(draft, user=author) and "launch" in moves_open(draft, user=author)
    assert "approve" in moves_open(draft, user=approver) and "launch" not in moves_open(draft, user=approver)


# Where the admin offers each button on an announcement, and the permission it needs: written out.
BUTTONS = {
    "launch": ({"draft", "scheduled"}, "campaigns.launch_campaign"),
    "approve": ({"draft", "scheduled"}, "campaigns.approve_campaign"),
    "schedule": ({"draft"}, "campaigns.launch_campaign"),  # a scheduled one moves with its “Send at”, saved
    "pause": ({"running"}, "campaigns.control_campaign"),
    "resume": ({"paused"}, "campaigns.launch_campaign"),
    "cancel": ({"scheduled", "running", "paused"}, "campaigns.control_campaign"),  # a draft is deleted
    "stop_installing": ({"running", "paused"}, "campaigns.control_campaign"),  # of one that installs the app
    "send_again": ({"completed"}, "campaigns.launch_campaign"),  # to those it failed for
}


def test_the_admin_offers_each_button_in_its_states_to_those_with_its_permission():
    superuser = User.objects.create_superuser("root")
    assert set(TRANSITIONS) == set(BUTTONS)
    for name, (states, permission) in BUTTONS.items():
        transition = TRANSITIONS[name]
        offered = {status for status in S.values
                   if transition.offered(Campaign(status=status, kind=K.ANNOUNCEMENT, install_app=True), superuser)}
        assert (offered, transition.permission) == (states, permission), name
        for status in S.values:  # never a move the machine would refuse
            for kind in K.values:
                campaign = Campaign(status=status, kind=kind)
                assert not transition.offered(campaign, superuser) or move_allowed(campaign, transition.move)
    assert not TRANSITIONS["schedule"].offered(Campaign(status=S.DRAFT, kind=K.WELCOME), superuser)
    assert TRANSITIONS["launch"].offered(Campaign(status=S.DRAFT, kind=K.WELCOME), superuser)
    assert not TRANSITIONS["launch"].offered(Campaign(status=S.DRAFT, kind=K.DIRECT), superuser)
    assert not TRANSITIONS["stop_installing"].offered(Campaign(status=S.RUNNING, install_app=False), superuser)


def test_completion_and_the_launch_at_its_time_are_crier_s_own_moves():
    assert MOVES["complete"].permission is None and MOVES["launch_at_its_time"].permission is None
    assert MOVES["complete"].sources == {S.RUNNING} and MOVES["complete"].target == S.COMPLETED
