"""Token checks on activities, with key pairs and a key server made here (the emulator covers the happy path)."""

import http.server
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from bots import auth
from bots.auth import (
    CLOCK_SKEW_SECONDS,
    KEYS_MAX_AGE_SECONDS,
    UNKNOWN_KID_REFRESH_SECONDS,
    InboundAuthError,
    signing_keys,
    validate_inbound,
)

from .conftest import published

SERVICE_URL = "https://smba.trafficmanager.net/emea/"


MISSING = object()


def token(private, **overrides):
    """A token signed with ``private``; an override of MISSING leaves that claim out."""
    now = int(time.time())
    claims = {"iss": settings.BOT_TOKEN_ISSUER, "aud": settings.BOT_APP_ID, "serviceurl": SERVICE_URL,
              "nbf": now - 10, "iat": now - 10, "exp": now + 3600}
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not MISSING}
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


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
def test_it_refuses_a_token_without_exp_iss_or_aud(key, claim):
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(token(key, **{claim: MISSING}), ACTIVITY)
    assert error.value.status == 401
    assert claim in str(error.value)


def test_it_refuses_a_token_not_valid_yet(key):
    not_before = int(time.time()) + CLOCK_SKEW_SECONDS + 600
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(token(key, nbf=not_before), ACTIVITY)
    assert error.value.status == 401
    assert "nbf" in str(error.value)


def test_it_accepts_a_token_not_valid_yet_within_the_allowed_clock_skew(key):
    not_before = int(time.time()) + CLOCK_SKEW_SECONDS - 60
    assert validate_inbound(token(key, nbf=not_before), ACTIVITY)["nbf"] == not_before


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


# --- Keys fetched from a metadata server: rotation, refresh limits, an endpoint that fails ---------


