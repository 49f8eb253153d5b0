"""Entra ID's sign-in for people: the OpenID Connect authorization code flow with PKCE, as the Microsoft
identity platform's v2.0 endpoints run it, so that an app signs its staff in with msal's
``initiate_auth_code_flow`` and ``acquire_token_by_auth_code_flow`` here as at login.microsoftonline.com.

``GET /{tenant}/oauth2/v2.0/authorize`` checks the request as Entra does. What cannot go back to the app (an
unknown tenant or app, a redirect URI the app did not register) is shown on an error page (400); what can
(``response_type``, ``scope``, PKCE, ``prompt=none``) goes to the redirect URI as ``error``,
``error_description`` and ``state``. Otherwise it shows the sign-in page, the emulator's stand-in for
Microsoft's: it asks for an account (the UPN, mail or object id of a person in the directory) and for no
password. Its form posts back to the same path; a known, enabled person gets a one-time authorization code
(valid ``CODE_SECONDS``), sent to the redirect URI: a 302 for ``query`` and ``fragment``, a self-submitting
form for ``form_post``. The token endpoint (``entra.py``) redeems it, with the client's secret and the PKCE
verifier, for an id token and a Graph token for the person.

The app's redirect URIs, whether its tokens carry ``groups`` and the codes' lifetime are set through the
Graph control config; after a reset none is registered, so every sign-in is refused with AADSTS50011.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from aiohttp import web

from .config import ConfigError
from .graph import Directory, DirectoryUser
from .state import normalize_aad

if TYPE_CHECKING:
    from multidict import MultiMapping

CODE_SECONDS = 600  # Entra's authorization codes last ten minutes
MAX_REDIRECT_URIS = 256
MAX_URI_LENGTH = 256
CODE_LIMIT = 10_000  # codes kept at once; expired ones are dropped first
RESPONSE_MODES = ("query", "fragment", "form_post")
PARAMETERS = ("client_id", "response_type", "redirect_uri", "scope", "state", "nonce", "code_challenge",
              "code_challenge_method", "response_mode", "prompt", "login_hint", "client_info", "max_age")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA256(verifier)), unpadded
_PLAIN_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # the verifier itself (RFC 7636)
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")  # the only hosts Entra ID lets an http redirect URI name
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def missing(name: str) -> str:
    """Entra's words for a request without a parameter it needs (AADSTS900144)."""
    return f"The request body must contain the following parameter: '{name}'."


def redirect_key(uri: str) -> tuple[str, ...] | None:
    """What must match between two redirect URIs: scheme and host in any case, the rest exactly. None for
    what is no URL (urlsplit would drop the tabs and line breaks such a string may hide)."""
    if not all(0x21 <= ord(char) <= 0x7E for char in uri):
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    return parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment


