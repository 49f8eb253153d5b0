"""Rendering: what a person's HR data becomes inside a message. Values land in markdown as text
(never as a link, list or heading), in links percent-encoded, and nowhere else as markup."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns.rendering import compile_message, markdown_escape
from campaigns.template_checks import validate_template

PHISHING = "[Reset your password](https://evil.example/login)"


def person(**fields) -> SimpleNamespace:
    values = {name: "" for name in ("first_name", "last_name", "job_title", "department", "external_id")}
    values["attributes"] = {}
    values.update(fields)
    return SimpleNamespace(**values)


def card(*body, **extra) -> dict:
    return {"type": "AdaptiveCard", "version": "1.5", "body": list(body), **extra}


def rendered_card(template_card: dict, recipient: SimpleNamespace) -> dict:
    activity = json.loads(compile_message(kind="adaptive_card", text="", card=template_card).render(recipient))
    return activity["attachments"][0]["content"]


def test_markdown_escape_leaves_no_link_list_heading_or_emphasis_to_markdown():
    assert markdown_escape(PHISHING) == r"\[Reset your password\](https\:/\/evil\.example/login)"
    assert markdown_escape("**bold** _it_ `code` # > ! | ~ + \\") == (
        r"\*\*bold\*\* \_it\_ \`code\` # > ! | \~ + \\"
    )
    assert markdown_escape("<https://evil.example>") == r"\<https\:/\/evil\.example>"
    assert markdown_escape("# Boss\n> quote\n+ more") == "\\# Boss\n\\> quote\n\\+ more"


def test_markdown_escape_leaves_names_and_titles_as_they_are_written():
    assert markdown_escape("Jean-Pierre O'Neil, Sales (EMEA) #1!") == "Jean-Pierre O'Neil, Sales (EMEA) #1!"


def test_markdown_escape_keeps_a_newline_from_starting_a_list_heading_or_code_block():
    assert markdown_escape("Engineer\n- Reset: here\n1. one\n   2) two\n===\n    code") == (
        "Engineer\n\\- Reset: here\n1\\. one\n2\\) two\n\\===\ncode"
    )
    assert markdown_escape("12. Floor") == r"12\. Floor"


def test_a_job_title_that_is_a_markdown_link_reaches_a_text_block_as_text():
    content = rendered_card(card({"type": "TextBlock", "text": "Your role: {{job_title}}"}), person(job_title=PHISHING))

    assert content["body"][0]["text"] == r"Your role: \[Reset your password\](https\:/\/evil\.example/login)"


def test_an_attribute_is_escaped_in_fact_titles_and_values():
    template = card({"type": "FactSet", "facts": [{"title": "{{attributes.label}}", "value": "{{attributes.site}}"}]})

    content = rendered_card(template, person(attributes={"label": "*Site*", "site": "[x](https://evil.example)"}))

    assert content["body"][0]["facts"] == [{"title": r"\*Site\*", "value": r"\[x\](https\:/\/evil\.example)"}]


def test_a_markdown_message_escapes_values_but_not_the_template_or_its_fallback():
    compiled = compile_message(kind="markdown", text="**Hi** {{first_name}}, {{department|_team_}}", card=None)

    activity = json.loads(compiled.render(person(first_name="[Ann](https://evil.example)")))

    assert activity["text"] == r"**Hi** \[Ann\](https\:/\/evil\.example), _team_"


def test_values_in_links_are_percent_encoded():
    template = card(
        {"type": "Image", "url": "https://photos.example.com/{{external_id}}.png",
         "selectAction": {"type": "Action.OpenUrl", "url": "https://hr.example.com/p?who={{attributes.who}}"}},
        actions=[{"type": "Action.OpenUrl", "title": "Desk", "url": "https://desk.example.com/{{department}}"}],
    )

    content = rendered_card(template, person(external_id="a/../b c", department="R&D #2",
                                             attributes={"who": "x&admin=1"}))

    assert content["body"][0]["url"] == "https://photos.example.com/a%2F..%2Fb%20c.png"
    assert content["body"][0]["selectAction"]["url"] == "https://hr.example.com/p?who=x%26admin%3D1"
    assert content["actions"][0]["url"] == "https://desk.example.com/R%26D%20%232"


def test_a_value_in_a_markdown_link_target_is_percent_encoded_not_escaped():
    template = card(
        {"type": "TextBlock", "text": "[Your desk](https://desk.example.com/{{external_id}}) for {{first_name}}"})

    content = rendered_card(template, person(external_id="a b)", first_name="Zoé_1"))

    assert content["body"][0]["text"] == r"[Your desk](https://desk.example.com/a%20b%29) for Zoé\_1"


def test_every_value_in_a_markdown_link_target_is_percent_encoded():
    template = card(
        {"type": "TextBlock", "text": "[Desk](https://desk.example.com/{{department|all}}/{{external_id}})"})

    content = rendered_card(template, person(department="R&D", external_id="a_b"))

    assert content["body"][0]["text"] == "[Desk](https://desk.example.com/R%26D/a_b)"


def test_plain_text_places_keep_the_value_as_it_is():
    template = card(
        {"type": "Image", "url": "https://example.com/a.png", "altText": "{{first_name}}"},
        {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "{{first_name}}"}]},
        actions=[{"type": "Action.OpenUrl", "title": "{{first_name}}", "url": "https://example.com"}],
    )

    content = rendered_card(template, person(first_name="Jean-Luc_O'Neil"))

    assert content["body"][0]["altText"] == "Jean-Luc_O'Neil"
    assert content["body"][1]["inlines"][0]["text"] == "Jean-Luc_O'Neil"
    assert content["actions"][0]["title"] == "Jean-Luc_O'Neil"


def test_a_value_cannot_inject_json_in_any_place():
    template = card({"type": "TextBlock", "text": "{{first_name}}"}, actions=[
        {"type": "Action.OpenUrl", "title": "{{first_name}}", "url": "https://e.example/{{first_name}}"}])

    content = rendered_card(template, person(first_name='"}], "x": {"'))

    assert content["body"] == [{"type": "TextBlock", "text": r'"}\], "x": {"'}]
    assert content["actions"][0]["title"] == '"}], "x": {"'


def test_a_template_saved_before_hosts_were_checked_cannot_send_a_link_to_a_host_from_hr_data():
    # compile_message does not validate: a template stored before the check still goes through it
    template = card(
        {"type": "TextBlock", "text": "[Reset]({{attributes.link}}) or [here](https://{{attributes.host}}/x)"},
        actions=[{"type": "Action.OpenUrl", "title": "Go",
                  "url": "https://{{attributes.host|intranet.example.com}}/x"}],
    )

    content = rendered_card(template, person(attributes={"link": "https://evil.example/login", "host": "evil.example"}))

    assert "evil" not in json.dumps(content)
    assert content["actions"][0]["url"] == "https://intranet.example.com/x"  # the template's own fallback


def test_markdown_escape_treats_a_carriage_return_as_a_new_line_and_keeps_decimals_plain():
    assert markdown_escape("a\r1. b\r\n    c") == "a\n1\\. b\nc"
    assert markdown_escape("    7.5 days") == "7.5 days"


def test_a_huge_template_full_of_link_placeholders_is_judged_in_linear_time():
    text = "[a](https://x.example/" + "{{first_name}}" * 40_000 + ")"
    url = "https://x.example/" + "{{first_name}}" * 40_000
    started = time.monotonic()
    for kind, candidate in (("markdown", {"text": text, "card": None}),
                            ("adaptive_card", {"text": "", "card": card({"type": "Image", "url": url})})):
        with pytest.raises(ValidationError, match="bytes"):  # too big for Teams, said quickly
            validate_template(kind=kind, **candidate)

    assert time.monotonic() - started < 5


# --- Bare links: Teams and the admin's preview (markdown-it with linkify) make links of them ----------

BARE_LINKS = [
    "Reset your password at https://evil.example/login",
    "Reset it at HTTPS://EVIL.COM/login now",
    "see //evil.com/login",
    "Go to www.evil.com/login",
    "Portal: evil.com/login",
    "Write to admin@evil.example",
    "first.last+tag@evil.co.uk",
    "mailto:admin@evil.com",
    "ftp://evil.com/file",
]
MARKDOWN_IT = Path(settings.BASE_DIR) / "node_modules" / "markdown-it" / "dist" / "browser" / "markdown-it.umd.min.js"


def rendered_by_markdown_it(texts: list[str]) -> list[dict[str, str]]:
    """Each text as HTML from the admin's markdown-it, as configured there and with fuzzy links on."""
    program = (
        f"const markdownit = require({json.dumps(str(MARKDOWN_IT))});"
        "const preview = markdownit({html: false, linkify: true});"
        "const fuzzy = markdownit({html: false, linkify: true});"
        "fuzzy.linkify.set({fuzzyLink: true, fuzzyEmail: true});"
        f"process.stdout.write(JSON.stringify({json.dumps(texts)}.map("
        "text => ({preview: preview.render(text), fuzzy: fuzzy.render(text)}))));"
    )
    built = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(built.stdout)


