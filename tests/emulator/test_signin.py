"""Entra's sign-in for people, as a real emulator process over real HTTPS: msal's authorization code flow
with PKCE end to end (the sign-in page followed as a browser would), the id token's claims and signature,
and each refusal Entra makes, on its error page, at the redirect URI or at the token endpoint.

Run: .venv/bin/python -m pytest tests/emulator/test_signin.py -q -p no:django
"""

from __future__ import annotations

import hashlib
import html as markup
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import msal
import pytest
import urllib3

from emulator.client import EmulatorError
from emulator.process import RunningEmulator

from .identity import APP_ID, PASSWORD, TENANT

REDIRECT = "https://crier.example.test/auth/callback"  # never reached: the tests read where it would go
ADA = "00000000-0000-0000-0000-0000000000a1"
BOB = "00000000-0000-0000-0000-0000000000b2"
CAROL = "00000000-0000-0000-0000-0000000000c3"
PEOPLE = [
    {"id": ADA, "displayName": "Ada Lovelace", "userPrincipalName": "ada@contoso.test",
     "mail": "Ada.Lovelace@contoso.test", "appRoles": ["Crier.Admin", "Crier.Approver"]},
    {"id": BOB, "displayName": "Bob Disabled", "userPrincipalName": "bob@contoso.test", "accountEnabled": False},
    {"id": CAROL, "displayName": "Carol", "userPrincipalName": "carol@contoso.test"},
]
HOSTILE = '"><script>alert(1)</script>'


@pytest.fixture(autouse=True)
def fresh(emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu.client.reset()
    emu.client.graph_users(PEOPLE)
    emu.client.graph_config(sign_in_redirect_uris=[REDIRECT])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_file))  # msal's requests trusts the emulator's CA


def app(emu: RunningEmulator) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(APP_ID, client_credential=PASSWORD, authority=f"{emu.url}/{TENANT}",
                                              instance_discovery=False)


def signed_in(emu: RunningEmulator, account: str = "ada@contoso.test", **flow_options: Any) -> dict[str, Any]:
    """msal's whole flow for ``account``: what ``acquire_token_by_auth_code_flow`` answers."""
    client = app(emu)
    flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post", **flow_options)
    return client.acquire_token_by_auth_code_flow(flow, emu.client.sign_in_as(flow["auth_uri"], account))


def pool(emu: RunningEmulator) -> urllib3.PoolManager:
    return urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(emu.ca_file), retries=False)


def authorize_query(**overrides: str | None) -> dict[str, str]:
    query = {"client_id": APP_ID, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid profile",
             "state": "s-1", "nonce": "n-1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
             "code_challenge_method": "S256", **overrides}
    return {name: value for name, value in query.items() if value is not None}


def authorize_url(emu: RunningEmulator, tenant: str = TENANT, **overrides: str | None) -> str:
    return f"{emu.url}/{tenant}/oauth2/v2.0/authorize?" + urlencode(authorize_query(**overrides))


def sent_back(emu: RunningEmulator, url: str) -> dict[str, str]:
    """What a 302 from the authorize endpoint puts on the redirect URI."""
    response = pool(emu).request("GET", url, redirect=False)
    assert response.status == 302, response.data
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def redeem(emu: RunningEmulator, **fields: str) -> tuple[int, dict[str, Any]]:
    body = {"grant_type": "authorization_code", "client_id": APP_ID, "client_secret": PASSWORD,
            "redirect_uri": REDIRECT, **fields}
    response = pool(emu).request("POST", f"{emu.url}/{TENANT}/oauth2/v2.0/token", fields=body,
                                 encode_multipart=False)
    return response.status, json.loads(response.data)


# The happy path --------------------------------------------------------------------------------------


