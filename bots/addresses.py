"""Where Teams reaches each person, for delivery: the address stored in ``bots_teamsaddress``, read in
the same statement as the person (the hot path makes one round trip per person), and what delivery
writes back when Teams makes a conversation or says the person blocked the bot.

Delivery's statements take the SQL from here rather than naming this app's table themselves."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

from core.channels import Address

from .models import TeamsAddress

# What the join reads, in the order ``address_of`` takes it.
ADDRESS_COLUMNS = "a.user_id, a.tenant_id, a.service_url, a.conversation_id"


def address_join(person: str) -> str:
    """The join that reads, as ``a``, the stored address of the person whose row is aliased ``person``
    (there may be none: Teams never told Crier about them)."""
    return f"LEFT JOIN bots_teamsaddress AS a ON a.aad_object_id = {person}.aad_object_id"


def address_of(*, aad_object_id: Any, tenant_id: str | None, stored: tuple[Any, Any, Any, Any]) -> Address:
    """Where to reach a person, from ``ADDRESS_COLUMNS``: their Teams user id when Teams gave one, else their
    Entra object id (CreateConversation takes either); the tenant Teams gave, else the person's own,
    else the bot's; the service URL Teams gave, else the configured one; the conversation, if any."""
    user_id, stored_tenant, service_url, conversation_id = stored
    return Address(
        member_id=user_id or str(aad_object_id or ""),
        tenant_id=stored_tenant or tenant_id or settings.BOT_TENANT_ID,
        service_url=service_url or settings.TEAMS_SERVICE_URL,
        conversation_id=conversation_id or "",
    )


# Stores the conversation Teams made for a person (parameters: Entra object id, tenant, conversation,
# service URL), keeping what Teams told of the tenant and service URL before.
REMEMBER_CONVERSATION = """
INSERT INTO bots_teamsaddress (aad_object_id, tenant_id, user_id, conversation_id, service_url, state, updated_at)
VALUES (%s, %s, '', %s, %s, 'unknown', now())
ON CONFLICT (aad_object_id) DO UPDATE
   SET conversation_id = EXCLUDED.conversation_id, updated_at = now(),
       tenant_id = COALESCE(NULLIF(bots_teamsaddress.tenant_id, ''), EXCLUDED.tenant_id),
       service_url = COALESCE(NULLIF(bots_teamsaddress.service_url, ''), EXCLUDED.service_url)
"""


def address_mark_blocked(*, aad_object_id: Any) -> None:
    """Teams said the person blocked the bot: shown as such until they write to it again."""
    TeamsAddress.objects.filter(aad_object_id=aad_object_id).update(state=TeamsAddress.State.BLOCKED)


# What a team's roster says of its members: their Teams id, tenant and service URL, kept where Teams told
# nothing yet (a person's own chat with the bot says more than a team's roster).
LEARN_FROM_ROSTER = """
INSERT INTO bots_teamsaddress (aad_object_id, tenant_id, user_id, conversation_id, service_url, state, updated_at)
SELECT member.aad, %s, member.user_id, '', %s, 'unknown', now()
  FROM unnest(%s::uuid[], %s::text[]) AS member (aad, user_id)
ON CONFLICT (aad_object_id) DO UPDATE
   SET user_id = COALESCE(NULLIF(bots_teamsaddress.user_id, ''), EXCLUDED.user_id),
       tenant_id = COALESCE(NULLIF(bots_teamsaddress.tenant_id, ''), EXCLUDED.tenant_id),
       service_url = COALESCE(NULLIF(bots_teamsaddress.service_url, ''), EXCLUDED.service_url),
       updated_at = now()
 WHERE bots_teamsaddress.user_id = '' OR bots_teamsaddress.tenant_id = '' OR bots_teamsaddress.service_url = ''
"""


def addresses_learn(*, members: list[tuple[str, str]], tenant_id: str, service_url: str) -> None:
    """Records the Teams ids a team's roster gave (``(Entra object id, 29: id)``): the bot, in the team,
    can start a one-to-one chat with each of them by that id, installed for themselves or not."""
    if not members:
        return
    with connection.cursor() as cursor:
        # The tenant and service URL are a TeamsTeam's, which fit already; a roster's ids are Teams'.
        cursor.execute(LEARN_FROM_ROSTER, [
            tenant_id, service_url, [aad for aad, _ in members], [user_id[:500] for _, user_id in members],
        ])


# Crier is about to install the app for these people (parameter: their Entra object ids, each once or more).
CRIER_INSTALLS = """
INSERT INTO bots_teamsaddress (aad_object_id, tenant_id, user_id, conversation_id, service_url, state,
                               installed_by_crier_at, updated_at)
SELECT DISTINCT aad, '', '', '', '', 'unknown', now(), now() FROM unnest(%s::uuid[]) AS aad
ON CONFLICT (aad_object_id) DO UPDATE SET installed_by_crier_at = now()
"""


def addresses_crier_installs(*, aad_object_ids: list[str]) -> None:
    """Marks that Crier installs the app for these people, so that the installation's activity is known as Crier's
    and sets off no welcome message."""
    if not aad_object_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(CRIER_INSTALLS, [aad_object_ids])