def test_markdown_escape_breaks_a_bare_url_so_it_is_not_a_link():
    escaped = markdown_escape("Reset your password at https://evil.example/login")

    assert "https://" not in escaped and "evil.example" not in escaped
    assert escaped.startswith("Reset your password at https")


def test_markdown_escape_breaks_a_www_address_and_a_bare_domain():
    assert "www." not in markdown_escape("Go to www.evil.com/login")
    assert "evil.com" not in markdown_escape("Portal: evil.com/login")


def test_markdown_escape_breaks_an_email_address_so_it_is_not_a_mailto_link():
    escaped = markdown_escape("Write to admin@evil.example")

    assert "admin@evil" not in escaped and "evil.example" not in escaped


def test_markdown_escape_still_leaves_ordinary_names_and_titles_alone():
    for value in ("Jean-Pierre", "Sales (EMEA)", "Head of R&D, 3rd floor", "Meeting at 10:30", "Sr. Engineer",
                  "Note: 7.5 days"):
        assert markdown_escape(value) == value


@pytest.mark.skipif(shutil.which("node") is None or not MARKDOWN_IT.exists(), reason="needs Node.js and markdown-it")
def test_bare_urls_and_addresses_in_hr_data_are_no_links_for_markdown_it():
    assert all("<a " in html for html in rendered_by_markdown_it(BARE_LINKS)[0].values())  # the check can fail

    for value, html in zip(BARE_LINKS, rendered_by_markdown_it([markdown_escape(v) for v in BARE_LINKS]), strict=True):
        assert "<a " not in html["preview"] and "<a " not in html["fuzzy"], (value, html)
        assert html["preview"] == f"<p>{value.replace('&', '&amp;')}</p>\n"  # shown as written


