"""Staff sign in to the admin with their organisation's Entra ID account (``STAFF_SIGN_IN``): OpenID Connect's
authorization code flow with PKCE, through msal (the bot's own app registration, on the organisation's tenant).

* ``sign_in_start`` keeps msal's flow (state, nonce, PKCE verifier) in the session and gives the address of
  Entra ID's sign-in page; ``sign_in_finish`` hands Entra ID's answer to msal, which checks the state, redeems
  the code with the verifier and checks the id token's nonce; Crier checks its audience, issuer and expiry. The
  token came straight from Entra ID's token endpoint over TLS, so its signature needs no check of its own, as
  OpenID Connect allows.
* The account is found by the person's Entra object id and tenant, never by a name or an e-mail address a local
  account may share: a first sign-in makes a new account, with no password.
* The person's roles come from the id token at every sign-in, and the account is kept in step with them: its
  role groups (``campaigns.roles``) are set to exactly those, ``administrator`` makes it a superuser, and no role
  at all refuses the sign-in and takes the account's roles away. ``STAFF_SIGN_IN_ROLES`` maps app role values
  (the ``roles`` claim) and group object ids (the ``groups`` claim) to Crier's roles. A change of roles is in the
  audit log.
* ``EntraBackend`` keeps such sessions valid, with the permissions of their groups; with ``LOCAL_PASSWORDS`` off it
  is the only backend, so no password signs anyone in.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import IntegrityError, transaction
from django.utils import timezone

from bots.tokens import MICROSOFT_AUTHORITY_HOSTS

from .audit import audit_record
from .models import AuditEntry, Recipient, StaffProfile
from .roles import APPROVERS, AUTHORS, VIEWERS, roles_ensure

logger = logging.getLogger(__name__)

FLOW_KEY = "crier_sign_in_flow"
ADMINISTRATOR = "administrator"
ROLE_GROUPS = {"author": AUTHORS, "approver": APPROVERS, "viewer": VIEWERS}
ROLES = (*ROLE_GROUPS, ADMINISTRATOR)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")  # a group's object id
BACKEND = "campaigns.sign_in.EntraBackend"


class SignInRefused(Exception):
    """The sign-in did not succeed; ``str()`` says why in words a staff member can act on."""


class EntraBackend(ModelBackend):
    """Sessions of people who signed in with Entra ID: never checks a password."""

    def authenticate(self, request, **credentials):
        return None


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    object_id: str
    username: str
    name: str
    roles: frozenset[str]


def role_map(text: str | None = None) -> dict[str, str]:
    """``STAFF_SIGN_IN_ROLES`` ("value=role,..."): an app role's value or a group's object id, lower-cased, to one
    of ``ROLES``. Raises ValueError naming what is wrong."""
    mapping: dict[str, str] = {}
    for entry in (settings.STAFF_SIGN_IN_ROLES if text is None else text).split(","):
        if not entry.strip():
            continue
        value, _, role = (part.strip() for part in entry.partition("="))
        if not value or role.lower() not in ROLES:
            raise ValueError(f"STAFF_SIGN_IN_ROLES: {entry.strip()!r} is not value=role with a role among {', '.join(ROLES)}")
        mapping[value.lower()] = role.lower()
    return mapping


# msal's answers from Entra ID's discovery documents, kept for every sign-in: a visit to the sign-in link costs
# no call to Entra ID. (Each sign-in has an application of its own, so that no person's tokens stay in memory.)
_DISCOVERY: dict = {}


def _app() -> msal.ConfidentialClientApplication:
    authority = settings.STAFF_SIGN_IN_AUTHORITY
    return msal.ConfidentialClientApplication(
        settings.BOT_APP_ID, client_credential=settings.BOT_APP_PASSWORD, authority=authority,
        instance_discovery=urlsplit(authority).hostname in MICROSOFT_AUTHORITY_HOSTS,
        timeout=settings.BOT_HTTP_TIMEOUT_SECONDS, token_cache=msal.TokenCache(), http_cache=_DISCOVERY,
    )


def sign_in_start(*, session: Any, redirect_uri: str, next_url: str) -> str:
    """Where to send the browser: Entra ID's sign-in page. The flow waits in the session for the answer."""
    try:
        with warnings.catch_warnings():
            # The answer comes back in the query, not posted: a cross-site POST would arrive without the session's
            # cookie (SameSite=Lax), and with it the flow. State, nonce and PKCE guard the code either way.
            warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
            flow = _app().initiate_auth_code_flow(scopes=[], redirect_uri=redirect_uri, prompt="select_account",
                                                  response_mode="query")
    except (requests.RequestException, ValueError) as error:
        raise SignInRefused(f"Entra ID could not be reached to sign in ({type(error).__name__}); try again.") from error
    session[FLOW_KEY] = {"flow": flow, "next": next_url}
    return flow["auth_uri"]