def test_a_person_signs_in_with_msal_and_the_app_reads_who_they_are(emu):
    client = app(emu)
    flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT, login_hint="ada@contoso.test",
                                          response_mode="form_post")
    answer = emu.client.sign_in_as(flow["auth_uri"], "ADA@contoso.test")  # the UPN, in any case

    result = client.acquire_token_by_auth_code_flow(flow, answer)

    assert "error" not in result, result
    claims = result["id_token_claims"]
    assert claims["oid"] == ADA and claims["tid"] == TENANT and claims["aud"] == APP_ID and claims["ver"] == "2.0"
    assert claims["iss"] == f"{emu.url}/{TENANT}/v2.0"
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # what msal sent and checks
    assert claims["name"] == "Ada Lovelace" and claims["preferred_username"] == "ada@contoso.test"
    assert claims["email"] == "Ada.Lovelace@contoso.test"
    assert claims["roles"] == ["Crier.Admin", "Crier.Approver"]
    assert "groups" not in claims and claims["sub"] != ADA and claims["exp"] - claims["iat"] == 3600
    assert result["token_type"] == "Bearer" and "refresh_token" not in result
    [account] = client.get_accounts()
    assert account["home_account_id"] == f"{ADA}.{TENANT}" and account["username"] == "ada@contoso.test"
    graph = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert graph["aud"] == "https://graph.microsoft.com" and graph["scp"] == "openid profile email User.Read"
    assert graph["oid"] == ADA and graph["idtyp"] == "user" and graph["appid"] == APP_ID
    stats = emu.client.graph_stats()
    assert stats["sign_ins"] == 1 and stats["codes_redeemed"] == 1


def test_the_id_token_verifies_against_the_keys_the_metadata_publishes(emu):
    result = signed_in(emu)
    metadata = json.loads(pool(emu).request("GET", f"{emu.url}/{TENANT}/v2.0/.well-known/openid-configuration").data)
    keys = json.loads(pool(emu).request("GET", metadata["jwks_uri"]).data)["keys"]
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    [key] = [jwt.PyJWK(key) for key in keys if key["kid"] == kid]

    claims = jwt.decode(result["id_token"], key, algorithms=["RS256"], audience=APP_ID, issuer=metadata["issuer"],
                        options={"require": ["exp", "iat", "nbf", "sub", "oid", "tid"]})

    assert claims["oid"] == ADA
    assert metadata["authorization_endpoint"] == f"{emu.url}/{TENANT}/oauth2/v2.0/authorize"
    assert {"nonce", "name", "preferred_username", "email", "roles", "groups"} <= set(metadata["claims_supported"])


def test_a_person_may_be_named_by_mail_or_object_id_and_keeps_the_same_subject(emu):
    by_mail = signed_in(emu, "ada.lovelace@CONTOSO.test")["id_token_claims"]
    by_id = signed_in(emu, ADA.upper())["id_token_claims"]
    carol = signed_in(emu, "carol@contoso.test")["id_token_claims"]

    assert by_mail["oid"] == by_id["oid"] == ADA and by_mail["sub"] == by_id["sub"]
    assert carol["sub"] != by_mail["sub"]
    assert "roles" not in carol and "email" not in carol  # no app roles, no mail: no claim, as in Entra


def test_groups_are_in_the_id_token_only_when_the_app_asks_for_them(emu):
    teams, staff, other = str(uuid.UUID(int=101)), str(uuid.UUID(int=102)), str(uuid.UUID(int=103))
    emu.client.graph_groups([{"id": teams, "displayName": "Teams", "members": [ADA]},
                             {"id": staff, "displayName": "Staff", "members": [teams]},  # Ada through Teams
                             {"id": other, "displayName": "Others", "members": [CAROL]}])

    assert "groups" not in signed_in(emu)["id_token_claims"]
    emu.client.graph_config(group_claims=True)

    claims = signed_in(emu)["id_token_claims"]
    assert claims["groups"] == [teams, staff] and "hasgroups" not in claims


def test_beyond_200_groups_the_token_marks_the_overage_instead_of_listing_them(emu):
    groups = [{"id": str(uuid.UUID(int=1000 + n)), "displayName": f"G{n}", "members": [ADA]} for n in range(201)]
    emu.client.graph_groups(groups)
    emu.client.graph_config(group_claims=True)

    claims = signed_in(emu)["id_token_claims"]

    assert "groups" not in claims and claims["hasgroups"] is True
    assert claims["_claim_names"] == {"groups": "src1"}
    assert claims["_claim_sources"]["src1"]["endpoint"].endswith(f"/users/{ADA}/getMemberObjects")


