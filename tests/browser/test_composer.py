"""Writing a card in the browser: the simple fields build it, the Adaptive Cards renderer draws it
as the chosen person would see it, and it is saved as the card Teams receives."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns.models import MessageTemplate
from tests import factories

pytestmark = pytest.mark.browser


def test_an_author_composes_a_card_and_sees_it_rendered_for_a_chosen_person(staff, open_browser):
    zoe = factories.recipient(first_name="Zoë", last_name="O'Brien", display_name="Zoë O'Brien")
    author = open_browser()
    page = author.sign_in("casey")

    page.goto("/admin/campaigns/messagetemplate/add/")
    page.fill("#id_name", "Office move")
    page.select_option("#id_kind", "adaptive_card")
    page.fill("#id_design_title", "We are moving, {{first_name}}")
    page.fill("#id_design_body", "The new office opens on **Monday**.")
    page.fill("#id_button_1_label", "See the map")
    page.fill("#id_button_1_url", "https://intranet.example/map")
    page.fill("#id_text", "The new office opens on Monday")

    preview = page.locator("#composer-render")
    # Drawn by the renderer (its .ac-adaptiveCard root), with the sample person's name in it.
    expect(preview.locator(".ac-adaptiveCard")).to_be_visible()
    expect(preview).to_contain_text("We are moving, Alex")
    expect(preview.locator("strong")).to_have_text("Monday")
    expect(preview.locator("button, .ac-pushButton")).to_contain_text("See the map")

    # As a real person sees it: a name with an apostrophe and an accent, JSON-escaped, not breaking the card.
    page.select_option("#composer-person", value=str(zoe.pk))
    expect(preview).to_contain_text("We are moving, Zoë")
    author.shot("composer")

    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    template = MessageTemplate.objects.get(name="Office move")
    assert template.kind == MessageTemplate.Kind.ADAPTIVE_CARD
    assert template.card["body"][0]["text"] == "We are moving, {{first_name}}"
    assert template.design["buttons"][0] == {"label": "See the map", "url": "https://intranet.example/map"}


def test_an_invalid_card_is_refused_with_where_the_problem_is_and_nothing_is_lost(staff, open_browser):
    author = open_browser()
    page = author.sign_in("casey")

    page.goto("/admin/campaigns/messagetemplate/add/")
    page.fill("#id_name", "Broken")
    page.select_option("#id_kind", "adaptive_card")
    page.fill("#id_design_title", "Hello")
    page.fill("#id_button_1_label", "Open")
    page.fill("#id_button_1_url", "http://not-secure.example")
    page.click("input[name=_save]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator("body")).to_contain_text("https")
    expect(page.locator("#id_button_1_url")).to_have_value("http://not-secure.example")
    assert not MessageTemplate.objects.filter(name="Broken").exists()