def _redirect_uri(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URI_LENGTH:
        raise ConfigError(f"{where} must be an absolute URL of at most {MAX_URI_LENGTH} characters")
    key = redirect_key(value)
    if (key is None or key[0] not in ("http", "https") or not _HOST.fullmatch(key[1]) or "#" in value
            or "*" in value):
        raise ConfigError(f"{where} must be an absolute http(s) URL with a host, without fragment or wildcard: "
                          f"{value!r}")
    if key[0] == "http" and urlsplit(value).netloc.lower().rsplit(":", 1)[0] not in LOOPBACK:
        raise ConfigError(f"{where}: Entra ID accepts an http redirect URI only for localhost; use https: {value!r}")
    return value


def client_info(user_id: str, tenant_id: str) -> str:
    """What msal reads to name the account: ``{"uid": oid, "utid": tid}``, base64url."""
    return b64url(json.dumps({"uid": user_id, "utid": tenant_id}, separators=(",", ":")).encode())


def pairwise_subject(tenant_id: str, audience: str, user_id: str) -> str:
    """``sub``: stable for a person and an app, different between apps, not the object id."""
    return b64url(hashlib.sha256(f"crier-emulator/{tenant_id}/{audience}/{user_id}".encode()).digest())


def find_person(directory: Directory, account: str) -> DirectoryUser | None:
    """The person the account names: by object id, or by UPN or mail in any case; deleted people are gone."""
    wanted = account.strip()
    user_id = normalize_aad(wanted)
    if user_id is not None:
        user = directory.users.get(user_id)
        return user if user is not None and user.deleted_at is None else None
    folded = wanted.casefold()
    for user in directory.users.values():
        names = (user.properties.get("userPrincipalName"), user.properties.get("mail"))
        if user.deleted_at is None and any(isinstance(name, str) and name.casefold() == folded for name in names):
            return user
    return None


def account_refusal(user: DirectoryUser | None, account: str, tenant_id: str) -> tuple[int, str] | None:
    """Entra's AADSTS code and words for a person who may not sign in, or None."""
    if user is None or user.deleted_at is not None:
        return 50034, (f"The user account {account} does not exist in the {tenant_id} directory. To sign into this "
                       "application, the account must be added to the directory.")
    if user.properties.get("accountEnabled") is False:
        return 50057, "The user account is disabled."
    return None


@dataclass
class Grant:
    """What an authorization code stands for: bound at sign-in, checked when the code is redeemed."""

    client_id: str
    tenant_id: str
    redirect_uri: str
    redirect_given: bool  # the authorize request named it (else the app's first one was used)
    code_challenge: str  # "method:challenge", or "" without PKCE
    nonce: str | None
    scope: str
    user_id: str
    auth_time: int
    max_age: bool  # the app asked for max_age: the id token carries auth_time
    expires_at: float
    redeemed: bool = False


@dataclass
class SignIns:
    """The app's sign-in settings and the authorization codes issued and not yet forgotten."""

    redirect_uris: tuple[str, ...] = ()
    group_claims: bool = False
    code_seconds: int = CODE_SECONDS
    codes: dict[str, Grant] = field(default_factory=dict)
    sign_ins: int = 0
    codes_redeemed: int = 0

    def reset(self) -> None:
        self.redirect_uris, self.group_claims, self.code_seconds = (), False, CODE_SECONDS
        self.codes.clear()
        self.sign_ins = self.codes_redeemed = 0

    def checked_config(self, data: dict[str, Any]) -> dict[str, Any]:
        """The sign-in fields of a Graph control config, checked; ConfigError otherwise."""
        checked: dict[str, Any] = {}
        if "sign_in_redirect_uris" in data:
            uris = data["sign_in_redirect_uris"]
            if not isinstance(uris, list) or len(uris) > MAX_REDIRECT_URIS:
                raise ConfigError(f"sign_in_redirect_uris must be a list of at most {MAX_REDIRECT_URIS} URLs")
            valid = (_redirect_uri(uri, f"sign_in_redirect_uris[{index}]") for index, uri in enumerate(uris))
            checked["redirect_uris"] = tuple(dict.fromkeys(valid))
        if "group_claims" in data:
            if not isinstance(data["group_claims"], bool):
                raise ConfigError("group_claims must be true or false")
            checked["group_claims"] = data["group_claims"]
        if "sign_in_code_seconds" in data:
            seconds = data["sign_in_code_seconds"]
            if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= CODE_SECONDS:
                raise ConfigError(f"sign_in_code_seconds must be a whole number from 0 to {CODE_SECONDS}")
            checked["code_seconds"] = seconds
        return checked

    def configure(self, checked: dict[str, Any]) -> None:
        for name, value in checked.items():
            setattr(self, name, value)

    def stats(self) -> dict[str, Any]:
        return {"sign_in_redirect_uris": list(self.redirect_uris), "group_claims": self.group_claims,
                "sign_in_code_seconds": self.code_seconds, "sign_ins": self.sign_ins,
                "codes_redeemed": self.codes_redeemed}

    def registered(self, uri: str) -> str | None:
        """The app's redirect URI that ``uri`` names, or None."""
        key = redirect_key(uri)
        return next((known for known in self.redirect_uris if key is not None and redirect_key(known) == key), None)

    def issue(self, grant: Grant) -> str:
        """A new one-time code for ``grant`` (64 random bytes, url-safe)."""
        if len(self.codes) >= CODE_LIMIT:
            now = time.time()
            self.codes = {code: kept for code, kept in self.codes.items() if kept.expires_at > now}
            while len(self.codes) >= CODE_LIMIT:
                del self.codes[next(iter(self.codes))]
        code = secrets.token_urlsafe(64)
        self.codes[code] = grant
        self.sign_ins += 1
        return code


# --- the authorize endpoint and its pages ----------------------------------------------------------

STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f2f2f2;color:#1b1b1b;margin:0}"
    "main{background:#fff;max-width:24rem;margin:4rem auto;padding:2rem 2.5rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}"
    "h1{font-size:1.5rem;font-weight:600;margin:1rem 0 .5rem}.note{background:#fff4ce;padding:.5rem .7rem;"
    "font-size:.85rem}.error{color:#c50f1f;font-size:.9rem}label{display:block;font-size:.9rem;margin-top:1rem}"
    "input[type=text]{width:100%;box-sizing:border-box;padding:.4rem 0;border:0;border-bottom:1px solid #666;"
    "font-size:1rem}button,input[type=submit]{margin-top:1.5rem;background:#0067b8;color:#fff;border:0;"
    "padding:.5rem 2rem;font-size:.95rem}dl{font-size:.75rem;color:#555}dt{font-weight:600}"
)
# The pages' one style element, allowed by its hash: no other style, and no script but form_post's own.
STYLE_SOURCE = f"'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'"
NOTE = ("<p class=note>Teams emulator: a stand-in for Microsoft's sign-in page. It asks for no password: "
        "naming a person of the emulator's directory signs in as that person.</p>")


