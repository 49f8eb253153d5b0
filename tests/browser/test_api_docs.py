"""The API docs page draws its operations in the browser from Crier's own files, under the
Content-Security-Policy, with no request leaving for another host."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_docs_page_draws_the_api_without_another_host(transactional_db, open_browser, live_server):
    browser = open_browser()
    page = browser.page
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))

    page.goto("/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Crier API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert hosts == {urlsplit(live_server.url).netloc}
