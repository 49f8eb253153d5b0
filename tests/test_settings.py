"""Configuration comes from the environment; production refuses to start half-configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from settings.env import ConfigurationError, env_bool, env_str

ROOT = Path(__file__).resolve().parents[1]


def load_settings(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "SECRET_KEY", "CRIER_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "-c", "import settings.settings as s; print(s.BOT_AUTHORITY, s.DEBUG)"],
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
