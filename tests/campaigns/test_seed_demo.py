"""The demo's organisation starts in Entra ID: ``seed_demo --directory`` prints its people as Graph users and
writes nothing; ``--synced`` seeds the rest around the people a sync brought in, and refuses without them."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from campaigns.models import Campaign, Recipient
from campaigns.services import recipients_bulk_upsert
from campaigns.management.commands.seed_demo import demo_people

pytestmark = pytest.mark.django_db


def test_the_directory_is_printed_as_graph_users_and_nothing_is_written(capsys):
    call_command("seed_demo", "--people", "12", "--directory")

    printed = json.loads(capsys.readouterr().out)
    first = printed["users"][0]
    assert len(printed["users"]) == len(printed["people"]) == 12
    assert first["employeeId"] == "E00001" and first["userPrincipalName"] == first["mail"]
    assert first["employeeHireDate"].endswith("T00:00:00Z") and first["usageLocation"] in ("FR", "DE", "GB", "US", "JP")
    assert sum(person["new_starter"] for person in printed["people"]) == 5
    assert not Recipient.objects.exists() and not Campaign.objects.exists()


def test_seeding_around_synced_people_needs_them_all_and_writes_no_person(capsys):
    with pytest.raises(CommandError, match="run sync_entra first"):
        call_command("seed_demo", "--people", "12", "--synced")

    recipients_bulk_upsert(rows=demo_people(12))  # what the sync would have brought in
    call_command("seed_demo", "--people", "12", "--synced")

    seeded = json.loads(capsys.readouterr().out)
    assert seeded["created"] == 0 and Recipient.objects.count() == 12
    assert Campaign.objects.filter(pk=seeded["announcement_id"]).exists()