def sign_in_finish(*, session: Any, answer: dict[str, str]) -> tuple[Any, str]:
    """The account of the person Entra ID signed in, kept in step with their roles, and where they were going."""
    pending = session.pop(FLOW_KEY, None)
    if not isinstance(pending, dict) or "flow" not in pending:
        raise SignInRefused("This sign-in was not started here, or it was already used: sign in again.")
    if answer.get("state") != pending["flow"].get("state"):  # before anything of the answer is shown or used
        raise SignInRefused("The answer from Entra ID does not belong to this sign-in: sign in again.")
    if answer.get("error"):
        raise SignInRefused(f"Entra ID did not sign you in: {answer.get('error_description') or answer['error']}"[:500])
    try:
        result = _app().acquire_token_by_auth_code_flow(pending["flow"], answer)
    except (ValueError, RuntimeError) as error:  # msal: the state, or the id token's nonce, does not match
        raise SignInRefused("The answer from Entra ID does not belong to this sign-in: sign in again.") from error
    except requests.RequestException as error:
        raise SignInRefused(f"Entra ID could not be reached to finish signing in ({type(error).__name__}).") from error
    if "error" in result:
        logger.warning("Entra ID sign-in refused: %s %s", result.get("error"), result.get("error_description"))
        raise SignInRefused(f"Entra ID did not sign you in: {result.get('error_description') or result['error']}"[:500])
    identity = identity_of(result.get("id_token_claims") or {})
    return staff_account_sync(identity), str(pending.get("next") or "")


def identity_of(claims: dict[str, Any]) -> Identity:
    """Who the id token names, and their Crier roles; refuses a token of another tenant or without an object id."""
    tenant, oid = str(claims.get("tid") or "").lower(), str(claims.get("oid") or "").lower()
    if not tenant or not oid:
        raise SignInRefused("Entra ID's answer does not say who you are (no tenant or object id).")
    # Without a tenant of its own, any organisation's administrator could give themselves Crier's roles.
    if not settings.BOT_TENANT_ID or tenant != settings.BOT_TENANT_ID.lower():
        raise SignInRefused("This account belongs to another organisation than Crier's: sign in with your work account.")
    audience = claims.get("aud")
    if (audience if isinstance(audience, list) else [audience]) != [settings.BOT_APP_ID] or not str(
            claims.get("iss") or "").lower().endswith(f"/{tenant}/v2.0") or float(claims.get("exp") or 0) < time.time():
        raise SignInRefused("Entra ID's answer was not meant for Crier, or has expired: sign in again.")
    mapping = role_map()
    values = [*(claims.get("roles") or []), *(claims.get("groups") or [])]
    roles = frozenset(mapping[str(value).lower()] for value in values if str(value).lower() in mapping)
    maps_groups = any(_GUID.match(value) for value in mapping)
    if maps_groups and (claims.get("hasgroups") or "groups" in (claims.get("_claim_names") or {})):
        raise SignInRefused("You are in too many groups for Entra ID to list them in the sign-in: ask an administrator "
                            "to give you one of Crier's app roles instead (docs/going-live.md).")
    username = str(claims.get("preferred_username") or oid)[:150]
    return Identity(tenant_id=tenant, object_id=oid, username=username, name=str(claims.get("name") or "")[:150],
                    roles=roles)


