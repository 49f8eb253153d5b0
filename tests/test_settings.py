"""Configuration comes from the environment; production refuses to start half-configured."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from settings.env import ConfigurationError, env_bool, env_str

ROOT = Path(__file__).resolve().parents[1]


def load_settings(show="s.BOT_AUTHORITY, s.DEBUG", **env):
    """Loads the settings in a process of their own with only ``env`` of Crier's variables, printing ``show``."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BOT_", "SECRET_KEY", "CRIER_", "DJANGO_", "GRAPH_"))}
    return subprocess.run(
        [sys.executable, "-c", f"import settings.settings as s; print({show})"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = load_settings(BOT_APP_PASSWORD="x")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_the_bot_password():
    result = load_settings(SECRET_KEY="k")
    assert result.returncode != 0 and "BOT_APP_PASSWORD must be set" in result.stderr


def test_production_starts_with_its_secrets_and_debug_off(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    result = load_settings(SECRET_KEY="k", BOT_APP_PASSWORD_FILE=str(secret_file), BOT_TENANT_ID="t-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://login.microsoftonline.com/t-1", "False"]


def test_a_multi_tenant_bot_uses_the_botframework_authority():
    result = load_settings(SECRET_KEY="k", BOT_APP_PASSWORD="p")
    assert result.stdout.split()[0] == "https://login.microsoftonline.com/botframework.com"


def test_secrets_can_be_read_from_a_file(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    monkeypatch.delenv("CRIER_TEST_SECRET", raising=False)
    monkeypatch.setenv("CRIER_TEST_SECRET_FILE", str(path))
    assert env_str("CRIER_TEST_SECRET") == "s3cret"


def test_a_malformed_boolean_is_a_readable_error(monkeypatch):
    monkeypatch.setenv("CRIER_TEST_FLAG", "maybe")
    with pytest.raises(ConfigurationError, match="CRIER_TEST_FLAG"):
        env_bool("CRIER_TEST_FLAG")


def production_env(**env):
    ours = ("BOT_", "SECRET_KEY", "CRIER_", "DJANGO_", "SECURE_", "DEBUG", "SESSION_", "CSRF_", "NUM_PROXIES")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {**clean, "SECRET_KEY": "k" * 20 + secrets.token_urlsafe(40), "BOT_APP_PASSWORD": "p",
            "DJANGO_SETTINGS_MODULE": "settings.settings", **env}


def production_setting(expression: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"import settings.settings as s; print(repr({expression}))"],
        cwd=ROOT, env=production_env(**env), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_settings_pass_the_deployment_checks_without_a_warning():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_behind_its_tls_proxy_counts_that_proxy_by_default():
    # Trusting X-Forwarded-Proto means a proxy is in front: counting none would make every caller share its
    # address, and one stranger's wrong keys or passwords would lock everyone out.
    assert production_setting("s.NUM_PROXIES") == "1"
    assert production_setting("s.NUM_PROXIES", SECURE_PROXY_SSL_HEADER="") == "0"
    assert production_setting("s.NUM_PROXIES", NUM_PROXIES="2") == "2"


def test_check_deploy_warns_when_a_proxy_header_is_trusted_but_no_proxy_is_counted():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=production_env(NUM_PROXIES="0"), capture_output=True, text=True, timeout=120,
    )
    assert "crier.W001" in result.stdout + result.stderr and "NUM_PROXIES" in result.stdout + result.stderr


def test_production_sends_hsts_and_redirects_to_https_by_default():
    assert production_setting("(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)") == (
        "(31536000, True, True)"
    )
    assert production_setting("s.SECURE_SSL_REDIRECT") == "True"
    assert production_setting("s.SECURE_PROXY_SSL_HEADER") == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_hsts_https_redirect_and_the_proxy_header_are_configurable():
    assert production_setting(
        "(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT)",
        SECURE_HSTS_SECONDS="3600", SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="false",
        SECURE_SSL_REDIRECT="false",
    ) == "(3600, False, False, False)"
    assert production_setting("s.SECURE_PROXY_SSL_HEADER", SECURE_PROXY_SSL_HEADER="X-Forwarded-Scheme") == (
        "('HTTP_X_FORWARDED_SCHEME', 'https')"
    )
    assert production_setting("s.SECURE_PROXY_SSL_HEADER", SECURE_PROXY_SSL_HEADER="") == "None"


def test_the_probes_are_answered_over_plain_http_behind_the_redirect():
    exempt = production_setting("s.SECURE_REDIRECT_EXEMPT")
    assert all(probe in exempt for probe in ("livez", "readyz", "healthz"))


def test_outside_production_there_is_no_hsts_nor_redirect():
    assert production_setting("(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT)", CRIER_ENV="development") == "(0, False)"


def graph_settings(**env):
    result = load_settings("s.GRAPH_AUTHORITY or '-', s.GRAPH_TOKEN_SCOPE", SECRET_KEY="k", BOT_APP_PASSWORD="p", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_graph_tokens_come_from_the_organisations_tenant_on_the_bots_authority_host():
    assert graph_settings(BOT_TENANT_ID="t-1") == ["https://login.microsoftonline.com/t-1",
                                                   "https://graph.microsoft.com/.default"]
    assert graph_settings(BOT_TENANT_ID="t-1", BOT_AUTHORITY="https://login.microsoftonline.us/t-1",
                          GRAPH_BASE_URL="https://graph.microsoft.us/v1.0") == [
        "https://login.microsoftonline.us/t-1", "https://graph.microsoft.us/.default"]
    assert graph_settings()[0] == "-"  # a multi-tenant bot names its organisation's tenant itself


def test_switching_local_passwords_off_needs_staff_sign_in_and_then_no_backend_checks_a_password():
    refused = load_settings(SECRET_KEY="k", BOT_APP_PASSWORD="p", LOCAL_PASSWORDS="false")
    assert refused.returncode != 0 and "LOCAL_PASSWORDS=false needs STAFF_SIGN_IN=true" in refused.stderr

    started = load_settings(show="s.AUTHENTICATION_BACKENDS", SECRET_KEY="k", BOT_APP_PASSWORD="p",
                            LOCAL_PASSWORDS="false", STAFF_SIGN_IN="true")
    assert started.returncode == 0, started.stderr
    assert "ModelBackend" not in started.stdout and "campaigns.sign_in.EntraBackend" in started.stdout


def test_in_production_the_teams_tab_sends_the_session_cookies_into_teams_frames_and_is_on_with_staff_sign_in():
    # unset, Django's default: Lax
    shown = ("s.TEAMS_TAB, getattr(s, 'SESSION_COOKIE_SAMESITE', 'Lax'), getattr(s, 'CSRF_COOKIE_SAMESITE', 'Lax')")
    base = {"SECRET_KEY": "k", "BOT_APP_PASSWORD": "p"}
    assert load_settings(show=shown, **base).stdout.split() == ["False", "Lax", "Lax"]
    assert load_settings(show=shown, **base, STAFF_SIGN_IN="true").stdout.split() == ["True", "None", "None"]
    assert load_settings(show=shown, **base, STAFF_SIGN_IN="true", TEAMS_TAB="false").stdout.split() == [
        "False", "Lax", "Lax"]
    insecure = load_settings(show=shown, **base, TEAMS_TAB="true", SESSION_COOKIE_SECURE="false")
    assert insecure.returncode != 0 and "TEAMS_TAB needs SESSION_COOKIE_SECURE" in insecure.stderr


def test_a_pace_of_zero_is_refused_at_start():
    result = load_settings(SECRET_KEY="k", BOT_APP_PASSWORD="p", GRAPH_NOTICES_PER_SECOND="0")
    assert result.returncode != 0 and "must be above 0" in result.stderr