class PageError(Exception):
    """A refusal Entra cannot send back to the app, shown on its error page."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


class SentError(Exception):
    """A refusal Entra sends to the app's redirect URI."""

    def __init__(self, redirect_uri: str, mode: str, state: str | None, error: str, code: int, description: str):
        super().__init__(description)
        self.redirect_uri, self.mode, self.state = redirect_uri, mode, state
        self.error, self.code, self.description = error, code, description


@dataclass
class Authorization:
    """An authorization request that passed Entra's checks, with the parameters its sign-in form carries."""

    tenant_id: str
    client_id: str
    redirect_uri: str
    redirect_given: bool
    response_mode: str
    state: str | None
    scope: str
    nonce: str | None
    code_challenge: str
    client_info: bool
    max_age: bool
    carried: dict[str, str]


def _described(code: int, description: str) -> str:
    timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return (f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()} "
            f"Timestamp: {timestamp}")


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _html(title: str, body: str, *, form_action: str, script: str = "'none'", status: int = 200) -> web.Response:
    policy = (f"default-src 'none'; style-src {STYLE_SOURCE}; script-src {script}; form-action {form_action}; "
              "base-uri 'none'; frame-ancestors 'none'")
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><main>{body}</main></body></html>")
    headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
               "Referrer-Policy": "no-referrer"}
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=headers)


