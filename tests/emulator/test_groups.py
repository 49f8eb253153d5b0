"""The emulator's Microsoft Graph groups, as a real process over real HTTPS: search by name, one group,
its transitive members (nested groups, cycles, paging, counts), the errors Graph gives, and the control
API that sets groups up.

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import urllib3

from emulator.client import EmulatorError
from emulator.process import RunningEmulator

from .test_graph import token

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture(autouse=True)
def fresh(emu: RunningEmulator) -> None:
    emu.client.reset()


def get(emu: RunningEmulator, url: str, headers: dict[str, str] | None = None,
        bearer: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A GET to Graph (``url`` is a full URL, or a path under /graph/v1.0) with a fresh token."""
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(emu.ca_file), retries=False)
    url = url if url.startswith("https://") else emu.graph_url + url
    all_headers = {"Authorization": f"Bearer {bearer or token(emu)['access_token']}", **(headers or {})}
    response = pool.request("GET", url, headers=all_headers)
    return response.status, json.loads(response.data), dict(response.headers)


def search(term: str) -> str:
    return "/groups?$search=" + quote(f'"displayName:{term}"')


def guid(n: int) -> str:
    return str(uuid.UUID(int=n))


def names(body: dict[str, Any]) -> list[str]:
    return [group["displayName"] for group in body["value"]]


def make_groups(emu: RunningEmulator, *display_names: str) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in display_names]
    emu.client.graph_groups([{"id": gid, "displayName": name} for gid, name in zip(ids, display_names, strict=True)])
    return ids


def test_search_matches_the_start_of_the_name_or_of_any_word_in_any_case(emu):
    make_groups(emu, "Sales Team EU", "Marketing", "pre-sales", "Salesforce Admins", "Wholesale", "HR_sales")

    status, body, _ = get(emu, search("sal"), EVENTUAL)

    assert status == 200, body
    assert names(body) == ["HR_sales", "pre-sales", "Sales Team EU", "Salesforce Admins"]  # not "Wholesale"
    assert names(get(emu, search("SALES"), EVENTUAL)[1]) == names(body)
    assert names(get(emu, search("sales team"), EVENTUAL)[1]) == ["Sales Team EU"]  # the whole name's start
    assert names(get(emu, search("eu"), EVENTUAL)[1]) == ["Sales Team EU"]
    assert get(emu, search("team eu"), EVENTUAL)[1]["value"] == []
    assert "@odata.count" not in body and "@odata.nextLink" not in body


def test_search_needs_consistency_level_eventual_and_the_quoted_form(emu):
    make_groups(emu, "Sales")

    status, body, _ = get(emu, search("sal"))
    assert (status, body["error"]["code"]) == (400, "Request_UnsupportedQuery")
    assert "ConsistencyLevel: eventual" in body["error"]["message"]

    for malformed in ("displayName:sal", '"mail:sal"', '"displayName:sal', "sal"):
        status, body, _ = get(emu, "/groups?$search=" + quote(malformed), EVENTUAL)
        assert (status, body["error"]["code"]) == (400, "Request_BadRequest"), malformed


def test_groups_show_the_selected_properties_and_a_count(emu):
    dynamic, static = str(uuid.uuid4()), str(uuid.uuid4())
    emu.client.graph_groups([
        {"id": dynamic, "displayName": "All Staff", "description": "Everyone",
         "membershipRule": 'user.accountEnabled -eq true'},
        {"id": static, "displayName": "All Managers"},
    ])

    status, body, _ = get(emu, search("all") + "&$count=true&$select=displayName,groupTypes,membershipRule", EVENTUAL)
    _, default, _ = get(emu, "/groups")

    assert status == 200, body
    assert body["@odata.count"] == 2
    assert body["value"] == [
        {"id": static, "displayName": "All Managers", "groupTypes": [], "membershipRule": None},
        {"id": dynamic, "displayName": "All Staff", "groupTypes": ["DynamicMembership"],
         "membershipRule": "user.accountEnabled -eq true"},
    ]
    assert default["value"][1] == {
        "id": dynamic, "displayName": "All Staff", "description": "Everyone", "mail": None,
        "groupTypes": ["DynamicMembership"], "membershipRule": "user.accountEnabled -eq true",
    }
    status, body, _ = get(emu, "/groups?$count=true")  # $count needs the header too
    assert (status, body["error"]["code"]) == (400, "Request_UnsupportedQuery")


def test_all_groups_are_listed_by_name_a_page_at_a_time(emu):
    make_groups(emu, "delta", "Alpha", "echo", "Charlie", "bravo")

    url, pages, listed = "/groups?$top=2&$select=displayName", 0, []
    while url:
        status, body, _ = get(emu, url)
        assert status == 200, body
        listed += names(body)
        pages += 1
        url = body.get("@odata.nextLink")

    assert (pages, listed) == (3, ["Alpha", "bravo", "Charlie", "delta", "echo"])
    assert list(get(emu, "/groups?$top=2&$select=displayName")[1]["value"][0]) == ["id", "displayName"]


