"""The admin in a real browser: Debian's Chromium, headless, driven by Playwright, against a live
server, the Teams emulator and real Celery worker and beat processes.

Set ``CRIER_SCREENSHOTS`` to a folder (``make screenshots`` uses docs/screenshots) to keep a picture
of each main page as the tests reach it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from playwright.sync_api import Page, sync_playwright

from tests.e2e.processes import running_engine

# Playwright's synchronous API keeps an event loop in the test's thread; the ORM calls the tests make
# between browser steps are ordinary synchronous code all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "a-long-test-password"


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is not installed: `make test` installs Debian's package (scripts/browser.sh).")
    return path


@pytest.fixture(scope="session")
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def engine(teams, live_server, redis_client, tmp_path):
    with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path) as processes:
        yield processes


@pytest.fixture
def staff(transactional_db):
    """An author and an approver, in the groups the roles migration creates."""
    from importlib import import_module

    roles = import_module("campaigns.roles")
    groups = roles.roles_ensure(apps)
    people = {}
    for username, group in (("casey", roles.AUTHORS), ("avery", roles.APPROVERS)):
        user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
        user.groups.add(groups[group])
        people[username] = user
    return people


class Browser:
    """One signed-in staff member's browser tab, with the helpers the tests share."""

    def __init__(self, chromium, base_url: str, screenshots: Path | None) -> None:
        self.context = chromium.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page: Page = self.context.new_page()
        self.screenshots = screenshots
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # What the Content-Security-Policy refused: Chromium reports each refusal on the console.
        self.page.on("console", self._note_refusal)

    def _note_refusal(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)

    def sign_in(self, username: str) -> Page:
        self.page.goto("/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("input[type=submit]")
        self.page.wait_for_selector("#user-tools")
        return self.page

    def shot(self, name: str) -> None:
        if self.screenshots is not None:
            self.screenshots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.screenshots / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(chromium, live_server):
    folder = os.environ.get("CRIER_SCREENSHOTS")
    opened: list[Browser] = []

    def open_one() -> Browser:
        browser = Browser(chromium, live_server.url, Path(folder) if folder else None)
        opened.append(browser)
        return browser

    yield open_one
    for browser in opened:
        errors = browser.errors
        browser.close()
        assert not errors, f"JavaScript errors or refusals of the Content-Security-Policy in the page: {errors}"
