"""Entra ID's OpenID metadata and token endpoint (what msal talks to), and the Bot Framework's OpenID
metadata and signing keys (what the bot reads to check inbound activities).

The token endpoint serves two grants: client credentials (app tokens for the Bot Framework and Graph), and
the authorization code of a person's sign-in (``signin.py``), redeemed for an id token and a delegated Graph
token as Entra redeems it: once, within its lifetime, by the app it was issued to, with the same redirect
URI and the PKCE verifier of its challenge.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .context import Context
from .graph import GRAPH_AUDIENCE, GRAPH_SCOPE, DirectoryUser
from .groups import member_of
from .responses import json_response
from .signin import Grant, SignIns, account_refusal, b64url, client_info, missing, pairwise_subject, redirect_key
from .tokens import ACCESS_TOKEN_SECONDS, issue_access_token

BOT_FRAMEWORK_TENANT = "botframework.com"
# The tenant that holds multi-tenant Bot Framework apps; real tokens for botframework.com carry it.
BOT_FRAMEWORK_TENANT_ID = "d6d49420-f39b-4df7-a1dc-d59a935871db"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
ID_TOKEN_SECONDS = 3600
GROUPS_IN_TOKEN = 200  # beyond this many groups Entra leaves ``groups`` out and marks the overage
DELEGATED_SCOPES = "openid profile email User.Read"  # what the person's Graph token allows


def _entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An Entra error body: ``error``, ``error_description`` starting with the AADSTS code, and ids."""
    trace = str(uuid.uuid4())
    timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_response(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
    )


