"""What the bot's tests share: a signing key of the test's own, published as the Bot Framework's keys are."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bots.auth import signing_keys


def published(private, kid: str = "test-key") -> dict:
    """The public half of ``private`` as the Bot Framework's key set lists it, endorsed for Teams."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "endorsements": ["msteams"]})
    return jwk


@pytest.fixture
def key():
    """A private key whose public half the endpoint's keys hold, as if fetched just now."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_keys._keys = {"test-key": published(private)}
    signing_keys._fetched_at = time.monotonic()
    yield private
    signing_keys.clear()