def test_with_response_mode_query_the_code_comes_back_in_a_302(emu):
    client = app(emu)
    with pytest.warns(UserWarning, match="form_post"):  # msal's advice, not the emulator's
        flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT)
    query = {name: values[0] for name, values in parse_qs(urlsplit(flow["auth_uri"]).query).items()}
    response = pool(emu).request("POST", f"{emu.url}/{TENANT}/oauth2/v2.0/authorize", redirect=False,
                                 encode_multipart=False, fields={**query, "login": "ada@contoso.test"})

    assert response.status == 302 and response.headers["Location"].startswith(REDIRECT + "?code=")
    answer = {name: values[0] for name, values in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    assert answer["state"] == flow["state"] and set(answer) == {"code", "client_info", "state", "session_state"}
    assert "error" not in client.acquire_token_by_auth_code_flow(flow, answer)


def test_with_response_mode_fragment_the_code_comes_back_in_the_fragment(emu):
    fields = {**authorize_query(response_mode="fragment"), "login": "carol@contoso.test"}
    response = pool(emu).request("POST", f"{emu.url}/{TENANT}/oauth2/v2.0/authorize", fields=fields,
                                 encode_multipart=False, redirect=False)

    assert response.status == 302 and response.headers["Location"].startswith(REDIRECT + "#code=")
    assert "state=s-1" in response.headers["Location"]


def test_with_form_post_a_page_posts_the_code_to_the_app_with_only_its_own_script(emu):
    flow = app(emu).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post", state=HOSTILE)
    page = pool(emu).request("GET", flow["auth_uri"])
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.data.decode())
    fields = {name: markup.unescape(value) for name, value in hidden}  # what a browser posts
    response = pool(emu).request("POST", f"{emu.url}/{TENANT}/oauth2/v2.0/authorize", encode_multipart=False,
                                 fields={**fields, "login": "ada@contoso.test"})
    html = response.data.decode()

    assert response.status == 200
    assert f'<form method="post" name="hiddenform" action="{REDIRECT}">' in html
    [nonce] = re.findall(r"<script nonce=\"([^\"]+)\">document.forms\[0\].submit\(\);</script>", html)
    policy = response.headers["Content-Security-Policy"]
    assert f"script-src 'nonce-{nonce}'" in policy and "unsafe-inline" not in policy
    assert "form-action https://crier.example.test;" in policy
    assert "<script>alert(1)" not in html  # the hostile state, escaped:
    assert '<input type="hidden" name="state" value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">' in html
    assert "Click Submit to continue" in html  # without script, a button does it


# Refusals shown on Entra's error page ------------------------------------------------------------------


def test_a_redirect_uri_the_app_did_not_register_is_refused_on_the_page_and_never_sent_to(emu):
    response = pool(emu).request("GET", authorize_url(emu, redirect_uri="https://evil.example.test/cb"),
                                 redirect=False)

    assert response.status == 400 and "Location" not in response.headers
    page = response.data.decode()
    assert "AADSTS50011" in page and "does not match the redirect URIs configured for the application" in page


def test_until_a_redirect_uri_is_registered_every_sign_in_is_refused(emu):
    emu.client.graph_config(sign_in_redirect_uris=[])
    flow = app(emu).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")

    with pytest.raises(EmulatorError) as refused:
        emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")

    assert refused.value.status == 400 and "AADSTS50011" in refused.value.body


def test_a_redirect_uri_must_match_exactly_but_scheme_and_host_in_any_case(emu):
    assert pool(emu).request("GET", authorize_url(emu, redirect_uri=REDIRECT + "/")).status == 400
    assert pool(emu).request("GET", authorize_url(emu, redirect_uri=REDIRECT.replace("https", "http"))).status == 400
    assert pool(emu).request("GET", authorize_url(emu, redirect_uri=REDIRECT.replace("call", "call\n"))).status == 400
    assert pool(emu).request("GET", authorize_url(emu, redirect_uri=REDIRECT.replace("crier", "CRIER"))).status == 200


def test_an_unknown_app_or_tenant_is_refused_on_the_page(emu):
    unknown_app = pool(emu).request("GET", authorize_url(emu, client_id=str(uuid.UUID(int=7))), redirect=False)
    unknown_tenant = pool(emu).request("GET", authorize_url(emu, tenant=str(uuid.UUID(int=8))), redirect=False)

    assert unknown_app.status == 400 and "AADSTS700016" in unknown_app.data.decode()
    assert unknown_tenant.status == 400 and "AADSTS90002" in unknown_tenant.data.decode()


