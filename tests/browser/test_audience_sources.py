"""Choosing an Entra ID group or a team for an audience in the browser: the group found by a word of its
name, the first of its members shown before saving, its members listed once saved (by the real worker),
and a team chosen among those the app was added to."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from bots.models import TeamsTeam
from campaigns.models import Audience
from tests import factories

pytestmark = pytest.mark.browser
GROUP = "0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10"
TEAM = "19:projectFalcon@thread.tacv2"


def test_an_author_finds_a_group_by_name_sees_its_people_and_saving_lists_them(staff, open_browser, teams, engine):
    people = [factories.recipient(first_name=f"Leeds{n}", last_name="Office", department="Ops") for n in range(2)]
    stranger = str(uuid.uuid4())
    teams.client.graph_users([{"id": str(p.aad_object_id), "displayName": str(p)} for p in people]
                             + [{"id": stranger, "displayName": "Not in Crier"}])
    teams.client.graph_groups([
        {"id": GROUP, "displayName": "Leeds office", "description": "Everyone at Leeds",
         "members": [str(p.aad_object_id) for p in people] + [stranger]},
        {"id": str(uuid.uuid4()), "displayName": "York office"},
    ])
    TeamsTeam.objects.create(team_id=TEAM, name="Project Falcon", installed=True)
    author = open_browser()
    page = author.sign_in("casey")

    page.goto("/admin/campaigns/audience/add/")
    page.fill("#id_name", "Leeds")
    page.select_option("#id_kind", "entra_group")
    page.fill("#crier-group-search", "lee")
    page.get_by_role("button", name="Leeds office — Everyone at Leeds").click()
    expect(page.locator("#id_source_id")).to_have_value(GROUP)
    expect(page.locator("#id_source_name")).to_have_value("Leeds office")
    preview = page.locator(".crier-audience-preview")
    expect(preview).to_contain_text("2 people selected")
    expect(preview).to_contain_text("“Leeds office” has 3 members")
    expect(preview.locator(".crier-audience-sample li")).to_have_count(2)

    # Another kind sets the group aside, and choosing the group kind again brings it back.
    page.select_option("#id_kind", "team")
    expect(page.locator("#id_source_id")).to_have_value("")
    page.select_option("#crier-team-choice", TEAM)
    expect(page.locator("#id_source_id")).to_have_value(TEAM)
    page.select_option("#id_kind", "entra_group")
    expect(page.locator("#id_source_id")).to_have_value(GROUP)

    author.shot("audience-group")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    audience = Audience.objects.get(name="Leeds")
    assert (audience.kind, audience.source_id, audience.source_name) == ("entra_group", GROUP, "Leeds office")

    def listed():
        page.reload()
        return "of whom Crier knows 2" in page.locator(".field-listing").inner_text()

    engine.wait_until(listed, timeout=30, what="the group's members listed")
    expect(page.locator(".field-listing")).to_contain_text("1 are not among Crier's people")
    expect(page.locator(".field-listing")).to_contain_text("Not in Crier")