def nested_directory(emu: RunningEmulator, groups: dict[str, str] | None = None) -> dict[str, str]:
    """Users u1..u6 (u4 deleted, u6 disabled) and groups A > B > C > A (a cycle); A also names a stranger."""
    emu.client.graph_users([{"id": guid(n), "displayName": f"User {n}", "mail": f"u{n}@example.com"}
                            for n in range(1, 7)])
    emu.client.graph_users([{"id": guid(6), "accountEnabled": False}])
    emu.client.graph_delete(guid(4))
    groups = groups or {name: str(uuid.uuid4()) for name in "ABC"}
    emu.client.graph_groups([
        {"id": groups["A"], "displayName": "Group A", "members": [guid(3), groups["B"], guid(1), guid(99)]},
        {"id": groups["B"], "displayName": "Group B", "members": [guid(5), groups["C"], guid(3)]},
        {"id": groups["C"], "displayName": "Group C", "members": [groups["A"], guid(2), guid(4), guid(6)]},
    ])
    return groups


def test_transitive_members_list_each_user_once_in_directory_order_through_a_cycle_page_by_page(emu):
    groups = nested_directory(emu)
    url = (f"/groups/{groups['A']}/transitiveMembers/microsoft.graph.user"
           "?$select=displayName,mail,accountEnabled&$top=2&$count=true")

    pages = []
    while url:
        status, body, _ = get(emu, url, EVENTUAL)
        assert status == 200, body
        pages.append(body)
        url = body.get("@odata.nextLink")

    assert [[user["id"] for user in page["value"]] for page in pages] == [
        [guid(1), guid(2)], [guid(3), guid(5)], [guid(6)]
    ]
    assert [page["@odata.count"] for page in pages] == [5, 5, 5]
    assert pages[0]["value"][0] == {"id": guid(1), "displayName": "User 1", "mail": "u1@example.com",
                                    "accountEnabled": True}
    assert pages[2]["value"] == [{"id": guid(6), "displayName": "User 6", "mail": "u6@example.com",
                                  "accountEnabled": False}]
    assert "$skiptoken=" in pages[0]["@odata.nextLink"] and "$select=displayName,mail" in pages[0]["@odata.nextLink"]


def test_transitive_members_without_the_cast_list_the_nested_groups_too(emu):
    groups = nested_directory(emu)

    status, body, _ = get(emu, f"/groups/{groups['B']}/transitiveMembers?$select=displayName")

    assert status == 200, body
    assert body["value"] == [
        *[{"@odata.type": "#microsoft.graph.user", "id": guid(n), "displayName": f"User {n}"} for n in (1, 2, 3, 5, 6)],
        {"@odata.type": "#microsoft.graph.group", "id": groups["C"], "displayName": "Group C"},
        {"@odata.type": "#microsoft.graph.group", "id": groups["A"], "displayName": "Group A"},
    ]


def test_the_page_size_is_the_directorys_unless_top_is_given_and_count_needs_the_header(emu):
    groups = nested_directory(emu)
    emu.client.graph_config(page_size=3)
    url = f"/groups/{groups['A']}/transitiveMembers/microsoft.graph.user"

    status, body, _ = get(emu, url)
    assert status == 200 and len(body["value"]) == 3 and "@odata.count" not in body
    rest = get(emu, body["@odata.nextLink"])[1]
    assert [user["id"] for user in rest["value"]] == [guid(5), guid(6)] and "@odata.nextLink" not in rest

    status, body, _ = get(emu, url + "?$count=true")
    assert (status, body["error"]["code"]) == (400, "Request_UnsupportedQuery")
    assert "ConsistencyLevel" in body["error"]["message"]
    for top in ("0", "1000", "many"):
        status, body, _ = get(emu, f"{url}?$top={top}")
        assert (status, body["error"]["code"]) == (400, "Request_BadRequest"), top


def test_a_skiptoken_from_another_group_or_before_a_reset_is_refused(emu):
    groups = nested_directory(emu)
    first = get(emu, f"/groups/{groups['A']}/transitiveMembers/microsoft.graph.user?$top=1")[1]["@odata.nextLink"]
    token = first.split("$skiptoken=")[1]

    status, body, _ = get(emu, f"/groups/{groups['B']}/transitiveMembers/microsoft.graph.user?$skiptoken={token}")
    assert (status, body["error"]["code"]) == (400, "Request_BadRequest")
    emu.client.reset()
    nested_directory(emu, groups)  # the same groups, in a new directory
    status, body, _ = get(emu, first)
    assert (status, body["error"]["message"]) == (400, "The $skiptoken is not valid.")


