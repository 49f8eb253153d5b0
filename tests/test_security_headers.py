"""The admin and the docs page are served with a Content-Security-Policy that allows only Crier's own
scripts, and with the other headers browsers act on."""

import re
from pathlib import Path

import pytest
from django.urls import reverse


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/login/", "/api/docs/", "/tab/"])
def test_pages_allow_only_their_own_scripts(client, url, settings):
    settings.TEAMS_TAB = True
    response = client.get(url)
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]


@pytest.mark.django_db
def test_the_admin_pages_have_no_inline_script(admin_client):
    for url in ("/admin/", reverse("admin:campaigns_campaign_add"), reverse("admin:campaigns_messagetemplate_add")):
        html = admin_client.get(url).content.decode()
        # Data blocks (json_script) are not run, so the policy does not concern them.
        scripts = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", html)
        assert scripts == [], url
        assert not re.search(r"\son[a-z]+=\"", html), url


def test_no_template_of_crier_runs_inline_script():
    """Other engineers' pages must keep to the policy too: scripts in files, data in json_script blocks."""
    root = Path(__file__).resolve().parents[1]
    templates = [path for app in ("campaigns", "delivery", "bots") for path in (root / app).rglob("templates/**/*.html")]
    assert templates
    for path in templates:
        html = path.read_text()
        assert not re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "javascript:" not in html, path


@pytest.mark.django_db
def test_only_teams_may_frame_the_tab_and_the_admin_and_nobody_frames_anything_else(client, settings):
    settings.TEAMS_TAB = True
    teams = ["'self'", *settings.TEAMS_FRAME_ANCESTORS]
    for url in ("/admin/login/", "/tab/"):
        response = client.get(url)
        assert directives(response)["frame-ancestors"] == teams, url
        assert "X-Frame-Options" not in response, url  # it cannot name sites; the policy above does
    for url in ("/api/docs/", "/api/v1/campaigns/"):
        response = client.get(url)
        assert directives(response)["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY", url
    assert "https://teams.microsoft.com" in teams and not any(site in ("*", "https:", "'unsafe-inline'") for site in teams)

    settings.TEAMS_TAB = False
    response = client.get("/admin/login/")
    assert directives(response)["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY"
    assert client.get("/tab/").status_code == 404


@pytest.mark.django_db
def test_pages_carry_the_browser_security_headers(client):
    response = client.get("/admin/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    permissions = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in permissions


@pytest.fixture
def production_https(settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


@pytest.mark.django_db
def test_https_answers_carry_hsts(client, production_https):
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_but_the_probes_are_answered(client, production_https):
    response = client.get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/login/"
    for probe in ("/livez", "/readyz", "/healthz"):
        assert client.get(probe).status_code == 200, probe
