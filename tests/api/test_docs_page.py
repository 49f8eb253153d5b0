"""The API docs page works without internet: its assets are Crier's own static files, pinned."""

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.django_db
def test_the_docs_page_names_no_external_host(client):
    html = client.get("/api/docs/").content.decode()
    urls = asset_urls(html)
    assert urls, html
    assert all(not urlsplit(url).netloc and not url.startswith("//") for url in urls), urls
    assert "@latest" not in html and "cdn" not in html.lower()


@pytest.mark.django_db
def test_the_docs_page_has_no_inline_script(client):
    html = client.get("/api/docs/").content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []


@pytest.mark.django_db
def test_every_asset_the_docs_page_names_is_served(client):
    html = client.get("/api/docs/").content.decode()
    urls = asset_urls(html)
    assert any(urlsplit(url).path.startswith("/static/") for url in urls), urls  # the loop checks something
    for url in urls:
        path = urlsplit(url).path
        if path.startswith("/static/"):
            assert finders.find(path.removeprefix("/static/")), f"{path} is not a static file"
        else:
            response = client.get(url)
            assert response.status_code == 200, url
            assert response["Content-Type"].startswith("application/javascript"), url