# Refusals sent back to the app ------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "error", "code"), [
    ({"response_type": None}, "invalid_request", "AADSTS900144"),
    ({"response_type": "token"}, "unsupported_response_type", "AADSTS700054"),
    ({"scope": "profile User.Read"}, "invalid_scope", "AADSTS70011"),
    ({"code_challenge": None}, "invalid_request", "AADSTS900144"),  # a method without a challenge
    ({"code_challenge_method": "S512"}, "invalid_request", "AADSTS9002313"),
    ({"code_challenge_method": None, "code_challenge": "short"}, "invalid_request", "AADSTS501491"),
    ({"code_challenge": "short"}, "invalid_request", "AADSTS501491"),
    ({"prompt": "none"}, "login_required", "AADSTS50058"),
])
def test_what_entra_can_tell_the_app_goes_to_its_redirect_uri_with_the_state(emu, overrides, error, code):
    answer = sent_back(emu, authorize_url(emu, **overrides))

    assert answer["error"] == error and answer["error_description"].startswith(code + ":")
    assert answer["state"] == "s-1" and "code" not in answer


# The sign-in page ---------------------------------------------------------------------------------------


def test_the_page_says_it_is_a_stand_in_asks_no_password_and_escapes_what_it_shows(emu):
    response = pool(emu).request("GET", authorize_url(emu, login_hint=HOSTILE, state=HOSTILE))
    html = response.data.decode()

    assert response.status == 200 and "stand-in for Microsoft's sign-in page" in html and "no password" in html
    assert 'type="password"' not in html
    assert "<script" not in html and html.count("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'none'" in policy
    assert "form-action 'self' https://crier.example.test;" in policy and "frame-ancestors 'none'" in policy


def test_an_unknown_deleted_or_disabled_account_is_refused_as_entra_words_it(emu):
    flow = app(emu).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    emu.client.graph_delete(CAROL)

    for account, words in [("nobody@contoso.test", f"AADSTS50034: The user account nobody@contoso.test does not "
                                                    f"exist in the {TENANT} directory"),
                           ("carol@contoso.test", "AADSTS50034"),
                           ("bob@contoso.test", "AADSTS50057: The user account is disabled.")]:
        with pytest.raises(EmulatorError) as refused:
            emu.client.sign_in_as(flow["auth_uri"], account)
        assert refused.value.status == 200 and words in refused.value.body  # the page again, with the error
    assert emu.client.graph_stats()["sign_ins"] == 0


# Refusals at the token endpoint -------------------------------------------------------------------------


def test_a_code_is_redeemed_once(emu):
    client = app(emu)
    flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    answer = emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")
    assert "error" not in client.acquire_token_by_auth_code_flow(dict(flow), answer)

    again = client.acquire_token_by_auth_code_flow(dict(flow), answer)

    assert again["error"] == "invalid_grant" and again["error_codes"] == [54005]
    assert "already redeemed" in again["error_description"]


def test_an_expired_code_is_refused(emu):
    emu.client.graph_config(sign_in_code_seconds=0)  # codes expire as they are issued

    result = signed_in(emu)

    assert result["error"] == "invalid_grant" and result["error_codes"] == [70008]


def test_a_verifier_that_does_not_match_the_challenge_is_refused_and_leaves_the_code_usable(emu):
    client = app(emu)
    flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    answer = emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")

    wrong = client.acquire_token_by_auth_code_flow({**flow, "code_verifier": "x" * 43}, answer)

    assert wrong["error"] == "invalid_grant" and wrong["error_codes"] == [501481]
    assert "The Code_Verifier does not match the code_challenge" in wrong["error_description"]
    assert "error" not in client.acquire_token_by_auth_code_flow(flow, answer)


def test_a_code_is_refused_for_another_redirect_uri_an_unknown_code_or_a_wrong_secret(emu):
    flow = app(emu).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    code = emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")["code"]
    verifier = flow["code_verifier"]

    other_uri = redeem(emu, code=code, code_verifier=verifier, redirect_uri="https://crier.example.test/other")
    unknown = redeem(emu, code="not-a-code", code_verifier=verifier)
    no_verifier = redeem(emu, code=code)
    wrong_secret = redeem(emu, code=code, code_verifier=verifier, client_secret="guess")

    assert other_uri[0] == 400 and other_uri[1]["error"] == "invalid_grant" and other_uri[1]["error_codes"] == [500112]
    assert "does not match the reply address" in other_uri[1]["error_description"]
    assert unknown[0] == 400 and unknown[1]["error_codes"] == [70000]
    assert no_verifier[0] == 400 and no_verifier[1]["error"] == "invalid_request"
    assert wrong_secret[0] == 401 and wrong_secret[1]["error"] == "invalid_client"
    status, body = redeem(emu, code=code, code_verifier=verifier)  # none of those spent it
    assert status == 200 and "client_info" not in body  # only for a client that asks (client_info=1)
    assert set(body) == {"token_type", "scope", "expires_in", "ext_expires_in", "access_token", "id_token"}


def test_a_person_disabled_between_sign_in_and_redemption_gets_no_token(emu):
    client = app(emu)
    flow = client.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    answer = emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")
    emu.client.graph_users([{"id": ADA, "accountEnabled": False}])

    result = client.acquire_token_by_auth_code_flow(flow, answer)

    assert result["error"] == "invalid_grant" and result["error_codes"] == [50057]


# The control API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"sign_in_redirect_uris": "https://crier.example.test/cb"},
    {"sign_in_redirect_uris": ["/auth/callback"]},
    {"sign_in_redirect_uris": ["ftp://crier.example.test/cb"]},
    {"sign_in_redirect_uris": ["https://crier.example.test/cb#top"]},
    {"sign_in_redirect_uris": ["https://*.example.test/cb"]},
    {"sign_in_redirect_uris": ["https://crier.example.test/a b"]},
    {"group_claims": "yes"},
    {"sign_in_code_seconds": 601},
    {"sign_in_code_seconds": -1},
])
def test_the_control_api_refuses_bad_sign_in_settings_and_changes_nothing(emu, fields):
    with pytest.raises(EmulatorError) as refused:
        emu.client.graph_config(page_size=5, **fields)

    assert refused.value.status == 400
    stats = emu.client.graph_stats()
    assert stats["page_size"] == 100 and stats["group_claims"] is False and stats["sign_in_redirect_uris"] == [REDIRECT]


