"""Failed admin logins are throttled per account and address, and per address (django-axes), with a clear message."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "the-right-password-42"


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("morgan", "morgan@example.com", PASSWORD, is_staff=True)


def log_in(client, username, password, address="198.51.100.7", **headers):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address, **headers)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_right_password_is_refused_with_a_message_after_too_many_wrong_ones(client, staff, settings):
    answers = [log_in(client, "morgan", "wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form with its error, then the lockout

    response = log_in(client, "morgan", PASSWORD)

    assert response.status_code == 429
    assert not logged_in(client)
    text = response.content.decode()
    assert "Too many failed logins" in text
    assert "15 minutes" in text


def test_guesses_from_other_addresses_cannot_lock_an_admin_out(client, staff, settings):
    # Whoever knows a username could otherwise keep its owner out for ever, from a few addresses.
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "morgan", "wrong", address=f"203.0.113.{n + 1}")

    assert log_in(client, "morgan", PASSWORD, address="192.0.2.200").status_code == 302
    assert logged_in(client)


def test_an_account_is_locked_for_the_address_that_guessed_it(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "morgan", "wrong", address="203.0.113.1")

    assert log_in(client, "morgan", PASSWORD, address="203.0.113.1").status_code == 429
    assert not logged_in(client)
    assert log_in(client, "morgan", PASSWORD, address="192.0.2.200").status_code == 302


def test_an_address_is_locked_whatever_accounts_it_guesses(client, staff, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{n}", "wrong")

    assert log_in(client, "morgan", PASSWORD).status_code == 429
    assert log_in(client, "morgan", PASSWORD, address="192.0.2.99").status_code == 302
    assert logged_in(client)


def test_a_successful_login_forgets_the_failures_before_it(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "morgan", "wrong")
    assert log_in(client, "morgan", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "morgan", "wrong")

    assert log_in(client, "morgan", PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_lockout_ends_after_the_cool_off(client, staff, settings, monkeypatch):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "morgan", "wrong")
    assert log_in(client, "morgan", PASSWORD).status_code == 429

    settings.AXES_COOLOFF_TIME = timedelta(seconds=0)

    assert log_in(client, "morgan", PASSWORD).status_code == 302


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(client, staff, settings):
    settings.NUM_PROXIES = 1
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{n}", "wrong", address="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.66")

    # Another client behind the same proxy is not locked out; the guesser is, even when it forges an address.
    response = log_in(client, "morgan", PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.5")
    assert response.status_code == 302
    client.logout()
    forged = log_in(client, "morgan", PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.5, 198.51.100.66")
    assert forged.status_code == 429


def test_a_forwarded_address_that_is_not_one_is_no_server_error(client, staff, settings):
    settings.NUM_PROXIES = 1
    response = log_in(client, "morgan", "wrong", address="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-address")
    assert response.status_code == 200