def _free_username(wanted: str, object_id: str) -> str:
    User = get_user_model()
    if not User.objects.filter(username__iexact=wanted).exists():
        return wanted
    return f"{wanted[:140]}~{object_id[:8]}"  # a local account has that name: this is another account


def staff_account_sync(identity: Identity) -> Any:
    """The account for this identity (made at the first sign-in), with exactly the roles the id token gives.
    Without any role, the account loses its roles and the sign-in is refused."""
    groups = roles_ensure()
    with transaction.atomic():
        profile = (StaffProfile.objects.select_for_update().select_related("user")
                   .filter(entra_tenant_id=identity.tenant_id, entra_object_id=identity.object_id).first())
        if profile is None and not identity.roles:
            raise SignInRefused("Your account has no role in Crier: ask an administrator to assign you one "
                                "(docs/going-live.md).")
        if profile is None:
            profile = _account_create(identity)
        user = profile.user
        if not user.is_active:  # blocked in Crier: it stays as it is
            raise SignInRefused("This account is disabled in Crier: ask an administrator.")
        before = _roles_of(user)
        wanted = sorted(identity.roles)
        user.groups.remove(*(groups[name] for name in ROLE_GROUPS.values()))
        user.groups.add(*(groups[ROLE_GROUPS[role]] for role in wanted if role in ROLE_GROUPS))
        user.is_superuser = ADMINISTRATOR in identity.roles
        user.is_staff = bool(identity.roles)
        user.save(update_fields=["is_superuser", "is_staff"])
        profile.signed_in_at = timezone.now()
        if profile.recipient_id is None:  # who they are in Teams, as Entra ID vouches: their own tests reach them
            profile.recipient = Recipient.objects.filter(aad_object_id=identity.object_id).first()
        profile.save(update_fields=["signed_in_at", "recipient"])
        if before != wanted:
            audit_record(AuditEntry.Action.ROLES_FROM_ENTRA, user=user if identity.roles else None,
                         summary=f"{user.username}'s roles from Entra ID: {', '.join(wanted) or 'none'} "
                                 f"(before: {', '.join(before) or 'none'})",
                         detail={"before": before, "after": wanted, "object_id": identity.object_id})
    if not identity.roles:
        raise SignInRefused("Your account no longer has a role in Crier: ask an administrator to assign you one.")
    return user


def _account_create(identity: Identity) -> StaffProfile:
    User = get_user_model()
    first, _, last = identity.name.partition(" ")
    try:
        with transaction.atomic():
            # No e-mail address: the id token's is not checked by Entra ID for every account, and an address
            # would let its holder link someone else in Teams (My profile).
            user = User(username=_free_username(identity.username, identity.object_id), first_name=first[:150],
                        last_name=last[:150])
            user.set_unusable_password()
            user.save()
            profile, _ = StaffProfile.objects.get_or_create(user=user)
            profile.entra_tenant_id, profile.entra_object_id = identity.tenant_id, identity.object_id
            profile.save(update_fields=["entra_tenant_id", "entra_object_id"])
    except IntegrityError:  # the same person signing in twice at once: the other made the account
        made = StaffProfile.objects.select_for_update().select_related("user").filter(
            entra_tenant_id=identity.tenant_id, entra_object_id=identity.object_id).first()
        if made is None:
            raise SignInRefused("Your account could not be made just now: sign in again.") from None
        return made
    return profile


def _roles_of(user: Any) -> list[str]:
    names = set(user.groups.values_list("name", flat=True))
    return sorted([role for role, group in ROLE_GROUPS.items() if group in names]
                  + ([ADMINISTRATOR] if user.is_superuser else []))

