"""Adaptive Cards: the card the simple editor builds, and what a card must be before it is saved."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns.cards import card_from_design, design_problems
from campaigns.management.commands.seed_demo import ANNOUNCEMENT_CARD
from campaigns.rendering import MAX_ACTIVITY_BYTES
from campaigns.template_checks import validate_template

DESIGN = {
    "title": "  Office move, {{first_name}} ",
    "image": "https://example.com/floor.png",
    "body": "The **{{department}}** team moves to floor 3.",
    "buttons": [
        {"label": "Floor plan", "url": "https://example.com/plan"},
        {"label": "", "url": ""},
        {"label": "My desk", "url": "https://example.com/desk/{{external_id}}"},
    ],
}


def card(*body, **extra) -> dict:
    return {"type": "AdaptiveCard", "version": "1.5", "body": list(body), **extra}


def card_problems_of(candidate: dict) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        validate_template(kind="adaptive_card", text="", card=candidate)
    return raised.value.message_dict["card"]


# --- The simple editor ------------------------------------------------------------------------------


def test_card_from_design_builds_a_title_image_text_and_link_buttons_for_teams():
    assert card_from_design(DESIGN) == {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [
            {"type": "TextBlock", "text": "Office move, {{first_name}}", "size": "Large", "weight": "Bolder",
             "style": "heading", "wrap": True},
            {"type": "Image", "url": "https://example.com/floor.png", "size": "Stretch",
             "altText": "Office move, {{first_name}}"},
            {"type": "TextBlock", "text": "The **{{department}}** team moves to floor 3.", "wrap": True},
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": "Floor plan", "url": "https://example.com/plan"},
            {"type": "Action.OpenUrl", "title": "My desk", "url": "https://example.com/desk/{{external_id}}"},
        ],
        "msteams": {"width": "Full"},
    }


def test_card_from_design_leaves_out_what_was_left_empty():
    built = card_from_design({"body": "Just text", "buttons": []})

    assert built["body"] == [{"type": "TextBlock", "text": "Just text", "wrap": True}]
    assert "actions" not in built


def test_a_card_from_the_simple_fields_passes_the_checks_every_card_passes():
    validate_template(kind="adaptive_card", text="Office move", card=card_from_design(DESIGN))


def test_design_problems_name_the_field_they_are_in():
    problems = design_problems({
        "title": "Hi {{salary}}",
        "image": "http://example.com/a.png",
        "body": "",
        "buttons": [{"label": "Go", "url": "http://example.com"}, {"label": "", "url": "https://example.com"},
                    {"label": "Read", "url": ""}],
    })

    assert set(problems) == {"title", "image", "buttons[0].url", "buttons[1].label", "buttons[2].url"}
    assert "Unknown placeholder {{salary}}" in problems["title"]
    assert "https://" in problems["image"]


def test_an_empty_design_asks_for_something_to_show():
    assert "body" in design_problems({"title": " ", "buttons": []})


def test_more_than_six_buttons_are_refused():
    buttons = [{"label": f"B{n}", "url": f"https://example.com/{n}"} for n in range(7)]

    assert design_problems({"body": "x", "buttons": buttons}) == {"buttons": "At most 6 buttons."}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_browser_builds_the_same_card_as_the_server():
    script = Path(settings.BASE_DIR) / "campaigns" / "static" / "crier" / "composer.card.js"
    designs = [DESIGN, {"body": "Just text"}, {"title": "T", "buttons": [{"label": "Ö", "url": "https://é.example"}]}]
    program = (
        f"const composer = require({json.dumps(str(script))});"
        f"process.stdout.write(JSON.stringify({json.dumps(designs)}.map(composer.cardFromDesign)));"
    )

    built = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True, timeout=30)

    assert json.loads(built.stdout) == [card_from_design(design) for design in designs]


# --- What any card must be ----------------------------------------------------------------------------


def test_an_unknown_element_type_is_refused_naming_its_place():
    problems = card_problems_of(card({"type": "TextBlock", "text": "Hi"}, {"type": "Media", "sources": []}))

    assert len(problems) == 1
    assert problems[0].startswith("body[1].type: 'Media' is not an element Teams shows")


def test_an_unknown_action_type_is_refused_naming_its_place():
    problems = card_problems_of(card({"type": "TextBlock", "text": "Hi"}, actions=[{"type": "Action.Http"}]))

    assert problems[0].startswith("actions[0].type: 'Action.Http' is not an action")


def test_a_missing_required_property_is_refused_naming_its_place():
    problems = card_problems_of(card(
        {"type": "Container", "items": [{"type": "TextBlock", "text": "Hi"}, {"type": "Image"}]},
        actions=[{"type": "Action.OpenUrl", "title": "Go"}],
    ))

    assert problems == ['body[0].items[1].url: an Image needs "url".', 'actions[0].url: an Action.OpenUrl needs "url".']


def test_a_link_that_is_not_https_is_refused_naming_its_place():
    problems = card_problems_of(card(
        {"type": "Image", "url": "http://example.com/a.png"},
        {"type": "ColumnSet", "columns": [{"items": [{"type": "TextBlock", "text": "x"}],
                                           "selectAction": {"type": "Action.OpenUrl", "url": "javascript:alert(1)"}}]},
    ))

    assert [problem.split(":")[0] for problem in problems] == ["body[0].url", "body[1].columns[0].selectAction.url"]
    assert "https://" in problems[0]


def test_a_placeholder_may_fill_part_of_a_link_but_not_its_start():
    assert card_problems_of(card({"type": "Image", "url": "{{attributes.photo}}"}))[0].startswith("body[0].url:")
    validate_template(kind="adaptive_card", text="", card=card(
        {"type": "Image", "url": "https://photos.example.com/{{external_id}}.png"}))


def test_a_card_newer_than_teams_shows_is_refused():
    problems = card_problems_of(card({"type": "TextBlock", "text": "Hi"}, version="1.6"))

    assert problems == ["version: Teams shows cards up to version 1.5; this card says 1.6."]


def test_a_version_that_is_not_one_is_refused():
    assert card_problems_of(card({"type": "TextBlock", "text": "Hi"}, version="latest"))[0].startswith("version: ")


def test_an_unknown_placeholder_in_a_card_names_its_place():
    problems = card_problems_of(card({"type": "TextBlock", "text": "Hi"}, {"type": "TextBlock", "text": "{{salary}}"}))

    assert problems[0].startswith("body[1].text: Unknown placeholder {{salary}}")


def test_a_card_too_big_for_teams_is_refused():
    text = "x" * 1000
    big = card(*[{"type": "TextBlock", "text": text} for _ in range(MAX_ACTIVITY_BYTES // 1000 + 1)])

    problems = card_problems_of(big)

    assert len(problems) == 1 and "Teams' limit is about 100 KB" in problems[0]


def test_every_problem_is_listed_at_once_up_to_ten():
    problems = card_problems_of(card(*[{"type": "Image"} for _ in range(15)]))

    assert len(problems) == 10
    assert problems[9] == 'body[9].url: an Image needs "url".'


def test_a_card_nested_past_any_sense_is_refused_without_walking_it_all():
    nested: dict = {"type": "TextBlock", "text": "deep"}
    for _ in range(200):
        nested = {"type": "Container", "items": [nested]}

    problems = card_problems_of(card(nested))

    assert "nested more than" in problems[0]


def test_the_elements_and_actions_teams_shows_are_accepted():
    validate_template(kind="adaptive_card", text="", card=card(
        {"type": "RichTextBlock", "inlines": ["plain", {"type": "TextRun", "text": "bold", "weight": "Bolder"}]},
        {"type": "FactSet", "facts": [{"title": "Where", "value": "{{location|HQ}}"}]},
        {"type": "ImageSet", "images": [{"type": "Image", "url": "https://example.com/1.png"},
                                        {"type": "Image", "url": "data:image/png;base64,iVBORw0KGgo="}]},
        {"type": "Table", "columns": [{"width": 1}], "rows": [{"type": "TableRow", "cells": [
            {"type": "TableCell", "items": [{"type": "TextBlock", "text": "cell"}]}]}]},
        {"type": "Container", "id": "more", "isVisible": False, "backgroundImage": {"url": "https://example.com/b.png"},
         "items": [{"type": "Input.Text", "id": "comment"}, {"type": "Input.Toggle", "id": "agree", "title": "OK"},
                   {"type": "Input.ChoiceSet", "id": "pick", "choices": [{"title": "A", "value": "a"}]}]},
        {"type": "ActionSet", "actions": [
            {"type": "Action.ToggleVisibility", "title": "More", "targetElements": ["more"]}]},
        actions=[
            {"type": "Action.Submit", "title": "Send", "data": {"crier_action": "opt_out"}},
            {"type": "Action.Execute", "title": "Run", "verb": "run"},
            {"type": "Action.ShowCard", "title": "Details", "card": {"type": "AdaptiveCard", "body": [
                {"type": "TextBlock", "text": "Inside"}]}},
        ],
    ))


def test_the_demo_card_passes_though_its_schema_link_is_http():
    validate_template(kind="adaptive_card", text="The new office opens on Monday", card=ANNOUNCEMENT_CARD)


def test_a_problem_inside_a_card_shown_by_a_button_names_its_place():
    problems = card_problems_of(card({"type": "TextBlock", "text": "Hi"}, actions=[
        {"type": "Action.ShowCard", "title": "More", "card": {"type": "AdaptiveCard", "body": [{"type": "Column"}]}}]))

    assert problems[0].startswith("actions[0].card.body[0].type: Column cannot be used here")


def test_a_link_that_cannot_be_parsed_is_a_field_error_not_a_crash():
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi"}],
            "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://[::1"}]}

    with pytest.raises(ValidationError, match="Is not a complete link"):
        validate_template(kind="adaptive_card", text="", card=card)


@pytest.mark.parametrize("url", [
    "https://{{attributes.host}}/login",
    "https://{{attributes.host}}",
    "https://intranet.example.com{{attributes.path}}",
    "https://intranet.example.com.{{attributes.domain}}/x",
    "https://{{first_name}}@intranet.example.com/x",
    "https://intranet.example.com:{{attributes.port}}/x",
])
def test_a_link_whose_host_comes_from_a_placeholder_is_refused_naming_its_place(url):
    problems = card_problems_of(card(
        {"type": "TextBlock", "text": "Hi"},
        actions=[{"type": "Action.OpenUrl", "title": "Go", "url": url}],
    ))

    assert problems[0].startswith("actions[0].url: ")
    assert "host" in problems[0]


def test_a_placeholder_may_fill_a_links_path_query_or_fragment():
    validate_template(kind="adaptive_card", text="", card=card(
        {"type": "Image", "url": "https://photos.example.com/{{external_id}}.png",
         "selectAction": {"type": "Action.OpenUrl", "url": "https://hr.example.com?who={{external_id}}"}},
        actions=[{"type": "Action.OpenUrl", "title": "Go", "url": "https://hr.example.com#{{attributes.anchor}}"}],
    ))


def test_a_markdown_link_whose_host_comes_from_a_placeholder_is_refused_in_a_card_and_in_text():
    problems = card_problems_of(card({"type": "TextBlock", "text": "[Reset]({{attributes.link}}) now"}))
    assert problems[0].startswith("body[0].text: ") and "host" in problems[0]

    with pytest.raises(ValidationError) as raised:
        validate_template(kind="markdown", text="See [your page](https://{{attributes.site}}/me)", card=None)
    assert "host" in raised.value.message_dict["text"][0]

    validate_template(kind="markdown", text="See [your page](https://hr.example.com/{{external_id}})", card=None)
    validate_template(kind="markdown", text="[Write to me](mailto:{{email}})", card=None)


def test_an_image_link_whose_host_comes_from_a_placeholder_is_refused_in_the_simple_fields():
    problems = design_problems({"title": "Hi", "image": "https://{{attributes.cdn}}/a.png",
                                "buttons": [{"label": "Go", "url": "https://{{attributes.host}}/x"}]})

    assert set(problems) == {"image", "buttons[0].url"}
    assert "host" in problems["image"]


HOSTS_FROM_PLACEHOLDERS_IN_TEXT = [
    "[Reset][1]\n\n[1]: https://{{attributes.portal}}/login",
    "[Reset][1]\n\n[1]: {{attributes.link}}",
    "- [Reset][1]\n- [1]: {{attributes.link}}",
    "> [Reset][1]\n>\n> [1]:\n> <{{attributes.link}}>",
    "Portal: https://{{attributes.portal}}/login",
    "Portal: https://intranet.example.com{{attributes.path}}",
    "Portal: www.{{attributes.portal}}.com/login",
    "Portal: //{{attributes.portal}}/login",
    "Go <https://{{attributes.portal}}/login>",
    "Go <{{attributes.link}}>",
    '<a href="https://{{attributes.portal}}/">Reset</a>',
    "<a href='{{attributes.link}}'>Reset</a>",
    "Your site: {{attributes.tenant}}.sharepoint.com/sites/hr",
    "Your site: intranet.{{attributes.tld}}/login",
]


@pytest.mark.parametrize("text", HOSTS_FROM_PLACEHOLDERS_IN_TEXT)
def test_a_host_from_a_placeholder_anywhere_in_markdown_text_is_refused_naming_its_place(text):
    problems = card_problems_of(card({"type": "TextBlock", "text": text},
                                     {"type": "FactSet", "facts": [{"title": "Portal", "value": text}]}))
    assert [problem.split(": ", 1)[0] for problem in problems] == ["body[0].text", "body[1].facts[0].value"]
    assert all("host" in problem for problem in problems)

    with pytest.raises(ValidationError) as raised:
        validate_template(kind="markdown", text=text, card=None)
    assert "host" in raised.value.message_dict["text"][0]

    assert "host" in design_problems({"body": text})["body"]


@pytest.mark.parametrize("text", [
    "Portal: https://hr.example.com/people/{{external_id}}",
    "[Me][1]\n\n[1]: https://hr.example.com/p?id={{external_id}}",
    "Go <https://hr.example.com/#{{external_id}}>",
    '<a href="https://hr.example.com/{{external_id}}">Me</a>',
    "Hi {{first_name}}//{{last_name}}, at 10:30 in {{attributes.room}}. www.example.com {{department}}",
    "[Write to me](mailto:{{email}})",
    "Write to {{first_name}}.{{last_name}}@example.com or hr@{{attributes.domain}}.",
    "Hi {{first_name}}. Welcome to version {{attributes.version}}.2, {{department}}.",
])
def test_a_placeholder_after_a_links_written_host_is_accepted_in_markdown_text(text):
    validate_template(kind="markdown", text=text, card=None)
    validate_template(kind="adaptive_card", text="", card=card({"type": "TextBlock", "text": text}))