@pytest.mark.skipif(shutil.which("node") is None or not MARKDOWN_IT.exists(), reason="needs Node.js and markdown-it")
def test_a_job_title_that_is_a_bare_url_reaches_a_text_block_as_text():
    content = rendered_card(card({"type": "TextBlock", "text": "Your role: {{job_title}}"}),
                            person(job_title="Reset your password at https://evil.example/login"))

    [html] = rendered_by_markdown_it([content["body"][0]["text"]])
    assert html["preview"] == "<p>Your role: Reset your password at https://evil.example/login</p>\n"


@pytest.mark.parametrize("text", [
    "[Reset][1]\n\n[1]: https://{{attributes.portal}}/login",
    "[Reset][1]\n\n[1]: {{attributes.link}}",
    "- [Reset][1]\n- [1]: {{attributes.link}}",
    "Portal: https://{{attributes.portal}}/login",
    "Portal: www.{{attributes.portal}}/login",
    "Go <https://{{attributes.portal}}/login>",
    "Go <{{attributes.link}}>",
    '<a href="https://{{attributes.portal}}/">Reset</a>',
    "Your site: {{attributes.portal}}.sharepoint.com/sites/hr",
])
def test_a_template_saved_before_cannot_take_a_links_host_from_hr_data_anywhere_in_markdown(text):
    hostile = person(attributes={"portal": "evil.example", "link": "https://evil.example/login"})

    content = rendered_card(card({"type": "TextBlock", "text": text}), hostile)
    message = json.loads(compile_message(kind="markdown", text=text, card=None).render(hostile))

    assert "evil" not in content["body"][0]["text"] and "evil" not in message["text"]


def test_a_value_in_a_bare_links_path_is_percent_encoded():
    template = card({"type": "TextBlock", "text": "Yours: https://hr.example.com/p/{{external_id}} {{first_name}}"})

    content = rendered_card(template, person(external_id="a b/c", first_name="Zoé_1"))

    assert content["body"][0]["text"] == r"Yours: https://hr.example.com/p/a%20b%2Fc Zoé\_1"


@pytest.mark.skipif(shutil.which("node") is None or not MARKDOWN_IT.exists(), reason="needs Node.js and markdown-it")
def test_values_side_by_side_or_next_to_the_templates_text_make_no_link_together():
    template = card({"type": "TextBlock", "text": "{{attributes.a}}{{attributes.b}} see /{{attributes.c}}"})
    people = [person(attributes=values) for values in (
        {"a": "https:", "b": "//evil.com/login", "c": "/evil.com"},
        {"a": "evil", "b": ".com/login", "c": "/evil.com/login"},
        {"a": "evil.", "b": "com", "c": ""},
        {"a": "admin", "b": "@evil.com", "c": ""},
    )]

    texts = [rendered_card(template, who)["body"][0]["text"] for who in people]

    for text, html in zip(texts, rendered_by_markdown_it(texts), strict=True):
        assert "<a " not in html["preview"] and "<a " not in html["fuzzy"], (text, html)
