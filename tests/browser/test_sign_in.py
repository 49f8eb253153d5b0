"""Staff sign in the way they would at work, in a real browser: the admin's login page, the emulator's Entra ID
sign-in page over HTTPS, and back to the admin; and the personal tab's page, which must load its Teams library
within the Content-Security-Policy."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]


def test_a_comms_author_signs_in_with_their_work_account_and_reaches_the_admin(
        chromium, live_server, teams, settings, transactional_db):
    settings.STAFF_SIGN_IN = True
    settings.STAFF_SIGN_IN_AUTHORITY = teams.authority
    teams.client.graph_users([{"id": str(uuid.uuid4()), "displayName": "Casey Writer", "userPrincipalName":
                               "casey@contoso.com", "mail": "casey@contoso.com", "appRoles": ["Crier.Author"]}])
    teams.client.graph_config(sign_in_redirect_uris=[f"{live_server.url}/admin/sign-in/entra/callback/"])
    context = chromium.new_context(base_url=live_server.url, ignore_https_errors=True)  # the emulator's own CA
    refused: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto("/admin/campaigns/campaign/")
        page.click("#sign-in-entra")
        page.wait_for_url(f"{teams.authority}/**")  # Entra ID's sign-in page, here the emulator's
        page.fill("input[name=login]", "casey@contoso.com")
        page.locator("form button, form input[type=submit]").first.click()

        page.wait_for_url(f"{live_server.url}/admin/campaigns/campaign/")
        expect(page.locator("#user-tools")).to_contain_text("Welcome, Casey")
        expect(page.locator("#content h1")).to_contain_text("campaign")
        assert refused == []
    finally:
        context.close()


def test_the_tab_page_loads_the_teams_library_and_outside_teams_signs_in_in_the_same_window(
        chromium, live_server, settings, transactional_db):
    settings.STAFF_SIGN_IN = settings.TEAMS_TAB = True
    context = chromium.new_context(base_url=live_server.url)
    problems: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto("/tab/")
        assert page.evaluate("typeof window.microsoftTeams.authentication.authenticate") == "function"
        expect(page.locator("#tab-sign-in")).to_have_attribute("href", "/admin/sign-in/entra/?next=/admin/")
        # The library asks Microsoft's CDN for its list of Teams' sites; the policy refuses (nothing Crier serves
        # loads from a CDN) and it uses the list it carries. Nothing else is refused.
        assert [p for p in problems if "res.cdn.office.net/teams-js/validDomains" not in p] == []
    finally:
        context.close()
