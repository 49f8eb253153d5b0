import pytest

from campaigns.models import Audience
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db
RULES = [{"field": "department", "op": "eq", "value": "Sales"}, {"field": "country", "op": "in", "value": ["FR", "DE"]}]


def test_rules_audience_is_created_and_counts_the_people_it_selects(api):
    factories.recipient(department="Sales", country="FR")
    factories.recipient(department="Sales", country="DE")
    factories.recipient(department="Sales", country="US")
    factories.recipient(department="Sales", country="FR", is_active=False)

    created = api.post("/api/v1/audiences/", {"name": "EU sales", "kind": "rules", "rules": RULES}, format="json")
    counted = api.get(f"/api/v1/audiences/{created.json()['id']}/count/")

    assert created.status_code == 201, created.json()
    assert created.json()["rules"] == RULES
    assert created.json()["count"] == 2
    assert counted.json() == {"count": 2}


def test_rules_audience_with_a_bad_rule_is_refused_naming_rules(api):
    response = api.post(
        "/api/v1/audiences/",
        {"name": "Bad", "kind": "rules", "rules": [{"field": "salary", "op": "gte", "value": "1"}]},
        format="json",
    )

    assert response.status_code == 400
    assert "unknown field 'salary'" in error_of(response)["fields"]["rules"][0]
    assert not Audience.objects.exists()


def test_static_audience_members_are_read_and_written_by_external_id(api):
    ann, bob, cid = (factories.recipient(external_id=e) for e in ("ann", "bob", "cid"))

    created = api.post(
        "/api/v1/audiences/",
        {"name": "Pilot", "kind": "static", "members": ["ann", "bob"], "excluded": ["bob"]},
        format="json",
    )
    url = f"/api/v1/audiences/{created.json()['id']}/"
    edited = api.patch(url, {"members": ["ann", "cid"]}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["members"], body["excluded"], body["count"]) == (["ann", "bob"], ["bob"], 1)
    assert (edited.json()["members"], edited.json()["count"]) == (["ann", "cid"], 2)
    audience = Audience.objects.get()
    assert set(audience.members.all()) == {ann, cid}
    assert list(audience.excluded.all()) == [bob]


def test_audience_naming_unknown_people_is_refused_naming_them_and_saves_nothing(api):
    factories.recipient(external_id="ann")

    response = api.post(
        "/api/v1/audiences/",
        {"name": "Pilot", "kind": "static", "members": ["ann", "ghost", "nobody"]},
        format="json",
    )

    assert response.status_code == 400
    assert error_of(response)["fields"]["members"] == ["Unknown external ids: ghost, nobody."]
    assert not Audience.objects.exists()


def test_audiences_are_listed_with_members_without_a_query_per_audience(api, django_assert_max_num_queries):
    people = [factories.recipient() for _ in range(3)]
    for n in range(5):
        factories.audience(name=f"A{n}", kind="static").members.set(people)

    with django_assert_max_num_queries(12):  # auth, page, two prefetches, one count per audience
        results = api.get("/api/v1/audiences/").json()["results"]

    assert [len(a["members"]) for a in results] == [3] * 5