class KeyServer:
    """The OpenID metadata and the JWKS on a plain HTTP server of this test's own, on loopback."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.status = {"/openid": 200, "/keys": 200}
        self.hits = {"/openid": 0, "/keys": 0}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = self.path
                server.hits[path] = server.hits.get(path, 0) + 1
                status = server.status.get(path, 404)
                if status != 200:
                    body = b"<html>Service Unavailable</html>"
                elif path == "/openid":
                    body = json.dumps({"jwks_uri": f"{server.url}/keys"}).encode()
                else:
                    body = json.dumps({"keys": server.keys}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def signing_key(kid: str, endorsements=("msteams",)):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "endorsements": list(endorsements)})
    return private, jwk


def signed(private, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": settings.BOT_TOKEN_ISSUER, "aud": settings.BOT_APP_ID, "serviceurl": SERVICE_URL,
              "nbf": now - 10, "iat": now - 10, "exp": now + 3600}
    return "Bearer " + jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


def age_the_keys(seconds: float) -> None:
    """As if the keys had been fetched ``seconds`` ago."""
    signing_keys._fetched_at -= seconds


@pytest.fixture
def key_server(settings):
    server = KeyServer()
    settings.BOT_OPENID_METADATA_URL = f"{server.url}/openid"
    signing_keys.clear()
    yield server
    signing_keys.clear()
    server.stop()


def test_it_accepts_a_key_that_appears_only_after_the_keys_are_fetched_again(key_server):
    old, old_jwk = signing_key("old")
    new, new_jwk = signing_key("new")
    key_server.keys = [old_jwk]
    validate_inbound(signed(old, "old"), ACTIVITY)
    key_server.keys = [old_jwk, new_jwk]  # Microsoft rotates its keys
    age_the_keys(UNKNOWN_KID_REFRESH_SECONDS + 1)

    assert validate_inbound(signed(new, "new"), ACTIVITY)["aud"] == settings.BOT_APP_ID
    assert key_server.hits["/keys"] == 2


def test_it_fetches_the_keys_again_for_an_unknown_key_at_most_every_few_minutes(key_server):
    known, known_jwk = signing_key("known")
    stranger, _ = signing_key("stranger")
    key_server.keys = [known_jwk]
    validate_inbound(signed(known, "known"), ACTIVITY)

    for _ in range(3):
        with pytest.raises(InboundAuthError) as error:
            validate_inbound(signed(stranger, "stranger"), ACTIVITY)
        assert error.value.status == 401
    assert key_server.hits["/keys"] == 1

    age_the_keys(UNKNOWN_KID_REFRESH_SECONDS + 1)
    with pytest.raises(InboundAuthError):
        validate_inbound(signed(stranger, "stranger"), ACTIVITY)
    assert key_server.hits["/keys"] == 2


def test_it_fetches_the_keys_again_once_they_are_a_day_old(key_server):
    private, jwk = signing_key("k")
    key_server.keys = [jwk]
    validate_inbound(signed(private, "k"), ACTIVITY)
    age_the_keys(KEYS_MAX_AGE_SECONDS - 60)
    validate_inbound(signed(private, "k"), ACTIVITY)
    assert key_server.hits["/keys"] == 1

    age_the_keys(120)
    validate_inbound(signed(private, "k"), ACTIVITY)
    assert key_server.hits["/keys"] == 2


@pytest.mark.parametrize("failing", ["/openid", "/keys"])
def test_it_refuses_without_crashing_while_the_keys_cannot_be_fetched_and_accepts_once_they_can(key_server, failing):
    private, jwk = signing_key("k")
    key_server.keys = [jwk]
    key_server.status[failing] = 503

    with pytest.raises(InboundAuthError) as error:
        validate_inbound(signed(private, "k"), ACTIVITY)
    assert error.value.status == 503  # Teams tries again later; the token itself was not judged

    key_server.status[failing] = 200
    assert validate_inbound(signed(private, "k"), ACTIVITY)["aud"] == settings.BOT_APP_ID


@pytest.mark.django_db
def test_the_endpoint_answers_an_error_not_a_crash_while_the_keys_cannot_be_fetched(key_server, client):
    private, jwk = signing_key("k")
    key_server.keys = [jwk]
    key_server.status["/openid"] = 503
    activity = {**ACTIVITY, "type": "typing"}

    def post():
        return client.post("/api/messages", data=json.dumps(activity), content_type="application/json",
                            HTTP_AUTHORIZATION=signed(private, "k"))

    refused = post()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "unauthorized"

    key_server.status["/openid"] = 200
    assert post().status_code == 200


@pytest.mark.parametrize("endorsements", [["webchat"], [], None], ids=["another-channel", "none", "missing"])
def test_it_refuses_a_key_not_endorsed_for_msteams(key_server, endorsements):
    private, jwk = signing_key("k", endorsements=endorsements or ())
    if endorsements is None:
        del jwk["endorsements"]
    key_server.keys = [jwk]

    with pytest.raises(InboundAuthError) as error:
        validate_inbound(signed(private, "k"), ACTIVITY)
    assert error.value.status == 403


# --- What each refusal says: the endpoint answers with this text --------------------------------


def refusal(authorization, activity=ACTIVITY):
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(authorization, activity)
    return error.value.status, str(error.value)


@pytest.mark.parametrize("authorization", ["", None, "Basic abc", "Bearer", "Bearer ", "bearer abc"])
def test_it_says_the_bearer_token_is_missing_for_any_other_authorization(key, authorization):
    assert refusal(authorization) == (401, "Missing bearer token.")


@pytest.mark.parametrize("authorization", ["Bearer not.a.jwt", "Bearer two words"])
def test_it_says_a_token_that_is_not_a_jwt_is_malformed(key, authorization):
    status, message = refusal(authorization)
    assert status == 401 and message.startswith("Malformed token: ")


def test_it_refuses_a_token_not_signed_with_rs256_before_looking_for_its_key(key):
    now = int(time.time())
    claims = {"iss": settings.BOT_TOKEN_ISSUER, "aud": settings.BOT_APP_ID, "serviceurl": SERVICE_URL, "exp": now + 60}
    forged = jwt.encode(claims, "a-shared-secret-of-32-bytes-or-more!", algorithm="HS256", headers={"kid": "test-key"})

    assert refusal("Bearer " + forged) == (401, "Tokens must be signed with RS256.")


def test_it_names_an_unknown_key_and_the_channel_a_key_is_not_endorsed_for(key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = "Bearer " + jwt.encode({"aud": settings.BOT_APP_ID}, other, algorithm="RS256", headers={"kid": "nobody"})

    assert refusal(stranger) == (401, "The token is signed with an unknown key.")
    assert refusal(token(key), {**ACTIVITY, "channelId": "webchat"}) == (
        403, "The signing key is not endorsed for channel 'webchat'."
    )


def test_it_says_why_a_token_is_invalid(key):
    status, message = refusal(token(key, exp=int(time.time()) - 3600))
    assert status == 401 and message.startswith("Invalid token: ") and "expired" in message


def test_it_says_the_service_url_does_not_match(key):
    assert refusal(token(key, serviceurl="https://attacker.example/")) == (
        403, "The token's serviceurl does not match the activity's serviceUrl."
    )


@pytest.mark.parametrize(
    "claimed, activity_url",
    [("https://smba.example/APAX/", "https://smba.example/APAX"), ("https://smba.example/APAX", "https://smba.example/APAX/")],
)
def test_it_compares_service_urls_exactly_but_for_a_trailing_slash(key, claimed, activity_url):
    assert validate_inbound(token(key, serviceurl=claimed), {**ACTIVITY, "serviceUrl": activity_url})["serviceurl"] == claimed
    assert refusal(token(key, serviceurl=claimed.replace("APAX", "APA")), {**ACTIVITY, "serviceUrl": activity_url})[0] == 403


# Texts a token or an activity could carry where the other has nothing: none of them stands in for a missing URL.
ANY_TEXT = ["", "None", "XXXX", "https://smba.example/APAX"]


@pytest.mark.parametrize("claimed", [MISSING, *ANY_TEXT])
def test_it_refuses_an_activity_without_a_service_url_whatever_the_token_claims(key, claimed):
    activity = {name: value for name, value in ACTIVITY.items() if name != "serviceUrl"}

    assert refusal(token(key, serviceurl=claimed), activity) == (
        403, "The token's serviceurl does not match the activity's serviceUrl."
    )


@pytest.mark.parametrize("activity_url", ANY_TEXT[1:])
def test_it_refuses_a_token_without_a_service_url_whatever_the_activity_says(key, activity_url):
    assert refusal(token(key, serviceurl=MISSING), {**ACTIVITY, "serviceUrl": activity_url}) == (
        403, "The token's serviceurl does not match the activity's serviceUrl."
    )


def test_it_fetches_the_metadata_then_the_keys_it_names_with_a_ten_second_limit(key_server, monkeypatch):
    from core import http

    private, jwk = signing_key("k")
    key_server.keys = [jwk]
    calls, real_request = [], http.request

    def spy(method, url, **kwargs):
        calls.append((method, url, kwargs))
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(http, "request", spy)

    validate_inbound(signed(private, "k"), ACTIVITY)

    assert calls == [("GET", f"{key_server.url}/openid", {"timeout": 10}), ("GET", f"{key_server.url}/keys", {"timeout": 10})]


def test_it_says_why_the_keys_cannot_be_loaded(key_server):
    key_server.status["/keys"] = 503
    private, _ = signing_key("k")

    status, message = refusal(signed(private, "k"))

    assert status == 503 and message.startswith("Cannot load the Bot Framework signing keys: ")


def test_a_new_process_fetches_the_keys_on_its_first_token(key_server, monkeypatch):
    from bots import auth

    private, jwk = signing_key("k")
    key_server.keys = [jwk]
    monkeypatch.setattr(auth, "signing_keys", auth.SigningKeys())  # never fetched, never cleared

    assert validate_inbound(signed(private, "k"), ACTIVITY)["aud"] == settings.BOT_APP_ID
    assert key_server.hits["/keys"] == 1


# --- A token that passed is kept: Teams sends the same one until it nears its expiry ------------------------------


def test_a_token_that_passed_is_not_verified_again_on_the_next_activity(key, monkeypatch):
    bearer = token(key)
    validate_inbound(bearer, ACTIVITY)
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: pytest.fail("verified again"))
    assert validate_inbound(bearer, ACTIVITY)["serviceurl"] == SERVICE_URL


def test_a_kept_token_is_still_refused_for_another_service_url_or_channel(key):
    bearer = token(key)
    validate_inbound(bearer, ACTIVITY)
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, {**ACTIVITY, "serviceUrl": "https://attacker.example/"})
    assert error.value.status == 403
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, {**ACTIVITY, "channelId": "webchat"})
    assert error.value.status == 403


def test_a_kept_token_expires_as_a_new_one_would_and_is_then_forgotten(key, monkeypatch):
    kept = auth.CheckedTokens()
    monkeypatch.setattr(auth, "checked_tokens", kept)
    issued = int(time.time())
    bearer = token(key, exp=issued + 60)
    validate_inbound(bearer, ACTIVITY)
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: (_ for _ in ()).throw(jwt.ExpiredSignatureError("gone")))
    monkeypatch.setattr(auth.time, "time", lambda: issued + 60 + CLOCK_SKEW_SECONDS - 0.001)
    assert validate_inbound(bearer, ACTIVITY)["exp"] == issued + 60  # kept: within the allowed clock skew
    monkeypatch.setattr(auth.time, "time", lambda: issued + 60 + CLOCK_SKEW_SECONDS)  # where jwt.decode says expired
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, ACTIVITY)
    assert error.value.status == 401 and "gone" in str(error.value)
    assert kept._checked == {}  # an expired token is not kept


def test_a_kept_token_is_verified_again_once_its_key_is_replaced_and_refused_once_its_key_is_gone(key):
    bearer = token(key)
    validate_inbound(bearer, ACTIVITY)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    replaced = published(other)
    signing_keys._keys = {"test-key": replaced}  # the same kid, another key: the kept token's signature fails
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, ACTIVITY)
    assert "Invalid token" in str(error.value)
    signing_keys._keys = {"another-key": replaced}
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, ACTIVITY)
    assert "unknown key" in str(error.value)


def test_a_kept_token_is_refused_once_the_bot_s_app_id_is_another(key, settings):
    bearer = token(key)
    validate_inbound(bearer, ACTIVITY)
    settings.BOT_APP_ID = "another-app"
    with pytest.raises(InboundAuthError) as error:
        validate_inbound(bearer, ACTIVITY)
    assert error.value.status == 401


def test_the_kept_tokens_are_bounded(key, monkeypatch):
    monkeypatch.setattr(auth.CheckedTokens, "LIMIT", 3)
    kept = auth.CheckedTokens()
    monkeypatch.setattr(auth, "checked_tokens", kept)
    sizes = []
    for minutes in range(5):
        validate_inbound(token(key, exp=int(time.time()) + 3600 + minutes), ACTIVITY)
        sizes.append(len(kept._checked))
    assert sizes == [1, 2, 3, 1, 2]  # full at three: all forgotten, the new one kept


@pytest.mark.parametrize("exp", ["EXPIRY", "EXPIRY.9"], ids=["text", "fraction"])
def test_a_kept_token_s_expiry_is_read_as_the_token_s_check_reads_it(key, monkeypatch, exp):
    issued = int(time.time())
    bearer = token(key, exp=exp.replace("EXPIRY", str(issued + 60)) if exp == "EXPIRY" else issued + 60.9)
    validate_inbound(bearer, ACTIVITY)
    monkeypatch.setattr(auth.time, "time", lambda: issued + 60 + CLOCK_SKEW_SECONDS + 0.5)
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: (_ for _ in ()).throw(jwt.ExpiredSignatureError("gone")))
    with pytest.raises(InboundAuthError) as error:  # expired as the check would judge it, not a crash
        validate_inbound(bearer, ACTIVITY)
    assert error.value.status == 401
