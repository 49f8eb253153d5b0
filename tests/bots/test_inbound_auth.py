"""Token checks on activities, with a key pair made here (the emulator covers the happy path)."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from bots.auth import InboundAuthError, signing_keys, validate_inbound

SERVICE_URL = "https://smba.trafficmanager.net/emea/"


@pytest.fixture
def key():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": "test-key", "use": "sig", "endorsements": ["msteams"]})
    signing_keys._keys = {"test-key": jwk}
    signing_keys._fetched_at = time.monotonic()
    yield private
    signing_keys.clear()


def token(private, **overrides):
    now = int(time.time())
    claims = {"iss": settings.BOT_TOKEN_ISSUER, "aud": settings.BOT_APP_ID, "serviceurl": SERVICE_URL,
              "nbf": now - 10, "iat": now - 10, "exp": now + 3600}
    claims.update(overrides)
    return "Bearer " + jwt.encode(claims, private, algorithm="RS256", headers={"kid": "test-key"})


ACTIVITY = {"type": "message", "channelId": "msteams", "serviceUrl": SERVICE_URL}


def test_a_valid_token_is_accepted(key):
    assert validate_inbound(token(key), ACTIVITY)["aud"] == settings.BOT_APP_ID


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "someone-else"}, {"iss": "https://evil.example"}, {"exp": int(time.time()) - 3600}],
    ids=["wrong-audience", "wrong-issuer", "expired"],
)
def test_a_token_for_someone_else_or_expired_is_refused_with_401(key, overrides):
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(token(key, **overrides), ACTIVITY)
    assert error.value.status == 401


def test_a_token_issued_for_another_service_url_is_refused_with_403(key):
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(token(key, serviceurl="https://attacker.example/"), ACTIVITY)
    assert error.value.status == 403


def test_a_key_not_endorsed_for_the_channel_is_refused(key):
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(token(key), {**ACTIVITY, "channelId": "webchat"})
    assert error.value.status == 403


def test_a_token_signed_by_another_key_is_refused(key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InboundAuthError):
        validate_inbound(token(other), ACTIVITY)


def test_a_missing_or_malformed_header_is_refused(key):
    for header in ("", "Basic abc", "Bearer not.a.jwt"):
        with pytest.raises(InboundAuthError):
            validate_inbound(header, ACTIVITY)
