"""Where Teams reaches a person, from what delivery read of their stored address."""

from __future__ import annotations

import uuid

import pytest

from bots.addresses import address_join, address_of, addresses_learn
from bots.models import TeamsAddress
from core.channels import Address

AAD = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def test_it_takes_what_teams_told_before_the_persons_own_and_the_configured(settings):
    settings.BOT_TENANT_ID, settings.TEAMS_SERVICE_URL = "bot-tenant", "https://smba.example/teams/"

    told = address_of(aad_object_id=AAD, tenant_id="own", stored=("29:id", "told", "https://told/", "a:1"))
    untold = address_of(aad_object_id=AAD, tenant_id="own", stored=(None, None, None, None))
    nothing = address_of(aad_object_id=AAD, tenant_id="", stored=("", "", "", ""))

    assert told == Address(member_id="29:id", tenant_id="told", service_url="https://told/", conversation_id="a:1")
    assert untold == Address(member_id=str(AAD), tenant_id="own", service_url="https://smba.example/teams/")
    assert (nothing.tenant_id, nothing.conversation_id) == ("bot-tenant", "")


def test_a_person_without_an_entra_object_id_names_no_member():
    assert address_of(aad_object_id=None, tenant_id="t", stored=(None, None, None, None)).member_id == ""


def test_its_join_reads_the_address_of_the_person_it_is_given():
    assert address_join("p") == "LEFT JOIN bots_teamsaddress AS a ON a.aad_object_id = p.aad_object_id"


@pytest.mark.django_db
def test_a_rosters_teams_ids_fill_only_what_teams_never_told_and_fit_their_column():
    own, new = uuid.uuid4(), uuid.uuid4()
    TeamsAddress.objects.create(aad_object_id=own, user_id="29:own", service_url="https://smba.example/emea/",
                                tenant_id="tenant-own", conversation_id="a:own")

    addresses_learn(members=[(str(own), "29:roster"), (str(new), "29:" + "x" * 600)], tenant_id="tenant-a",
                    service_url="https://smba.example/teams/")

    kept = TeamsAddress.objects.get(aad_object_id=own)
    assert (kept.user_id, kept.service_url, kept.tenant_id, kept.conversation_id) == (
        "29:own", "https://smba.example/emea/", "tenant-own", "a:own")
    learned = TeamsAddress.objects.get(aad_object_id=new)
    assert learned.user_id == ("29:" + "x" * 600)[:500]
    assert (learned.service_url, learned.tenant_id, learned.conversation_id, learned.state) == (
        "https://smba.example/teams/", "tenant-a", "", "unknown")