class Entra:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/botframework/v1/.well-known/openidconfiguration", self.botframework_metadata),
            web.get("/botframework/v1/.well-known/keys", self.botframework_keys),
            web.get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            web.get("/{tenant}/.well-known/openid-configuration", self.openid_configuration),
            web.get("/{tenant}/discovery/v2.0/keys", self.entra_keys),
            web.get("/{tenant}/discovery/keys", self.entra_keys),
            web.post("/{tenant}/oauth2/v2.0/token", self.token),
        ]

    def _known_tenant(self, tenant: str) -> str | None:
        """The tenant id tokens for this authority path carry, or None for a tenant we do not serve."""
        lowered = tenant.lower()
        if lowered == BOT_FRAMEWORK_TENANT:
            return BOT_FRAMEWORK_TENANT_ID
        if lowered == self.ctx.settings.tenant_id:
            return self.ctx.settings.tenant_id
        return None

    # Bot Framework (inbound tokens) ------------------------------------------------------------

    async def botframework_metadata(self, request: web.Request) -> web.Response:
        base = self.ctx.base_url
        return json_response(
            200,
            {
                "issuer": "https://api.botframework.com",
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{base}/botframework/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            },
        )

    async def botframework_keys(self, request: web.Request) -> web.Response:
        return json_response(200, {"keys": [self.ctx.key.jwk(endorsements=["msteams"])]})

    # Entra ID (outbound tokens) ----------------------------------------------------------------

    async def openid_configuration(self, request: web.Request) -> web.Response:
        """Served for any tenant path, so an unknown tenant is refused by the token endpoint, with an
        OAuth error msal reports, rather than by discovery."""
        tenant = unquote(request.match_info["tenant"])
        root = f"{self.ctx.base_url}/{tenant}"
        tenant_id = self._known_tenant(tenant) or tenant
        return json_response(
            200,
            {
                "issuer": f"{self.ctx.base_url}/{tenant_id}/v2.0",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "nonce", "name",
                                     "preferred_username", "email", "roles", "groups"],
                "request_uri_parameter_supported": False,
                "tenant_region_scope": "EU",
                "cloud_instance_name": "emulator.local",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    async def entra_keys(self, request: web.Request) -> web.Response:
        return json_response(200, {"keys": [self.ctx.key.jwk()]})

    async def token(self, request: web.Request) -> web.Response:
        """Client credentials, or a person's authorization code; the client authenticates with
        ``client_id`` + ``client_secret`` (form or HTTP Basic) either way."""
        settings = self.ctx.settings
        tenant = unquote(request.match_info["tenant"])
        form = await request.post()
        tenant_id = self._known_tenant(tenant)
        if tenant_id is None:
            return _entra_error(
                400, "invalid_request", 90002,
                f"Tenant '{tenant}' not found. Use botframework.com or the emulated tenant {settings.tenant_id}.",
            )
        grant_type = form.get("grant_type")
        if grant_type not in ("client_credentials", "authorization_code"):
            return _entra_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type: "
                f"{grant_type!r}. The emulator supports client_credentials and authorization_code.",
            )
        client_id, secret = str(form.get("client_id") or ""), str(form.get("client_secret") or "")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic ") and not secret:
            try:
                decoded = base64.b64decode(basic[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, secret = (unquote(part) for part in decoded.partition(":"))
        if not client_id:
            return _entra_error(400, "invalid_request", 900144, "The request body must contain 'client_id'.")
        if client_id != settings.app_id:
            return _entra_error(
                401, "invalid_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if not hmac.compare_digest(secret.encode(), settings.app_password.encode()):
            return _entra_error(
                401, "invalid_client", 7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        if grant_type == "authorization_code":
            try:
                return json_response(200, redeem_code(self.ctx, form, tenant_id=tenant_id, client_id=client_id))
            except Refused as refused:
                return _entra_error(400, refused.error, refused.code, refused.description)
        scopes = str(form.get("scope") or "").split()
        if GRAPH_SCOPE in scopes and tenant_id == settings.tenant_id:
            # Microsoft Graph, for the organisation's own tenant: the token carries what its admin consented to.
            token = issue_access_token(self.ctx.key, client_id=client_id, tenant=tenant, tenant_id=tenant_id,
                                       audience=GRAPH_AUDIENCE, roles=list(self.ctx.directory.permissions))
        elif BOT_FRAMEWORK_SCOPE in scopes:
            token = issue_access_token(self.ctx.key, client_id=client_id, tenant=tenant, tenant_id=tenant_id)
        else:
            return _entra_error(
                400, "invalid_scope", 1002012,
                f"The provided value for scope {' '.join(scopes) or '(none)'} is not valid. The emulator issues "
                f"tokens for {BOT_FRAMEWORK_SCOPE}, and for {GRAPH_SCOPE} from the tenant {settings.tenant_id}.",
            )
        self.ctx.store.tokens_issued += 1
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_SECONDS,
                "ext_expires_in": ACCESS_TOKEN_SECONDS,
                "access_token": token,
            },
        )


# --- a person's authorization code -----------------------------------------------------------------


class Refused(Exception):
    """A token request Entra refuses: the OAuth ``error``, the AADSTS code and its words."""

    def __init__(self, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.error, self.code, self.description = error, code, description


def spend_code(sign_ins: SignIns, code: str, *, client_id: str, tenant_id: str, redirect_uri: str | None,
               code_verifier: str) -> Grant:
    """The grant of a code the client may redeem, now spent; Refused as Entra refuses otherwise. A request
    refused for its redirect URI or verifier leaves the code as it was."""
    grant = sign_ins.codes.get(code)
    if grant is None:
        raise Refused("invalid_grant", 70000, "The provided value for the 'code' parameter is not valid.")
    if grant.redeemed:
        raise Refused("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a "
                      "new valid code or use an existing refresh token.")
    if time.time() >= grant.expires_at:
        raise Refused("invalid_grant", 70008, "The provided authorization code or refresh token has expired due to "
                      "inactivity. Send a new interactive authorization request for this user and resource.")
    if tenant_id != grant.tenant_id:
        raise Refused("invalid_grant", 700005,
                      "Provided Authorization Code is intended to use against other tenant, thus rejected.")
    if client_id != grant.client_id:
        raise Refused("invalid_grant", 70000, "The provided value for the 'code' parameter is not valid. The code "
                      "was issued to another application.")
    if redirect_uri is None:
        if grant.redirect_given:
            raise Refused("invalid_request", 900144, missing("redirect_uri"))
    elif redirect_key(redirect_uri) != redirect_key(grant.redirect_uri):
        raise Refused("invalid_grant", 500112, f"The reply address '{redirect_uri}' does not match the reply address "
                      f"'{grant.redirect_uri}' provided when requesting Authorization code.")
    if grant.code_challenge:  # the sign-in used PKCE: the verifier must match its challenge
        method, _, expected = grant.code_challenge.partition(":")
        if not code_verifier:
            raise Refused("invalid_request", 900144, missing("code_verifier"))
        sent = b64url(hashlib.sha256(code_verifier.encode("utf-8")).digest()) if method == "S256" else code_verifier
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Refused("invalid_grant", 501481,
                          "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
    grant.redeemed = True
    sign_ins.codes_redeemed += 1
    return grant


def id_token_claims(ctx: Context, grant: Grant, user: DirectoryUser) -> dict[str, Any]:
    """A v2.0 id token for the person, as Entra issues it to the app: ``roles`` only when the person has app
    roles; ``groups`` only when the app asks for group claims, and beyond ``GROUPS_IN_TOKEN`` groups the
    overage marks (``hasgroups``, ``_claim_names``, ``_claim_sources``) in their place."""
    now, properties = int(time.time()), user.properties
    claims: dict[str, Any] = {
        "aud": grant.client_id, "iss": f"{ctx.base_url}/{grant.tenant_id}/v2.0", "iat": now, "nbf": now,
        "exp": now + ID_TOKEN_SECONDS, "oid": user.id, "tid": grant.tenant_id, "ver": "2.0",
        "sub": pairwise_subject(grant.tenant_id, grant.client_id, user.id), "uti": b64url(uuid.uuid4().bytes),
    }
    optional = {"name": properties.get("displayName"), "email": properties.get("mail"), "nonce": grant.nonce,
                "preferred_username": properties.get("userPrincipalName") or properties.get("mail")}
    claims.update({name: value for name, value in optional.items() if isinstance(value, str) and value})
    if grant.max_age:
        claims["auth_time"] = grant.auth_time
    if user.app_roles:
        claims["roles"] = list(user.app_roles)
    if ctx.sign_ins.group_claims:
        groups = member_of(ctx.directory, user.id)
        if len(groups) > GROUPS_IN_TOKEN:
            source = {"endpoint": f"{ctx.base_url}/graph/v1.0/users/{user.id}/getMemberObjects"}
            claims.update({"hasgroups": True, "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": source}})
        elif groups:
            claims["groups"] = groups
    return claims


def graph_token_claims(grant: Grant, user: DirectoryUser) -> dict[str, Any]:
    """A delegated Microsoft Graph token for the person (v1.0, as Graph's are), allowing ``DELEGATED_SCOPES``."""
    now, upn = int(time.time()), user.properties.get("userPrincipalName") or user.properties.get("mail")
    claims = {
        "aud": GRAPH_AUDIENCE, "iss": f"https://sts.windows.net/{grant.tenant_id}/", "iat": now, "nbf": now,
        "exp": now + ACCESS_TOKEN_SECONDS, "appid": grant.client_id, "appidacr": "1", "idtyp": "user",
        "oid": user.id, "scp": DELEGATED_SCOPES, "sub": pairwise_subject(grant.tenant_id, GRAPH_AUDIENCE, user.id),
        "tid": grant.tenant_id, "uti": b64url(uuid.uuid4().bytes), "ver": "1.0",
    }
    optional = {"name": user.properties.get("displayName"), "upn": upn, "unique_name": upn}
    claims.update({name: value for name, value in optional.items() if isinstance(value, str) and value})
    return claims


def redeem_code(ctx: Context, form: Any, *, tenant_id: str, client_id: str) -> dict[str, Any]:
    """The answer to ``grant_type=authorization_code`` from a client whose secret was checked; Refused as
    Entra refuses. No refresh token: the emulator does not serve that grant."""
    code = str(form.get("code") or "")
    if not code:
        raise Refused("invalid_request", 900144, missing("code"))
    redirect_uri = form.get("redirect_uri")
    grant = spend_code(ctx.sign_ins, code, client_id=client_id, tenant_id=tenant_id,
                       redirect_uri=str(redirect_uri) if redirect_uri else None,
                       code_verifier=str(form.get("code_verifier") or ""))
    user = ctx.directory.users.get(grant.user_id)
    if refusal := account_refusal(user, grant.user_id, tenant_id):
        raise Refused("invalid_grant", *refusal)
    assert user is not None
    body = {
        "token_type": "Bearer", "scope": DELEGATED_SCOPES, "expires_in": ACCESS_TOKEN_SECONDS,
        "ext_expires_in": ACCESS_TOKEN_SECONDS, "access_token": ctx.key.sign(graph_token_claims(grant, user)),
        "id_token": ctx.key.sign(id_token_claims(ctx, grant, user)),
    }
    if str(form.get("client_info") or "") == "1":
        body["client_info"] = client_info(user.id, tenant_id)
    return body
