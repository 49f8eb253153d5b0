"""The emulator's Microsoft Graph, as a real process over real HTTPS: the users delta query (pages, delta
links, changed properties only, removed users, expired links), its tokens and permissions, and 429.

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msal
import pytest
import urllib3

from emulator.process import RunningEmulator

from .identity import APP_ID, PASSWORD, TENANT

GRAPH = "https://graph.microsoft.com/.default"
SELECT = "id,displayName,department,accountEnabled"


@pytest.fixture(autouse=True)
def fresh(emu: RunningEmulator) -> None:
    emu.client.reset()


def token(emu: RunningEmulator, tenant: str = TENANT) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:  # msal's requests trusts the emulator's CA through this
        patch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_file))
        app = msal.ConfidentialClientApplication(APP_ID, client_credential=PASSWORD, authority=f"{emu.url}/{tenant}",
                                                 instance_discovery=False)
        return app.acquire_token_for_client(scopes=[GRAPH])


def get(
    emu: RunningEmulator, url: str, bearer: str | None = None, prefer: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(emu.ca_file), retries=False)
    headers = {"Authorization": f"Bearer {bearer or token(emu)['access_token']}"}
    if prefer:
        headers["Prefer"] = prefer
    response = pool.request("GET", url, headers=headers)
    return response.status, json.loads(response.data), dict(response.headers)


def delta_url(emu: RunningEmulator) -> str:
    return f"{emu.graph_url}/users/delta?$select={SELECT}"


def everything(emu: RunningEmulator, url: str, prefer: str | None = None) -> tuple[list[dict[str, Any]], str, int]:
    """Every entry from ``url`` to the delta link, the delta link, and the number of pages."""
    entries, pages = [], 0
    while True:
        status, body, _ = get(emu, url, prefer=prefer)
        assert status == 200, body
        entries += body["value"]
        pages += 1
        if "@odata.nextLink" in body:
            url = body["@odata.nextLink"]
        else:
            return entries, body["@odata.deltaLink"], pages


def people(count: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.UUID(int=n + 1)), "displayName": f"Person {n}", "department": "Sales"} for n in range(count)]


def test_a_full_round_lists_everyone_page_by_page_then_gives_a_delta_link(emu):
    emu.client.graph_users(people(5))
    emu.client.graph_config(page_size=2)

    entries, link, pages = everything(emu, delta_url(emu))

    assert pages == 3
    assert [entry["displayName"] for entry in entries] == [f"Person {n}" for n in range(5)]
    assert entries[0] == {"id": str(uuid.UUID(int=1)), "displayName": "Person 0", "department": "Sales",
                          "accountEnabled": True}
    assert "$deltatoken=" in link


def test_the_delta_link_lists_only_what_changed_and_who_was_removed(emu):
    emu.client.graph_users(people(3))
    _, link, _ = everything(emu, delta_url(emu))
    emu.client.graph_users([{"id": str(uuid.UUID(int=1)), "department": "Finance", "displayName": "Person 0"}])
    emu.client.graph_delete(uuid.UUID(int=2))
    emu.client.graph_users([{"id": str(uuid.UUID(int=9)), "displayName": "New", "department": "HR"}])

    entries, next_link, _ = everything(emu, link)
    minimal, _, _ = everything(emu, link, prefer="return=minimal")

    assert entries == [
        {"id": str(uuid.UUID(int=1)), "displayName": "Person 0", "department": "Finance", "accountEnabled": True},
        {"id": str(uuid.UUID(int=2)), "@removed": {"reason": "changed"}},
        {"id": str(uuid.UUID(int=9)), "displayName": "New", "department": "HR", "accountEnabled": True},
    ]
    assert minimal[0] == {"id": str(uuid.UUID(int=1)), "department": "Finance"}  # its name did not change
    assert everything(emu, next_link)[0] == []  # nothing since


def test_a_change_made_while_a_round_is_paged_is_never_lost(emu):
    emu.client.graph_users(people(4))
    _, link, _ = everything(emu, delta_url(emu))
    emu.client.graph_users([{**user, "department": "Finance"} for user in people(4)])
    emu.client.graph_config(page_size=2)

    status, first, _ = get(emu, link)
    emu.client.graph_users([{"id": str(uuid.UUID(int=1)), "department": "Legal"}])  # changed again meanwhile
    rest, next_link, _ = everything(emu, first["@odata.nextLink"])

    assert [entry["id"] for entry in first["value"] + rest] == [str(uuid.UUID(int=n + 1)) for n in range(4)]
    assert [entry["department"] for entry in everything(emu, next_link)[0]] == ["Legal"]  # listed again


def test_an_expired_delta_link_answers_410_sync_state_not_found(emu):
    emu.client.graph_users(people(1))
    _, link, _ = everything(emu, delta_url(emu))
    emu.client.graph_expire_delta_links()

    status, body, _ = get(emu, link)

    assert status == 410
    assert body["error"]["code"] == "syncStateNotFound"


def test_it_answers_401_without_a_graph_token_and_403_without_the_permission(emu):
    status, body, _ = get(emu, delta_url(emu), bearer="not-a-token")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")

    emu.client.graph_config(permissions=["TeamsActivity.Send"])
    status, body, _ = get(emu, delta_url(emu))
    assert (status, body["error"]["code"]) == (403, "Authorization_RequestDenied")


def test_graph_tokens_come_only_from_the_organisations_tenant(emu):
    refused = token(emu, tenant="botframework.com")

    assert refused.get("error") == "invalid_scope"
    assert "access_token" in token(emu)


def test_it_answers_429_with_retry_after_when_told_to(emu):
    emu.client.graph_config(throttle_next=1, retry_after_seconds=7)

    status, body, headers = get(emu, delta_url(emu))
    again, _, _ = get(emu, delta_url(emu))

    assert status == 429, (body, emu.client.graph_stats())
    assert (body["error"]["code"], headers["Retry-After"]) == ("TooManyRequests", "7")
    assert again == 200
    assert emu.client.graph_stats()["throttled"] == 1


def test_its_control_api_refuses_a_user_without_a_guid(emu):
    from emulator.client import EmulatorError

    with pytest.raises(EmulatorError) as refused:
        emu.client.graph_users([{"id": "not-a-guid"}])

    assert refused.value.status == 400
    assert "users[0].id" in str(refused.value.body)


def test_a_user_made_and_deleted_while_a_round_is_paged_is_listed_as_removed(emu):
    emu.client.graph_users(people(3))
    emu.client.graph_config(page_size=2)
    status, first, _ = get(emu, delta_url(emu))
    late = str(uuid.UUID(int=99))
    emu.client.graph_users([{"id": late, "displayName": "Late"}])
    rest, link, _ = everything(emu, first["@odata.nextLink"])
    emu.client.graph_delete(late)

    assert [entry["id"] for entry in rest] == [str(uuid.UUID(int=3)), late]
    assert everything(emu, link)[0] == [{"id": late, "@removed": {"reason": "changed"}}]


def test_its_control_api_changes_no_setting_when_one_is_wrong(emu):
    from emulator.client import EmulatorError

    with pytest.raises(EmulatorError) as refused:
        emu.client.graph_config(page_size=5, permissions="User.Read.All")

    assert refused.value.status == 400
    assert "permissions must be a list" in str(refused.value.body)
    assert emu.client.graph_stats()["page_size"] == 100


def test_each_emulator_process_starts_a_new_generation_of_delta_links():
    from emulator.graph import Directory

    first, restarted = Directory(), Directory()

    assert first.generation != restarted.generation
