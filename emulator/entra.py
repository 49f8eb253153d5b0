"""Entra ID's OpenID metadata and client-credentials token endpoint (what msal talks to), and the Bot
Framework's OpenID metadata and signing keys (what the bot reads to check inbound activities)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import uuid
from urllib.parse import unquote

from aiohttp import web

from .context import Context
from .graph import GRAPH_AUDIENCE, GRAPH_SCOPE
from .responses import json_response
from .tokens import ACCESS_TOKEN_SECONDS, issue_access_token

BOT_FRAMEWORK_TENANT = "botframework.com"
# The tenant that holds multi-tenant Bot Framework apps; real tokens for botframework.com carry it.
BOT_FRAMEWORK_TENANT_ID = "d6d49420-f39b-4df7-a1dc-d59a935871db"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"


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
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
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
        """Client credentials only: ``client_id`` + ``client_secret`` (form or HTTP Basic)."""
        settings = self.ctx.settings
        tenant = unquote(request.match_info["tenant"])
        form = await request.post()
        tenant_id = self._known_tenant(tenant)
        if tenant_id is None:
            return _entra_error(
                400, "invalid_request", 90002,
                f"Tenant '{tenant}' not found. Use botframework.com or the emulated tenant {settings.tenant_id}.",
            )
        if form.get("grant_type") != "client_credentials":
            return _entra_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type: "
                f"{form.get('grant_type')!r}. The emulator supports client_credentials only.",
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