def test_a_group_is_read_by_id_and_unknown_or_malformed_ids_are_refused(emu):
    [group_id] = make_groups(emu, "Finance")
    missing = str(uuid.uuid4())

    status, body, _ = get(emu, f"/groups/{group_id}?$select=displayName")
    assert (status, body["id"], body["displayName"]) == (200, group_id, "Finance")
    assert "description" not in body

    for path in (f"/groups/{missing}", f"/groups/{missing}/transitiveMembers/microsoft.graph.user"):
        status, body, _ = get(emu, path)
        assert (status, body["error"]["code"]) == (404, "Request_ResourceNotFound")
        assert body["error"]["message"] == (f"Resource '{missing}' does not exist or one of its queried "
                                            "reference-property objects are not present.")
    status, body, _ = get(emu, "/groups/not-a-guid/transitiveMembers")
    assert (status, body["error"]["code"]) == (400, "Request_BadRequest")
    assert body["error"]["message"] == "Invalid object identifier 'not-a-guid'."


def test_groups_need_a_graph_token_and_a_group_permission(emu):
    [group_id] = make_groups(emu, "Finance")

    status, body, _ = get(emu, "/groups", bearer="not-a-token")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")

    emu.client.graph_config(permissions=["User.Read.All", "TeamsActivity.Send"])
    for path in ("/groups", f"/groups/{group_id}", f"/groups/{group_id}/transitiveMembers/microsoft.graph.user"):
        status, body, _ = get(emu, path)
        assert (status, body["error"]["code"]) == (403, "Authorization_RequestDenied"), path

    for permission in ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"):
        emu.client.graph_config(permissions=[permission])
        assert get(emu, "/groups")[0] == 200, permission
    emu.client.graph_config(permissions=["Group.Read.All"])
    assert get(emu, "/users/delta")[0] == 403  # a group permission does not read the users


def test_groups_answer_429_with_retry_after_when_told_to(emu):
    groups = nested_directory(emu)
    emu.client.graph_config(throttle_next=2, retry_after_seconds=5)

    status, body, headers = get(emu, search("group"), EVENTUAL)
    members, _, _ = get(emu, f"/groups/{groups['A']}/transitiveMembers/microsoft.graph.user")
    again, _, _ = get(emu, f"/groups/{groups['A']}/transitiveMembers/microsoft.graph.user")

    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "TooManyRequests", "5")
    assert (members, again) == (429, 200)
    assert emu.client.graph_stats()["throttled"] == 2


def test_the_control_api_keeps_no_group_when_one_entry_is_wrong(emu):
    good = {"id": str(uuid.uuid4()), "displayName": "Good"}
    for bad, where in (
        ({"id": "not-a-guid", "displayName": "Bad"}, "groups[1].id"),
        ({"id": str(uuid.uuid4()), "displayName": ""}, "groups[1].displayName"),
        ({"id": str(uuid.uuid4()), "displayName": "x" * 257}, "groups[1].displayName"),
        ({"id": str(uuid.uuid4()), "displayName": "Bad", "members": [guid(1), "someone"]}, "groups[1].members[1]"),
        ({"id": str(uuid.uuid4()), "displayName": "Bad", "members": guid(1)}, "groups[1].members"),
        ({"id": str(uuid.uuid4()), "displayName": "Bad", "membershipRule": 7}, "groups[1].membershipRule"),
    ):
        with pytest.raises(EmulatorError) as refused:
            emu.client.graph_groups([good, bad])
        assert refused.value.status == 400 and where in refused.value.body["error"], (where, refused.value.body)

    assert emu.client.graph_stats()["groups"] == 0
    assert emu.client.graph_groups([good]) == {"groups": 1}


def test_the_control_api_changes_members_replaces_and_deletes_groups(emu):
    group_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    emu.client.graph_groups([{"id": group_id, "displayName": "Team", "members": [guid(1), guid(2)]}])

    changed = emu.client.graph_group_members(group_id, add=[guid(3), uuid.UUID(int=1)], remove=[guid(2)])
    assert changed["members"] == [guid(1), guid(3)]
    with pytest.raises(EmulatorError) as refused:
        emu.client.graph_group_members(group_id, add=["nobody"])
    assert refused.value.status == 400
    assert emu.client.graph_groups([{"id": group_id, "displayName": "Renamed"}, {"id": other, "displayName": "Other"}])
    _, body, _ = get(emu, f"/groups/{group_id}")
    assert body["displayName"] == "Renamed"

    assert emu.client.graph_delete_group(group_id) == {"groups": 1}
    assert get(emu, f"/groups/{group_id}")[0] == 404
    for call in (lambda: emu.client.graph_delete_group(group_id),
                 lambda: emu.client.graph_group_members(group_id, add=[guid(1)])):
        with pytest.raises(EmulatorError) as missing:
            call()
        assert missing.value.status == 404
    emu.client.reset()
    assert emu.client.graph_stats()["groups"] == 0