def test_app_roles_must_be_a_list_of_role_values(emu):
    with pytest.raises(EmulatorError) as refused:
        emu.client.graph_users([{"id": CAROL, "appRoles": "Crier.Admin"}])

    assert refused.value.status == 400 and "appRoles" in refused.value.body["error"]


def test_a_reset_forgets_the_sign_in_settings_and_codes(emu):
    flow = app(emu).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    code = emu.client.sign_in_as(flow["auth_uri"], "ada@contoso.test")["code"]
    emu.client.graph_config(group_claims=True, sign_in_code_seconds=30)

    emu.client.reset()

    stats = emu.client.graph_stats()
    assert stats["sign_in_redirect_uris"] == [] and stats["group_claims"] is False
    assert stats["sign_in_code_seconds"] == 600 and stats["sign_ins"] == 0 and stats["codes_redeemed"] == 0
    assert redeem(emu, code=code, code_verifier=flow["code_verifier"])[1]["error_codes"] == [70000]


@pytest.mark.parametrize("pkce", ["none", "plain"])
def test_pkce_is_recommended_not_required_and_plain_is_taken_as_entra_takes_it(emu, pkce):
    verifier = "v" * 50
    overrides = ({"code_challenge": None, "code_challenge_method": None} if pkce == "none"
                 else {"code_challenge": verifier, "code_challenge_method": "plain"})
    response = pool(emu).request("GET", authorize_url(emu, **overrides))
    assert response.status == 200  # the sign-in page: nothing refused
    answer = emu.client.sign_in_as(authorize_url(emu, **overrides), "ada@contoso.test")

    status, body = redeem(emu, code=answer["code"], **({} if pkce == "none" else {"code_verifier": verifier}))

    assert status == 200 and body["id_token"], body


def test_an_http_redirect_uri_is_registered_only_for_localhost(emu):
    from emulator.client import EmulatorError

    emu.client.graph_config(sign_in_redirect_uris=["http://127.0.0.1:8000/cb", "http://localhost/cb"])
    with pytest.raises(EmulatorError, match="only for localhost"):
        emu.client.graph_config(sign_in_redirect_uris=["http://crier.example.test/cb"])
