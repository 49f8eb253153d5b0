"""Guessing API keys is throttled per address: past the limit, 429 in the API's error shape with Retry-After."""

import pytest
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def client_from(address: str, key: str, **extra) -> APIClient:
    client = APIClient(REMOTE_ADDR=address, **extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_invalid_keys_beyond_the_limit_get_429_while_a_valid_key_elsewhere_works(settings):
    settings.API_KEY_FAILURE_LIMIT = 5
    _, secret = api_key_create(name="hr-sync")
    guesser = client_from("198.51.100.7", "crier_guess")

    answers = [guesser.get("/api/v1/campaigns/").status_code for _ in range(5)]
    over = guesser.get("/api/v1/campaigns/")

    assert answers == [401] * 5
    assert over.status_code == 429
    assert error_of(over)["code"] == "throttled"
    assert "Too many invalid API keys" in error_of(over)["message"]
    assert 0 < int(over["Retry-After"]) <= settings.API_KEY_FAILURE_WINDOW_SECONDS
    assert client_from("192.0.2.10", secret).get("/api/v1/campaigns/").status_code == 200


def test_a_valid_key_is_never_refused_by_the_invalid_key_throttle(settings):
    # Behind a proxy that is not counted, every caller shares its address: strangers' wrong keys must not
    # lock the HR system out. Keys are 256 bits of randomness: a valid one cannot be guessed either way.
    settings.API_KEY_FAILURE_LIMIT = 3
    _, secret = api_key_create(name="hr-sync")
    for _ in range(5):
        client_from("10.0.0.2", "crier_guess").get("/api/v1/campaigns/")

    assert client_from("10.0.0.2", "crier_guess").get("/api/v1/campaigns/").status_code == 429
    assert client_from("10.0.0.2", secret).get("/api/v1/campaigns/").status_code == 200


def test_invalid_keys_from_one_ipv6_64_count_together(settings):
    settings.API_KEY_FAILURE_LIMIT = 3
    for host in range(1, 4):  # one /64 holds 2^64 addresses: each alone would never reach the limit
        client_from(f"2001:db8:1:2::{host}", "crier_guess").get("/api/v1/campaigns/")

    assert client_from("2001:db8:1:2:ffff::9", "crier_guess").get("/api/v1/campaigns/").status_code == 429
    assert client_from("2001:db8:1:3::1", "crier_guess").get("/api/v1/campaigns/").status_code == 401


def test_the_address_is_logged_once_when_it_reaches_the_limit(settings, caplog):
    settings.API_KEY_FAILURE_LIMIT = 3
    guesser = client_from("198.51.100.7", "crier_guess")
    for _ in range(6):
        guesser.get("/api/v1/campaigns/")

    warnings = [record.getMessage() for record in caplog.records if record.name == "campaigns.api.auth"]
    assert warnings == ["3 invalid API keys from 198.51.100.7 within 60 s: its calls are refused until the window ends"]
    assert "crier_guess" not in caplog.text


def test_valid_keys_do_not_count_toward_the_limit(settings):
    settings.API_KEY_FAILURE_LIMIT = 3
    _, secret = api_key_create(name="hr-sync")
    client = client_from("198.51.100.7", secret)

    assert {client.get("/api/v1/campaigns/").status_code for _ in range(6)} == {200}


def test_behind_a_proxy_invalid_keys_count_per_forwarded_address(settings):
    settings.API_KEY_FAILURE_LIMIT = 2
    settings.NUM_PROXIES = 1
    _, secret = api_key_create(name="hr-sync")
    for _ in range(3):
        client_from("10.0.0.2", "crier_guess", HTTP_X_FORWARDED_FOR="198.51.100.7").get("/api/v1/campaigns/")

    assert client_from("10.0.0.2", "crier_guess", HTTP_X_FORWARDED_FOR="192.0.2.10").get("/api/v1/campaigns/").status_code == 401
    assert client_from("10.0.0.2", "crier_guess", HTTP_X_FORWARDED_FOR="198.51.100.7").get("/api/v1/campaigns/").status_code == 429
    assert client_from("10.0.0.2", secret, HTTP_X_FORWARDED_FOR="198.51.100.7").get("/api/v1/campaigns/").status_code == 200