def _hidden(values: dict[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
                   for name, value in values.items())


def _send(redirect_uri: str, mode: str, values: dict[str, str]) -> web.Response:
    """The answer to the app, as ``response_mode`` says: in the query or fragment of a 302, or posted by a
    page that submits itself (its one script allowed by a nonce; a Submit button without script)."""
    if mode == "form_post":
        nonce = secrets.token_urlsafe(18)
        body = (f'<form method="post" name="hiddenform" action="{escape(redirect_uri)}">{_hidden(values)}'
                "<noscript><p>Script is disabled. Click Submit to continue.</p><input type=submit value=Submit>"
                f'</noscript></form><script nonce="{nonce}">document.forms[0].submit();</script>')
        return _html("Working...", body, form_action=_origin(redirect_uri), script=f"'nonce-{nonce}'")
    separator = "#" if mode == "fragment" else "&" if "?" in redirect_uri else "?"
    return web.Response(status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(values)}",
                                             "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


class SignIn:
    def __init__(self, ctx) -> None:  # the Context, which holds this module's SignIns
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        path = "/{tenant}/oauth2/v2.0/authorize"
        return [web.get(path, self.authorize), web.post(path, self.authorize)]

    def _authorization(self, tenant: str, params: MultiMapping[Any]) -> Authorization:
        """The request, checked in Entra's order; PageError or SentError for what Entra refuses."""
        settings, registered = self.ctx.settings, self.ctx.sign_ins.redirect_uris
        for name in PARAMETERS:
            if len(params.getall(name, ())) > 1:
                raise PageError(9000411,
                                f"The request is not properly formatted. The parameter '{name}' is duplicated.")
        value = {name: str(params.get(name) or "") for name in PARAMETERS}
        if tenant.lower() != settings.tenant_id:
            raise PageError(90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                            "and are signing into the correct cloud. The emulator signs people in to "
                            f"{settings.tenant_id}.")
        client_id = value["client_id"]
        if not client_id:
            raise PageError(900144, missing("client_id"))
        if client_id != settings.app_id:
            raise PageError(700016, f"Application with identifier '{client_id}' was not found in the directory "
                            f"'{tenant}'. This can happen if the application has not been installed by the "
                            "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                            "your authentication request to the wrong tenant.")
        redirect_uri = value["redirect_uri"]
        if not redirect_uri and not registered:
            raise PageError(500113, "No reply address is registered for the application.")
        target = self.ctx.sign_ins.registered(redirect_uri) if redirect_uri else registered[0]
        if target is None:
            raise PageError(50011, f"The redirect URI '{redirect_uri}' specified in the request does not match the "
                            f"redirect URIs configured for the application '{client_id}'. Make sure the redirect URI "
                            "sent in the request matches one added to your application in the Azure portal. Navigate "
                            "to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.")
        mode, state = value["response_mode"] or "query", value["state"] or None

        def refuse(error: str, code: int, description: str) -> SentError:
            return SentError(target, mode if mode in RESPONSE_MODES else "query", state, error, code, description)

        malformed = "Invalid request. Request is malformed or invalid. - The reason:"
        if mode not in RESPONSE_MODES:
            raise refuse("invalid_request", 9002313, f"{malformed} response_mode '{mode}' is not supported.")
        absent = next((name for name in ("response_type", "scope") if not value[name]), None)
        if absent:
            raise refuse("invalid_request", 900144, missing(absent))
        if value["response_type"] != "code":
            raise refuse("unsupported_response_type", 700054,
                         f"response_type '{value['response_type']}' is not enabled for the application.")
        if "openid" not in value["scope"].split():
            raise refuse("invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid. "
                         f"The scope '{value['scope']}' does not include 'openid': the emulator signs people in only.")
        # PKCE, which Entra ID recommends to a web app and does not require: S256, or plain (the default).
        challenge = value["code_challenge"]
        method = value["code_challenge_method"] or ("plain" if challenge else "")
        if method and not challenge:
            raise refuse("invalid_request", 900144, missing("code_challenge"))
        if method not in ("", "S256", "plain"):
            raise refuse("invalid_request", 9002313, f"{malformed} code_challenge_method must be S256 or plain, not "
                         f"'{method}'.")
        if challenge and not (_CHALLENGE if method == "S256" else _PLAIN_CHALLENGE).fullmatch(challenge):
            raise refuse("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        if value["prompt"] == "none":
            raise refuse("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
        carried = {name: value[name] for name in PARAMETERS if name in params and name != "login_hint"}
        return Authorization(settings.tenant_id, client_id, target, bool(redirect_uri), mode, state, value["scope"],
                             value["nonce"] or None, f"{method}:{challenge}" if challenge else "",
                             value["client_info"] == "1",
                             bool(value["max_age"]), carried)

    async def authorize(self, request: web.Request) -> web.Response:
        """The sign-in page (GET), and its form (POST): the person it names signs in."""
        tenant = unquote(request.match_info["tenant"])
        params = request.query if request.method != "POST" else await request.post()
        try:
            found = self._authorization(tenant, params)
        except PageError as shown:
            return self._error_page(shown)
        except SentError as sent:
            values = {"error": sent.error, "error_description": _described(sent.code, sent.description)}
            return _send(sent.redirect_uri, sent.mode, values | ({"state": sent.state} if sent.state else {}))
        if request.method != "POST":
            return self._sign_in_page(found, str(params.get("login_hint") or ""))
        account = str(params.get("login") or "").strip()
        if not account:
            return self._sign_in_page(found, "", "Enter the user principal name, mail or object id of the account.")
        user = find_person(self.ctx.directory, account)
        if refusal := account_refusal(user, account, found.tenant_id):
            return self._sign_in_page(found, account, f"AADSTS{refusal[0]}: {refusal[1]}")
        assert user is not None
        now, sign_ins = time.time(), self.ctx.sign_ins
        code = sign_ins.issue(Grant(
            found.client_id, found.tenant_id, found.redirect_uri, found.redirect_given, found.code_challenge,
            found.nonce, found.scope, user.id, int(now), found.max_age, now + sign_ins.code_seconds))
        values = {"code": code}
        if found.client_info:
            values["client_info"] = client_info(user.id, found.tenant_id)
        if found.state is not None:
            values["state"] = found.state
        values["session_state"] = str(uuid.uuid4())
        return _send(found.redirect_uri, found.response_mode, values)

    def _sign_in_page(self, found: Authorization, account: str, error: str | None = None) -> web.Response:
        action = f"/{quote(found.tenant_id, safe='')}/oauth2/v2.0/authorize"
        alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        body = (
            f"{NOTE}<h1>Sign in</h1><p>to the app {escape(found.client_id)}, tenant {escape(found.tenant_id)}</p>"
            f'{alert}<form method="post" action="{escape(action)}">{_hidden(found.carried)}'
            '<label for="login">Account: user principal name, mail or object id</label>'
            f'<input type="text" id="login" name="login" value="{escape(account)}" autocomplete="username" '
            "required autofocus><button type=submit>Sign in</button></form>"
        )
        # The form posts here, and its answer redirects to the app: form-action must allow both.
        return _html("Sign in to your account", body, form_action=f"'self' {_origin(found.redirect_uri)}")

    def _error_page(self, shown: PageError) -> web.Response:
        timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (
            f"{NOTE}<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
            f'<p class="error">AADSTS{shown.code}: {escape(shown.description)}</p>'
            f"<dl><dt>Request Id</dt><dd>{uuid.uuid4()}</dd><dt>Correlation Id</dt><dd>{uuid.uuid4()}</dd>"
            f"<dt>Timestamp</dt><dd>{timestamp}</dd></dl>"
        )
        return _html("Sign in to your account", body, form_action="'none'", status=400)
